// The `sim:` section of a scenario file: how the simulator runs (the cadence of reconcile
// passes, the agents' event latency, the timeline's resolution, the database kind), as
// opposed to what it simulates.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { oneOf, strict } from "../shapes.ts";
import { Duration, PositiveDuration } from "./fields.ts";

export interface SimSettings {
  /** While the fleet is changing, passes follow each other this often (serve's loop interval). */
  reconcile_interval: Millis;
  /** A pass at least this often even when nothing is due (0: never). */
  idle_pass_interval: Millis;
  /** From a fault on the node to its event stored by the reconciler (agent push + wake). */
  event_latency: Millis;
  /** Timeline resolution (nodes by state, queue depth). */
  sample_every: Millis;
  /** Forces a pass at least this often, like a real loop would (0: only when something is due). */
  pass_every: Millis;
  /** The libSQL database: a file in a temp directory, or in memory. */
  database: "file" | "memory";
}

/** As written: `sample_every` is filled in from the run's duration (defaultSampleEvery) once it is known. */
export const Sim = strict({
  reconcile_interval: v.optional(PositiveDuration, "1s"),
  idle_pass_interval: v.optional(Duration, "1h"),
  event_latency: v.optional(Duration, "1s"),
  sample_every: v.optional(PositiveDuration),
  pass_every: v.optional(Duration, "0s"),
  database: v.optional(oneOf(["file", "memory"] as const, "database kind"), "file"),
});

/** About 240 samples over the run, on a round number of seconds (at least 10 s). */
export function defaultSampleEvery(duration: Millis): Millis {
  return Math.max(10_000, Math.ceil(duration / 240 / 10_000) * 10_000);
}
