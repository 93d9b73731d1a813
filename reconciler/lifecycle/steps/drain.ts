// draining: the scheduler moves work off the node until it is empty or the pool's
// drain deadline passes. Then the node goes where its removal says: rebooted or replaced
// (health: the remediation ladder, remedy.ts), terminated (scale-down), or held for the
// human who asked for the drain. A scheduler
// may report that the drain must stop and wait for a human (hold); the loop makes that
// transition, as every other.
import { schedulerNode } from "../../schedulers/scheduler.ts";
import { blocked, move, say, type Step } from "../context.ts";
import { recovered, returnToService } from "./cordoned.ts";
import { nextRung } from "../remedy.ts";
import { replaceOrHold } from "./replace.ts";

export const drain: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  if (recovered(node, svc.actor)) return returnToService(node, ctx);
  const deadline = node.nextActionAt ?? at;
  svc.fence?.check();
  const progress = await svc.scheduler.drain(
    schedulerNode(node, () => svc.readings(node.id)),
    deadline,
    at,
  );
  if (progress.hold !== undefined) {
    await move(node, "held", progress.hold, ctx, { nextActionAt: null }, { status: `held: ${progress.hold}` });
    return undefined;
  }
  // Before the deadline, or past it while the scheduler is still being read: the drain goes on.
  if (!progress.done && (at < deadline || progress.again === true)) {
    const line = `draining: ${progress.detail}`;
    // The scheduler does not answer: the incident says what the drain waits for, and since when.
    if (progress.waiting !== undefined && node.stateReason !== line) await svc.writer.incident(node.incidentId, { status: `draining: ${progress.waiting}` });
    await say(node, line, ctx);
    return at < deadline ? deadline : at;
  }
  const how = progress.done ? progress.detail : `drain deadline passed (${progress.detail})`;
  await svc.writer.incident(node.incidentId, { drainedAt: at, status: `drained: ${how}` });
  if (node.removal === "scale_down") {
    const may = ctx.rails.mayTerminate(node.pool);
    if (!may.allowed) return blocked(node, may, ctx, `drained (${how})`);
    await move(node, "terminating", `scale down; ${how}`, ctx, { nextActionAt: null });
    return at;
  }
  // A drain a human asked for ends with the node held for them.
  if (node.removal === null) {
    await move(node, "held", `drained (${how}); held for the human who asked`, ctx, { nextActionAt: null });
    return undefined;
  }
  const rung = await nextRung(node, ctx);
  if (rung.rung === "reboot") {
    const timeout = svc.pool(node.pool)?.health.reboot_timeout ?? 20 * 60_000;
    await move(
      node,
      "rebooting",
      `drained (${how}); rebooting`,
      ctx,
      { nextActionAt: at + timeout },
      { rebootedAt: at, rebootFromBoot: node.bootId, status: "rebooting" },
    );
    return at;
  }
  if (rung.why !== undefined) await svc.writer.incident(node.incidentId, { remedy: "replace", status: `replacing instead of rebooting: ${rung.why}` });
  return replaceOrHold(node, ctx, rung.why === undefined ? how : `${how}; replaced, not rebooted: ${rung.why}`);
};
