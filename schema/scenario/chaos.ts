// The `chaos:` section of a scenario file: random Xid faults over the in-service nodes (a
// rate per 1,000 node-hours, weights by Xid code), optionally correlated within a rack or a
// zone, limited to some pools and to a window of the run. reconciler/sim/chaos.ts plays it.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, oneOf, show, strict } from "../shapes.ts";
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
  }),
  v.transform((c): ChaosSpec => ({ ...c, xids: c.xids ?? DEFAULT_CHAOS_XIDS })),
);
