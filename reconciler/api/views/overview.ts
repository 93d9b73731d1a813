// GET /v1/overview: the whole fleet on one page: every pool's summary, the live nodes as tiles
// (those that need attention first), the totals, tripped breakers, open incidents and the
// latest actions a safety rail refused.
import { asc, desc, eq, isNull } from "drizzle-orm";
import * as v from "valibot";
import { auditLog, breakers, incidents, pools } from "../../../schema/db.ts";
import { isIn } from "../../../schema/lifecycle.ts";
import type { Store } from "../../store/store.ts";
import { StateCounts, liveCount, stateCounts } from "./node-counts.ts";
import { NodeTile, TILE_LIMIT, liveTiles, omitted } from "./node-tiles.ts";
import { PoolSummary, summarize } from "./pool-summary.ts";
import { AuditRow, BreakerRow, IncidentRow } from "./table-rows.ts";
import { Ms } from "./time.ts";

export const Overview = v.object({
  at: Ms,
  pools: v.array(PoolSummary),
  nodes: v.pipe(
    v.array(NodeTile),
    v.description(`live nodes (not terminated or failed), at most ${TILE_LIMIT}: those that need attention first, then in pool and id order`),
  ),
  totals: v.object({
    nodes: v.pipe(v.number(), v.description("every live node, drawn or not")),
    tilesOmitted: v.pipe(v.number(), v.description(`live nodes left out of \`nodes\` (the fleet has more than ${TILE_LIMIT})`)),
    byState: StateCounts,
    unhealthy: v.number(),
    openIncidents: v.number(),
    terminated: v.number(),
    failed: v.number(),
  }),
  breakers: v.array(BreakerRow),
  incidents: v.pipe(v.array(IncidentRow), v.description("open incidents, newest first")),
  blocked: v.pipe(v.array(AuditRow), v.description("the latest actions a safety rail refused")),
});
export type Overview = v.InferOutput<typeof Overview>;

/** The overview, as of `now()` once the store has answered. */
export async function readOverview(store: Store, now: () => number): Promise<Overview> {
  const db = store.db;
  const [poolRows, tiles, counts, openIncidents, tripped, blocked] = await Promise.all([
    db.select().from(pools).orderBy(asc(pools.name)),
    liveTiles(db),
    stateCounts(store),
    db.select().from(incidents).where(isNull(incidents.closedAt)).orderBy(desc(incidents.id)).limit(200),
    db.select().from(breakers).where(isNull(breakers.resetAt)),
    db.select().from(auditLog).where(eq(auditLog.action, "blocked")).orderBy(desc(auditLog.id)).limit(20),
  ]);
  const byState: Record<string, number> = {};
  for (const r of counts) byState[r.state] = (byState[r.state] ?? 0) + r.n;
  return {
    at: now(),
    pools: poolRows.map((p) => summarize(p, counts, tripped)),
    nodes: tiles,
    totals: {
      nodes: liveCount(counts),
      tilesOmitted: omitted(counts, tiles),
      byState,
      unhealthy: counts.filter((r) => isIn("inPool", r.state)).reduce((s, r) => s + r.unhealthy, 0),
      openIncidents: openIncidents.length,
      terminated: byState.terminated ?? 0,
      failed: byState.failed ?? 0,
    },
    breakers: tripped,
    incidents: openIncidents,
    blocked,
  };
}
