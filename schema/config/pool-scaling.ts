// A pool's `scaling:`: its bounds, the cooldown between changes, its autoscaler (autoscaler.ts)
// and its metrics queries (metrics.ts). An absent max_nodes is a fixed-size pool.
import * as v from "valibot";
import { strict } from "../shapes.ts";
import { type AutoscalerConfig, Autoscaler } from "./autoscaler.ts";
import { num, rules } from "./cross-field-rules.ts";
import { duration, type Millis } from "./duration.ts";
import { NodeCount } from "./leaf-schemas.ts";
import { PoolMetricsSources, type PrometheusQueries } from "./metrics.ts";

export interface ScalingConfig {
  min_nodes: number;
  /** ≥ min_nodes. */
  max_nodes: number;
  cooldown_period: Millis;
  /** Absent: the pool does not scale by itself (Pattern 2 of the seed). */
  autoscaler?: AutoscalerConfig;
  /** This pool's inputs from a metrics source configured under `metrics:`. */
  metrics?: { prometheus?: PrometheusQueries };
}

export const Scaling: v.GenericSchema<unknown, ScalingConfig> = v.pipe(
  strict({
    min_nodes: v.optional(NodeCount, 0),
    max_nodes: v.optional(NodeCount),
    cooldown_period: v.optional(duration("0s", "24h"), "5m"),
    autoscaler: v.optional(Autoscaler),
    metrics: v.optional(PoolMetricsSources),
  }),
  rules((f, report, raw) => {
    const [min, max] = [num(f.min_nodes), num(f.max_nodes)];
    if (min !== undefined && max !== undefined && max < min) report("max_nodes", `must be ≥ min_nodes (${min}), got ${max}`);
    // Without an autoscaler an absent max means a fixed-size pool (max = min). With one it
    // would silently cap the autoscaler at min_nodes, so the ceiling must be stated.
    if (raw.autoscaler !== undefined && raw.max_nodes === undefined) report("max_nodes", "is required when an autoscaler is set");
  }),
  v.transform(({ min_nodes, max_nodes, ...rest }) => ({ min_nodes, max_nodes: max_nodes ?? min_nodes, ...rest })),
);
