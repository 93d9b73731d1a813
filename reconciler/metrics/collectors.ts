// The kinds of metric read from the store at scrape time, each filled from the scrape's
// snapshot (scrape-snapshot.ts): gauges that drop non-finite values (an old database or a hand
// edit may hold NaN or ±Infinity; such a sample is left out rather than rendered), counters
// that never go below zero, and histograms whose buckets are computed from rows.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Snapshot } from "./scrape-snapshot.ts";
import type { Row } from "./store-rows.ts";

/** A gauge's set(), dropping non-finite values. */
export interface FiniteGauge<L extends string> {
  set(labels: Partial<Record<L, string>>, value: number): void;
}

/** Metrics on one registry, filled from the snapshot of the scrape under way. */
export interface SnapshotCollectors {
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: FiniteGauge<L>, s: Snapshot) => void): Gauge<L>;
  counter<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Partial<Record<L, string>>, value: number) => void, s: Snapshot) => void,
  ): Counter<L>;
  /** A histogram per pool whose count, sum and cumulative buckets (b0, b1, …) are rows of the snapshot. */
  histogram(name: string, help: string, bounds: number[], rows: (s: Snapshot) => Row[]): void;
}

export function snapshotCollectors(registry: Registry, snapshot: () => Promise<Snapshot>): SnapshotCollectors {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: FiniteGauge<L>, s: Snapshot) => void) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        fill({ set: (labels, value) => (Number.isFinite(value) ? this.set(labels, value) : undefined) }, s);
      },
    });
  const counter = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Partial<Record<L, string>>, value: number) => void, s: Snapshot) => void,
  ) =>
    new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        fill((labels, value) => {
          if (value > 0 && Number.isFinite(value)) this.inc(labels, value);
          else this.inc(labels, 0);
        }, s);
      },
    });
  const histogram = (name: string, help: string, bounds: number[], rows: (s: Snapshot) => Row[]) => {
    registry.registerMetric(new RowHistogram(name, help, bounds, async () => rows(await snapshot())));
  };
  return { gauge, counter, histogram };
}

/** One exported sample, as prom-client's text exposition reads it. */
interface Sample {
  metricName: string;
  labels: Record<string, string>;
  sharedLabels: Record<string, string>;
  value: number;
}

/**
 * A histogram whose buckets are computed from rows (count, sum and cumulative bucket
 * counts per pool) rather than observed in process: restarts and repeated scrapes
 * give the same numbers. prom-client's registry reads getForPromString() for the
 * text format (and get() builds on it), so that is the one method replaced.
 */
class RowHistogram extends Histogram<"pool"> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    private readonly bounds: number[],
    private readonly rows: () => Promise<Row[]>,
  ) {
    // Registered by the caller on its own registry (never the global one).
    super({ name: metricName, help: helpText, labelNames: ["pool"], buckets: bounds, registers: [] });
  }

  async getForPromString(): Promise<{ name: string; help: string; type: "histogram"; values: Sample[]; aggregator: "sum" }> {
    const values: Sample[] = [];
    const n = (x: unknown) => {
      const value = typeof x === "number" ? x : Number(x ?? 0);
      return Number.isFinite(value) ? value : 0;
    };
    const sample = (suffix: string, labels: Record<string, string>, value: number) =>
      values.push({ metricName: `${this.metricName}${suffix}`, labels, sharedLabels: {}, value });
    for (const r of await this.rows()) {
      const pool = String(r.pool ?? "");
      this.bounds.forEach((le, i) => sample("_bucket", { pool, le: String(le) }, n(r[`b${i}`])));
      sample("_bucket", { pool, le: "+Inf" }, n(r.n));
      sample("_sum", { pool }, n(r.s));
      sample("_count", { pool }, n(r.n));
    }
    return { name: this.metricName, help: this.helpText, type: "histogram", values, aggregator: "sum" };
  }
}
