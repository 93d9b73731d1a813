// Where autoscalers read what Navarch does not measure itself: the seed's MetricsSource
// (`GetPoolMetrics(ctx, poolName)`). Navarch's own numbers (node counts, the agents' GPU
// readings, idleness, history) come from its store; a source adds or replaces the inputs it
// knows: a scheduler's queue (Kubernetes pods, the simulator's jobs), or PromQL over a
// Prometheus server (prometheus.ts). Sources are layered like the seed's K8sMetricsSource
// over its DBMetricsSource: what a later source knows replaces what an earlier one said.
import type { PoolConfig } from "../../schema/config.ts";
import type { QueueMetrics } from "./autoscaler.ts";

/** What a source knows of one pool now; a field it leaves out is unknown to it. */
export interface SourcedMetrics {
  /** Average GPU utilisation over the pool, 0–100. */
  gpuUtilization?: number;
  /** Pending and running jobs (queue depth = their sum). */
  queue?: QueueMetrics;
  /** Why an input the source should have given is missing this time (server unreachable, query failed). */
  problems?: string[];
}

export interface MetricsSource {
  /** For reasons and logs: `kubernetes`, `prometheus`, … */
  readonly name: string;
  /** Never throws: what cannot be read is left out, and said in `problems`. */
  poolMetrics(pool: PoolConfig): Promise<SourcedMetrics>;
}

/** A scheduler that counts a pool's jobs (undefined: it does not know the pool) as a source. */
export function queueSource(name: string, queue: (pool: string) => Promise<QueueMetrics | undefined>): MetricsSource {
  return {
    name,
    async poolMetrics(pool) {
      try {
        const q = await queue(pool.name);
        return q === undefined ? {} : { queue: q };
      } catch (err) {
        return { problems: [`${name}: ${err instanceof Error ? err.message : String(err)}`] };
      }
    },
  };
}

/** The sources in order, read at once; each field a later source knows replaces an earlier one's. */
export function layeredSources(sources: readonly MetricsSource[]): MetricsSource {
  return {
    name: sources.map((s) => s.name).join("+") || "none",
    async poolMetrics(pool) {
      const answers = await Promise.all(sources.map((s) => s.poolMetrics(pool)));
      const out: SourcedMetrics = {};
      const problems: string[] = [];
      for (const a of answers) {
        if (a.gpuUtilization !== undefined) out.gpuUtilization = a.gpuUtilization;
        if (a.queue !== undefined) out.queue = a.queue;
        problems.push(...(a.problems ?? []));
      }
      if (problems.length > 0) out.problems = problems;
      return out;
    },
  };
}
