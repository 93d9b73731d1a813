// GET /v1/pools/:name: one pool's page: its row and summary, its live nodes as tiles, the
// autoscaler's decisions, what a rail refused on its nodes, the breakers that apply to it and
// its incidents.
import { and, desc, eq, inArray, isNull } from "drizzle-orm";
import * as v from "valibot";
import { auditLog, breakers, incidents, nodes, pools } from "../../../schema/db.ts";
import type { Store } from "../../store/store.ts";
import { stateCounts } from "./node-counts.ts";
import { NodeTile, TILE_LIMIT, liveTiles, omitted } from "./node-tiles.ts";
import { PoolSummary, summarize } from "./pool-summary.ts";
import { AuditRow, BreakerRow, IncidentRow, PoolRow } from "./table-rows.ts";
import { Ms } from "./time.ts";

export const PoolView = v.object({
  at: Ms,
  pool: PoolRow,
  summary: PoolSummary,
  nodes: v.pipe(v.array(NodeTile), v.description(`the pool's live nodes, at most ${TILE_LIMIT}: those that need attention first`)),
  tilesOmitted: v.pipe(v.number(), v.description("the pool's live nodes left out of `nodes`")),
  decisions: v.pipe(v.array(AuditRow), v.description('autoscaler decisions ("scale" and "dry_run" rows), newest first')),
  blocked: v.pipe(v.array(AuditRow), v.description("actions on this pool's nodes that a rail refused, newest first")),
  breakers: v.pipe(v.array(BreakerRow), v.description("tripped breakers that apply to this pool (its own and the fleet's)")),
  incidents: v.array(IncidentRow),
});
export type PoolView = v.InferOutput<typeof PoolView>;

/** The pool's page; undefined when there is no pool of that name. */
export async function readPoolView(store: Store, name: string, now: () => number): Promise<PoolView | undefined> {
  const db = store.db;
  const [row] = await db.select().from(pools).where(eq(pools.name, name));
  if (row === undefined) return undefined;
  const poolNodes = db.select({ id: nodes.id }).from(nodes).where(eq(nodes.pool, name));
  const [tiles, counts, decisions, blocked, tripped, poolIncidents] = await Promise.all([
    liveTiles(db, name),
    stateCounts(store, name),
    db
      .select()
      .from(auditLog)
      .where(and(inArray(auditLog.action, ["scale", "dry_run"]), eq(auditLog.target, `pool:${name}`)))
      .orderBy(desc(auditLog.id))
      .limit(50),
    db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "blocked"), inArray(auditLog.target, poolNodes)))
      .orderBy(desc(auditLog.id))
      .limit(50),
    db
      .select()
      .from(breakers)
      .where(and(isNull(breakers.resetAt), inArray(breakers.scope, ["fleet", `pool:${name}`]))),
    db.select().from(incidents).where(eq(incidents.pool, name)).orderBy(desc(incidents.id)).limit(50),
  ]);
  return {
    at: now(),
    pool: row,
    summary: summarize(row, counts, tripped),
    nodes: tiles,
    tilesOmitted: omitted(counts, tiles),
    decisions,
    blocked,
    breakers: tripped,
    incidents: poolIncidents,
  };
}
