// Pool size. The autoscaler (or the bounds alone) decides how many nodes a pool should
// have; this makes the rows say so.
//
// - The size counts each node Navarch launched once: not the nodes it registered but did
//   not launch (monitored), not the nodes already leaving (chosen for scale-down, or on
//   the way out), and a node being replaced by surge once with its replacement.
// - Scale-up requests nodes; the launch step launches them.
// - Every autoscale tick observes the pool once (pools/observations.ts): each in-service
//   node's GPU activity and how long it has been idle, a sample of its metrics for the
//   predictive history (both kept in libSQL), plus what the metrics sources say (a
//   scheduler's queue, Prometheus); all of it reaches every autoscaler in one PoolMetrics.
// - Scale-down chooses its victims once: what was never in service first (nothing is
//   lost), then idle nodes, longest idle first. A node with work on its GPUs (utilisation
//   or a compute process) is never chosen: a pool that cannot shrink without evicting
//   work stays larger and says so.
//   Chosen nodes are marked; the lifecycle takes them out through the same rails as any
//   other removal (cordon rate, unhealthy budget, in-flight caps). Since the marked are no
//   longer counted, a later pass never chooses again for the same decision, and nothing
//   ever takes a pool below min_nodes by Navarch's own hand.
import { and, eq, isNull } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { formatDuration, type PoolConfig } from "../../schema/config.ts";
import { nodes, pools } from "../../schema/db.ts";
import { isIn, stateIn, type NodeState } from "../../schema/lifecycle.ts";
import { byLongestIdle, decideScale, historyLookback, sampleOf, type PoolMetrics } from "../pools/autoscaler.ts";
import type { SourcedMetrics } from "../pools/metrics-source.ts";
import { averageUtilization, idleSinceOf, poolActivity, recordIdleness, recordSample } from "../pools/observations.ts";
import { move, type StepContext } from "./context.ts";
import type { LightNode } from "./live-nodes.ts";
import type { NodeRow } from "../nodes/writer.ts";

/** The row of a node the reconciler asks for (scale-up, replacement, surge): launched by a later pass. */
export function requestedNode(pool: PoolConfig, at: number, reason: string, extra: { replacementOf?: string; attempts?: number } = {}) {
  return {
    id: newNodeId(pool.name),
    origin: "launched" as const,
    pool: pool.name,
    provider: pool.providers[0]!,
    instanceType: pool.instance_type,
    state: "requested" as const,
    stateReason: reason,
    stateChangedAt: at,
    requestedAt: at,
    updatedAt: at,
    ...extra,
  } satisfies typeof nodes.$inferInsert;
}

/** A fresh node id in a pool: DNS-safe, ≤ 63 characters, and the instance's name at the provider. */
export function newNodeId(pool: string): string {
  return `${pool.slice(0, 50)}-${randomBytes(4).toString("hex")}`;
}

/** Of the nodes that never served, cheapest to remove first: not launched, then not yet up. */
const REMOVAL_ORDER: readonly NodeState[] = ["requested", "provisioning", "bootstrapping", "validating"];

/** What a pool's size is made of: the nodes Navarch launched into it, in the pool and not chosen for scale-down. */
export interface PoolCounts {
  total: number;
  ready: number;
  comingUp: number;
  replacing: number;
  /** Nodes being replaced whose replacement is already in the pool: counted once with it. */
  surging: number;
}

export const NO_NODES: PoolCounts = { total: 0, ready: 0, comingUp: 0, replacing: 0, surging: 0 };

/**
 * Every pool's counts in one walk over the live nodes (lifecycle/live-nodes.ts): at 100,000 nodes
 * the same counts as SQL aggregates took 33 ms a pool.
 */
export function poolCounts(live: readonly Pick<LightNode, "id" | "pool" | "state" | "origin" | "removal" | "replacementOf">[]): Map<string, PoolCounts> {
  const replaced = new Set<string>();
  for (const n of live) if (n.replacementOf !== null && isIn("inPool", n.state)) replaced.add(n.replacementOf);
  const out = new Map<string, PoolCounts>();
  for (const n of live) {
    if (n.pool === null || n.origin !== "launched" || n.removal === "scale_down" || !isIn("inPool", n.state)) continue;
    let c = out.get(n.pool);
    if (c === undefined) {
      c = { ...NO_NODES };
      out.set(n.pool, c);
    }
    c.total++;
    if (isIn("inService", n.state)) c.ready++;
    if (isIn("comingUp", n.state)) c.comingUp++;
    if (n.removal === "replace") {
      c.replacing++;
      if (replaced.has(n.id)) c.surging++;
    }
  }
  return out;
}

export class Scaler {
  private readonly lastAutoscaleAt = new Map<string, number>();
  /** The last dry-run or held-back decision said per pool (said once, not every pass). */
  private readonly said = new Map<string, string>();

  /** `counts`: the pool's counts from the rows as this pass's steps left them (poolCounts). */
  async scale(pool: PoolConfig, ctx: StepContext, counts: PoolCounts): Promise<void> {
    const { svc, at } = ctx;
    const db = svc.store.db;
    const [row] = await db.select().from(pools).where(eq(pools.name, pool.name));
    if (row?.paused) return;
    // What the pool's providers run for it is unknown until their first listing since start is
    // swept (it runs beside the loop): growing the pool before could launch a second fleet beside
    // one a lost or restored database forgot. It holds its size until then.
    if (!svc.inventoryKnown(pool)) {
      await this.sayOnce(pool.name, "inventory", ctx, async () =>
        svc.log(`pool ${pool.name}: holding its size until its providers' instances are listed (the listing runs beside the loop)`),
      );
      return;
    }
    // Machines the provider runs for this pool that no node claims yet count as coming up.
    const unclaimed = svc.unclaimedInstances(pool.name);
    const current = counts.total - counts.surging + unclaimed;
    let autoscaleDue = at - (this.lastAutoscaleAt.get(pool.name) ?? Number.NEGATIVE_INFINITY) >= svc.config().server.autoscale_interval;
    // What the metrics sources say is asked beside the loop: until they answer, the tick waits
    // (bounds only), and it runs at the pass their answer wakes.
    let sourced: SourcedMetrics | undefined;
    if (autoscaleDue && pool.scaling.autoscaler !== undefined) {
      sourced = await svc.sourcedMetrics(pool);
      if (sourced === undefined) autoscaleDue = false;
    }
    const metrics: PoolMetrics = {
      nodes: {
        ready: counts.ready,
        provisioning: counts.comingUp + unclaimed,
        replacing: counts.replacing,
        total: current,
      },
    };
    if (autoscaleDue && sourced !== undefined) await this.observe(pool, metrics, sourced, row?.metricsError ?? null, ctx);
    // Between autoscale ticks only the bounds are enforced (min_nodes at once).
    const scaling = autoscaleDue ? pool.scaling : { ...pool.scaling, autoscaler: undefined };
    if (autoscaleDue) this.lastAutoscaleAt.set(pool.name, at);
    // The size an operator requested (navarch pools scale) holds only a pool with no autoscaler of its own.
    const requested =
      pool.scaling.autoscaler === undefined && row?.requestedNodes != null ? { nodes: row.requestedNodes, by: row.requestedBy ?? "an operator" } : undefined;
    const decision = decideScale(
      scaling,
      metrics,
      {
        ...(row?.lastScaleAt ? { lastScaleAt: row.lastScaleAt } : {}),
        ...(row?.lastScaleDirection ? { lastDirection: row.lastScaleDirection } : {}),
        ...(requested ? { requested } : {}),
      },
      at,
      pool.scaling.autoscaler === undefined
        ? "no autoscaler"
        : `between ${pool.scaling.autoscaler.type} autoscaler ticks (every ${formatDuration(svc.config().server.autoscale_interval)}), bounds only`,
    );
    if (decision.desired === decision.current) return;
    if (svc.config().safety.dry_run) {
      await this.sayOnce(pool.name, `${decision.current}→${decision.desired}`, ctx, async () => {
        await svc.writer.audit(at, svc.actor, "dry_run", `pool:${pool.name}`, {
          would: "scale",
          from: decision.current,
          to: decision.desired,
          reason: decision.reason,
        });
        svc.log(`dry run: pool ${pool.name} would scale ${decision.current} → ${decision.desired}: ${decision.reason}`);
      });
      return;
    }
    let reason = decision.reason;
    let desired = decision.desired;
    if (desired > current) {
      await svc.writer.atomically(async (tx) => {
        for (let i = current; i < desired; i++) {
          const node = requestedNode(pool, at, `scale up: ${reason}`);
          await tx.insert(nodes).values(node);
          ctx.report.requested.push(node.id);
        }
      });
    } else {
      const victims = await this.victims(pool.name, current - desired, ctx);
      if (victims.chosen.length === 0) {
        await this.sayOnce(pool.name, `hold ${current}→${desired}`, ctx, async () =>
          svc.log(`pool ${pool.name}: would scale ${current} → ${desired} (${reason}), but ${victims.kept}`),
        );
        return;
      }
      if (victims.chosen.length < current - desired) {
        desired = current - victims.chosen.length;
        reason += `; ${victims.kept}`;
      }
      for (const n of victims.chosen) {
        if (isIn("comingUp", n.state)) await move(n, "terminating", `scale down: ${reason}`, ctx, { removal: "scale_down" });
        else await svc.writer.patch(n, { removal: "scale_down", stateReason: `scale down: ${reason}` }, at, { actor: svc.actor, action: "scale_down" });
      }
    }
    this.said.delete(pool.name);
    await db
      .update(pools)
      .set({ lastScaleAt: at, lastScaleDirection: desired > current ? "up" : "down", updatedAt: at })
      .where(eq(pools.name, pool.name));
    await svc.writer.audit(at, svc.actor, "scale", `pool:${pool.name}`, { from: current, to: desired, reason, inputs: decision.inputs });
    svc.log(`pool ${pool.name}: ${reason}`);
  }

  /**
   * What an autoscale tick knows of the pool, into `metrics`: utilisation and idle nodes
   * from the agents' readings (idleness recorded), the metrics sources' inputs over them,
   * and the history the pool's autoscaler reads (this tick's sample recorded). A source
   * that failed is recorded on the pool (navarch_pool_metrics_source_failing) and said once.
   */
  private async observe(pool: PoolConfig, metrics: PoolMetrics, sourced: SourcedMetrics, lastError: string | null, ctx: StepContext): Promise<void> {
    const { svc, at } = ctx;
    const db = svc.store.db;
    const activity = await poolActivity(db, pool.name);
    const utilization = averageUtilization(activity);
    if (utilization !== undefined) metrics.gpuUtilization = utilization;
    metrics.idleNodes = await recordIdleness(db, svc.writer, pool.name, activity, at);
    if (sourced.gpuUtilization !== undefined) metrics.gpuUtilization = sourced.gpuUtilization;
    if (sourced.queue !== undefined) metrics.queue = sourced.queue;
    const lookback = historyLookback(pool.scaling);
    const history = await recordSample(db, svc.writer, pool.name, sampleOf(metrics, at), lookback);
    if (lookback > 0) metrics.history = history;
    const error = sourced.problems?.join("; ") ?? null;
    if (error !== lastError) {
      await db.update(pools).set({ metricsError: error }).where(eq(pools.name, pool.name));
      svc.log(error === null ? `pool ${pool.name}: metrics sources answer again` : `pool ${pool.name}: metrics unknown this tick: ${error}`);
    }
  }

  /**
   * Up to `count` nodes to remove, cheapest first: never served (not yet up), then in
   * service only when idle (no GPU busy and no compute process in its latest readings),
   * longest idle first (nodes not yet seen idle by a tick last, the most recently changed
   * first among them). Says how many were kept because they are busy.
   */
  private async victims(pool: string, count: number, ctx: StepContext): Promise<{ chosen: NodeRow[]; kept: string }> {
    const db = ctx.svc.store.db;
    const rows = await db
      .select()
      .from(nodes)
      .where(and(eq(nodes.pool, pool), eq(nodes.origin, "launched"), stateIn(nodes.state, "inPool"), isNull(nodes.removal)));
    const busy = new Set((await poolActivity(db, pool)).filter((a) => a.busy).map((a) => a.id));
    const comingUp = rows.filter((n) => isIn("comingUp", n.state));
    comingUp.sort((a, b) => REMOVAL_ORDER.indexOf(a.state) - REMOVAL_ORDER.indexOf(b.state) || b.stateChangedAt - a.stateChangedAt || (a.id < b.id ? -1 : 1));
    const idle = rows.filter((n) => isIn("inService", n.state) && !busy.has(n.id));
    const since = await idleSinceOf(
      db,
      idle.map((n) => n.id),
    );
    const seenIdle = byLongestIdle(idle.flatMap((n) => (since.has(n.id) ? [{ id: n.id, idleSince: since.get(n.id)!, row: n }] : []))).map((x) => x.row);
    const notSeen = idle.filter((n) => !since.has(n.id)).sort((a, b) => b.stateChangedAt - a.stateChangedAt || (a.id < b.id ? -1 : 1));
    const chosen = [...comingUp, ...seenIdle, ...notSeen].slice(0, count);
    const short = count - chosen.length;
    const busyInService = rows.filter((n) => isIn("inService", n.state) && busy.has(n.id)).length;
    return { chosen, kept: short > 0 ? `${Math.min(short, busyInService)} busy node(s) kept: scale-down never evicts running work` : "" };
  }

  private async sayOnce(pool: string, what: string, ctx: StepContext, say: () => Promise<void>): Promise<void> {
    if (this.said.get(pool) === what) return;
    this.said.set(pool, what);
    await say();
  }
}
