// Silence. A watched node whose agent stopped heartbeating is Lost — unless many went
// silent at once (then the problem is probably ours: a partition freeze). A Lost node
// whose agent comes back is judged afresh. Otherwise it is fenced: replaced only once
// the provider confirms its instance is stopped or gone (its work may still be running),
// and fencing is a remediation like any other (budget, in-flight caps).
import { isIn } from "../../../schema/lifecycle.ts";
import { holdsRemediationSlot } from "../../safety/rails.ts";
import { blocked, move, say, type Look, type Step, type StepContext } from "../context.ts";
import { instanceOf } from "../inventory.ts";
import { heartbeatAge } from "../silence.ts";
import type { NodeRow } from "../../nodes/writer.ts";
import { replaceOrHold } from "./replace.ts";
import { terminateCall } from "./terminate.ts";

/** Whether a watched node's agent has been silent past the heartbeat timeout. */
export function silent(node: NodeRow, ctx: StepContext): boolean {
  return (
    isIn("watched", node.state) &&
    node.lastHeartbeatAt !== null &&
    heartbeatAge(node.lastHeartbeatAt, ctx.at, ctx.svc.heardSince()) > ctx.svc.config().server.heartbeat_timeout
  );
}

/** Declares a silent node Lost (runs before its state's own step). */
export async function declareLost(node: NodeRow, ctx: StepContext): Promise<Look> {
  const may = ctx.rails.mayDeclareLost();
  if (!may.allowed) return blocked(node, may, ctx);
  // Lost, a node marked for removal holds a remediation slot (it is fenced next). One already
  // out of service without a slot (quarantined, waiting for one) goes on waiting, as it is:
  // its silence must not take a slot the rails did not give it.
  if (node.removal !== null && isIn("takenOut", node.state) && !holdsRemediationSlot(node)) {
    const slot = node.cordonedBy?.startsWith("human:") === true ? ctx.rails.mayActForHuman() : ctx.rails.mayRemediate(node.pool);
    if (!slot.allowed) return blocked(node, slot, ctx, "silent, waiting for a remediation slot to be fenced");
  }
  await move(node, "lost", `no heartbeat for ${Math.round((ctx.at - (node.lastHeartbeatAt ?? ctx.at)) / 1000)} s`, ctx, { nextActionAt: null });
  return ctx.at;
}

export const lost: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  const timeout = svc.config().server.heartbeat_timeout;
  if (node.lastHeartbeatAt !== null && at - node.lastHeartbeatAt <= timeout) {
    await move(node, "validating", "heartbeats resumed", ctx);
    return at;
  }
  // Just started (or restored): its agent gets a heartbeat timeout to be heard before it is fenced.
  if (at - svc.heardSince() <= timeout) return svc.heardSince() + timeout + 1;
  // A monitored machine's agent is a DaemonSet pod that a rollout or an eviction silences:
  // silence alone is no reason to terminate a machine Navarch does not own.
  if (node.origin === "registered") {
    await say(node, "no heartbeat; Navarch did not launch this machine and does not fence it for its agent's silence", ctx);
    return undefined;
  }
  if (node.removal === null) {
    // Taking it out for good is a remediation: it needs a slot.
    const may = ctx.rails.mayRemediate(node.pool);
    if (!may.allowed) return blocked(node, may, ctx, "lost");
    const reason = "lost: no heartbeat";
    if (!(await svc.incidents.open(node, at, reason, node.lastHeartbeatAt ?? at, "replace", "no_heartbeat", "fencing"))) return at;
  }
  // Fencing: replace only once the provider confirms the instance is stopped or gone.
  const answer = await instanceOf(node, ctx);
  if (!answer.answered) {
    await say(node, `fencing: ${answer.waiting}`, ctx);
    return at + 5_000;
  }
  if (answer.instance !== undefined && answer.instance.state !== "terminated") {
    const waiting = await terminateCall(node, ctx);
    if (waiting !== undefined) await say(node, `fencing: ${waiting}`, ctx);
    return at + 5_000;
  }
  if (node.removal === "scale_down") {
    await move(node, "terminating", "scale down; lost, and its instance is gone", ctx);
    return at;
  }
  return replaceOrHold(node, ctx, "lost, and its instance is gone");
};
