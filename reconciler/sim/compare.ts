// Variants from one trace (a scenario's `compare:`): the same scenario run once per variant,
// each with its own config and workload overrides (or no automation: a simulated human,
// human.ts), and the same seed, so the same fault trace (fault-trace.ts: drawn from its own
// stream, whatever the reconciler does) and the same workload. The comparison holds every
// variant's report and their goodput side by side, each as a ratio to the first (the
// baseline). `navarch sim run` prints it for a scenario with variants.
import type { Scenario, ScenarioVariant } from "../../schema/scenario.ts";
import { runScenario, type SimRunOptions } from "./engine.ts";
import { formatAt, type SimReport, type SimStats } from "./report.ts";

export interface ComparedVariant {
  name: string;
  description: string;
  automation: ScenarioVariant["automation"];
  /** With automation none: how long after an incident the human acts (ms). */
  human_delay?: number;
  /** Its overrides of the scenario, as `key.path: value`. */
  changes: string[];
  report: SimReport;
}

/** A figure of every variant, with its ratio to the baseline's (null where either is missing or the baseline's is 0). */
export interface ComparisonRow {
  figure: string;
  unit: string;
  values: (number | null)[];
  ratios: (number | null)[];
}

export interface SimComparison {
  scenario: SimReport["scenario"];
  baseline: string;
  /** The fault trace every variant replayed (null without one): its fingerprints, one per variant, agree. */
  trace: { drawn: number; by_cause: Record<string, number>; digest: string } | null;
  rows: ComparisonRow[];
  variants: ComparedVariant[];
}

/** The scenario a variant runs: the file's, with the variant's config, workload and automation. */
export function variantScenario(s: Scenario, v: ScenarioVariant): Scenario {
  const { human: _human, ...rest } = s;
  return { ...rest, config: v.config, workload: v.workload, compare: [], ...(v.automation === "none" ? { human: { delay: v.human_delay } } : {}) };
}

export async function runComparison(
  s: Scenario,
  options: SimRunOptions & { variantProgress?: (name: string, i: number, n: number) => void } = {},
): Promise<{ comparison: SimComparison; stats: SimStats[] }> {
  const variants: ComparedVariant[] = [];
  const stats: SimStats[] = [];
  for (const [i, v] of s.compare.entries()) {
    options.variantProgress?.(v.name, i, s.compare.length);
    const result = await runScenario(variantScenario(s, v), options);
    result.report.scenario.variant = v.name;
    variants.push({
      name: v.name,
      description: v.description,
      automation: v.automation,
      ...(v.automation === "none" ? { human_delay: v.human_delay } : {}),
      changes: v.changes,
      report: result.report,
    });
    stats.push(result.stats);
  }
  const first = variants[0]!.report;
  const { variant: _variant, ...scenario } = first.scenario;
  return { comparison: { scenario, baseline: variants[0]!.name, trace: first.summary.faults.trace ?? null, rows: comparisonRows(variants), variants }, stats };
}

function comparisonRows(variants: readonly ComparedVariant[]): ComparisonRow[] {
  const row = (figure: string, unit: string, f: (r: SimReport) => number | null | undefined): ComparisonRow => {
    const values = variants.map((v) => f(v.report) ?? null);
    const base = values[0] ?? null;
    return { figure, unit, values, ratios: values.map((x) => (x === null || base === null || base === 0 ? null : Math.round((x / base) * 1000) / 1000)) };
  };
  const g = (r: SimReport) => r.summary.goodput;
  return [
    row("ETTR", "", (r) => g(r)?.ettr),
    row("GPU-hours useful", "GPU-h", (r) => g(r)?.gpu_hours.useful),
    row("GPU-hours lost", "GPU-h", (r) => g(r)?.gpu_hours.lost.total),
    row("  recompute", "GPU-h", (r) => g(r)?.gpu_hours.lost.recompute),
    row("  restart", "GPU-h", (r) => g(r)?.gpu_hours.lost.restart),
    row("  waiting for nodes", "GPU-h", (r) => g(r)?.gpu_hours.lost.waiting_for_nodes),
    row("  drain", "GPU-h", (r) => g(r)?.gpu_hours.lost.drain),
    row("interruptions", "", (r) => g(r)?.interruptions.total),
    row("node-hours unavailable", "node-h", (r) => g(r)?.node_hours_unavailable.total),
    row("  waiting for a human", "node-h", (r) => g(r)?.node_hours_unavailable.waiting_for_human ?? 0),
    row("faults", "", (r) => r.summary.faults.total),
    row("incidents", "", (r) => r.summary.incidents.total),
    row("machines launched", "", (r) => Object.values(r.summary.clouds).reduce((a, c) => a + c.launched, 0)),
    row("reboots asked", "", (r) => Object.values(r.summary.clouds).reduce((a, c) => a + (c.calls.reboot ?? 0), 0)),
  ];
}

/** What a variant is, in a line: its description, its overrides, or no automation. */
export function describeVariant(v: ComparedVariant): string {
  const what = [
    ...(v.description ? [v.description] : []),
    ...(v.automation === "none" ? [`no automation: a human acts ${formatAt(v.human_delay ?? 0)} after each incident`] : []),
    ...v.changes,
  ];
  return what.length === 0 ? "the scenario as written" : what.join("; ");
}

/** The comparison as text: one column per variant, ratios to the baseline. */
export function comparisonTable(c: SimComparison): string {
  const lines: string[] = [];
  const trace = c.trace === null ? "no fault trace" : `one fault trace (${c.trace.drawn} faults, fingerprint ${c.trace.digest})`;
  lines.push(
    `compare: ${c.variants.length} variants of ${c.scenario.name} (seed ${c.scenario.seed}, ${c.scenario.duration}), ${trace}; ratios to ${c.baseline}`,
  );
  for (const v of c.variants) lines.push(`  ${v.name}: ${describeVariant(v)}`);
  const fmt = (row: ComparisonRow, x: number | null) =>
    x === null ? "-" : row.figure === "ETTR" ? `${(x * 100).toFixed(1)} %` : x.toLocaleString("en-US", { maximumFractionDigits: 1 });
  const head = ["", ...c.variants.map((v) => v.name)];
  const table = c.rows.map((row) => [
    row.figure + (row.unit ? ` (${row.unit})` : ""),
    ...row.values.map((x, i) => (i === 0 || row.ratios[i] === null ? fmt(row, x) : `${fmt(row, x)} (×${row.ratios[i]!.toFixed(2)})`)),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  lines.push("");
  for (const r of [head, ...table])
    lines.push(`  ${r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("   ")}`.trimEnd());
  const failed = c.variants.filter((v) => !v.report.result.ok).map((v) => `${v.name} (${v.report.result.asserts_failed})`);
  lines.push("", failed.length === 0 ? "every variant's checks passed" : `FAILED checks in ${failed.join(", ")}`);
  return `${lines.join("\n")}\n`;
}
