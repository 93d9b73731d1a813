// What the predictive autoscaler reads: samples of a pool's metrics over its lookback
// window. Pure: the samples are stored in libSQL (observations.ts); this says what a
// sample holds, how much history a pool keeps, and how far apart samples are.
import type { AutoscalerConfig, ScalingConfig } from "../../schema/config.ts";

/** One observation of a pool. Raw numbers: demand is derived when deciding. */
export interface MetricsSample {
  /** Epoch ms. */
  at: number;
  /** In-service nodes when sampled (utilisation is an average over these). */
  ready: number;
  /** Average GPU utilisation, 0–100. */
  utilization?: number;
  /** Pending + running jobs. */
  queueDepth?: number;
}

/** Samples in ascending `at` order, none older than the lookback. */
export type MetricsHistory = readonly MetricsSample[];

/** At most this many samples per pool: a lookback window holds this many at its closest spacing. */
export const MAX_HISTORY_SAMPLES = 1440;

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
 * How far apart samples are kept: a window of `lookback` never holds more than
 * MAX_HISTORY_SAMPLES (a 168 h window is sampled every 7 minutes, a 1 h one at every tick).
 */
export function sampleSpacing(lookback: number): number {
  return lookback / MAX_HISTORY_SAMPLES;
}

/**
 * How much history the pool's autoscaler needs: the longest `lookback_window` of any
 * predictive autoscaler in it (nested ones included); 0 when there is none (nothing is
 * recorded, and what was is deleted).
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
