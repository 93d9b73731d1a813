// Nodes per pool, as the store holds them: those Navarch launched that make up each pool, those
// that registered on their own (monitored), healthy and unhealthy ones, every state's count,
// and when each watched node last heartbeated (one series per watched node).
import { NODE_STATES, isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { SnapshotCollectors } from "./collectors.ts";
import { poolNames, type Snapshot } from "./scrape-snapshot.ts";
import { num, str, type Row } from "./store-rows.ts";

const inPool = (state: string) => (NODE_STATES as readonly string[]).includes(state) && isIn("inPool", state as NodeState);

/** A per-pool total of `pick` over the in-pool states' rows, 0 for every pool the scrape knows. */
function perPool(s: Snapshot, pick: (r: Row) => number) {
  const totals = new Map<string, number>();
  for (const p of poolNames(s)) totals.set(p, 0);
  for (const r of s.byState) if (inPool(str(r.state)) && str(r.pool) !== "") totals.set(str(r.pool), (totals.get(str(r.pool)) ?? 0) + pick(r));
  return totals;
}

export function registerNodeGauges({ gauge }: SnapshotCollectors): void {
  gauge(
    "navarch_nodes_total",
    "Nodes Navarch launched that make up each pool (live: requested through held, not terminating, terminated or failed); monitored nodes are navarch_nodes_monitored",
    ["pool"],
    (g, s) => {
      for (const [pool, n] of perPool(s, (r) => num(r.n) - num(r.monitored))) g.set({ pool }, n);
    },
  );
  gauge(
    "navarch_nodes_monitored",
    "Live nodes of each pool that registered on their own (a DaemonSet's): watched, never counted in its size",
    ["pool"],
    (g, s) => {
      for (const [pool, n] of perPool(s, (r) => num(r.monitored))) g.set({ pool }, n);
    },
  );
  gauge("navarch_nodes_healthy", "Nodes Navarch launched of each pool that are Ready and judged healthy (of navarch_nodes_total)", ["pool"], (g, s) => {
    for (const [pool, n] of perPool(s, (r) => num(r.healthy))) g.set({ pool }, n);
  });
  gauge("navarch_nodes_unhealthy", "Nodes of each pool judged unhealthy (whatever their state) or Lost, monitored ones included", ["pool"], (g, s) => {
    for (const [pool, n] of perPool(s, (r) => num(r.unhealthy))) g.set({ pool }, n);
  });
  gauge("navarch_nodes_by_state", "Nodes by pool and lifecycle state (terminated and failed included)", ["pool", "state"], (g, s) => {
    for (const r of s.byState) g.set({ pool: str(r.pool), state: str(r.state) }, num(r.n));
  });
  gauge(
    "navarch_node_last_heartbeat_timestamp_seconds",
    "When each watched node's agent last heartbeated (validating through draining)",
    ["pool", "node"],
    (g, s) => {
      for (const r of s.heartbeats) g.set({ pool: str(r.pool), node: str(r.node) }, num(r.at) / 1000);
    },
  );
}
