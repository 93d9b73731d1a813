// Node counts by pool and lifecycle state, with how many are monitored, healthy or unhealthy:
// one grouped query that the overview and the pool page sum as they need.
import { eq, sql } from "drizzle-orm";
import * as v from "valibot";
import { nodes } from "../../../schema/db.ts";
import { isIn, type NodeState } from "../../../schema/lifecycle.ts";
import type { Store } from "../../store/store.ts";

export const StateCounts = v.pipe(v.record(v.string(), v.number()), v.description("node count by lifecycle state"));

export interface StateCount {
  pool: string | null;
  state: NodeState;
  n: number;
  /** Of n, nodes that registered on their own (origin monitored). */
  monitored: number;
  healthy: number;
  unhealthy: number;
}

/** Node counts by pool and state, with how many of each are healthy (Ready and judged healthy) or unhealthy. */
export async function stateCounts(store: Store, pool?: string): Promise<StateCount[]> {
  const rows = await store.db
    .select({
      pool: nodes.pool,
      state: nodes.state,
      n: sql<number>`count(*)`,
      monitored: sql<number>`sum(case when ${nodes.origin} = 'monitored' then 1 else 0 end)`,
      healthy: sql<number>`sum(case when ${nodes.state} = 'ready' and ${nodes.verdict} = 'healthy' then 1 else 0 end)`,
      unhealthy: sql<number>`sum(case when ${nodes.verdict} = 'unhealthy' or ${nodes.state} = 'lost' then 1 else 0 end)`,
    })
    .from(nodes)
    .where(pool === undefined ? undefined : eq(nodes.pool, pool))
    .groupBy(nodes.pool, nodes.state);
  return rows.map((r) => ({ ...r, n: Number(r.n), monitored: Number(r.monitored), healthy: Number(r.healthy), unhealthy: Number(r.unhealthy) }));
}

/** Nodes not terminated or failed. */
export function liveCount(counts: readonly StateCount[]): number {
  return counts.filter((r) => !isIn("terminal", r.state)).reduce((t, r) => t + r.n, 0);
}
