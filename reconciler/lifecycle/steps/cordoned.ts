// cordoned: out of service. A node Navarch cordoned for its health leaves quarantine
// when a remediation slot is free (the unhealthy budget and the in-flight caps), or goes
// back into service if it recovers first. A human's plain cordon stays until a human
// undoes it. Surge pools launch the replacement when the drain starts.
import { and, eq, sql } from "drizzle-orm";
import { nodes } from "../../../schema/db.ts";
import { stateNotIn } from "../../../schema/lifecycle.ts";
import type { PoolConfig } from "../../../schema/config.ts";
import { schedulerNode } from "../../schedulers/scheduler.ts";
import { blocked, move, type Look, type Step, type StepContext } from "../context.ts";
import { requestedNode } from "../scale.ts";
import type { NodeRow } from "../../nodes/writer.ts";
import { slotAttempts } from "./replace.ts";

export const cordoned: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  if (recovered(node, svc.actor)) return returnToService(node, ctx);
  if (node.removal === null) return undefined; // a human's cordon
  const byHuman = node.cordonedBy?.startsWith("human:") === true;
  const may = byHuman ? ctx.rails.mayActForHuman() : ctx.rails.mayRemediate(node.pool);
  if (!may.allowed) return blocked(node, may, ctx, "cordoned, waiting for a remediation slot");
  const pool = svc.pool(node.pool);
  if (pool !== undefined && node.removal === "replace" && node.origin === "launched" && pool.health.replacement === "surge" && pool.health.auto_replace) {
    await surge(node, pool, ctx);
  }
  const deadline = at + (pool?.health.drain_timeout ?? 30 * 60_000);
  await move(
    node,
    "draining",
    `draining until ${new Date(deadline).toISOString()}`,
    ctx,
    { nextActionAt: deadline },
    node.incidentId !== null ? { status: "draining" } : undefined,
  );
  return at;
};

/** Navarch's own health cordon on a node whose verdict is healthy again. */
export function recovered(node: NodeRow, actor: string): boolean {
  return node.verdict === "healthy" && node.cordonedBy === actor && node.removal === "replace";
}

/** Undoes our cordon (only ours) and closes the incident as recovered. */
export async function returnToService(node: NodeRow, ctx: StepContext): Promise<Look> {
  const { svc, at } = ctx;
  svc.fence?.check();
  await svc.scheduler.uncordon(schedulerNode(node, () => svc.readings(node.id)));
  await move(
    node,
    "ready",
    "recovered; uncordoned",
    ctx,
    { cordonedBy: null, removal: null, incidentId: null, nextActionAt: null },
    { closedAt: at, outcome: "recovered", status: "the node recovered before it was replaced" },
  );
  return undefined;
}

/** Surge: the replacement is requested now, while the node drains; needs room under max_nodes. */
async function surge(node: NodeRow, pool: PoolConfig, ctx: StepContext): Promise<void> {
  const { svc, at } = ctx;
  const db = svc.store.db;
  const [existing] = await db
    .select({ id: nodes.id })
    .from(nodes)
    .where(and(eq(nodes.replacementOf, node.id), stateNotIn(nodes.state, "terminal")));
  if (existing !== undefined) return;
  const [size] = await db
    .select({ n: sql<number>`count(*)` })
    .from(nodes)
    .where(and(eq(nodes.pool, pool.name), eq(nodes.origin, "launched"), stateNotIn(nodes.state, "outOfPool")));
  if (Number(size?.n ?? 0) >= pool.scaling.max_nodes) {
    await svc.writer.incident(node.incidentId, {
      status: `surge skipped: pool ${pool.name} is at max_nodes ${pool.scaling.max_nodes}; replacing after the drain`,
    });
    return;
  }
  await svc.writer.atomically(async (tx) => {
    const replacement = requestedNode(pool, at, `surge replacement for ${node.id}`, { replacementOf: node.id, attempts: slotAttempts(node, at) });
    await tx.insert(nodes).values(replacement);
    await svc.writer.incident(node.incidentId, { replacementNodeId: replacement.id, status: `surge replacement ${replacement.id} requested` }, tx);
    await svc.writer.audit(at, svc.actor, "surge", node.id, { replacement: replacement.id }, tx);
  });
}
