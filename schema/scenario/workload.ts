// The `workload:` section of a scenario file: the simulated scheduler's queue of jobs per
// pool (job size and duration, background arrivals, jobs queued at the start), the gang
// jobs that span nodes and checkpoint (`jobs:`, the work whose goodput the report measures),
// and how long evicting a node's jobs takes. reconciler/sim/workload.ts plays it.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, show, strict } from "../shapes.ts";
import { Bool, Duration, Name, NonNegative, PositiveDuration, int } from "./fields.ts";

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
  /** Gang jobs, queued at the start in this order (placed before the single-node jobs). */
  jobs: GangJobSpec[];
  /** The scheduler checkpoints a gang job it drains (its work since the last checkpoint is kept). */
  checkpoint_on_drain: boolean;
}

/**
 * A job that spans nodes: all of its nodes run, or none (a gang), each node wholly its own.
 * A fault on one of them kills it; it then loses the work since its last checkpoint, waits
 * for enough schedulable nodes, and pays `restart_overhead` before it works again.
 */
export interface GangJobSpec {
  name: string;
  nodes: number;
  /** Useful run time it needs. */
  work: Millis;
  /** A checkpoint after every this much useful work; absent: none (an interruption loses all of it). */
  checkpoint_interval?: Millis;
  /** From being placed again to useful work (loading the checkpoint, warming up); not on the first start. */
  restart_overhead: Millis;
}

const GangJob = strict({
  name: Name,
  nodes: int(1),
  work: PositiveDuration,
  checkpoint_interval: v.optional(PositiveDuration),
  restart_overhead: v.optional(Duration, "0s"),
});

const PoolWorkload = strict({
  gpus_per_job: v.optional(int(1), 8),
  job_duration: v.optional(PositiveDuration, "1h"),
  arrivals_per_hour: v.optional(NonNegative, 0),
  initial_jobs: v.optional(int(0), 0),
  jobs: v.optional(
    v.array(GangJob, (i) => `expected a list of jobs like { name: pretrain, nodes: 256, work: 54d }, got ${show(i.input)}`),
    [],
  ),
  checkpoint_on_drain: v.optional(Bool, false),
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
