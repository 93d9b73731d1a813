// What the Kubernetes and Slurm test fleets share: the real reconcile loop over a simulated
// cloud with a scheduler integration's mirror and queue, and the queries their tests use.
import { eq } from "drizzle-orm";
import type { NavarchConfig } from "../schema/config.ts";
import { incidents, nodes } from "../schema/db.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import type { SchedulerIntegration } from "../reconciler/schedulers/scheduler.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import type { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import type { Store } from "../reconciler/store/store.ts";

/** The loop, its scheduler mirror and queue from `integration`, its one provider `local`. */
export function schedulerLoop(o: {
  store: Store;
  config: NavarchConfig;
  cloud: SimulatedCloud;
  now: () => number;
  log: (line: string) => void;
  integration: SchedulerIntegration;
}): Reconciler {
  const queue = o.integration.queue;
  return new Reconciler({
    store: o.store,
    config: o.config,
    providers: new Map([["local", o.cloud]]),
    policy: defaultHealthPolicy(),
    now: o.now,
    log: o.log,
    scheduler: o.integration.mirror,
    ...(queue ? { queueMetrics: (pool: string) => queue.depth(pool) } : {}),
  });
}

/** Reads of the store, and `until`: passes (`step`) with real-time sleeps between until `done`. */
export function fleetQueries(store: Store, step: (ms?: number) => Promise<unknown>) {
  const node = async (id: string) => (await store.db.select().from(nodes).where(eq(nodes.id, id)))[0]!;
  const all = () => store.db.select().from(nodes);
  const incident = async (id: number | null) => (id === null ? undefined : (await store.db.select().from(incidents).where(eq(incidents.id, id)))[0]);
  /** Passes (each `stepMs` of virtual time) with `sleepMs` of real time between, until `done`. */
  const until = async (what: string, done: () => Promise<boolean> | boolean, { stepMs = 5000, sleepMs = 50, timeoutMs = 60_000 } = {}) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await done()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await step(stepMs);
      if (sleepMs > 0) await Bun.sleep(sleepMs);
    }
  };
  return { node, all, incident, until };
}
