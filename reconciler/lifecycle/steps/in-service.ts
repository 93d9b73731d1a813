// ready ⇄ suspect, and out of service. A degraded node is suspect (still in service);
// an unhealthy one is quarantined at once: cordoned in Navarch and in the scheduler,
// limited only by storm protection (breaker, cordon rate). What follows — draining,
// replacement — waits for a remediation slot while the node is already out of service.
// A node chosen for scale-down is cordoned the same way, once a slot for its drain is free.
import { schedulerNode } from "../../schedulers/scheduler.ts";
import { blocked, move, type Look, type Step, type StepContext } from "../context.ts";
import { firstRemedy } from "../remedy.ts";
import type { NodeRow } from "../../nodes/writer.ts";

export const inService: Step = async (node, ctx) => {
  const { svc } = ctx;
  if (node.verdict === "unhealthy") return quarantine(node, ctx, svc.verdictReason(node));
  if (node.state === "ready" && node.verdict === "degraded") {
    await move(node, "suspect", svc.verdictReason(node), ctx);
    return undefined;
  }
  if (node.state === "suspect" && node.verdict === "healthy") {
    await move(node, "ready", "healthy again", ctx);
    return undefined;
  }
  if (node.removal === "scale_down") {
    // Taking a healthy node away evicts nothing only if its drain can start right after.
    const slot = ctx.rails.mayRemediate(node.pool);
    if (!slot.allowed) return blocked(node, slot, ctx, "chosen for scale-down");
    return cordon(node, ctx, "scale down");
  }
  return undefined;
};

/** Opens the node's incident and cordons it, storm protection permitting. */
export async function quarantine(node: NodeRow, ctx: StepContext, reason: string): Promise<Look> {
  const { svc, at } = ctx;
  const remedy = firstRemedy(svc.recommendedAction(node), svc.pool(node.pool));
  if (!(await svc.incidents.open(node, at, reason, svc.faultAt(node, at), remedy, svc.faultCause(node)))) return at;
  return cordon(node, ctx, reason);
}

async function cordon(node: NodeRow, ctx: StepContext, reason: string): Promise<Look> {
  const { svc, at } = ctx;
  const may = ctx.rails.mayQuarantine(node.pool);
  if (!may.allowed) return blocked(node, may, ctx);
  svc.fence?.check();
  // Out of service in Navarch at once; the scheduler's cordon goes out beside the loop, and
  // waits (queued, with its reason on the node and the incident) while the scheduler is down.
  const waiting = await svc.scheduler.cordon(
    schedulerNode(node, () => svc.readings(node.id)),
    reason,
    node.incidentId ?? 0,
  );
  ctx.rails.noteCordon();
  const status = waiting ? `cordoned in Navarch; ${waiting}` : "cordoned";
  await move(
    node,
    "cordoned",
    waiting ? `${reason}; ${waiting}` : reason,
    ctx,
    { cordonedBy: svc.actor, removal: node.removal ?? "scale_down" },
    node.incidentId !== null ? { cordonedAt: at, status } : undefined,
  );
  return at;
}
