// What a simulation run reports, as plain data: the same object becomes the JSON report
// (byte-identical for the same scenario and seed: no wall-clock time, no raw node ids),
// the summary table and the HTML report. Wall-clock numbers (how fast it ran) are kept
// apart in SimStats and never enter the report.
import { formatDuration } from "../../schema/config.ts";
import type { Check, Metric } from "../../schema/scenario/checks.ts";
import type { LostCause } from "./gangs.ts";
import { goodputRows, referenceLines, type GoodputSummary } from "./goodput.ts";

export interface Timing {
  count: number;
  mean_s: number;
  p50_s: number;
  p99_s: number;
  max_s: number;
}

export interface AssertResult {
  /** Milliseconds since the start. */
  at: number;
  /** The event's position in the file (events[N]). */
  event: number;
  check: string;
  actual: number;
  ok: boolean;
  why?: string;
}

export interface TimelineEvent {
  /** Milliseconds since the start. */
  at: number;
  kind:
    | "fault"
    | "incident"
    | "cordon"
    | "replacement_ready"
    | "scale"
    | "breaker"
    | "restart"
    | "outage"
    | "jobs"
    | "recover"
    | "silence"
    | "vanish"
    | "breaker_reset"
    | "pool_held"
    | "pool_resume"
    | "assert"
    | "note"
    /** A gang job's run ended by a fault, a failure, a drain or a planned stop. */
    | "interruption";
  text: string;
  pool?: string;
  node?: string;
}

export interface PoolSeries {
  /** Nodes counted in the pool's size (requested … held). */
  size: number[];
  ready: number[];
  /** Jobs pending + running, when the pool has a workload. */
  queue?: number[];
  /** What a queue autoscaler would want (computed by the simulator for reporting). */
  queue_desired?: number[];
}

export interface SimReport {
  /** `variant`: the compare: variant this run is (compare.ts). */
  scenario: { name: string; description: string; seed: number; start: string; duration: string; variant?: string };
  result: { ok: boolean; asserts_passed: number; asserts_failed: number };
  summary: {
    nodes_at_start: Record<string, number>;
    nodes_at_end: Record<string, number>;
    faults: {
      total: number;
      scripted: number;
      chaos: number;
      correlated: number;
      by_xid: Record<string, number>;
      /** Faults by cause of interruption (a fault trace's), when any has one. */
      by_cause?: Record<string, number>;
      /** A fault trace (chaos `trace:`): what it drew, by cause, and its fingerprint (the same under every compare: variant). */
      trace?: { drawn: number; by_cause: Record<string, number>; digest: string };
    };
    incidents: { total: number; open: number; by_outcome: Record<string, number> };
    replacements: { requested: number; ready: number };
    fault_to_cordon: Timing | null;
    fault_to_replacement_ready: Timing | null;
    rail_blocks: { total: number; by_rail: Record<string, number> };
    breakers_tripped: { scope: string; at: number; reason: string }[];
    scaling: { decisions: number; up: number; down: number; nodes_added: number; nodes_removed: number };
    clouds: Record<string, { launched: number; running_at_end: number; calls: Record<string, number> }>;
    workload: { submitted: number; completed: number; evicted: number; killed: number };
    reconciler: { passes: number; restarts: number };
    leaked_instances: number;
    /** With gang jobs: what share of the GPU time became progress that survived (goodput.ts). */
    goodput?: GoodputSummary;
  };
  asserts: AssertResult[];
  warnings: string[];
  timeline: {
    every_ms: number;
    t: number[];
    states: Record<string, number[]>;
    pools: Record<string, PoolSeries>;
    /** With gang jobs: their pools' schedulable nodes, the nodes they need, those running, GPU-hours lost so far by cause. */
    goodput?: { capacity: number[]; needed: number[]; running: number[]; lost_gpu_hours: Record<LostCause, number[]> };
  };
  events: TimelineEvent[];
}

/** How fast a run went (wall clock): printed, never part of the report. */
export interface SimStats {
  wallMs: number;
  /** CPU time of the process (user + system): the wall time it would take on an idle machine, roughly. */
  cpuMs: number;
  /** Wall time by phase: setup, pass, heartbeats, readings, after-pass, samples, agents, report. */
  phasesMs: Record<string, number>;
  passes: number;
  passWallMs: number;
  maxPassMs: number;
  virtualMs: number;
  nodesAtEnd: number;
}

export function timing(valuesMs: readonly number[]): Timing | null {
  if (valuesMs.length === 0) return null;
  const sorted = [...valuesMs].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
  const s = (ms: number) => Math.round(ms / 100) / 10;
  return {
    count: sorted.length,
    mean_s: s(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    p50_s: s(q(0.5)),
    p99_s: s(q(0.99)),
    max_s: s(sorted.at(-1)!),
  };
}

/** `nodes{pool=training,state=ready} = 8` */
export function describeCheck(check: Check): string {
  const op = { equals: "=", at_least: "≥", at_most: "≤" }[check.op];
  return `${describeMetric(check.metric)} ${op} ${check.value}`;
}

export function describeMetric(m: Metric): string {
  const { kind, state_label: label, ...filters } = m as Metric & Record<string, unknown>;
  const parts = Object.entries(filters)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) =>
      key === "states" && typeof label === "string"
        ? `state=${label}`
        : `${key === "states" ? "state" : key}=${Array.isArray(value) ? value.join("|") : String(value)}`,
    );
  return parts.length === 0 ? kind : `${kind}{${parts.join(",")}}`;
}

export function formatAt(ms: number): string {
  return ms === 0 ? "0s" : formatDuration(ms);
}

// ───────────────────────────── the summary table ─────────────────────────────

/** The text report: summary, timings, checks, and a coarse timeline of nodes by state. */
export function reportTable(r: SimReport): string {
  const lines: string[] = [];
  const kv = (rows: [string, string][]) => {
    const w = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) lines.push(`  ${k.padEnd(w)}  ${v}`);
  };
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ") || "none";
  const t = (x: Timing | null) => (x === null ? "-" : `mean ${x.mean_s} s, p50 ${x.p50_s} s, p99 ${x.p99_s} s, max ${x.max_s} s (${x.count})`);
  const s = r.summary;
  lines.push(`scenario ${r.scenario.name} (seed ${r.scenario.seed}): ${r.scenario.duration} from ${r.scenario.start}`);
  if (r.scenario.description) lines.push(`  ${r.scenario.description.trim().replace(/\s+/g, " ")}`);
  lines.push("");
  kv([
    ["nodes at start", counts(s.nodes_at_start)],
    ["nodes at end", counts(s.nodes_at_end)],
    [
      "faults",
      `${s.faults.total} (${s.faults.scripted} scripted, ${s.faults.chaos} chaos, ${s.faults.correlated} correlated); by Xid: ${counts(s.faults.by_xid)}`,
    ],
    ["incidents", `${s.incidents.total}: ${counts(s.incidents.by_outcome)}${s.incidents.open > 0 ? `, open ${s.incidents.open}` : ""}`],
    ["replacements", `${s.replacements.requested} requested, ${s.replacements.ready} ready`],
    ["fault → cordon", t(s.fault_to_cordon)],
    ["fault → replacement ready", t(s.fault_to_replacement_ready)],
    ["rail blocks", `${s.rail_blocks.total}${s.rail_blocks.total > 0 ? ` (${counts(s.rail_blocks.by_rail)})` : ""}`],
    ["breakers tripped", s.breakers_tripped.length === 0 ? "none" : s.breakers_tripped.map((b) => `${b.scope} at ${formatAt(b.at)}`).join(", ")],
    ["scaling decisions", `${s.scaling.decisions} (${s.scaling.up} up, ${s.scaling.down} down; +${s.scaling.nodes_added} / -${s.scaling.nodes_removed} nodes)`],
    ...Object.entries(s.clouds).map(([name, c]): [string, string] => [
      `cloud ${name}`,
      `${c.launched} launched, ${c.running_at_end} running at end; calls ${counts(c.calls)}`,
    ]),
    [
      "workload",
      `${s.workload.submitted} jobs submitted, ${s.workload.completed} completed, ${s.workload.evicted} evicted, ${s.workload.killed} killed by faults`,
    ],
    ["reconciler", `${s.reconciler.passes} passes, ${s.reconciler.restarts} restarts`],
    ["leaked instances", String(s.leaked_instances)],
    ...(s.faults.trace
      ? [["fault trace", `${s.faults.trace.drawn} drawn (fingerprint ${s.faults.trace.digest}): ${counts(s.faults.trace.by_cause)}`] as [string, string]]
      : []),
    ...(s.goodput ? goodputRows(s.goodput) : []),
  ]);
  if (s.goodput?.reference) lines.push("", ...referenceLines(s.goodput.reference));
  lines.push("", "nodes by state over time:");
  const states = Object.keys(r.timeline.states).filter((k) => r.timeline.states[k]!.some((n) => n > 0));
  const rows = r.timeline.t.length;
  const step = Math.max(1, Math.ceil(rows / 12));
  const header = ["time", ...states];
  const table: string[][] = [];
  for (let i = 0; i < rows; i += step) table.push([formatAt(r.timeline.t[i]!), ...states.map((st) => String(r.timeline.states[st]![i] ?? 0))]);
  if (rows > 0 && (rows - 1) % step !== 0)
    table.push([formatAt(r.timeline.t[rows - 1]!), ...states.map((st) => String(r.timeline.states[st]![rows - 1] ?? 0))]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  lines.push(`  ${header.map((h, i) => h.padStart(widths[i]!)).join("  ")}`);
  for (const row of table) lines.push(`  ${row.map((c, i) => c.padStart(widths[i]!)).join("  ")}`);
  if (r.asserts.length > 0) {
    lines.push("", "checks:");
    for (const a of r.asserts)
      lines.push(`  ${a.ok ? "ok  " : "FAIL"}  at ${formatAt(a.at).padEnd(8)} ${a.check} (actual ${a.actual})${a.why ? `: ${a.why}` : ""}`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  lines.push(
    "",
    r.result.ok
      ? `passed: ${r.result.asserts_passed} checks`
      : `FAILED: ${r.result.asserts_failed} of ${r.result.asserts_passed + r.result.asserts_failed} checks`,
  );
  return `${lines.join("\n")}\n`;
}
