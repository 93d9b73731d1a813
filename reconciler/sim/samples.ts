// The report's timeline: every `sample_every` of virtual time, the nodes by state and, per
// pool, its size, its nodes in service, its queue of jobs and what a queue autoscaler would
// want (computed here for the report; the loop's own decisions are in the audit log); with
// gang jobs, their pools' schedulable nodes, the nodes they need, how many run and the
// GPU-hours they lost so far (goodput.ts). A new series per sample starts here.
import type { AutoscalerConfig, QueueAutoscalerConfig } from "../../schema/config.ts";
import { NODE_STATES, isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { Scenario } from "../../schema/scenario.ts";
import { evaluate } from "../pools/autoscaler.ts";
import type { Store } from "../store/store.ts";
import { LOST_CAUSES } from "./gangs.ts";
import { goodputSample, type GoodputSample } from "./goodput.ts";
import type { PoolSeries, SimReport } from "./report.ts";
import type { SimWorkload } from "./workload.ts";

interface PoolSample {
  size: number;
  ready: number;
  queue?: number;
  desired?: number;
}

interface Sample {
  /** Milliseconds since the start. */
  t: number;
  states: Map<string, number>;
  pools: Map<string, PoolSample>;
  goodput?: GoodputSample;
}

export class Samples {
  private readonly samples: Sample[] = [];
  /** When the next sample is taken. */
  nextAt: number;

  constructor(
    private readonly scenario: Scenario,
    private readonly store: Store,
    private readonly workload: SimWorkload,
  ) {
    this.nextAt = scenario.start;
  }

  /** Takes the sample due at nextAt. */
  async take(): Promise<void> {
    const at = this.nextAt;
    this.nextAt += this.scenario.sim.sample_every;
    const rows = await this.store.client.execute("SELECT pool, state, count(*) AS n FROM nodes GROUP BY pool, state");
    const states = new Map<string, number>();
    const pools = new Map<string, PoolSample>();
    for (const p of this.scenario.config.pools) pools.set(p.name, { size: 0, ready: 0 });
    for (const r of rows.rows) {
      const state = String(r.state);
      const n = Number(r.n);
      states.set(state, (states.get(state) ?? 0) + n);
      const p = pools.get(String(r.pool));
      if (p === undefined) continue;
      if (isIn("inPool", state as NodeState)) p.size += n;
      if (state === "ready" || state === "suspect") p.ready += n;
    }
    for (const pool of this.scenario.config.pools) {
      const p = pools.get(pool.name)!;
      if (this.scenario.workload.pools[pool.name] !== undefined || this.workload.pools().includes(pool.name)) {
        const q = this.workload.metrics(pool.name);
        p.queue = q.pending + q.running;
        const queueConfig = pool.scaling.autoscaler ? findQueue(pool.scaling.autoscaler) : undefined;
        if (queueConfig !== undefined) {
          const rec = evaluate(queueConfig, {
            scaling: pool.scaling,
            metrics: { nodes: { ready: p.ready, provisioning: 0, replacing: 0, total: p.size }, queue: q },
            now: at,
            current: p.size,
            jobsPerNode: queueConfig.jobs_per_node,
          });
          p.desired = Math.min(pool.scaling.max_nodes, Math.max(pool.scaling.min_nodes, rec.desired ?? p.size));
        }
      }
    }
    const gangs = this.workload.gangs();
    const goodput = gangs.length > 0 ? goodputSample(gangs, at, (pool) => this.workload.schedulable(pool)) : undefined;
    this.samples.push({ t: at - this.scenario.start, states, pools, ...(goodput ? { goodput } : {}) });
  }

  /** The report's timeline: the states that ever had a node, and every pool's series. */
  timeline(): SimReport["timeline"] {
    const samples = this.samples;
    const states = NODE_STATES.filter((st) => samples.some((x) => (x.states.get(st) ?? 0) > 0));
    const timelineStates: Record<string, number[]> = {};
    for (const st of states) timelineStates[st] = samples.map((x) => x.states.get(st) ?? 0);
    const poolSeries: Record<string, PoolSeries> = {};
    for (const p of this.scenario.config.pools) {
      const series: PoolSeries = {
        size: samples.map((x) => x.pools.get(p.name)?.size ?? 0),
        ready: samples.map((x) => x.pools.get(p.name)?.ready ?? 0),
      };
      if (samples.some((x) => x.pools.get(p.name)?.queue !== undefined)) series.queue = samples.map((x) => x.pools.get(p.name)?.queue ?? 0);
      if (samples.some((x) => x.pools.get(p.name)?.desired !== undefined)) series.queue_desired = samples.map((x) => x.pools.get(p.name)?.desired ?? 0);
      poolSeries[p.name] = series;
    }
    const out: SimReport["timeline"] = { every_ms: this.scenario.sim.sample_every, t: samples.map((x) => x.t), states: timelineStates, pools: poolSeries };
    if (samples.some((x) => x.goodput !== undefined)) {
      const g = (x: Sample) =>
        x.goodput ?? { capacity: 0, needed: 0, running: 0, lost_gpu_hours: { recompute: 0, restart: 0, waiting_for_nodes: 0, drain: 0 } };
      out.goodput = {
        capacity: samples.map((x) => g(x).capacity),
        needed: samples.map((x) => g(x).needed),
        running: samples.map((x) => g(x).running),
        lost_gpu_hours: Object.fromEntries(LOST_CAUSES.map((c) => [c, samples.map((x) => g(x).lost_gpu_hours[c])])) as Record<
          (typeof LOST_CAUSES)[number],
          number[]
        >,
      };
    }
    return out;
  }
}

/** The first queue autoscaler in a pool's tree (the one whose decision the report shows). */
function findQueue(config: AutoscalerConfig): QueueAutoscalerConfig | undefined {
  switch (config.type) {
    case "queue":
      return config;
    case "scheduled":
    case "predictive":
      return config.fallback ? findQueue(config.fallback) : undefined;
    case "composite":
      for (const c of config.autoscalers) {
        const q = findQueue(c);
        if (q) return q;
      }
      return undefined;
    default:
      return undefined;
  }
}
