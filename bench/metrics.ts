// A /metrics scrape at size: the reconciler's metrics rendered over a real libSQL file of N
// Ready nodes with 8 GPUs each (readings included), with the per-GPU series on and with
// server.metrics_per_gpu's default (auto: off above 40,000 GPUs). Goal: under 1 s at
// 10,000 and 100,000 nodes with the default.
import type { MetricsPerGpu } from "../schema/config.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { openStore } from "../reconciler/store/store.ts";
import { tempDir } from "../test/support.ts";
import { seed } from "./reconciler.ts";

export interface ScrapeResult {
  nodes: number;
  perGpu: MetricsPerGpu;
  /** Median of 3 scrapes after a warm-up. */
  medianMs: number;
  bytes: number;
  series: number;
}

/** Scrapes of `nodes` seeded nodes, once for each setting (one store for all of them). */
export async function benchScrape(nodes: number, settings: readonly MetricsPerGpu[]): Promise<ScrapeResult[]> {
  const store = await openStore({ url: `file:${tempDir("navarch-bench-")}/metrics.db` });
  try {
    await seed(store, nodes, Date.now());
    const results: ScrapeResult[] = [];
    for (const perGpu of settings) {
      // The previous setting's registry (1.7 million series with per-GPU ones at 100,000 nodes)
      // must not be collected during this one's scrapes.
      Bun.gc(true);
      const metrics = createMetrics(store.db, { perGpu });
      let text = await metrics.render();
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        text = await metrics.render();
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      const series = text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length;
      results.push({ nodes, perGpu, medianMs: times[1]!, bytes: Buffer.byteLength(text), series });
    }
    return results;
  } finally {
    store.close();
  }
}
