// The safety rails on /metrics: which circuit breakers are tripped, how often each tripped, and
// the actions each rail refused (each distinct refusal of a node once, as the audit log has it).
import type { SnapshotCollectors } from "./collectors.ts";
import type { HistoryCounters } from "./history-counters.ts";
import { RAILS } from "./labels.ts";
import { str } from "./store-rows.ts";

export function registerSafetyMetrics({ gauge, counter }: SnapshotCollectors, { railCounts, breakerTrips }: HistoryCounters): void {
  gauge("navarch_breaker_tripped", "1 while the circuit breaker of the scope (fleet, pool:<name>) is tripped", ["scope"], (g, s) => {
    g.set({ scope: "fleet" }, 0);
    for (const p of s.pools) g.set({ scope: `pool:${str(p.name)}` }, 0);
    for (const b of s.breakers) g.set({ scope: str(b.scope) }, 1);
  });
  counter(
    "navarch_rail_blocks_total",
    "Actions a safety rail refused, by rail (each distinct refusal of a node once, as the audit log records it)",
    ["rail"],
    (set) => {
      for (const rail of RAILS) set({ rail }, railCounts.get(rail) ?? 0);
      const other = railCounts.get("other");
      if (other !== undefined) set({ rail: "other" }, other);
    },
  );
  counter("navarch_breaker_trips_total", "Circuit breaker trips, by scope", ["scope"], (set) => {
    for (const [scope, n] of breakerTrips) set({ scope }, n);
  });
}
