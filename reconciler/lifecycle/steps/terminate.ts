// terminating → terminated: one terminate call per node, ever (the operation key makes
// a retry after a crash a no-op), then wait until the provider confirms it is gone.
import { runOperation } from "../../safety/operations.ts";
import { move, say, type Step, type StepContext } from "../context.ts";
import { instanceOf, markInstanceTerminated } from "../inventory.ts";
import type { NodeRow } from "../../nodes/writer.ts";

/** How soon to ask the provider again while an instance is shutting down. */
const CONFIRM_EVERY_MS = 5_000;

export const terminate: Step = async (node, ctx) => {
  if (node.instanceName === null) {
    await finish(node, ctx, "never launched");
    return undefined;
  }
  return terminateInstance(node, ctx);
};

/** Asks the provider to terminate the node's instance (once) and finishes the node when it is gone. */
export async function terminateInstance(node: NodeRow, ctx: StepContext): Promise<number | undefined> {
  if (node.instanceName === null) return undefined;
  const waiting = await terminateCall(node, ctx);
  const answer = waiting === undefined ? await instanceOf(node, ctx) : { answered: false as const, waiting };
  if (!answer.answered) {
    if (node.state === "terminating") await say(node, answer.waiting, ctx);
    return ctx.at + CONFIRM_EVERY_MS;
  }
  if (answer.instance === undefined || answer.instance.state === "terminated") {
    if (node.state === "terminating") await finish(node, ctx, "the provider confirms it is gone");
    return undefined;
  }
  return ctx.at + CONFIRM_EVERY_MS;
}

/** Asks for the termination (once ever); returns what it waits for while the call has not answered. */
export async function terminateCall(node: NodeRow, ctx: StepContext): Promise<string | undefined> {
  const { svc, at } = ctx;
  const provider = node.provider ? svc.providers.get(node.provider) : undefined;
  if (provider === undefined || node.instanceName === null || node.provider === null) return undefined;
  const instanceId = node.instanceName;
  const providerName = node.provider;
  const outcome = await runOperation(
    svc.store.db,
    { key: `terminate:${node.id}`, kind: "terminate", nodeId: node.id, pool: node.pool ?? "" },
    at,
    () => provider.terminate(instanceId),
    // Interrupted before it was recorded: if the instance is already gone, do not ask again.
    async () => {
      const instance = await provider.get(instanceId);
      return instance === undefined || instance.state === "terminated" ? { done: true, result: undefined } : { done: false };
    },
    svc.fence,
    svc.providerCall(providerName, "terminate", node.id),
  );
  if ("inFlightSince" in outcome) return svc.providerWaiting(providerName, "terminate", outcome.inFlightSince);
  if (outcome.ok && !outcome.replayed) {
    ctx.report.terminated.push(node.id);
    await svc.writer.audit(at, svc.actor, "terminate", node.id, { instance: instanceId });
  }
  if (!outcome.ok) svc.log(`terminate ${node.id}: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`);
  return undefined;
}

async function finish(node: NodeRow, ctx: StepContext, why: string): Promise<void> {
  if (node.instanceName !== null) await markInstanceTerminated(ctx.svc.store.db, node.instanceName, ctx.at);
  // An incident ends with the replacement Ready; one on a node removed by scale-down, or on a
  // monitored machine (its owner replaces it, not Navarch), ends here.
  const incident =
    node.removal === "scale_down"
      ? { terminatedAt: ctx.at, closedAt: ctx.at, outcome: "terminated" as const, status: `removed by scale-down: ${why}` }
      : node.origin === "registered"
        ? { terminatedAt: ctx.at, closedAt: ctx.at, outcome: "terminated" as const, status: `terminated for its owner to replace: ${why}` }
        : { terminatedAt: ctx.at };
  await move(node, "terminated", why, ctx, { nextActionAt: null }, node.incidentId !== null ? incident : undefined);
}
