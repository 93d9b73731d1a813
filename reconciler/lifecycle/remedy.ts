// Which rung of the remediation ladder a node takes: a reboot through its provider, or a
// replacement. A fault whose recommended action is a GPU reset or a reboot (the Xid
// catalog's, or a policy rule's) is rebooted first in pools that reboot first (the
// default); it is replaced when the reboot did not help, did not come back in time, or the
// same node was rebooted for its health within the pool's reboot window. A GPU reset by the
// agent stays out: the agent only reads.
import { and, eq, gt, isNotNull } from "drizzle-orm";
import type { PoolConfig } from "../../schema/config.ts";
import { incidents } from "../../schema/db.ts";
import type { RecommendedAction } from "../../schema/wire.ts";
import type { StepContext } from "./context.ts";
import type { Remedy } from "./incidents.ts";
import type { NodeRow } from "../nodes/writer.ts";

/** The first rung, decided when the incident opens. */
export function firstRemedy(action: RecommendedAction | undefined, pool: PoolConfig | undefined): Remedy {
  if (pool?.health.remediation !== "reboot_first") return "replace";
  return action === "reboot" || action === "reset_gpu" ? "reboot" : "replace";
}

export type RungDecision = { rung: "reboot" } | { rung: "replace"; why?: string };

/** After the drain: reboot when the incident asks for it and nothing rules it out, else replace. */
export async function nextRung(node: NodeRow, ctx: StepContext): Promise<RungDecision> {
  if (node.incidentId === null) return { rung: "replace" };
  const db = ctx.svc.store.db;
  const [incident] = await db.select().from(incidents).where(eq(incidents.id, node.incidentId));
  if (incident === undefined || incident.remedy !== "reboot") return { rung: "replace" };
  if (incident.rebootedAt !== null) return { rung: "replace", why: "it was already rebooted for this incident" };
  const provider = node.provider ? ctx.svc.providers.get(node.provider) : undefined;
  if (node.origin !== "launched" || node.instanceName === null || provider === undefined)
    return { rung: "replace", why: "Navarch cannot reboot a machine it did not launch" };
  if (provider.reboot === undefined) return { rung: "replace", why: `provider ${provider.name} cannot reboot a machine` };
  // A human asked for this reboot: theirs to decide, whatever came before.
  if (node.cordonedBy?.startsWith("human:")) return { rung: "reboot" };
  const window = ctx.svc.pool(node.pool)?.health.reboot_window ?? 0;
  const [recent] = await db
    .select({ at: incidents.rebootedAt })
    .from(incidents)
    .where(and(eq(incidents.nodeId, node.id), isNotNull(incidents.rebootedAt), gt(incidents.rebootedAt, ctx.at - window)))
    .limit(1);
  if (recent?.at != null) {
    return { rung: "replace", why: `it was rebooted for its health ${Math.round((ctx.at - recent.at) / 60_000)} min ago, within health.reboot_window` };
  }
  return { rung: "reboot" };
}
