// The `clouds:` section of a scenario file: how the simulated cloud plays each provider
// type the pools use (launch latency, capacity and quota, error rates, reboots), and the
// defaults of a cloud the file does not describe.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, show, strict } from "../shapes.ts";
import { Duration, Probability, int } from "./fields.ts";

export interface CloudSpec {
  launch_latency: Millis;
  /** Each launch takes launch_latency plus up to this much more (seeded). */
  launch_jitter: Millis;
  /** Instances of a type that may run at once; a launch past it fails with `capacity`. */
  capacity: Record<string, number>;
  /** Instances of any type that may run at once; a launch past it fails with `quota`. */
  quota?: number;
  /** Share of API calls (launch, terminate, get, list) that fail with a transient error. */
  error_rate: number;
  /** Share of launched machines that run but whose agent never registers (a bootstrap that fails). */
  bootstrap_failure_rate: number;
  /** From a reboot call until the machine runs again with a new boot. */
  reboot_latency: Millis;
  /** Share of the faults on a rebooted machine that the reboot clears (the rest are found again in the new boot). */
  reboot_fixes: number;
}

const Cloud = strict({
  launch_latency: v.optional(Duration, "3m"),
  launch_jitter: v.optional(Duration, "0s"),
  capacity: v.optional(
    v.pipe(
      v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of instance type to count, got ${show(i.input)}`),
      v.record(v.string(), int(0)),
    ),
    {},
  ),
  quota: v.optional(int(0)),
  error_rate: v.optional(Probability, 0),
  bootstrap_failure_rate: v.optional(Probability, 0),
  reboot_latency: v.optional(Duration, "5m"),
  reboot_fixes: v.optional(Probability, 0.8),
});

/** `clouds:` a mapping of provider type to cloud settings. */
export const Clouds = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of provider type to cloud settings, got ${show(i.input)}`),
  v.record(v.string(), Cloud),
);

/** Default settings of a cloud nobody described. */
export const DEFAULT_CLOUD: CloudSpec = {
  launch_latency: 3 * 60_000,
  launch_jitter: 0,
  capacity: {},
  error_rate: 0,
  bootstrap_failure_rate: 0,
  reboot_latency: 5 * 60_000,
  reboot_fixes: 0.8,
};
