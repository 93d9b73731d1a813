// The reconciler's Prometheus metrics (prom-client), on a registry of its own so
// that tests and several servers in one process never share counters. createMetrics
// assembles them, one file per concern.
//
// Almost everything is read from the store at scrape time (scrape-snapshot.ts), so a number is
// never a stale in-memory copy, and a restart (or a standby taking over) exposes the same
// values. Counters derived from append-only tables (health_events, audit_log) keep
// an id cursor and add only the rows since the last scrape (history-counters.ts; goodput's
// lost GPU-hours fold the audit log's transitions the same way, reconciler/goodput/); the incident
// histograms are computed from the incidents table as a whole (incident-spans.ts: each completed
// step counted exactly once, however often it is scraped, across restarts). Only the loop's
// pass durations, the heartbeat/event counters and the dependencies' gauges (each
// reconciler's own view of what it can reach) live in this process (process-metrics.ts,
// loop-metrics.ts).
//
// Cardinality: labels are pools (from the config), lifecycle states, rails, Xid
// codes of the catalog (anything else is "other"), operation kinds and providers,
// breaker scopes (fleet and one per pool) (labels.ts). navarch_node_last_heartbeat_timestamp_seconds has
// one series per watched node, the per-GPU gauges (navarch_node_gpu_*{node,gpu}) one per
// live GPU: bounded by the fleet's size; nodes that are terminated or failed drop out. The
// per-GPU ones are what a scrape of a large fleet spends its time on (at 100,000 nodes, 1.6
// million series), so server.metrics_per_gpu leaves them out above PER_GPU_AUTO_LIMIT GPUs
// (or always); the pool aggregates (navarch_pool_gpu_*) are always there (gpu-gauges.ts).
//
// Nothing non-finite is ever exported: values come from the store, and an old database
// (or a hand edit) may hold NaN, ±Infinity or a reading no GPU can have; such a sample
// is left out rather than rendered as NaN, +Inf or 1e+308 (collectors.ts).
import { Registry, collectDefaultMetrics } from "prom-client";
import type { DependencyStatus } from "../../schema/admin.ts";
import type { MetricsPerGpu } from "../../schema/config.ts";
import { GoodputLedger } from "../goodput/ledger.ts";
import type { Db } from "../store/store.ts";
import { snapshotCollectors } from "./collectors.ts";
import { registerFaultCounters } from "./fault-counters.ts";
import { registerGoodputMetrics } from "./goodput-metrics.ts";
import { registerGpuGauges } from "./gpu-gauges.ts";
import { HistoryCounters } from "./history-counters.ts";
import { registerIncidentMetrics } from "./incident-metrics.ts";
import { registerLoopMetrics, type ObservePass } from "./loop-metrics.ts";
import { registerNodeGauges } from "./node-gauges.ts";
import { registerPoolGauges } from "./pool-gauges.ts";
import { registerProcessMetrics, type ProcessMetrics } from "./process-metrics.ts";
import { registerSafetyMetrics } from "./safety-metrics.ts";
import { snapshotReader } from "./scrape-snapshot.ts";
import { rowQuery } from "./store-rows.ts";

export interface Metrics extends ProcessMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** Records one reconcile pass (each report once, however many callers awaited it). */
  observePass: ObservePass;
  render(): Promise<string>;
}

export interface MetricsOptions {
  /** server.metrics_per_gpu (default auto). */
  perGpu?: MetricsPerGpu;
  /** Whether a listener serves plain HTTP off loopback (config/exposure.ts): navarch_server_plain_http. */
  plainHttp?: boolean;
  /** The reconciler's dependencies as they are now (reconciler/dependencies/status.ts): navarch_dependency_*. */
  dependencies?: () => readonly DependencyStatus[];
  /** The reconciler's clock: outages still open count up to it (navarch_gpu_hours_lost_total). Date.now by default. */
  now?: () => number;
}

export function createMetrics(db: Db, opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  // The process and runtime series under our prefix: navarch_process_cpu_user_seconds_total, navarch_nodejs_….
  collectDefaultMetrics({ register: registry, prefix: "navarch_" });
  const processMetrics = registerProcessMetrics(registry, opts.plainHttp === true);

  const query = rowQuery(db);
  const history = new HistoryCounters(query);
  const goodput = { ledger: new GoodputLedger(db), now: opts.now ?? Date.now };
  const collectors = snapshotCollectors(registry, snapshotReader(db, query, opts.perGpu ?? "auto", history, goodput));
  registerNodeGauges(collectors);
  registerGpuGauges(collectors);
  registerPoolGauges(collectors);
  registerSafetyMetrics(collectors, history);
  registerIncidentMetrics(collectors);
  registerFaultCounters(collectors, history);
  registerGoodputMetrics(collectors);

  const observePass = registerLoopMetrics(registry, opts.dependencies);
  return {
    registry,
    contentType: registry.contentType,
    ...processMetrics,
    observePass,
    render: () => registry.metrics(),
  };
}
