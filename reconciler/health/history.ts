// The history the rules count over: a node's rows of `health_events`, indexed lazily for
// count_events and count_events_node. An occurrence is counted from the rows' cumulative
// `count` (a finding the agent deduplicated into one row with count 500 is 500 occurrences);
// healthy (recovery) rows are not occurrences. Also a stored row back as the wire event, for
// the loop that re-reads rows.
import type { healthEvents } from "../../schema/db.ts";
import { ACTIONS, type HealthEvent, type RecommendedAction } from "../../schema/wire.ts";
import { gpuKeyOf, type NormalizedEvent } from "./normalized-event.ts";

/** The history the policy sees: rows of the `health_events` table (the node's own, any order). */
export type PolicyHistoryRow = Pick<
  typeof healthEvents.$inferSelect,
  "seq" | "bootId" | "time" | "check" | "code" | "severity" | "gpuIndex" | "gpuUuid" | "gpuPciBusId" | "count"
>;

/** Scope key for "any GPU of the node" (count_events_node). */
export const ANY_GPU = "\u0001any";

interface Series {
  times: number[];
  /** cumulative[i] = occurrences of entries 0..i-1 (length times.length + 1). */
  cumulative: number[];
}

/**
 * A node's history, indexed lazily for count_events: each distinct (GPU, check, code) query scans
 * the rows once and is then answered by binary search. Build one per node and reuse it for every
 * event judged against the same rows; `evaluate` makes a throwaway one when given plain rows.
 * The rows must not change while it is in use.
 */
export class PreparedHistory {
  private seqs: Set<number> | undefined;
  private readonly series = new Map<string, Series>();

  constructor(private readonly rows: readonly PolicyHistoryRow[]) {}

  has(seq: number): boolean {
    this.seqs ??= new Set(this.rows.map((r) => r.seq));
    return this.seqs.has(seq);
  }

  /** Occurrences in (from, to] for one scope (a GPU key or ANY_GPU), check and code ("*": any). */
  count(scope: string, check: string, code: string, from: number, to: number): number {
    const key = seriesKey(scope, check, code);
    let s = this.series.get(key);
    if (!s) {
      s = this.build(scope, check, code);
      this.series.set(key, s);
    }
    return s.cumulative[upperBound(s.times, to)]! - s.cumulative[upperBound(s.times, from)]!;
  }

  /** The cumulative count of the latest row of the chain (boot, GPU, check, code) before `seq` (0 when none). */
  previousCount(bootId: string, gpu: string, check: string, code: string, seq: number): number {
    let best = -Infinity;
    let count = 0;
    for (const r of this.rows) {
      if (r.seq >= seq || r.seq <= best || r.check !== check || (r.code ?? "") !== code || r.bootId !== bootId || r.severity === "healthy") continue;
      if (gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex) !== gpu) continue;
      best = r.seq;
      count = Math.max(1, r.count);
    }
    return count;
  }

  private build(scope: string, check: string, code: string): Series {
    const rows = this.rows;
    const matched: PolicyHistoryRow[] = [];
    let repeats = false;
    for (const r of rows) {
      if (r.check !== check || r.severity === "healthy" || (code !== "*" && (r.code ?? "") !== code)) continue;
      if (scope !== ANY_GPU && gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex) !== scope) continue;
      matched.push(r);
      if (r.count > 1) repeats = true;
    }
    const n = new Array<number>(matched.length).fill(1);
    if (repeats) {
      // Cumulative counts: a row adds its growth over the previous row of its incident chain
      // (boot, GPU, code; the check is fixed here), taken in seq order.
      const order = inOrder(matched, (r) => r.seq);
      const last = new Map<string, Map<string, Map<string, number>>>();
      for (const i of order) {
        const r = matched[i]!;
        const gpu = gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex);
        const rowCode = r.code ?? "";
        let byGpu = last.get(r.bootId);
        if (!byGpu) last.set(r.bootId, (byGpu = new Map()));
        let byCode = byGpu.get(gpu);
        if (!byCode) byGpu.set(gpu, (byCode = new Map()));
        const count = Math.max(1, r.count);
        n[i] = added(byCode.get(rowCode) ?? 0, count);
        byCode.set(rowCode, count);
      }
    }
    const order = inOrder(matched, (r) => r.time);
    const times = new Array<number>(order.length);
    const cumulative = new Array<number>(order.length + 1);
    cumulative[0] = 0;
    order.forEach((i, k) => {
      times[k] = matched[i]!.time;
      cumulative[k + 1] = cumulative[k]! + n[i]!;
    });
    return { times, cumulative };
  }
}

/** Indexes of `items` in ascending `key` order (no sort when they already are: rows come from the DB in order). */
function inOrder<T>(items: readonly T[], key: (item: T) => number): number[] {
  const order = items.map((_, i) => i);
  for (let i = 1; i < items.length; i++) {
    if (key(items[i]!) < key(items[i - 1]!)) return order.sort((a, b) => key(items[a]!) - key(items[b]!));
  }
  return order;
}

/**
 * The index of a plain rows array, reused while the same array is passed again unchanged in
 * length and last seq (the event log is append-only, so rows are never edited in place): judging
 * a batch of events against one history array indexes it once.
 */
const preparedCache = new WeakMap<readonly PolicyHistoryRow[], { length: number; lastSeq: number | undefined; prepared: PreparedHistory }>();
export function preparedFor(rows: readonly PolicyHistoryRow[]): PreparedHistory {
  const lastSeq = rows.at(-1)?.seq;
  const cached = preparedCache.get(rows);
  if (cached && cached.length === rows.length && cached.lastSeq === lastSeq) return cached.prepared;
  const prepared = new PreparedHistory(rows);
  preparedCache.set(rows, { length: rows.length, lastSeq, prepared });
  return prepared;
}

function seriesKey(scope: string, check: string, code: string): string {
  return `${scope}\u0000${check}\u0000${code}`;
}

/** Occurrences a row adds to its chain: the growth of the cumulative count, or a new incident. */
function added(previous: number, count: number): number {
  return count > previous ? count - previous : count;
}

/** Number of entries ≤ value in an ascending array. */
function upperBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function countOccurrences(event: NormalizedEvent, history: PreparedHistory, scope: string, check: string, code: string, windowMs: number): number {
  if (!(windowMs > 0)) return 0;
  const to = event.time;
  const from = to - windowMs;
  let n = history.count(scope, check, code, from, to);
  // The event itself, when the caller judges it before (or without) storing it.
  if (event.severity !== "healthy" && event.check === check && (code === "*" || event.code === code) && (scope === ANY_GPU || scope === event.gpuKey)) {
    if (!history.has(event.seq)) {
      const previous = event.count > 1 ? history.previousCount(event.bootId, event.gpuKey, event.check, event.code, event.seq) : 0;
      n += added(previous, event.count);
    }
  }
  return n;
}

function isAction(value: string): value is RecommendedAction {
  return (ACTIONS as readonly string[]).includes(value);
}

/** A stored row back as the wire event (for the level-triggered loop, which re-reads rows). */
export function eventFromRow(row: typeof healthEvents.$inferSelect): HealthEvent {
  const event: HealthEvent = {
    seq: row.seq,
    time: new Date(row.time).toISOString(),
    bootId: row.bootId,
    check: row.check,
    severity: row.severity,
    // The column is plain text: a value this version does not know is the most careful action.
    action: isAction(row.action) ? row.action : "contact_support",
    message: row.message,
  };
  if (row.code !== null) event.code = row.code;
  if (row.count > 1) event.count = row.count;
  if (row.gpuIndex !== null) event.gpu = { index: row.gpuIndex, uuid: row.gpuUuid ?? "", pciBusId: row.gpuPciBusId ?? "" };
  return event;
}
