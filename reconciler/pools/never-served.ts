// What machines that never served cost: launched by Navarch and terminated without ever
// entering service (their agent never registered, their bootstrap failed, they failed their
// first health check, a scale-down took them while they came up), per pool and provider,
// with the machine-hours and GPU-hours they were billed for (from the launch, or the
// adoption, to the terminate call; GPUs from the machine's record, else from another
// machine of its provider and instance type). Counted only once the machine is surely gone
// (terminated, or failed with its terminate accepted or its instance reaped): a failed
// machine whose agent registers late is adopted back, and a count must never go down.
// Read by /metrics (all time) and `navarch report` (a window).
import { sql } from "drizzle-orm";
import type { Db } from "../store/store.ts";

export interface NeverServed {
  pool: string;
  provider: string;
  machines: number;
  machineHours: number;
  gpuHours: number;
  /** Machines whose GPU count nobody knows (none of their instance type ever registered): no GPU-hours counted for them. */
  gpusUnknown: number;
}

/** Per pool and provider, of the machines that ended at or after `since` (all when 0). */
export async function neverServed(db: Db, since = 0): Promise<NeverServed[]> {
  const rows = await db.all<{ pool: string; provider: string; machines: number; ms: number; gpu_ms: number; unknown: number }>(sql`
    WITH types AS (
      SELECT provider, instance_type, max(gpu_count) AS gpus FROM nodes WHERE gpu_count IS NOT NULL GROUP BY 1, 2
    ), gone AS (
      SELECT n.pool, n.provider, n.launched_at,
             coalesce(n.gpu_count, t.gpus) AS gpus,
             CASE WHEN n.state = 'terminated' THEN n.state_changed_at ELSE coalesce(o.updated_at, i.updated_at, n.state_changed_at) END AS ended_at
      FROM nodes n
      LEFT JOIN types t ON t.provider = n.provider AND t.instance_type = n.instance_type
      LEFT JOIN operations o ON o.key = 'terminate:' || n.id AND o.state = 'succeeded'
      LEFT JOIN instances i ON i.provider = n.provider AND i.provider_id = n.instance_name AND i.state = 'terminated'
      WHERE n.origin = 'launched' AND n.served_at IS NULL AND n.launched_at IS NOT NULL AND n.instance_name IS NOT NULL
        AND (n.state = 'terminated' OR (n.state = 'failed' AND (o.key IS NOT NULL OR i.name IS NOT NULL)))
    )
    SELECT coalesce(pool, '') AS pool, coalesce(provider, '') AS provider, count(*) AS machines,
           coalesce(sum(max(0, ended_at - launched_at)), 0) AS ms,
           coalesce(sum(max(0, ended_at - launched_at) * coalesce(gpus, 0)), 0) AS gpu_ms,
           sum(CASE WHEN gpus IS NULL THEN 1 ELSE 0 END) AS unknown
    FROM gone WHERE ended_at >= ${since}
    GROUP BY 1, 2 ORDER BY 1, 2`);
  return rows.map((r) => ({
    pool: r.pool,
    provider: r.provider,
    machines: Number(r.machines),
    machineHours: Number(r.ms) / 3_600_000,
    gpuHours: Number(r.gpu_ms) / 3_600_000,
    gpusUnknown: Number(r.unknown),
  }));
}
