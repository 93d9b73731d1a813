// The record of one local instance (instance.json in its directory, see nodes-dir.ts): what
// was launched, its state, and the agent process that is the machine (pid and start time, so
// a new provider over the same directory finds it again after a restart of the reconciler).
import * as v from "valibot";

const StoredState = v.picklist(["pending", "running", "terminated"]);

export const InstanceRecord = v.object({
  version: v.literal(1),
  id: v.string(),
  name: v.string(),
  idempotencyKey: v.string(),
  pool: v.string(),
  tags: v.record(v.string(), v.string()),
  instanceType: v.string(),
  region: v.string(),
  zone: v.optional(v.string()),
  gpus: v.pipe(v.number(), v.integer(), v.minValue(1)),
  createdAt: v.string(),
  /** pending: not spawned yet; running: spawned (alive or not: see observe); terminated: gone. */
  state: StoredState,
  pid: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** /proc/PID/stat field 22 (clock ticks after boot) of the agent process. */
  startTime: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Reboots so far: each restart of the agent is a new boot, with its own boot id. */
  boots: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** A boot the machine finished on its own (see rebootingBy) shows as pending (booting) until then (ms since the epoch), as a real machine's does. */
  bootingUntil: v.optional(v.number()),
  /**
   * While a reboot runs: the process running it (a reconciler). Found gone before it started the
   * new agent (killed mid-reboot), the machine finishes its boot on its own, as a real one would.
   */
  rebootingBy: v.optional(
    v.object({ pid: v.pipe(v.number(), v.integer(), v.minValue(1)), startTime: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))) }),
  ),
  terminatedAt: v.optional(v.string()),
  /** "terminated" (terminate()), "process exited" (found dead), "spawn failed: …". */
  terminationReason: v.optional(v.string()),
});
export type LocalInstanceRecord = v.InferOutput<typeof InstanceRecord>;
