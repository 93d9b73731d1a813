// GPU readings on /metrics: per pool always (GPUs with readings, the hottest, mean utilisation),
// per GPU (navarch_node_gpu_*{node,gpu}) when server.metrics_per_gpu lets them (the per-GPU
// series are what a scrape of a large fleet spends its time on: 1.6 million at 100,000 nodes).
// A per-GPU reading outside its physical range (the wire's) is left out.
import { withinRange } from "../../schema/reading-ranges.ts";
import { READING_RANGES } from "../../schema/wire.ts";
import type { SnapshotCollectors } from "./collectors.ts";
import { num, str } from "./store-rows.ts";

/** A GPU reading within its physical range (the wire's), else undefined. */
const reading = (x: unknown, range: { min: number; max: number }): number | undefined =>
  x === null || x === undefined ? undefined : withinRange(num(x), range);

export function registerGpuGauges({ gauge }: SnapshotCollectors): void {
  gauge("navarch_node_gpu_temperature_celsius", "Latest GPU temperature per node and GPU index (live nodes)", ["pool", "node", "gpu"], (g, s) => {
    for (const r of s.gpus) {
      const temp = reading(r.temp, READING_RANGES.temperatureC);
      if (temp !== undefined) g.set({ pool: str(r.pool), node: str(r.node), gpu: str(r.gpu) }, temp);
    }
  });
  gauge("navarch_node_gpu_utilization_percent", "Latest GPU utilisation per node and GPU index (live nodes)", ["pool", "node", "gpu"], (g, s) => {
    for (const r of s.gpus) {
      const util = reading(r.util, READING_RANGES.utilizationPct);
      if (util !== undefined) g.set({ pool: str(r.pool), node: str(r.node), gpu: str(r.gpu) }, util);
    }
  });
  gauge("navarch_pool_gpus", "GPUs with readings of each pool's live nodes (always exported, whatever server.metrics_per_gpu)", ["pool"], (g, s) => {
    for (const r of s.gpuPools) g.set({ pool: str(r.pool) }, num(r.n));
  });
  gauge("navarch_pool_gpu_temperature_max_celsius", "Hottest GPU of each pool's live nodes", ["pool"], (g, s) => {
    for (const r of s.gpuPools) if (r.temp_max !== null) g.set({ pool: str(r.pool) }, num(r.temp_max));
  });
  gauge("navarch_pool_gpu_utilization_mean_percent", "Mean GPU utilisation over each pool's live nodes", ["pool"], (g, s) => {
    for (const r of s.gpuPools) if (r.util_mean !== null) g.set({ pool: str(r.pool) }, num(r.util_mean));
  });
  gauge(
    "navarch_metrics_per_gpu_series",
    "1 when this scrape has the per-GPU series (navarch_node_gpu_*), 0 when server.metrics_per_gpu left them out",
    [],
    (g, s) => g.set({}, s.perGpu ? 1 : 0),
  );
}
