// The end of a health remediation: the node is replaced, or held for a human when a
// replacement is not Navarch's to make (auto_replace off, a pool no longer configured, a
// monitored machine Navarch cannot name at a provider) or the slot has failed too often
// (max_attempts). Terminate-first: in one transaction the old node starts terminating and
// its replacement is requested. Surge: the replacement came up during the drain; the old
// node goes once it is Ready. A monitored node (a DaemonSet's, not launched by Navarch) is
// terminated through its provider and its owner (a node group, Cluster Autoscaler) brings
// up its successor: Navarch does not own that pool's size, so it launches nothing.
import { and, eq } from "drizzle-orm";
import { nodes } from "../../../schema/db.ts";
import { isIn, stateNotIn } from "../../../schema/lifecycle.ts";
import { holdsRemediationSlot } from "../../safety/rails.ts";
import { blocked, move, say, type Look, type StepContext } from "../context.ts";
import { requestedNode } from "../scale.ts";
import type { NodeRow } from "../../nodes/writer.ts";

/** A failure within this time of registering counts as a retry of the same slot. */
const MIN_HEALTHY_PERIOD_MS = 60 * 60_000;

export async function replaceOrHold(node: NodeRow, ctx: StepContext, how: string): Promise<Look> {
  const { svc, at } = ctx;
  const pool = svc.pool(node.pool);
  const holdWhy =
    pool === undefined
      ? `pool ${node.pool ?? "-"} is not configured; a human decides what to do with this machine`
      : !pool.health.auto_replace
        ? "health.auto_replace is off; waiting for a human"
        : node.origin === "registered" && (node.instanceName === null || node.provider === null || svc.providers.get(node.provider) === undefined)
          ? "Navarch did not launch this machine and cannot name it at a provider (no Kubernetes Node providerID that a configured provider recognises): replace or repair it by hand, then uncordon it"
          : undefined;
  if (holdWhy !== undefined) return hold(node, ctx, `${how}; ${holdWhy}`, holdWhy);

  // A node draining, rebooted, or a Lost node being fenced, already holds a slot; others take one now.
  const holdsSlot = holdsRemediationSlot(node);
  const byHuman = node.cordonedBy?.startsWith("human:") === true;
  const may = byHuman ? ctx.rails.mayActForHuman() : holdsSlot ? ctx.rails.mayTerminate(node.pool) : ctx.rails.mayRemediate(node.pool);
  if (!may.allowed) return blocked(node, may, ctx);
  const attempts = slotAttempts(node, at);
  const cap = ctx.rails.mayReplace(attempts);
  if (!cap.allowed) return hold(node, ctx, cap.reason, cap.reason);

  if (node.origin === "registered") {
    const why = `terminated for its owner to replace (a machine Navarch did not launch): ${how}`;
    await move(
      node,
      "terminating",
      why,
      ctx,
      { nextActionAt: null },
      { status: `terminating ${node.instanceName} at ${node.provider}; its node group brings up the successor`, remedy: "replace" },
    );
    await svc.writer.audit(at, svc.actor, "replace", node.id, { how, monitored: true, instance: node.instanceName });
    return at;
  }
  const db = svc.store.db;
  const [surged] = await db
    .select()
    .from(nodes)
    .where(and(eq(nodes.replacementOf, node.id), stateNotIn(nodes.state, "terminal")));
  if (surged !== undefined) {
    // Surge: the replacement was launched during the drain; retire this node once it is Ready.
    if (!isIn("inService", surged.state)) {
      await say(node, `drained (${how}); waiting for surge replacement ${surged.id} (${surged.state}) to be Ready`, ctx);
      return undefined;
    }
    await move(node, "terminating", `replaced by ${surged.id} (surge): ${how}`, ctx, { nextActionAt: null });
    return at;
  }
  const from = node.state;
  const replacement = requestedNode(pool!, at, `replacement for ${node.id}`, { replacementOf: node.id, attempts });
  const moved = await svc.writer.atomically(async (tx) => {
    const ok = await svc.writer.transition(
      node,
      "terminating",
      {
        at,
        actor: svc.actor,
        reason: `replaced by ${replacement.id}: ${how}`,
        fields: { nextActionAt: null },
        incident: { replacementNodeId: replacement.id, status: `replacing with ${replacement.id}`, remedy: "replace" },
      },
      tx,
    );
    if (ok) await tx.insert(nodes).values(replacement);
    return ok;
  });
  if (!moved) return undefined;
  ctx.report.transitions.push({ node: node.id, from, to: "terminating", reason: `replaced by ${replacement.id}` });
  await svc.writer.audit(at, svc.actor, "replace", node.id, { replacement: replacement.id, how });
  return at;
}

async function hold(node: NodeRow, ctx: StepContext, reason: string, status: string): Promise<Look> {
  await move(node, "held", reason, ctx, { nextActionAt: null }, { status: `held: ${status}`, closedAt: ctx.at, outcome: "held" });
  return undefined;
}

/** Replacements of the same slot in a row (one that fails within an hour of registering counts as a retry). */
export function slotAttempts(node: NodeRow, at: number): number {
  const readyFor = node.registeredAt === null ? 0 : at - node.registeredAt;
  return node.replacementOf !== null && readyFor < MIN_HEALTHY_PERIOD_MS ? node.attempts + 1 : 1;
}
