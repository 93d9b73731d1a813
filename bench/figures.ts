// The benchmark's figures and the ones recorded before them (bench/figures.json), so that
// every run prints each figure beside its goal and its ratio to the previous one.
// `npm run bench -- --record` writes this run's figures into the file (commit it with the
// change that moved them).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";

export const FIGURES_FILE = join(import.meta.dir, "figures.json");

const Recorded = v.record(v.string(), v.object({ value: v.number(), unit: v.string(), date: v.string(), machine: v.string(), note: v.optional(v.string()) }));
type Recorded = v.InferOutput<typeof Recorded>;

export interface Figure {
  /** Stable name in figures.json; absent for context rows (no ratio). */
  key?: string;
  label: string;
  /** The figure compared with the previous run (in `unit`). */
  value?: number;
  unit?: string;
  /** What is printed as the result (defaults to the value with its unit). */
  result?: string;
  /** The goal in words, and whether this run met it. */
  goal?: { text: string; met: boolean };
  notes?: string;
}

export function loadRecorded(file = FIGURES_FILE): Recorded {
  if (!existsSync(file)) return {};
  return v.parse(Recorded, JSON.parse(readFileSync(file, "utf8")));
}

export function record(figures: readonly Figure[], machine: string, file = FIGURES_FILE): void {
  const recorded = loadRecorded(file);
  const date = new Date().toISOString().slice(0, 10);
  for (const f of figures)
    if (f.key !== undefined && f.value !== undefined && Number.isFinite(f.value)) recorded[f.key] = { value: f.value, unit: f.unit ?? "", date, machine };
  const sorted = Object.fromEntries(Object.entries(recorded).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(file, `${JSON.stringify(sorted, null, 2)}\n`);
}

export const number = (x: number) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(Math.abs(x) >= 10 ? 1 : 2));

/** The table: benchmark, result, goal (met or not), this run ÷ the recorded figure, notes. */
export function table(figures: readonly Figure[], recorded: Recorded): string {
  const rows = figures.map((f) => {
    const previous = f.key === undefined ? undefined : recorded[f.key];
    const ratio =
      previous === undefined || f.value === undefined || previous.value === 0
        ? ""
        : `×${(f.value / previous.value).toFixed(2)} (was ${number(previous.value)} ${previous.unit}, ${previous.date}${previous.note ? `, ${previous.note}` : ""})`;
    const result = f.result ?? (f.value === undefined ? "" : `${number(f.value)} ${f.unit ?? ""}`.trim());
    const goal = f.goal === undefined ? "" : `${f.goal.met ? "met" : "NOT met"}: ${f.goal.text}`;
    return [f.label, result, goal, ratio, f.notes ?? ""];
  });
  const head = ["benchmark", "result", "goal", "vs previous", "notes"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}
