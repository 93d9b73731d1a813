// The `workload:` section of a scenario file: the simulated scheduler's queue of jobs per
// pool (job size and duration, background arrivals, jobs queued at the start) and how long
// evicting a node's jobs takes. reconciler/sim/workload.ts plays it.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, show, strict } from "../shapes.ts";
import { Duration, NonNegative, PositiveDuration, int } from "./fields.ts";

export interface WorkloadSpec {
  drain_grace: Millis;
  pools: Record<string, PoolWorkloadSpec>;
}

export interface PoolWorkloadSpec {
  gpus_per_job: number;
  /** Mean duration of the background jobs (exponentially distributed). */
  job_duration: Millis;
  /** Background arrivals (Poisson); 0 for none. */
  arrivals_per_hour: number;
  /** Jobs queued at the start. */
  initial_jobs: number;
}

const PoolWorkload = strict({
  gpus_per_job: v.optional(int(1), 8),
  job_duration: v.optional(PositiveDuration, "1h"),
  arrivals_per_hour: v.optional(NonNegative, 0),
  initial_jobs: v.optional(int(0), 0),
});

export const Workload = strict({
  drain_grace: v.optional(Duration, "30s"),
  pools: v.optional(
    v.pipe(
      v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of pool name to workload, got ${show(i.input)}`),
      v.record(v.string(), PoolWorkload),
    ),
    {},
  ),
});
