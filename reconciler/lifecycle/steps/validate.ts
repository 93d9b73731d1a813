// validating → ready: a node joins service only after its first full health check
// passed — on the reconciler's verdict over the agent's findings and on the agent's own
// verdict. An agent that says it is unhealthy never passes, even when the findings it
// sent were lost (a database restored from an older copy); it re-sends its open findings
// at registration, and if none arrive the node is failed after the registration timeout.
import { move, say, type Step } from "../context.ts";
import { replaceOrHold } from "./replace.ts";

export const validate: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  if (node.verdict === "unhealthy") {
    const reason = svc.verdictReason(node);
    if (!(await svc.incidents.open(node, at, reason, svc.faultAt(node, at)))) return at;
    // Never in service: nothing to cordon or drain.
    return replaceOrHold(node, ctx, `failed validation: ${reason}`);
  }
  if (node.agentHealth === "unhealthy") {
    const timeout = svc.pool(node.pool)?.health.registration_timeout ?? 15 * 60_000;
    const giveUpAt = node.stateChangedAt + timeout;
    if (at < giveUpAt) {
      await say(node, "the agent reports unhealthy; waiting for its findings", ctx);
      return giveUpAt;
    }
    const reason = `the agent has reported unhealthy for ${Math.round(timeout / 60_000)} min without sending a finding`;
    if (!(await svc.incidents.open(node, at, reason, node.stateChangedAt))) return at;
    return replaceOrHold(node, ctx, `failed validation: ${reason}`);
  }
  if (!node.nvmlAvailable || node.agentHealth === null || node.verdict === null) return undefined; // waits for the first full check
  const reason = node.verdict === "healthy" ? "first full health check passed" : `ready with a degraded finding: ${svc.verdictReason(node)}`;
  if (await move(node, "ready", reason, ctx)) await svc.incidents.replacementReady(node, at);
  return undefined;
};
