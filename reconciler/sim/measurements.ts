// Measuring a run: the value of each metric an `assert:` check can name (schema/scenario/
// checks.ts), read from the reconciler's database, the simulated clouds, the workload and
// what the simulator recorded, plus the counts the report's summary shares with the checks
// (launches, leaked instances, scaling decisions, nodes by state). A new metric is measured
// here.
import { sql } from "drizzle-orm";
import { auditLog, breakers, incidents, nodes, pools } from "../../schema/db.ts";
import { NODE_STATES } from "../../schema/lifecycle.ts";
import type { Metric } from "../../schema/scenario/checks.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Store } from "../store/store.ts";
import type { Faults } from "./faults.ts";
import type { RunLog } from "./run-log.ts";
import type { ServiceClock } from "./service-clock.ts";
import type { SimWorkload } from "./workload.ts";

/** A scaling decision, from the audit log. */
export interface ScaleDecision {
  /** Milliseconds since the start. */
  at: number;
  pool: string;
  direction: "up" | "down";
  from: number;
  to: number;
  reason: string;
}

export interface MeasurementsOptions {
  start: number;
  now: () => number;
  store: Store;
  clouds: ReadonlyMap<string, SimulatedCloud>;
  workload: SimWorkload;
  service: ServiceClock;
  faults: Faults;
  log: RunLog;
}

export class Measurements {
  /** Instances each cloud ran before the first pass (a warm start's), not counted as launches. */
  private readonly warmLaunches = new Map<string, number>();

  constructor(private readonly opts: MeasurementsOptions) {}

  /** The instances the clouds run now are the warm start's, not the reconciler's launches. */
  countWarmStart(): void {
    for (const c of this.opts.clouds.values()) this.warmLaunches.set(c.name, c.liveCount());
  }

  async measure(m: Metric): Promise<number> {
    const { store, clouds, workload, service, faults, log } = this.opts;
    const db = store.db;
    switch (m.kind) {
      case "nodes": {
        const rows = await db
          .select({ state: nodes.state, pool: nodes.pool, provider: nodes.provider, n: sql<number>`count(*)` })
          .from(nodes)
          .groupBy(nodes.state, nodes.pool, nodes.provider);
        return rows
          .filter(
            (r) =>
              (m.pool === undefined || r.pool === m.pool) &&
              (m.provider === undefined || r.provider === m.provider) &&
              (m.states === undefined || m.states.includes(r.state)),
          )
          .reduce((a, r) => a + Number(r.n), 0);
      }
      case "incidents": {
        const rows = await db.select({ pool: incidents.pool, outcome: incidents.outcome, closedAt: incidents.closedAt }).from(incidents);
        return rows.filter(
          (r) =>
            (m.pool === undefined || r.pool === m.pool) && (m.outcome === undefined || (m.outcome === "open" ? r.closedAt === null : r.outcome === m.outcome)),
        ).length;
      }
      case "faults":
        return faults.records.filter((f) => (m.pool === undefined || f.pool === m.pool) && (m.xid === undefined || f.xid === m.xid)).length;
      case "breaker": {
        const rows = await db.select({ scope: breakers.scope, resetAt: breakers.resetAt }).from(breakers);
        return rows.filter((r) => r.resetAt === null && (m.scope === undefined || r.scope === m.scope)).length;
      }
      case "pools_held": {
        const rows = await db.select({ name: pools.name, hold: pools.registrationHold }).from(pools);
        return rows.filter((r) => r.hold !== null && (m.pool === undefined || r.name === m.pool)).length;
      }
      case "blocked":
        return [...log.blocks.values()].filter((rail) => m.rail === undefined || rail === m.rail).length;
      case "scale_events":
        return (await this.scaleDecisions()).filter(
          (d) => (m.pool === undefined || d.pool === m.pool) && (m.direction === undefined || d.direction === m.direction),
        ).length;
      case "leaked_instances":
        return this.leakedInstances();
      case "launches":
        return [...clouds.values()].filter((c) => m.provider === undefined || c.name === m.provider).reduce((a, c) => a + this.launched(c), 0);
      case "queue": {
        const q = workload.metrics(m.pool);
        return m.jobs === "pending" ? q.pending : m.jobs === "running" ? q.running : q.pending + q.running;
      }
      case "jobs":
        return workload.counts[m.outcome];
      case "service_hours":
        return Math.floor(service.hours(m.pool, this.opts.now()));
      case "shortfall_minutes":
        return Math.round(service.shortfallMinutes(m.pool, this.opts.now()));
      case "reboots":
        return [...clouds.values()].filter((c) => m.provider === undefined || c.name === m.provider).reduce((a, c) => a + c.calls.reboot, 0);
      case "cordon_delay": {
        const rows = await db.select({ pool: incidents.pool, faultAt: incidents.faultAt, cordonedAt: incidents.cordonedAt }).from(incidents);
        const delays = rows
          .filter((r) => r.cordonedAt !== null && (m.pool === undefined || r.pool === m.pool))
          .map((r) => (r.cordonedAt! - r.faultAt) / 1000)
          .sort((a, b) => a - b);
        if (delays.length === 0) return 0;
        return Math.ceil(m.stat === "max" ? delays.at(-1)! : delays[Math.floor((delays.length - 1) / 2)]!);
      }
    }
  }

  /** Instances the reconciler launched in a cloud. */
  launched(cloud: SimulatedCloud): number {
    return cloud.snapshot().records.length - (this.warmLaunches.get(cloud.name) ?? 0);
  }

  /** Instances a provider runs that no live node owns. */
  async leakedInstances(): Promise<number> {
    const owned = new Set(
      (
        await this.opts.store.client.execute("SELECT instance_name FROM nodes WHERE instance_name IS NOT NULL AND state NOT IN ('terminated', 'failed')")
      ).rows.map((r) => String(r.instance_name)),
    );
    let leaked = 0;
    for (const c of this.opts.clouds.values()) for (const i of c.running()) if (!owned.has(i.id)) leaked++;
    return leaked;
  }

  /** The autoscalers' decisions so far, in order. */
  async scaleDecisions(): Promise<ScaleDecision[]> {
    const rows = await this.opts.store.db.select().from(auditLog).where(sql`${auditLog.action} = 'scale'`).orderBy(auditLog.id);
    return rows.map((r) => {
      const d = (r.details ?? {}) as { from?: number; to?: number; reason?: string };
      const from = Number(d.from ?? 0);
      const to = Number(d.to ?? 0);
      return {
        at: r.at - this.opts.start,
        pool: r.target.replace(/^pool:/, ""),
        direction: to > from ? ("up" as const) : ("down" as const),
        from,
        to,
        reason: String(d.reason ?? ""),
      };
    });
  }

  /** Nodes by state now (every state, 0 for none). */
  async stateCounts(): Promise<Record<string, number>> {
    const rows = await this.opts.store.client.execute("SELECT state, count(*) AS n FROM nodes GROUP BY state");
    const out: Record<string, number> = {};
    for (const s of NODE_STATES) out[s] = 0;
    for (const r of rows.rows) out[String(r.state)] = Number(r.n);
    return out;
  }
}
