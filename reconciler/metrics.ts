// The reconciler's Prometheus metrics (prom-client), on a registry of its own so
// that tests and several servers in one process never share counters.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { sql } from "drizzle-orm";
import { nodes } from "../schema/db.ts";
import type { Db } from "./store/store.ts";

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  readonly heartbeats: Counter;
  readonly healthEvents: Counter<"check" | "severity">;
  render(): Promise<string>;
}

export function createMetrics(db: Db): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "navarch_process_" });
  const heartbeats = new Counter({
    name: "navarch_heartbeats_total",
    help: "Agent heartbeats accepted",
    registers: [registry],
  });
  const healthEvents = new Counter({
    name: "navarch_health_events_total",
    help: "Health events stored (duplicates excluded), by check and severity",
    labelNames: ["check", "severity"] as const,
    registers: [registry],
  });
  // Read from the store at scrape time, so the number is never a stale in-memory copy.
  new Gauge({
    name: "navarch_nodes_total",
    help: "Nodes known to the reconciler, by pool and lifecycle state",
    labelNames: ["pool", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await db
        .select({ pool: nodes.pool, state: nodes.state, n: sql<number>`count(*)` })
        .from(nodes)
        .groupBy(nodes.pool, nodes.state);
      for (const r of rows) this.set({ pool: r.pool ?? "", state: r.state }, Number(r.n));
    },
  });
  return {
    registry,
    contentType: registry.contentType,
    heartbeats,
    healthEvents,
    render: () => registry.metrics(),
  };
}
