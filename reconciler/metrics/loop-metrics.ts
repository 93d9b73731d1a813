// The reconcile loop and its dependencies, as this process sees them: each pass's duration and
// when the last one finished, the lifecycle transitions it made, and whether each dependency
// (the database, the scheduler's API, Prometheus, each provider's API) answers and how many
// actions wait for it.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { DependencyStatus } from "../../schema/admin.ts";
import { NODE_STATES, type NodeState } from "../../schema/lifecycle.ts";

export interface PassObservation {
  durationMs: number;
  transitions: readonly { to: NodeState }[];
  blocked: readonly unknown[];
}

/** Records one reconcile pass (each report once, however many callers awaited it). */
export type ObservePass = (report: PassObservation) => void;

const PASS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** `dependencies`: the reconciler's dependencies as they are now (reconciler/dependencies/status.ts). */
export function registerLoopMetrics(registry: Registry, dependencies: (() => readonly DependencyStatus[]) | undefined): ObservePass {
  const passDuration = new Histogram({
    name: "navarch_reconcile_pass_duration_seconds",
    help: "Duration of one reconcile pass",
    buckets: PASS_BUCKETS,
    registers: [registry],
  });
  // Dependencies live in this process (each reconciler's own view of what it can reach).
  new Gauge({
    name: "navarch_dependency_up",
    help: "1 while a dependency answers (the database, the scheduler's API, Prometheus, each provider's API), 0 while it is down or not reached yet",
    labelNames: ["dependency"],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of dependencies?.() ?? []) this.set({ dependency: d.name }, d.state === "up" ? 1 : 0);
    },
  });
  new Gauge({
    name: "navarch_dependency_queued_actions",
    help: "Actions only this dependency can carry out, waiting for it (a cordon for the scheduler, a launch for a provider)",
    labelNames: ["dependency"],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of dependencies?.() ?? []) this.set({ dependency: d.name }, d.queuedCount);
    },
  });
  const lastPass = new Gauge({
    name: "navarch_reconcile_last_pass_timestamp_seconds",
    help: "When the last reconcile pass finished (wall clock)",
    registers: [registry],
  });
  const transitions = new Counter({
    name: "navarch_node_transitions_total",
    help: "Lifecycle transitions made by the reconciler, by the state entered",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  for (const state of NODE_STATES) transitions.inc({ to: state }, 0);
  const seen = new WeakSet<object>();
  return (report) => {
    if (seen.has(report)) return;
    seen.add(report);
    passDuration.observe(report.durationMs / 1000);
    lastPass.set(Date.now() / 1000);
    for (const t of report.transitions) transitions.inc({ to: t.to });
  };
}

/** Wraps a reconcile loop's pass() so that every pass it runs is observed (serve.ts). */
export function observeLoop(loop: { pass(): Promise<PassObservation> }, metrics: { observePass: ObservePass }): void {
  const pass = loop.pass.bind(loop);
  loop.pass = async () => {
    const report = await pass();
    metrics.observePass(report);
    return report;
  };
}
