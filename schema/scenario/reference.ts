// The `reference:` section of a scenario file: what a published run reported (its source,
// the period it covers, its interruptions by cause, its effective training time), so that
// the report can set the simulated run beside it (reconciler/sim/goodput.ts): counts scaled
// to the run's length, each within `tolerance`. scenarios/llama3-54d.yaml holds Meta's.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, show, strict, unknownNameMessage } from "../shapes.ts";
import { CAUSE_NAMES } from "./causes.ts";
import { PositiveDuration, Probability, Text } from "./fields.ts";

export interface ReferenceSpec {
  /** Where the figures come from (a paper, a section, a table). */
  source: string;
  /** The period its counts cover. */
  over: Millis;
  /** Interruptions by cause over `over`, in file order. */
  interruptions: [string, number][];
  /** Its effective training time ratio, where it gives one (a lower bound: "> 90 %"). */
  ettr?: number;
  /** How far a count may be from the reference's (scaled to the run's length), as a share of it. */
  tolerance: number;
}

const Counts = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected a mapping of cause to count like { faulty_gpu: 148 }, got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: [string, number][] = [];
    for (const [key, n] of Object.entries(dataset.value)) {
      const at = (origin: "key" | "value"): [v.IssuePathItem] => [{ type: "object", origin, input: dataset.value, key, value: n }];
      if (!(CAUSE_NAMES as string[]).includes(key) && !/^xid_\d{1,3}$/.test(key))
        addIssue({ message: `${unknownNameMessage("cause", key, CAUSE_NAMES)}; or xid_N for an Xid`, path: at("key") });
      else if (typeof n !== "number" || !Number.isInteger(n) || n < 0)
        addIssue({ message: `expected a count (an integer ≥ 0), got ${show(n)}`, path: at("value") });
      else out.push([key, n]);
    }
    return out.length === Object.keys(dataset.value).length ? out : NEVER;
  }),
);

export const Reference = strict({
  source: Text,
  over: PositiveDuration,
  interruptions: Counts,
  ettr: v.optional(Probability),
  tolerance: v.optional(Probability, 0.1),
});
