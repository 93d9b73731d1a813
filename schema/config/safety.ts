// The `safety:` section: limits on what the reconciler may do on its own (docs/remediation.md):
// dry run, the unhealthy budget, replacements in flight, the cordon rate, the breaker, the
// partition freeze and the attempts before a slot is Held.
import * as v from "valibot";
import { strict } from "../shapes.ts";
import { duration, type Millis } from "./duration.ts";
import { Bool, int, MAX_NODES, Percent } from "./leaf-schemas.ts";

export interface SafetyConfig {
  /** Compute and record every decision, change nothing (no cordon, terminate, launch). */
  dry_run: boolean;
  /** Per pool, nodes that may be out of service for health at once: max(floor, ceil(percent × size)). */
  unhealthy_budget: { floor: number; percent: number };
  /** Replacements (cordoned through terminating, plus pending replacements) in flight at once. */
  max_in_flight_per_pool: number;
  max_in_flight_fleet: number;
  /** New cordons, fleet-wide: a token bucket of `burst` refilled at `per_minute`. */
  cordon_rate: { per_minute: number; burst: number };
  /**
   * Trips when max_cordons nodes, or percent of a pool (and at least min_cordons), are cordoned
   * within the window; blocks destructive actions until a human resets it.
   */
  breaker: { window: Millis; max_cordons: number; percent: number; min_cordons: number };
  /** Freeze Lost handling when this share of nodes (and at least min_nodes) went silent within the window. */
  partition: { window: Millis; percent: number; min_nodes: number };
  /** Replacement attempts for one failing slot before the node is Held for a human. */
  max_attempts: number;
}

// Defaults are safe for a 3-node and a 3,000-node pool alike (docs/remediation.md):
// budgets have an absolute floor and a share; the breaker counts both.
export const Safety: v.GenericSchema<unknown, SafetyConfig> = strict({
  dry_run: v.optional(Bool, false),
  unhealthy_budget: v.optional(strict({ floor: v.optional(int(0, MAX_NODES), 1), percent: v.optional(Percent, 20) }), {}),
  max_in_flight_per_pool: v.optional(int(1, MAX_NODES), 2),
  max_in_flight_fleet: v.optional(int(1, MAX_NODES), 10),
  cordon_rate: v.optional(strict({ per_minute: v.optional(int(1, MAX_NODES), 6), burst: v.optional(int(1, MAX_NODES), 5) }), {}),
  // A breaker window shorter than a few passes never sees a storm.
  breaker: v.optional(
    strict({
      window: v.optional(duration("1m", "24h"), "10m"),
      max_cordons: v.optional(int(1, MAX_NODES), 10),
      percent: v.optional(Percent, 30),
      // The share alone trips only past this many: one flapping slot of a small pool is no storm.
      min_cordons: v.optional(int(1, MAX_NODES), 3),
    }),
    {},
  ),
  partition: v.optional(
    strict({ window: v.optional(duration("10s", "24h"), "2m"), percent: v.optional(Percent, 50), min_nodes: v.optional(int(1, MAX_NODES), 3) }),
    {},
  ),
  max_attempts: v.optional(int(1, 100), 3),
});
