// validating → ready: a node joins service only after its first full health check
// passed — on the reconciler's verdict over the agent's findings and on the agent's own
// verdict. An agent that says it is unhealthy never passes, even when the findings it
// sent were lost (a database restored from an older copy); it re-sends its open findings
// at registration, and if none arrive the node is failed after the registration timeout.
import { eq } from "drizzle-orm";
import { incidents } from "../../../schema/db.ts";
import { schedulerNode } from "../../schedulers/scheduler.ts";
import { move, say, type Look, type Step, type StepContext } from "../context.ts";
import type { NodeRow } from "../../nodes/writer.ts";
import { replaceOrHold } from "./replace.ts";

export const validate: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  if (node.verdict === "unhealthy") {
    const reason = svc.verdictReason(node);
    if (!(await svc.incidents.open(node, at, reason, svc.faultAt(node, at), "replace", svc.faultCause(node)))) return at;
    // Not in service: nothing to cordon or drain (a rebooted node was drained before its reboot).
    return replaceOrHold(node, ctx, `failed validation${node.cordonedBy !== null ? " after its reboot" : ""}: ${reason}`);
  }
  if (node.agentHealth === "unhealthy") {
    const timeout = svc.pool(node.pool)?.health.registration_timeout ?? 15 * 60_000;
    const giveUpAt = node.stateChangedAt + timeout;
    if (at < giveUpAt) {
      await say(node, "the agent reports unhealthy; waiting for its findings", ctx);
      return giveUpAt;
    }
    const reason = `the agent has reported unhealthy for ${Math.round(timeout / 60_000)} min without sending a finding`;
    if (!(await svc.incidents.open(node, at, reason, node.stateChangedAt, "replace", "agent_unhealthy"))) return at;
    return replaceOrHold(node, ctx, `failed validation: ${reason}`);
  }
  if (!node.nvmlAvailable || node.agentHealth === null || node.verdict === null) return undefined; // waits for the first full check
  const reason = node.verdict === "healthy" ? "first full health check passed" : `ready with a degraded finding: ${svc.verdictReason(node)}`;
  if (node.incidentId !== null) return backInService(node, ctx, reason);
  // In service: the registration deadline is met.
  if (await move(node, "ready", reason, ctx, { nextActionAt: null })) await svc.incidents.replacementReady(node, at);
  return undefined;
};

/**
 * A node that was taken out for its health passed its check again (after its reboot, or
 * its heartbeats came back before it was fenced): our cordon is undone and the incident closes.
 */
async function backInService(node: NodeRow, ctx: StepContext, reason: string): Promise<Look> {
  const { svc, at } = ctx;
  const [incident] = await svc.store.db.select().from(incidents).where(eq(incidents.id, node.incidentId!));
  const rebooted = incident?.rebootedAt != null;
  if (node.cordonedBy !== null) {
    svc.fence?.check();
    await svc.scheduler.uncordon(schedulerNode(node, () => svc.readings(node.id)));
  }
  await move(
    node,
    "ready",
    `${reason}${rebooted ? " after a reboot" : ""}; back in service`,
    ctx,
    { cordonedBy: null, removal: null, incidentId: null, nextActionAt: null },
    incident?.closedAt == null
      ? {
          closedAt: at,
          outcome: rebooted ? "rebooted" : "recovered",
          status: rebooted ? "rebooted and back in service: no new machine" : "recovered and back in service",
        }
      : undefined,
  );
  return undefined;
}
