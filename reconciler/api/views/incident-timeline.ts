// An incident as a timeline: its steps in order (fault, opened, cordoned, drained, rebooted,
// back, terminated, replacement ready, closed), the time since the previous one, and the
// durations operators ask about. The node timeline shows them; `navarch` prints them.
import * as v from "valibot";
import type { incidents } from "../../../schema/db.ts";
import { IncidentRow } from "./table-rows.ts";
import { Ms } from "./time.ts";

export const IncidentStep = v.object({
  step: v.picklist(["fault", "opened", "cordoned", "drained", "rebooted", "back", "terminated", "replacement_ready", "closed"]),
  at: Ms,
  /** Milliseconds since the previous step. */
  sincePreviousMs: v.nullable(v.number()),
});

export const IncidentTimeline = v.object({
  ...IncidentRow.entries,
  steps: v.array(IncidentStep),
  durations: v.object({
    faultToCordonMs: v.nullable(v.number()),
    cordonToDrainedMs: v.nullable(v.number()),
    drainedToTerminatedMs: v.nullable(v.number()),
    rebootToBackMs: v.nullable(v.pipe(v.number(), v.description("how long the reboot took, to the new boot"))),
    faultToReplacementReadyMs: v.nullable(v.number()),
  }),
});
export type IncidentTimeline = v.InferOutput<typeof IncidentTimeline>;

/** An incident with its steps in order and the time each took. */
export function incidentTimeline(i: typeof incidents.$inferSelect): IncidentTimeline {
  const points: [IncidentTimeline["steps"][number]["step"], number | null][] = [
    ["fault", i.faultAt],
    ["opened", i.openedAt],
    ["cordoned", i.cordonedAt],
    ["drained", i.drainedAt],
    ["rebooted", i.rebootedAt],
    ["back", i.backAt],
    ["terminated", i.terminatedAt],
    ["replacement_ready", i.replacementReadyAt],
    ["closed", i.closedAt],
  ];
  const steps: IncidentTimeline["steps"] = [];
  let previous: number | undefined;
  for (const [step, at] of points) {
    if (at === null) continue;
    steps.push({ step, at, sincePreviousMs: previous === undefined ? null : Math.max(0, at - previous) });
    previous = at;
  }
  const span = (from: number | null, to: number | null) => (from === null || to === null ? null : Math.max(0, to - from));
  return {
    ...i,
    steps,
    durations: {
      faultToCordonMs: span(i.faultAt, i.cordonedAt),
      cordonToDrainedMs: span(i.cordonedAt, i.drainedAt),
      drainedToTerminatedMs: span(i.drainedAt, i.terminatedAt),
      rebootToBackMs: span(i.rebootedAt, i.backAt),
      faultToReplacementReadyMs: span(i.faultAt, i.replacementReadyAt),
    },
  };
}
