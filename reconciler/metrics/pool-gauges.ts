// Pools on /metrics: their bounds, whether paused, failing launches, machines that did not
// register and the hold that follows, machines that never served (and their GPU-hours), idle
// nodes and a failing metrics source.
import type { SnapshotCollectors } from "./collectors.ts";
import { num, str } from "./store-rows.ts";

export function registerPoolGauges({ gauge, counter }: SnapshotCollectors): void {
  gauge("navarch_pool_min_nodes", "The pool's scaling.min_nodes", ["pool"], (g, s) => {
    for (const p of s.pools) if (p.min !== null && p.min !== undefined) g.set({ pool: str(p.name) }, num(p.min));
  });
  gauge("navarch_pool_max_nodes", "The pool's scaling.max_nodes", ["pool"], (g, s) => {
    for (const p of s.pools) if (p.max !== null && p.max !== undefined) g.set({ pool: str(p.name) }, num(p.max));
  });
  gauge("navarch_pool_paused", "1 while the pool is paused by an operator", ["pool"], (g, s) => {
    for (const p of s.pools) g.set({ pool: str(p.name) }, num(p.paused) ? 1 : 0);
  });
  gauge(
    "navarch_pool_launch_failures",
    "Launches of the pool that failed in a row (0 once one succeeds); the pool backs off while it grows",
    ["pool", "kind"],
    (g, s) => {
      for (const p of s.pools) {
        g.set({ pool: str(p.name), kind: "permanent" }, str(p.launch_error_kind) === "permanent" ? num(p.launch_failures) : 0);
        g.set({ pool: str(p.name), kind: "transient" }, str(p.launch_error_kind) === "transient" ? num(p.launch_failures) : 0);
      }
    },
  );
  gauge(
    "navarch_pool_registration_failures",
    "Machines of the pool in a row whose agent did not register (deadline passed, bootstrap failed); 0 once one registers",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, num(p.registration_failures));
    },
  );
  gauge(
    "navarch_pool_registration_held",
    "1 while the pool launches nothing because its last machines did not register (health.max_registration_failures); `navarch pools resume` lifts it",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, p.registration_hold === null || p.registration_hold === undefined ? 0 : 1);
    },
  );
  counter(
    "navarch_machines_never_served_total",
    "Machines Navarch launched and terminated without their ever entering service, by pool and provider",
    ["pool", "provider"],
    (set, s) => {
      for (const r of s.neverServed) set({ pool: r.pool, provider: r.provider }, r.machines);
    },
  );
  counter(
    "navarch_machines_never_served_gpu_hours_total",
    "GPU-hours of those machines, from their launch to their terminate call",
    ["pool", "provider"],
    (set, s) => {
      for (const r of s.neverServed) set({ pool: r.pool, provider: r.provider }, r.gpuHours);
    },
  );
  gauge(
    "navarch_pool_idle_nodes",
    "In-service nodes of the pool with no work on their GPUs (none busy, no compute process), as the last autoscale tick saw them; pools with an autoscaler",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, num(s.idle.find((r) => str(r.pool) === str(p.name))?.n));
    },
  );
  gauge(
    "navarch_pool_metrics_source_failing",
    "1 while the pool's last autoscale tick could not read an input its metrics source should give (Prometheus down, a query failing): its autoscaler holds what it cannot see",
    ["pool"],
    (g, s) => {
      for (const p of s.pools) g.set({ pool: str(p.name) }, p.metrics_error === null || p.metrics_error === undefined ? 0 : 1);
    },
  );
}
