// A bounded history of pool metrics samples, for the predictive autoscaler. Pure: the
// caller owns the array (in memory, or rebuilt from the store) and replaces it with what
// `appendSample` returns.
import type { AutoscalerConfig, ScalingConfig } from "../../schema/config.ts";

/** One observation of a pool. Store raw numbers; demand is derived when deciding. */
export interface MetricsSample {
  /** Epoch ms. */
  at: number;
  /** Ready nodes when sampled (utilisation is an average over these). */
  ready: number;
  /** Average GPU utilisation over ready nodes, 0–100. */
  utilization?: number;
  /** Pending + running jobs. */
  queueDepth?: number;
  /**
   * Demand in nodes, when the caller measures it directly (a simulator, an external
   * metrics source). Overrides the derivation from queueDepth or utilization.
   */
  demand?: number;
}

/** Samples in ascending `at` order, none older than the lookback, at most MAX_HISTORY_SAMPLES. */
export type MetricsHistory = readonly MetricsSample[];

/** 24 h of samples at the default 30 s autoscale interval, /2. Older samples go first. */
export const MAX_HISTORY_SAMPLES = 1440;

/**
 * The history with `sample` added: kept in time order (a sample with the same `at` as an
 * existing one replaces it), samples older than `sample.at − lookback` dropped, then
 * the oldest dropped beyond `maxSamples`. Returns a new array.
 */
export function appendSample(
  history: MetricsHistory,
  sample: MetricsSample,
  lookback: number,
  maxSamples: number = MAX_HISTORY_SAMPLES,
): MetricsSample[] {
  const newest = Math.max(sample.at, history.at(-1)?.at ?? -Infinity);
  const cutoff = newest - lookback;
  const out = history.filter((s) => s.at !== sample.at && s.at >= cutoff);
  if (sample.at >= cutoff) {
    let i = out.length;
    while (i > 0 && out[i - 1]!.at > sample.at) i--;
    out.splice(i, 0, sample);
  }
  return out.length > maxSamples ? out.slice(out.length - maxSamples) : out;
}

/** The sample to record for the current metrics. */
export function sampleOf(
  metrics: { nodes: { ready: number }; gpuUtilization?: number; queue?: { pending: number; running: number } },
  now: number,
): MetricsSample {
  const sample: MetricsSample = { at: now, ready: metrics.nodes.ready };
  if (metrics.gpuUtilization !== undefined) sample.utilization = metrics.gpuUtilization;
  if (metrics.queue !== undefined) sample.queueDepth = metrics.queue.pending + metrics.queue.running;
  return sample;
}

/**
 * How much history the pool's autoscaler needs: the longest `lookback_window` of any
 * predictive autoscaler in it (nested ones included); 0 when there is none, so the caller
 * can skip recording.
 */
export function historyLookback(scaling: ScalingConfig): number {
  return scaling.autoscaler === undefined ? 0 : lookbackOf(scaling.autoscaler);
}

function lookbackOf(config: AutoscalerConfig): number {
  switch (config.type) {
    case "predictive":
      return Math.max(config.lookback_window, config.fallback ? lookbackOf(config.fallback) : 0);
    case "scheduled":
      return config.fallback ? lookbackOf(config.fallback) : 0;
    case "composite":
      return Math.max(0, ...config.autoscalers.map(lookbackOf));
    default:
      return 0;
  }
}
