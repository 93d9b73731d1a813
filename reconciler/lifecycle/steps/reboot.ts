// rebooting: the reboot rung of a remediation. The provider is asked once per incident
// (an operation row keyed by node and incident; after a crash the reboot is not asked
// again if the node already came back with a new boot). The node returns to validating
// when its agent reports a new boot id, and to service once its health check passes
// (validate.ts); it is replaced when the machine is not back within health.reboot_timeout,
// or when the provider refuses the reboot.
import { eq } from "drizzle-orm";
import { incidents } from "../../../schema/db.ts";
import { ProviderError } from "../../providers/provider.ts";
import { runOperation } from "../../safety/operations.ts";
import { move, say, type Look, type Step, type StepContext } from "../context.ts";
import { FencedError, type NodeRow } from "../../nodes/writer.ts";
import { replaceOrHold } from "./replace.ts";

/** How soon to ask again after a reboot call failed transiently. */
const RETRY_MS = 10_000;

export const reboot: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  const [incident] = node.incidentId === null ? [] : await svc.store.db.select().from(incidents).where(eq(incidents.id, node.incidentId));
  if (incident === undefined || incident.remedy !== "reboot") return giveUp(node, ctx, "a replacement was asked for");
  // Back with a new boot: judge it afresh.
  if (node.bootId !== null && incident.rebootFromBoot !== null && node.bootId !== incident.rebootFromBoot) {
    await move(
      node,
      "validating",
      `rebooted: back with a new boot (${node.bootId})`,
      ctx,
      { nextActionAt: null },
      { backAt: at, status: "rebooted; checking its health" },
    );
    return at;
  }
  const deadline = node.nextActionAt ?? at;
  if (at > deadline) {
    const minutes = Math.round((svc.pool(node.pool)?.health.reboot_timeout ?? 0) / 60_000);
    return giveUp(node, ctx, `rebooted, but not back with a new boot within ${minutes} min (health.reboot_timeout)`);
  }
  const provider = node.provider ? svc.providers.get(node.provider) : undefined;
  if (provider?.reboot === undefined || node.instanceName === null || node.provider === null) return giveUp(node, ctx, "its provider cannot reboot it");
  const instanceId = node.instanceName;
  const providerName = node.provider;
  const fromBoot = incident.rebootFromBoot;
  const outcome = await runOperation(
    svc.store.db,
    { key: `reboot:${node.id}:${incident.id}`, kind: "reboot", nodeId: node.id, pool: node.pool ?? "" },
    at,
    () => provider.reboot!(instanceId),
    // Interrupted before it was recorded: a new boot, or a machine the provider shows as not
    // running (rebooting), means the reboot happened; do not ask twice. (A provider whose state
    // stays "running" through a reboot cannot show it: there a crash in that instant reboots twice.)
    async () => {
      if (node.bootId !== fromBoot) return { done: true, result: undefined };
      const instance = await provider.get(instanceId);
      return instance !== undefined && instance.state !== "running" ? { done: true, result: undefined } : { done: false };
    },
    svc.fence,
    svc.providerCall(providerName, "reboot", node.id),
  );
  if ("inFlightSince" in outcome) {
    await say(node, svc.providerWaiting(providerName, "reboot", outcome.inFlightSince), ctx);
    return Math.min(deadline, at + RETRY_MS);
  }
  if (outcome.ok) {
    if (!outcome.replayed) await svc.writer.audit(at, svc.actor, "reboot", node.id, { instance: instanceId, incidentId: incident.id });
    await say(node, `rebooting ${instanceId}; back by ${new Date(deadline).toISOString()} or replaced`, ctx);
    return deadline;
  }
  if (outcome.error instanceof FencedError) return undefined;
  const err = outcome.error;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ProviderError && !err.retryable) return giveUp(node, ctx, `the provider refused the reboot: ${message}`);
  await say(node, `reboot failed (${message}); trying again`, ctx);
  return Math.min(deadline, at + RETRY_MS);
};

/** The reboot rung is over without the node back in service: it is replaced (or held) instead. */
async function giveUp(node: NodeRow, ctx: StepContext, why: string): Promise<Look> {
  await ctx.svc.writer.incident(node.incidentId, { remedy: "replace", status: `replacing: ${why}` });
  return replaceOrHold(node, ctx, why);
}
