// The owner's side of the scheduler contract (scheduler.ts): the one place a scheduler
// integration reaches Navarch's store. Nodes are read as views, a mapping is recorded in
// the node's row (not a state change: the version is left alone), a human's return of a
// node to service in the scheduler goes through Operator.uncordon, as an uncordon in
// Navarch's own API would, and pools from the scheduler's resources reach the loop.
import { and, eq, notInArray, sql } from "drizzle-orm";
import * as v from "valibot";
import { TAINT_EFFECTS, type PoolConfig } from "../../schema/config.ts";
import { nodes, pools } from "../../schema/db.ts";
import { isIn } from "../../schema/lifecycle.ts";
import { Dependencies } from "../dependencies/status.ts";
import type { Provider } from "../providers/provider.ts";
import type { Store } from "../store/store.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import type { Clock } from "../../schema/time.ts";
import {
  schedulerNodeView,
  type ExternalUncordonOutcome,
  type PoolMarks,
  type PoolNodeCounts,
  type SchedulerHost,
  type SchedulerLoopHandle,
  type SchedulerNodeView,
} from "./scheduler.ts";

/** The labels and taints of a stored pool spec (the normalised config pool; older specs have no taints). */
const MarksOfSpec = v.object({
  labels: v.optional(v.record(v.string(), v.string()), {}),
  taints: v.optional(v.array(v.object({ key: v.string(), value: v.optional(v.string()), effect: v.picklist(TAINT_EFFECTS) })), []),
});

export interface StoreSchedulerHostOptions {
  store: Store;
  log: (line: string) => void;
  now?: Clock;
  /** Wakes the reconcile loop. */
  wake?: () => void;
  /** The configured providers, by name: they recognise their machines in a Node's providerID. */
  providers?: () => ReadonlyMap<string, Provider>;
  /** Where the scheduler's API is reported as a dependency (serve's); default: a registry of the host's own. */
  dependencies?: Dependencies;
}

export function storeSchedulerHost(opts: StoreSchedulerHostOptions): SchedulerHost {
  const db = opts.store.db;
  const now = opts.now ?? Date.now;
  const operator = new Operator(db, now);
  const dependencies = opts.dependencies ?? new Dependencies({ log: opts.log });
  return {
    log: opts.log,
    now,
    async nodes(): Promise<SchedulerNodeView[]> {
      const rows = await db
        .select({
          id: nodes.id,
          hostname: nodes.hostname,
          instanceName: nodes.instanceName,
          pool: nodes.pool,
          k8sNodeName: nodes.k8sNodeName,
          state: nodes.state,
          cordonedBy: nodes.cordonedBy,
          incidentId: nodes.incidentId,
          verdict: nodes.verdict,
          stateReason: nodes.stateReason,
          lastHeartbeatAt: nodes.lastHeartbeatAt,
        })
        .from(nodes)
        .where(notInArray(nodes.state, ["terminated", "failed"]));
      return rows.map(schedulerNodeView);
    },
    async recordMapping(nodeId, name) {
      await db.update(nodes).set({ k8sNodeName: name }).where(eq(nodes.id, nodeId));
    },
    async describeMonitored(nodeId, facts) {
      const [row] = await db.select({ origin: nodes.origin, pool: nodes.pool, instanceName: nodes.instanceName }).from(nodes).where(eq(nodes.id, nodeId));
      // Launched nodes are what Navarch recorded; a monitored node's known facts are kept.
      if (row === undefined || row.origin !== "registered") return;
      const set: { pool?: string; provider?: string; instanceName?: string } = {};
      if (row.pool === null && facts.pool) set.pool = facts.pool;
      if (row.instanceName === null && facts.providerId) {
        for (const [name, provider] of opts.providers?.() ?? []) {
          const id = provider.instanceOfKubernetesNode?.(facts.providerId);
          if (id !== undefined) {
            Object.assign(set, { provider: name, instanceName: id });
            break;
          }
        }
      }
      if (Object.keys(set).length === 0) return;
      await db
        .update(nodes)
        .set(set)
        .where(and(eq(nodes.id, nodeId), eq(nodes.origin, "registered")));
      const what = [set.pool ? `pool ${set.pool}` : "", set.instanceName ? `instance ${set.instanceName} at ${set.provider}` : ""].filter(Boolean).join(", ");
      opts.log(`${nodeId}: monitored node: ${what} (from the scheduler's node)`);
    },
    async poolMarks(pool): Promise<PoolMarks | undefined> {
      const [row] = await db.select({ spec: pools.spec }).from(pools).where(eq(pools.name, pool));
      const marks = row === undefined ? undefined : v.safeParse(MarksOfSpec, row.spec);
      return marks?.success ? marks.output : undefined;
    },
    async externalUncordon(nodeId, who): Promise<ExternalUncordonOutcome> {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await operator.uncordon(nodeId, who);
          return "cancelled";
        } catch (err) {
          // Another writer got there between our read and our write: read it again.
          if (err instanceof OperatorError && err.status === 409 && err.message.includes("changed while")) continue;
          if (err instanceof OperatorError && err.status === 404) return "unknown_node";
          // 409: the node is no longer taken out (terminating, back in service, rebooting).
          if (err instanceof OperatorError) return "nothing_to_cancel";
          throw err;
        }
      }
      return "nothing_to_cancel";
    },
    wake: () => opts.wake?.(),
    dependency: (name, label, target) => dependencies.add(name, label, target),
  };
}

export interface LoopHandleOptions {
  store: Store;
  loop: { updatePools(pools: PoolConfig[]): string[] };
  providers: () => ReadonlySet<string>;
  filePools: readonly string[];
}

/** The loop as an integration sees it once it exists (pools from the scheduler's own resources). */
export function schedulerLoopHandle(opts: LoopHandleOptions): SchedulerLoopHandle {
  const db = opts.store.db;
  return {
    updatePools: (p) => opts.loop.updatePools(p),
    providers: opts.providers,
    filePools: opts.filePools,
    async poolNodeCounts(): Promise<PoolNodeCounts> {
      const rows = await db.select({ pool: nodes.pool, state: nodes.state, n: sql<number>`count(*)` }).from(nodes).groupBy(nodes.pool, nodes.state);
      const out = new Map<string, { ready: number; total: number }>();
      for (const row of rows) {
        if (row.pool === null) continue;
        const c = out.get(row.pool) ?? { ready: 0, total: 0 };
        if (isIn("inService", row.state)) c.ready += Number(row.n);
        if (isIn("inPool", row.state)) c.total += Number(row.n);
        out.set(row.pool, c);
      }
      return out;
    },
    async forgetPool(pool) {
      await db.delete(pools).where(sql`${pools.name} = ${pool} and ${pools.source} = 'crd'`);
    },
  };
}
