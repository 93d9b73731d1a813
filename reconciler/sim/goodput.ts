// Goodput: the share of the GPU time that turned into training progress that survived,
// which is what operators of large fleets are judged by. From the gang jobs' ledgers
// (gangs.ts) and the incidents, the report's `summary.goodput`:
//   - ETTR (effective training time ratio, as ByteDance defines it: productive training time
//     ÷ wall-clock time), per job from its first start to its end (or the run's), and overall
//     weighted by GPUs; productive excludes work redone after a restart, restart overhead and
//     waiting for nodes;
//   - GPU-hours useful, and lost by cause: recompute (work since the last checkpoint, lost to
//     a fault or a failure), restart (restart overhead), waiting_for_nodes (not placed, or
//     placed on a node it cannot start on), drain (work lost to a drain without a checkpoint);
//   - the jobs' interruptions by cause (a cause of the fault trace, xid_N, drain, node_lost);
//   - node-hours out of service by remediation rung (from each incident's fault to its node's
//     return, or its replacement's readiness), and those spent waiting for a human;
//   - beside a published run (`reference:`): interruptions by cause, scaled to the run's length.
// docs/simulator.md (Goodput) says the same for readers. Text lines for the table are here too.
import type { Millis } from "../../schema/config.ts";
import type { incidents } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import { causeOf } from "../../schema/scenario/causes.ts";
import { LOST_CAUSES, type Gang, type GangState, type LostCause } from "./gangs.ts";

const HOUR = 3_600_000;
const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
const hours = (ms: number) => round(ms / HOUR, 2);

export interface GoodputJob {
  name: string;
  pool: string;
  nodes: number;
  gpus: number;
  state: GangState;
  /** Milliseconds since the start of the run; null when it never started. */
  first_start: number | null;
  /** When it finished (ms since the start), null while it runs. */
  end: number | null;
  /** The work it needs and the useful work done, hours. */
  work_h: number;
  done_h: number;
  /** From its first start to its end or the run's, hours. */
  wall_h: number;
  ettr: number | null;
  /** Wall hours lost, by cause. */
  lost_h: Record<LostCause, number>;
  interruptions: number;
}

export interface ReferenceRow {
  cause: string;
  /** The published count over the reference's period. */
  reference: number;
  /** Scaled to this run's length. */
  expected: number;
  actual: number;
  ok: boolean;
}

export interface ReferenceComparison {
  source: string;
  /** The reference's period (hours) and this run's length as a share of it. */
  over_h: number;
  scale: number;
  tolerance: number;
  rows: ReferenceRow[];
  total: ReferenceRow;
  /** Unexpected (not planned) interruptions per 1,000 node-hours of the jobs' nodes. */
  unexpected_per_1000_node_hours: { reference: number; actual: number };
  ettr?: { reference: number; actual: number | null; ok: boolean };
  ok: boolean;
}

export interface GoodputSummary {
  /** Useful GPU-time ÷ GPU-time of every job's window (null before any started). */
  ettr: number | null;
  jobs: GoodputJob[];
  gpu_hours: { window: number; useful: number; lost: Record<LostCause | "total", number> };
  interruptions: { total: number; by_cause: Record<string, number> };
  node_hours_unavailable: { total: number; by_rung: Record<string, number>; waiting_for_human?: number };
  reference?: ReferenceComparison;
}

/** One sample of the goodput timeline (samples.ts). */
export interface GoodputSample {
  /** Nodes of the gang jobs' pools that may take one (known to the scheduler, not cordoned, not blocked). */
  capacity: number;
  /** Nodes the unfinished gang jobs need. */
  needed: number;
  running: number;
  lost_gpu_hours: Record<LostCause, number>;
}

export function goodputSample(gangs: readonly Gang[], at: number, schedulable: (pool: string) => number): GoodputSample {
  const lost = Object.fromEntries(LOST_CAUSES.map((c) => [c, 0])) as Record<LostCause, number>;
  let needed = 0;
  let running = 0;
  for (const g of gangs) {
    g.settle(at);
    if (g.state !== "done") needed += g.spec.nodes;
    if (g.state === "running") running++;
    for (const c of LOST_CAUSES) lost[c] += (g.lost[c] * g.gpus) / HOUR;
  }
  const pools = [...new Set(gangs.map((g) => g.pool))];
  for (const c of LOST_CAUSES) lost[c] = round(lost[c], 1);
  return { capacity: pools.reduce((a, p) => a + schedulable(p), 0), needed, running, lost_gpu_hours: lost };
}

type IncidentRow = typeof incidents.$inferSelect;

export interface GoodputInput {
  scenario: Scenario;
  gangs: readonly Gang[];
  incidents: readonly IncidentRow[];
  /** Node-hours nodes waited for a human (no automation). */
  humanWaitHours?: number;
}

export function computeGoodput(input: GoodputInput): GoodputSummary {
  const { scenario: s, gangs } = input;
  const end = s.start + s.duration;
  let window = 0;
  let useful = 0;
  const lost = Object.fromEntries([...LOST_CAUSES, "total"].map((c) => [c, 0])) as Record<LostCause | "total", number>;
  const byCause: Record<string, number> = {};
  const jobs: GoodputJob[] = gangs.map((g) => {
    g.settle(end);
    const wall = g.wall(end);
    window += wall * g.gpus;
    useful += g.progress * g.gpus;
    for (const c of LOST_CAUSES) {
      lost[c] += g.lost[c] * g.gpus;
      lost.total += g.lost[c] * g.gpus;
    }
    for (const i of g.interruptions) byCause[i.cause] = (byCause[i.cause] ?? 0) + 1;
    return {
      name: g.name,
      pool: g.pool,
      nodes: g.spec.nodes,
      gpus: g.gpus,
      state: g.state,
      first_start: g.firstStartAt === undefined ? null : g.firstStartAt - s.start,
      end: g.endedAt === undefined ? null : g.endedAt - s.start,
      work_h: hours(g.spec.work),
      done_h: hours(g.progress),
      wall_h: hours(wall),
      ettr: wall > 0 ? round(g.progress / wall, 4) : null,
      lost_h: Object.fromEntries(LOST_CAUSES.map((c) => [c, hours(g.lost[c])])) as Record<LostCause, number>,
      interruptions: g.interruptions.length,
    };
  });
  const gpuHours = (gpuMs: number) => round(gpuMs / HOUR, 1);
  const total = Object.values(byCause).reduce((a, n) => a + n, 0);
  const out: GoodputSummary = {
    ettr: window > 0 ? round(useful / window, 4) : null,
    jobs,
    gpu_hours: {
      window: gpuHours(window),
      useful: gpuHours(useful),
      lost: Object.fromEntries(Object.entries(lost).map(([k, v]) => [k, gpuHours(v)])) as Record<LostCause | "total", number>,
    },
    interruptions: { total, by_cause: sortedCounts(byCause) },
    node_hours_unavailable: unavailable(input.incidents, end, input.humanWaitHours),
  };
  if (s.reference !== undefined) out.reference = compareWithReference(s, out, gangs);
  return out;
}

function sortedCounts(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(c).sort(([a, x], [b, y]) => y - x || a.localeCompare(b)));
}

/**
 * Node-hours out of service per incident, by the rung that ended it: from the fault to the node's
 * return (reboot; recovered when it came back by itself) or its replacement's readiness (replace,
 * reboot_then_replace); held and still open ones up to the end of the run.
 */
function unavailable(rows: readonly IncidentRow[], end: number, humanWaitHours: number | undefined): GoodputSummary["node_hours_unavailable"] {
  const byRung: Record<string, number> = {};
  let total = 0;
  for (const i of rows) {
    const rung =
      i.closedAt === null
        ? "open"
        : i.outcome === "replaced"
          ? i.rebootedAt !== null
            ? "reboot_then_replace"
            : "replace"
          : i.outcome === "rebooted"
            ? "reboot"
            : i.outcome === "recovered" || i.outcome === "cancelled"
              ? "recovered"
              : (i.outcome ?? "open");
    const until = rung === "open" || rung === "held" ? end : (i.replacementReadyAt ?? i.closedAt ?? end);
    const h = Math.max(0, until - i.faultAt) / HOUR;
    byRung[rung] = (byRung[rung] ?? 0) + h;
    total += h;
  }
  return {
    total: round(total, 2),
    by_rung: Object.fromEntries(Object.entries(byRung).map(([k, v]) => [k, round(v, 2)])),
    ...(humanWaitHours !== undefined ? { waiting_for_human: round(humanWaitHours, 2) } : {}),
  };
}

function compareWithReference(s: Scenario, g: GoodputSummary, gangs: readonly Gang[]): ReferenceComparison {
  const ref = s.reference!;
  const scale = s.duration / ref.over;
  const tolerance = ref.tolerance;
  const row = (cause: string, reference: number, actual: number): ReferenceRow => {
    const expected = reference * scale;
    return { cause, reference, expected: round(expected, 2), actual, ok: Math.abs(actual - expected) <= Math.max(tolerance * expected, 1) };
  };
  const listed = new Set(ref.interruptions.map(([c]) => c));
  const rows = [
    ...ref.interruptions.map(([cause, n]) => row(cause, n, g.interruptions.by_cause[cause] ?? 0)),
    ...Object.entries(g.interruptions.by_cause)
      .filter(([c]) => !listed.has(c))
      .map(([cause, n]) => row(cause, 0, n)),
  ];
  const refTotal = ref.interruptions.reduce((a, [, n]) => a + n, 0);
  const expectedTotal = refTotal * scale;
  const total: ReferenceRow = {
    cause: "total",
    reference: refTotal,
    expected: round(expectedTotal, 2),
    actual: g.interruptions.total,
    ok: Math.abs(g.interruptions.total - expectedTotal) <= tolerance * expectedTotal,
  };
  const unexpected = (counts: Iterable<[string, number]>) => [...counts].reduce((a, [c, n]) => a + (causeOf(c)?.planned ? 0 : n), 0);
  const nodes = gangs.reduce((a, x) => a + x.spec.nodes, 0);
  const per1000 = (n: number, ms: Millis) => (nodes > 0 ? round((n * 1000) / (nodes * (ms / HOUR)), 3) : 0);
  const ettr = ref.ettr === undefined ? undefined : { reference: ref.ettr, actual: g.ettr, ok: g.ettr !== null && g.ettr >= ref.ettr };
  return {
    source: ref.source,
    over_h: hours(ref.over),
    scale: round(scale, 4),
    tolerance,
    rows,
    total,
    unexpected_per_1000_node_hours: {
      reference: per1000(unexpected(ref.interruptions), ref.over),
      actual: per1000(unexpected(Object.entries(g.interruptions.by_cause)), s.duration),
    },
    ...(ettr ? { ettr } : {}),
    ok: total.ok && rows.every((r) => r.ok),
  };
}

// ───────────────────────────── text ─────────────────────────────

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)} %`);
const num = (x: number) => x.toLocaleString("en-US", { maximumFractionDigits: 1 });

/** The goodput block of the summary table: key and value rows. */
export function goodputRows(g: GoodputSummary): [string, string][] {
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${num(n)}`)
      .join(", ") || "none";
  const rows: [string, string][] = [
    ["ETTR", `${pct(g.ettr)} (useful GPU-hours ÷ GPU-hours from each job's first start)`],
    ...g.jobs.map((j): [string, string] => [
      `  job ${j.name}`,
      `${pct(j.ettr)}; ${j.nodes} nodes, ${num(j.done_h)} of ${num(j.work_h)} h of work done, ${j.interruptions} interruptions, ${j.state}`,
    ]),
    ["GPU-hours useful", `${num(g.gpu_hours.useful)} of ${num(g.gpu_hours.window)}`],
    [
      "GPU-hours lost",
      `${num(g.gpu_hours.lost.total)}: recompute ${num(g.gpu_hours.lost.recompute)}, restart ${num(g.gpu_hours.lost.restart)}, waiting for nodes ${num(g.gpu_hours.lost.waiting_for_nodes)}, drain ${num(g.gpu_hours.lost.drain)}`,
    ],
    ["interruptions", `${g.interruptions.total}: ${counts(g.interruptions.by_cause)}`],
    [
      "node-hours unavailable",
      `${num(g.node_hours_unavailable.total)} by rung: ${counts(g.node_hours_unavailable.by_rung)}${g.node_hours_unavailable.waiting_for_human !== undefined ? `; ${num(g.node_hours_unavailable.waiting_for_human)} waiting for a human` : ""}`,
    ],
  ];
  return rows;
}

/** The comparison with a published run, as lines. */
export function referenceLines(r: ReferenceComparison): string[] {
  const lines = [
    `beside ${r.source} (its ${num(r.over_h)} h scaled by ${r.scale}; within ${Math.round(r.tolerance * 100)} %, or one interruption, per cause): ${r.ok ? "within" : "NOT within"}`,
  ];
  const head = ["cause", "reference", "expected", "actual", "share", "ref. share", ""];
  const share = (n: number, of: number) => (of > 0 ? `${((n / of) * 100).toFixed(1)} %` : "-");
  const table = [...r.rows, r.total].map((x) => [
    x.cause,
    String(x.reference),
    x.expected.toFixed(1),
    String(x.actual),
    share(x.actual, r.total.actual),
    share(x.reference, r.total.reference),
    x.ok ? "ok" : "off",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  for (const row of [head, ...table]) lines.push(`  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")}`.trimEnd());
  const u = r.unexpected_per_1000_node_hours;
  lines.push(`  unexpected interruptions per 1,000 node-hours: ${u.actual} (reference ${u.reference})`);
  if (r.ettr) lines.push(`  ETTR ${pct(r.ettr.actual)} (reference: at least ${pct(r.ettr.reference)}): ${r.ettr.ok ? "ok" : "below"}`);
  return lines;
}
