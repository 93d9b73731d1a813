// What the autoscale ticks observe of a pool, kept in libSQL so that a restart (or a standby
// taking over) decides from the same history: each in-service node's GPU activity and how
// long it has been idle (node_idle), and samples of the pool's metrics for the predictive
// autoscaler (pool_samples). The scaler (lifecycle/scale.ts) calls these once per tick and
// hands the result to every autoscaler in PoolMetrics.
//
// A node is busy while any of its GPUs reports utilisation above 0 % or a compute process
// (the heartbeat's processCount, where the agent reports it: a process holding a GPU between
// kernels is work too). A node that reports no readings has nothing observed running on
// it: idle. Idle time is measured at the resolution of the ticks and the heartbeats: a node
// counts as idle from the readings that first showed it idle, never earlier.
import { and, asc, eq, gt, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { gpuReadings, nodeIdle, nodes, poolSamples } from "../../schema/db.ts";
import { stateIn } from "../../schema/lifecycle.ts";
import type { NodeWriter } from "../nodes/writer.ts";
import type { Db } from "../store/store.ts";
import type { IdleNode } from "./autoscaler.ts";
import { sampleSpacing, type MetricsSample } from "./history.ts";

/** One in-service node's GPUs as its latest readings show them. */
export interface NodeActivity {
  id: string;
  busy: boolean;
  /** When its latest readings arrived; undefined when it has none. */
  readAt: number | undefined;
  /** When it entered its current (in-service) state. */
  stateChangedAt: number;
  /** Sum and count of its GPUs' utilisation readings (for the pool's average). */
  utilizationSum: number;
  utilizationReadings: number;
}

/**
 * The GPU activity of a pool's in-service nodes that count in its size (launched by
 * Navarch, not already chosen to leave), in id order.
 */
export async function poolActivity(db: Db, pool: string): Promise<NodeActivity[]> {
  // Over the node's latest readings (one JSON array per node): one aggregate per subquery.
  const overReadings = (aggregate: string) => sql.raw(`(SELECT ${aggregate} FROM json_each(gpu_readings.readings))`);
  const rows = await db
    .select({
      id: nodes.id,
      busiest: sql<number | null>`${overReadings("max(coalesce(value->>'utilizationPct', 0))")}`,
      processes: sql<number | null>`${overReadings("max(coalesce(value->>'processCount', 0))")}`,
      utilizationSum: sql<number | null>`${overReadings("sum(value->>'utilizationPct')")}`,
      utilizationReadings: sql<number>`${overReadings("count(value->>'utilizationPct')")}`,
      readAt: gpuReadings.updatedAt,
      stateChangedAt: nodes.stateChangedAt,
    })
    .from(nodes)
    .leftJoin(gpuReadings, eq(gpuReadings.nodeId, nodes.id))
    .where(and(eq(nodes.pool, pool), eq(nodes.origin, "launched"), stateIn(nodes.state, "inService"), isNull(nodes.removal)))
    .orderBy(asc(nodes.id));
  return rows.map((r) => ({
    id: r.id,
    busy: Number(r.busiest ?? 0) > 0 || Number(r.processes ?? 0) > 0,
    readAt: r.readAt === null ? undefined : Number(r.readAt),
    stateChangedAt: r.stateChangedAt,
    utilizationSum: Number(r.utilizationSum ?? 0),
    utilizationReadings: Number(r.utilizationReadings),
  }));
}

/** Average GPU utilisation over every reading of these nodes; undefined when there is none. */
export function averageUtilization(activity: readonly NodeActivity[]): number | undefined {
  const readings = activity.reduce((n, a) => n + a.utilizationReadings, 0);
  return readings === 0 ? undefined : activity.reduce((sum, a) => sum + a.utilizationSum, 0) / readings;
}

/**
 * Brings the pool's idle records up to date with `activity` and returns its idle nodes: a
 * node seen idle for the first time is idle from its readings' time (now, without any), but
 * never from before it came into service; a busy node, or one no longer in service, loses
 * its record.
 */
export async function recordIdleness(db: Db, writer: NodeWriter, pool: string, activity: readonly NodeActivity[], at: number): Promise<IdleNode[]> {
  const known = new Map((await db.select().from(nodeIdle).where(eq(nodeIdle.pool, pool))).map((r) => [r.nodeId, r.idleSince]));
  const idle: IdleNode[] = [];
  const fresh: (typeof nodeIdle.$inferInsert)[] = [];
  for (const a of activity) {
    if (a.busy) continue;
    let since = known.get(a.id);
    if (since === undefined) {
      since = Math.min(Math.max(a.readAt ?? at, a.stateChangedAt), at);
      fresh.push({ nodeId: a.id, pool, idleSince: since });
    }
    idle.push({ id: a.id, idleSince: since });
  }
  const stillIdle = new Set(idle.map((n) => n.id));
  const stale = [...known.keys()].filter((id) => !stillIdle.has(id));
  if (fresh.length > 0 || stale.length > 0) {
    // In chunks: SQLite limits the variables of one statement.
    await writer.atomically(async (tx) => {
      for (let i = 0; i < stale.length; i += 500) await tx.delete(nodeIdle).where(inArray(nodeIdle.nodeId, stale.slice(i, i + 500)));
      for (let i = 0; i < fresh.length; i += 200) {
        await tx
          .insert(nodeIdle)
          .values(fresh.slice(i, i + 200))
          .onConflictDoUpdate({ target: nodeIdle.nodeId, set: { pool, idleSince: sql`excluded.idle_since` } });
      }
    });
  }
  return idle;
}

/** Since when each of these nodes has been idle, where a tick recorded it. */
export async function idleSinceOf(db: Db, ids: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    for (const r of await db
      .select()
      .from(nodeIdle)
      .where(inArray(nodeIdle.nodeId, ids.slice(i, i + 500))))
      out.set(r.nodeId, r.idleSince);
  }
  return out;
}

/**
 * Records `sample` when the last one is at least a spacing old, deletes what is older than
 * the lookback (everything, when the pool's autoscaler reads no history), and returns the
 * pool's history, oldest first.
 */
export async function recordSample(db: Db, writer: NodeWriter, pool: string, sample: MetricsSample, lookback: number): Promise<MetricsSample[]> {
  const cutoff = sample.at - lookback;
  if (lookback <= 0) {
    const [any] = await db.select({ at: poolSamples.at }).from(poolSamples).where(eq(poolSamples.pool, pool)).limit(1);
    if (any !== undefined) await writer.atomically((tx) => tx.delete(poolSamples).where(eq(poolSamples.pool, pool)));
    return [];
  }
  const [last] = await db.select({ at: poolSamples.at }).from(poolSamples).where(eq(poolSamples.pool, pool)).orderBy(sql`${poolSamples.at} desc`).limit(1);
  const due = last === undefined || sample.at - last.at >= sampleSpacing(lookback) || last.at > sample.at;
  await writer.atomically(async (tx) => {
    // A sample from the future (a clock set back) would block recording: it goes too.
    await tx.delete(poolSamples).where(and(eq(poolSamples.pool, pool), or(lt(poolSamples.at, cutoff), gt(poolSamples.at, sample.at))));
    if (due) {
      await tx
        .insert(poolSamples)
        .values({ pool, at: sample.at, ready: sample.ready, utilization: sample.utilization ?? null, queueDepth: sample.queueDepth ?? null })
        .onConflictDoNothing();
    }
  });
  const rows = await db.select().from(poolSamples).where(eq(poolSamples.pool, pool)).orderBy(asc(poolSamples.at));
  return rows.map((r) => ({
    at: r.at,
    ready: r.ready,
    ...(r.utilization !== null ? { utilization: r.utilization } : {}),
    ...(r.queueDepth !== null ? { queueDepth: r.queueDepth } : {}),
  }));
}
