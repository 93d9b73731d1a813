// Nodes as tiles: enough of each to color it and say why. A view draws at most TILE_LIMIT of
// them, those that need attention first, and counts the ones it leaves out.
import { and, asc, eq, sql } from "drizzle-orm";
import * as v from "valibot";
import { NODE_ORIGINS } from "../../../schema/admin.ts";
import { nodes } from "../../../schema/db.ts";
import { NODE_STATES, stateNotIn } from "../../../schema/lifecycle.ts";
import type { Store } from "../../store/store.ts";
import { liveCount, type StateCount } from "./node-counts.ts";
import { Ms } from "./time.ts";

const Verdict = v.picklist(["healthy", "degraded", "unhealthy"]);

/**
 * The most node tiles a view carries: past it a page would be megabytes at 100,000 nodes and
 * no one reads that many tiles. The ones left out are healthy and Ready (those needing
 * attention come first) and are in the counts.
 */
export const TILE_LIMIT = 500;

/** A node as a tile: enough to color it and say why. */
export const NodeTile = v.object({
  id: v.string(),
  origin: v.picklist(NODE_ORIGINS),
  pool: v.nullable(v.string()),
  state: v.picklist(NODE_STATES),
  verdict: v.nullable(Verdict),
  stateReason: v.nullable(v.string()),
  stateChangedAt: Ms,
  incidentId: v.nullable(v.number()),
  cordonedBy: v.nullable(v.string()),
  lastHeartbeatAt: v.nullable(Ms),
  replacementOf: v.nullable(v.string()),
});
export type NodeTile = v.InferOutput<typeof NodeTile>;

const tileColumns = {
  id: nodes.id,
  origin: nodes.origin,
  pool: nodes.pool,
  state: nodes.state,
  verdict: nodes.verdict,
  stateReason: nodes.stateReason,
  stateChangedAt: nodes.stateChangedAt,
  incidentId: nodes.incidentId,
  cordonedBy: nodes.cordonedBy,
  lastHeartbeatAt: nodes.lastHeartbeatAt,
  replacementOf: nodes.replacementOf,
};

/** At most TILE_LIMIT live nodes (of one pool): those not healthy and Ready first; shown in pool and id order. */
export async function liveTiles(db: Store["db"], pool?: string): Promise<NodeTile[]> {
  const attention = sql`case when ${nodes.state} = 'ready' and ${nodes.verdict} = 'healthy' then 1 else 0 end`;
  const rows = await db
    .select(tileColumns)
    .from(nodes)
    .where(pool === undefined ? stateNotIn(nodes.state, "terminal") : and(eq(nodes.pool, pool), stateNotIn(nodes.state, "terminal")))
    .orderBy(attention, asc(nodes.pool), asc(nodes.id))
    .limit(TILE_LIMIT);
  return rows.sort((a, b) => (a.pool ?? "").localeCompare(b.pool ?? "") || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Live nodes not drawn (never below 0: the counts and the tiles are two reads). */
export function omitted(counts: readonly StateCount[], tiles: readonly NodeTile[]): number {
  return Math.max(0, liveCount(counts) - tiles.length);
}
