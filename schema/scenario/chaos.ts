// The `chaos:` section of a scenario file: random Xid faults over the in-service nodes (a
// rate per 1,000 node-hours, weights by Xid code), optionally correlated within a rack or a
// zone, limited to some pools and to a window of the run. reconciler/sim/chaos.ts plays it.
// With `trace:` the faults are drawn in advance from a stream of their own, for a fixed node
// count, so that they are the same whatever the reconciler does (every `compare:` variant
// replays them), and they may be drawn by cause of interruption (`causes:`, causes.ts)
// instead of by Xid; reconciler/sim/fault-trace.ts plays that.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, oneOf, show, strict, unknownNameMessage } from "../shapes.ts";
import { CAUSE_NAMES } from "./causes.ts";
import { Duration, Name, NonNegative, Probability, int } from "./fields.ts";

export const CHAOS_SCOPES = ["rack", "zone"] as const;
export type ChaosScope = (typeof CHAOS_SCOPES)[number];

export interface ChaosSpec {
  /** Faults per 1,000 node-hours of in-service (ready or suspect) nodes. */
  failure_rate: number;
  /** Xid codes with their weights, in file order. */
  xids: [number, number][];
  correlation?: { scope: ChaosScope; probability: number; nodes: number };
  /** Pools chaos acts on; empty for all. */
  pools: string[];
  /** Chaos is active from this time (since start) until `until` (default: the end). */
  from: Millis;
  until?: Millis;
  /** Causes of interruption with their weights, in file order (instead of xids; needs a trace). */
  causes?: [string, number][];
  /** Drawn in advance, independent of the reconciler (see the header). */
  trace?: ChaosTrace;
}

export const TRACE_DRAWS = ["poisson", "exact"] as const;

export interface ChaosTrace {
  /** The node count the rate applies to, whatever the fleet does. */
  nodes: number;
  /**
   * poisson: a Poisson process at the rate; exact: each cause's expected count over the
   * window (rounded by a draw), at uniformly random times, so that a published table of
   * counts is replayed as it is.
   */
  draw: (typeof TRACE_DRAWS)[number];
}

/** Weights by Xid code: `{ 79: 2, 48: 1 }` (YAML keys are strings). */
const XidWeights = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected a mapping of Xid code to weight like { 79: 2, 94: 1 }, got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: [number, number][] = [];
    let bad = false;
    for (const [key, weight] of Object.entries(dataset.value)) {
      const path: [v.IssuePathItem] = [{ type: "object", origin: "value", input: dataset.value, key, value: weight }];
      const code = Number(key);
      if (!/^\d+$/.test(key) || !Number.isInteger(code) || code < 1 || code > 999) {
        addIssue({ message: `expected an Xid code (an integer from 1 to 999) as the key, got ${show(key)}`, path });
        bad = true;
      } else if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
        addIssue({ message: `expected a weight (a number ≥ 0), got ${show(weight)}`, path });
        bad = true;
      } else out.push([code, weight]);
    }
    if (bad) return NEVER;
    if (out.length > 0 && out.every(([, w]) => w === 0)) {
      addIssue({ message: "at least one weight must be above 0" });
      return NEVER;
    }
    return out;
  }),
);

/** Weights by cause of interruption: `{ faulty_gpu: 148, software_bug: 54 }`. */
const CauseWeights = v.pipe(
  v.custom<Record<string, unknown>>(
    isRecord,
    (issue) => `expected a mapping of cause to weight like { faulty_gpu: 148, gpu_hbm3: 72 }, got ${show(issue.input)}`,
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: [string, number][] = [];
    let bad = false;
    for (const [key, weight] of Object.entries(dataset.value)) {
      const at = (origin: "key" | "value"): [v.IssuePathItem] => [{ type: "object", origin, input: dataset.value, key, value: weight }];
      if (!(CAUSE_NAMES as string[]).includes(key) && !/^xid_\d{1,3}$/.test(key)) {
        addIssue({ message: `${unknownNameMessage("cause", key, CAUSE_NAMES)}; or xid_N for an Xid`, path: at("key") });
        bad = true;
      } else if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
        addIssue({ message: `expected a weight (a number ≥ 0), got ${show(weight)}`, path: at("value") });
        bad = true;
      } else out.push([key, weight]);
    }
    if (bad) return NEVER;
    if (out.length === 0 || out.every(([, w]) => w === 0)) {
      addIssue({ message: "at least one weight must be above 0" });
      return NEVER;
    }
    return out;
  }),
);

const Trace = strict({
  nodes: int(1),
  draw: v.optional(oneOf(TRACE_DRAWS, "trace draw"), "poisson"),
});

const Correlation = strict({
  scope: v.optional(oneOf(CHAOS_SCOPES, "correlation scope"), "rack"),
  probability: Probability,
  nodes: int(2),
});

/** A realistic mix when `xids` is not given: mostly app-caused and ECC noise, some fatal. */
export const DEFAULT_CHAOS_XIDS: [number, number][] = [
  [13, 3],
  [31, 2],
  [94, 2],
  [48, 1],
  [79, 2],
  [74, 1],
  [119, 1],
];

export const Chaos = v.pipe(
  strict({
    failure_rate: NonNegative,
    xids: v.optional(XidWeights),
    correlation: v.optional(Correlation),
    pools: v.optional(
      v.array(Name, (i) => `expected a list of pool names, got ${show(i.input)}`),
      [],
    ),
    from: v.optional(Duration, "0s"),
    until: v.optional(Duration),
    causes: v.optional(CauseWeights),
    trace: v.optional(Trace),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const c = dataset.value;
    const at = (key: string): [v.IssuePathItem] => [{ type: "object", origin: "value", input: c, key, value: c[key as keyof typeof c] }];
    if (c.causes !== undefined && c.xids !== undefined) addIssue({ message: "set xids or causes, not both (an Xid is the cause xid_N)", path: at("causes") });
    if (c.causes !== undefined && c.trace === undefined)
      addIssue({ message: "causes are drawn into a fault trace: set trace: { nodes: N } (the node count the rate applies to)", path: at("causes") });
    if (c.trace !== undefined && c.correlation !== undefined)
      addIssue({ message: "a fault trace has no correlated faults (yet): remove correlation, or trace", path: at("correlation") });
  }),
  v.transform((c): ChaosSpec => ({ ...c, xids: c.xids ?? DEFAULT_CHAOS_XIDS })),
);
