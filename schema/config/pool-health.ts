// A pool's `health:`: when a node is unhealthy, how it is drained, replaced or first rebooted,
// and how long a new machine has to register before the pool stops launching.
import * as v from "valibot";
import { oneOf, strict } from "../shapes.ts";
import { duration, type Millis } from "./duration.ts";
import { Bool, int } from "./leaf-schemas.ts";

export interface HealthConfig {
  /** Consecutive failed checks before a node is declared unhealthy. */
  unhealthy_threshold: number;
  auto_replace: boolean;
  drain_timeout: Millis;
  /**
   * A new machine whose agent has not registered within this is Failed, unless the pool has
   * learned that its machines take longer (nodes/registration-deadlines.ts): then a margin over the
   * recent registrations' p99, never past registration_timeout_max.
   */
  registration_timeout: Millis;
  /** The longest deadline the pool may learn. */
  registration_timeout_max: Millis;
  /** After this many machines in a row did not register, the pool stops launching (held). */
  max_registration_failures: number;
  /**
   * terminate_first: the unhealthy node is terminated, then its replacement launched.
   * surge: the replacement is launched when the node is cordoned, and the node is terminated
   * once the replacement is Ready (capacity never dips; needs room under max_nodes).
   */
  replacement: "terminate_first" | "surge";
  /**
   * reboot_first: a fault whose recommended action is a GPU reset or a reboot is drained and
   * rebooted through the provider first; the node is replaced when the fault survives the
   * reboot, the reboot does not come back within reboot_timeout, or the node was already
   * rebooted for its health within reboot_window. replace: every unhealthy node is replaced.
   */
  remediation: "reboot_first" | "replace";
  /** How long a rebooted machine has to come back with a new boot and pass its health check. */
  reboot_timeout: Millis;
  /** A node rebooted for its health within this long is replaced instead the next time. */
  reboot_window: Millis;
}

export const Health: v.GenericSchema<unknown, HealthConfig> = strict({
  unhealthy_threshold: v.optional(int(1, 100), 2),
  auto_replace: v.optional(Bool, true),
  drain_timeout: v.optional(duration("1s", "168h"), "30m"),
  // GPU images routinely take longer than Cluster API's 10 min default to come up.
  // Under 30 s no machine boots and registers; over a day it is not coming.
  registration_timeout: v.optional(duration("30s", "24h"), "15m"),
  // What a slow cloud may teach the pool is bounded: past this a machine is not coming.
  registration_timeout_max: v.optional(duration("1m", "24h"), "2h"),
  // Three machines in a row that never register are a pattern (a bootstrap, an image, a
  // timeout too short), not bad luck: stop paying for more until someone changes something.
  max_registration_failures: v.optional(int(1, 1000), 3),
  replacement: v.optional(oneOf(["terminate_first", "surge"] as const, "replacement strategy"), "terminate_first"),
  remediation: v.optional(oneOf(["reboot_first", "replace"] as const, "remediation"), "reboot_first"),
  // A GPU machine's reboot (firmware, driver load, the agent's first check) takes minutes.
  reboot_timeout: v.optional(duration("30s", "24h"), "20m"),
  reboot_window: v.optional(duration("0s", "504h"), "168h"),
});
