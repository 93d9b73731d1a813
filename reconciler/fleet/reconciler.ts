// The reconcile loop: level-triggered over the rows in libSQL. Each pass reads
// the nodes as they are, judges their health from the events the agents sent,
// and moves each node one step through its lifecycle (architecture.md):
//
//   requested → provisioning → validating → ready ⇄ suspect → cordoned → draining
//     → terminating → terminated        (+ failed, lost, held)
//
// Every transition is a compare-and-set on the node's version; every side effect
// goes through an operation row (operations.ts) with a deterministic key; deadlines
// live in the rows. Events only wake the loop. A crash at any point resumes from
// the rows: nothing is launched twice, nothing leaks, nothing is terminated twice.
import { and, asc, eq, gt, gte, inArray, isNull, notInArray, sql } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { publicKeyFromPrivate } from "../../bootstrap/ssh.ts";
import type { NavarchConfig, PoolConfig } from "../../schema/config.ts";
import { OUT_OF_POOL_STATES, auditLog, breakers, gpus, healthEvents, incidents, instances, nodes, pools, type NodeState } from "../../schema/db.ts";
import type { GpuSnapshot } from "../../schema/wire.ts";
import { decideScale, type PoolMetrics } from "../pools/autoscaler.ts";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance, type Provider } from "../providers/provider.ts";
import type { Store } from "../store/store.ts";
import { Bootstrapper } from "./bootstrap.ts";
import { runOperation } from "./operations.ts";
import { eventFromRow, nodeVerdict, trackFinding, type HealthPolicy, type OpenFinding } from "./policy.ts";
import { IN_POOL, Rails, breakerShouldTrip, partitionSuspected, type RailNode, type RailVerdict } from "./rails.ts";
import type { Clock } from "./registry.ts";
import { NO_SCHEDULER, type SchedulerMirror } from "./scheduler.ts";

type NodeRow = typeof nodes.$inferSelect;
/** What every pass reads of every live node. */
type LightNode = RailNode & Pick<NodeRow, "lastHeartbeatAt" | "bootId" | "evaluatedEventId" | "instanceName"> & { quiet: number };

export interface ReconcilerOptions {
  store: Store;
  config: NavarchConfig;
  /** Providers by config name (`lambda`, `local`, …). */
  providers: ReadonlyMap<string, Provider>;
  policy: HealthPolicy;
  scheduler?: SchedulerMirror;
  /** Pending and running jobs of a pool (Kubernetes pods labelled navarch.dev/pool); undefined when unknown. */
  queueMetrics?: (pool: string) => Promise<{ pending: number; running: number } | undefined>;
  now?: Clock;
  log?: (line: string) => void;
  /** Who the audit log names for the reconciler's own actions. */
  actor?: string;
  /** The URL new machines reach this reconciler at: `{{.ControlPlane}}` in setup_commands. */
  publicUrl?: string;
}

/** What one pass did, for tests, the simulator and the log. */
export interface PassReport {
  at: number;
  transitions: { node: string; from: NodeState; to: NodeState; reason: string }[];
  blocked: { node: string; rail: string; reason: string }[];
  launched: string[];
  terminated: string[];
  durationMs: number;
}

/** States the reconciler never moves out of by itself. */
const TERMINAL: readonly NodeState[] = ["terminated", "failed"];
/** States whose agent must keep heartbeating. */
const WATCHED: ReadonlySet<NodeState> = new Set(["validating", "ready", "suspect", "cordoned", "draining"]);
/** An inventory sweep runs this often (and at start). */
const SWEEP_INTERVAL_MS = 60_000;
/** Launch retries back off up to this. */
const MAX_LAUNCH_BACKOFF_MS = 10 * 60_000;
/** Health events read per pass (a backlog drains over several passes). */
const EVENTS_PER_PASS = 20_000;
/** A failure within this time of becoming Ready counts as a retry of the same slot. */
const MIN_HEALTHY_PERIOD_MS = 60 * 60_000;

export class Reconciler {
  private readonly store: Store;
  private readonly scheduler: SchedulerMirror;
  private readonly now: Clock;
  private readonly log: (line: string) => void;
  private readonly actor: string;
  private config: NavarchConfig;
  /** The config file's pools; pools from custom resources come and go around them (updatePools). */
  private readonly filePools: PoolConfig[];
  private crdPoolNames: ReadonlySet<string> = new Set();
  private lastSweepAt = Number.NEGATIVE_INFINITY;
  private readonly lastHealthTick = new Map<string, number>();
  /** The last health tick of the quiet nodes (they are not read, and would not change). */
  private quietTickAt = Number.NEGATIVE_INFINITY;
  /** Health events up to this id have been judged (in memory; the per-node cursors are durable). */
  private judgedThrough: number | undefined;
  /** This pass's verdict explanation per node, and when its deciding finding opened. */
  private readonly verdictReasons = new Map<string, { reason: string; faultAt: number }>();
  private readonly lastAutoscaleAt = new Map<string, number>();
  /** Public keys derived from the pools' ssh_private_key_path, by path. */
  private readonly publicKeys = new Map<string, string>();
  /** The last dry-run scaling decision recorded per pool. */
  private readonly dryRunSaid = new Map<string, string>();
  /** Instances seen with no node, by provider id: how many sweeps in a row (reap after two). */
  private readonly orphanSweeps = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The loop body, once start() ran. */
  private tick: (() => Promise<void>) | undefined;
  private running: Promise<PassReport> | undefined;
  private wakeRequested = false;
  private stopped = true;
  /** SSH bootstraps of pools with setup_commands, run in the background (created on first use). */
  private bootstrapper: Bootstrapper | undefined;

  constructor(private readonly opts: ReconcilerOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.filePools = opts.config.pools;
    this.scheduler = opts.scheduler ?? NO_SCHEDULER;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => undefined);
    this.actor = opts.actor ?? "navarch";
  }

  /** Runs passes every `intervalMs` and whenever woken, until stop(). */
  start(intervalMs = 1000): void {
    this.stopped = false;
    this.tick = async () => {
      if (this.stopped) return;
      this.timer = undefined;
      try {
        await this.pass();
      } catch (err) {
        this.log(`reconcile pass failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
      if (!this.stopped) this.timer = setTimeout(() => void this.tick?.(), this.wakeRequested ? 0 : intervalMs);
    };
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /**
   * An event arrived or an operator acted: run a pass now instead of at the next tick
   * (a pass in progress is followed at once by another).
   */
  wake(): void {
    this.wakeRequested = true;
    if (this.stopped || this.running || this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick?.(), 0);
  }

  /** One level-triggered pass over every node and pool; passes never overlap. */
  pass(): Promise<PassReport> {
    this.running ??= this.runPass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async runPass(): Promise<PassReport> {
    this.wakeRequested = false;
    const started = performance.now();
    const at = this.now();
    const report: PassReport = { at, transitions: [], blocked: [], launched: [], terminated: [], durationMs: 0 };
    const db = this.store.db;
    await this.syncPools(at);

    // Every live node, light: what the rails, the sweep and the event window need. Full rows
    // only for the nodes this pass can act on (at 10,000 mostly quiet nodes, reading every
    // full row was most of a pass).
    const light = await db
      .select({
        id: nodes.id,
        pool: nodes.pool,
        state: nodes.state,
        incidentId: nodes.incidentId,
        replacementOf: nodes.replacementOf,
        removal: nodes.removal,
        lastHeartbeatAt: nodes.lastHeartbeatAt,
        bootId: nodes.bootId,
        evaluatedEventId: nodes.evaluatedEventId,
        instanceName: nodes.instanceName,
        quiet: sql<number>`(${nodes.state} = 'ready' and ${nodes.verdict} = 'healthy' and ${nodes.findings} = '[]' and ${nodes.consecutiveFailures} = 0 and ${nodes.removal} is null and ${nodes.nextActionAt} is null)`,
      })
      .from(nodes)
      .where(notInArray(nodes.state, [...TERMINAL]));
    const events = await this.newEvents(light);
    const timeout = this.config.server.heartbeat_timeout;
    const busy = light.filter((n) => !n.quiet || events.has(n.id) || (n.lastHeartbeatAt !== null && at - n.lastHeartbeatAt > timeout));
    const live = await this.fullRows(busy.map((n) => n.id));
    await this.judgeHealth(live, events, at);
    // A quiet node (Ready, healthy, nothing open) would change nothing in a health tick: it is
    // counted as ticked on a shared grid instead of one by one, so when it turns busy its
    // evaluations keep the cadence they would have had.
    const busyIds = new Set(busy.map((n) => n.id));
    for (const n of light) if (!busyIds.has(n.id)) this.lastHealthTick.delete(n.id);
    if (at - this.quietTickAt >= this.config.server.health_check_interval) this.quietTickAt = at;

    // The rails count the full rows where there are any: steps update those in place, so a
    // cordon made earlier in this pass counts for the nodes after it.
    const fullById = new Map(live.map((n) => [n.id, n]));
    const rails = await this.rails(
      light.map((n) => fullById.get(n.id) ?? n),
      at,
    );
    const ctx: PassContext = { at, report, rails };
    for (const node of live) {
      try {
        await this.step(node, ctx);
      } catch (err) {
        this.log(`node ${node.id}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Scale on the rows as the steps left them (a replacement requested this pass counts).
    for (const pool of this.config.pools) await this.scale(pool, ctx);
    if (at - this.lastSweepAt >= SWEEP_INTERVAL_MS) {
      this.lastSweepAt = at;
      await this.sweep(light, ctx);
    }
    report.durationMs = performance.now() - started;
    return report;
  }

  // ───────────────────────────── pools ─────────────────────────────

  /**
   * Replaces the pools that come from Kubernetes custom resources (GpuPool) with `crdPools`.
   * A file pool of the same name wins: the custom resource is ignored. Returns the names ignored so.
   */
  updatePools(crdPools: PoolConfig[]): string[] {
    const fileNames = new Set(this.filePools.map((p) => p.name));
    const taken = crdPools.filter((p) => !fileNames.has(p.name));
    this.crdPoolNames = new Set(taken.map((p) => p.name));
    this.config = { ...this.config, pools: [...this.filePools, ...taken] };
    return crdPools.filter((p) => fileNames.has(p.name)).map((p) => p.name);
  }

  private async syncPools(at: number): Promise<void> {
    for (const pool of this.config.pools) {
      const source = this.crdPoolNames.has(pool.name) ? ("crd" as const) : ("config" as const);
      await this.store.db
        .insert(pools)
        .values({ name: pool.name, source, spec: pool, createdAt: at, updatedAt: at })
        .onConflictDoUpdate({ target: pools.name, set: { spec: pool, source, updatedAt: at } });
    }
  }

  private poolConfig(name: string | null): PoolConfig | undefined {
    return name === null ? undefined : this.config.pools.find((p) => p.name === name);
  }

  // ───────────────────────────── health ─────────────────────────────

  /** New health events by node, from the window past what was already judged. */
  private async newEvents(light: readonly LightNode[]): Promise<Map<string, (typeof healthEvents.$inferSelect)[]>> {
    const registered = light.filter((n) => n.bootId !== null);
    const byId = new Map(registered.map((n) => [n.id, n]));
    // Each node's cursor starts at the log's end when it registers (registry.ts). After a restart
    // the window starts at the lowest cursor; then at the mark past which every event was handed
    // to its node (a quiet node's old cursor must not pin it, or a busy log would starve).
    const from = this.judgedThrough ?? registered.reduce((m, n) => Math.min(m, n.evaluatedEventId), Number.MAX_SAFE_INTEGER);
    const fresh =
      registered.length === 0 ? [] : await this.store.db.select().from(healthEvents).where(gt(healthEvents.id, from)).orderBy(asc(healthEvents.id)).limit(EVENTS_PER_PASS);
    if (fresh.length > 0) this.judgedThrough = fresh.at(-1)!.id;
    const out = new Map<string, (typeof fresh)[number][]>();
    for (const e of fresh) {
      const n = byId.get(e.nodeId);
      if (n === undefined || e.id <= n.evaluatedEventId) continue;
      const list = out.get(e.nodeId);
      if (list) list.push(e);
      else out.set(e.nodeId, [e]);
    }
    return out;
  }

  /**
   * Full rows of these nodes, in the order given (the table's: nodes are stepped in creation
   * order, so a run is reproducible; an IN query returns them in id order, and ids are random).
   * In chunks: SQLite limits the variables of one statement.
   */
  private async fullRows(ids: readonly string[]): Promise<NodeRow[]> {
    const byId = new Map<string, NodeRow>();
    for (let i = 0; i < ids.length; i += 500) {
      for (const row of await this.store.db.select().from(nodes).where(inArray(nodes.id, ids.slice(i, i + 500)))) byId.set(row.id, row);
    }
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  /** Feeds new events through the policy and updates each node's open findings and verdict. */
  private async judgeHealth(live: NodeRow[], newByNode: Map<string, (typeof healthEvents.$inferSelect)[]>, at: number): Promise<void> {
    const db = this.store.db;
    const registered = live.filter((n) => n.bootId !== null);
    for (const node of registered) {
      if (node.bootId === null) continue;
      const pool = this.poolConfig(node.pool);
      const interval = this.config.server.health_check_interval;
      const events = newByNode.get(node.id) ?? [];
      // Never judged: judge now. Otherwise on its own cadence, or the quiet grid's while it was quiet.
      const tick = node.verdict === null || at - (this.lastHealthTick.get(node.id) ?? this.quietTickAt) >= interval;
      if (events.length === 0 && !tick) continue;
      let open = node.findings as OpenFinding[];
      if (events.length > 0) {
        const history = await db
          .select()
          .from(healthEvents)
          .where(and(eq(healthEvents.nodeId, node.id), gte(healthEvents.time, at - 7 * 24 * 3_600_000)));
        for (const row of events) {
          const event = eventFromRow(row);
          const evaluation = this.opts.policy.evaluate({ event, node: { id: node.id, pool: node.pool, bootId: node.bootId } }, history, at);
          open = trackFinding(open, event, evaluation);
        }
      }
      if (tick) this.lastHealthTick.set(node.id, at);
      const verdict = nodeVerdict(open, {
        unhealthyThreshold: pool?.health.unhealthy_threshold ?? 2,
        now: at,
        bootId: node.bootId,
        consecutiveFailures: node.consecutiveFailures,
        tick,
      });
      const lastId = events.at(-1)?.id ?? node.evaluatedEventId;
      this.verdictReasons.set(node.id, { reason: verdict.reason, faultAt: verdict.decidedBy?.openedAt ?? at });
      // Most ticks of a healthy node change nothing: write only what changed.
      const unchanged =
        events.length === 0 &&
        verdict.verdict === node.verdict &&
        verdict.state.consecutiveFailures === node.consecutiveFailures &&
        verdict.open.length === open.length &&
        verdict.closed.length === 0;
      if (unchanged) continue;
      await db
        .update(nodes)
        .set({
          findings: verdict.open,
          consecutiveFailures: verdict.state.consecutiveFailures,
          verdict: verdict.verdict,
          evaluatedEventId: lastId,
          updatedAt: at,
        })
        .where(eq(nodes.id, node.id));
      Object.assign(node, { findings: verdict.open, consecutiveFailures: verdict.state.consecutiveFailures, verdict: verdict.verdict, evaluatedEventId: lastId });
    }
  }

  /** A node's latest GPU readings (read only for the few nodes being cordoned or drained). */
  private async readings(nodeId: string): Promise<GpuSnapshot[]> {
    const rows = await this.store.db.select({ snapshot: gpus.lastSnapshot }).from(gpus).where(eq(gpus.nodeId, nodeId));
    return rows.flatMap((r) => (r.snapshot ? [r.snapshot as GpuSnapshot] : []));
  }

  // ───────────────────────────── rails ─────────────────────────────

  private async rails(live: readonly (LightNode | NodeRow)[], at: number): Promise<Rails> {
    const db = this.store.db;
    const { safety, server } = this.config;
    const recent = await db
      .select({ at: incidents.cordonedAt, pool: incidents.pool })
      .from(incidents)
      .where(gt(incidents.cordonedAt, at - Math.max(safety.breaker.window, 3_600_000)));
    const recentCordons = recent.flatMap((r) => (r.at === null ? [] : [{ at: r.at, pool: r.pool }]));
    // Trip breakers (fleet and per pool) from the cordons within the breaker window. A reset
    // starts the window afresh: what tripped it is not counted again (no backlog replay).
    const allBreakers = await db.select().from(breakers);
    const resetAt = new Map(allBreakers.map((b) => [b.scope, b.resetAt ?? Number.NEGATIVE_INFINITY]));
    const since = (scope: string) => Math.max(at - safety.breaker.window, resetAt.get(scope) ?? Number.NEGATIVE_INFINITY);
    const cordonsSince = (scope: string, pool?: string) => recentCordons.filter((c) => c.at > since(scope) && (pool === undefined || c.pool === pool)).length;
    const scopes: { scope: string; cordons: number; size: number }[] = [
      { scope: "fleet", cordons: cordonsSince("fleet"), size: live.filter((n) => IN_POOL.has(n.state)).length },
      ...this.config.pools.map((p) => ({
        scope: `pool:${p.name}`,
        cordons: cordonsSince(`pool:${p.name}`, p.name),
        size: live.filter((n) => n.pool === p.name && IN_POOL.has(n.state)).length,
      })),
    ];
    const tripped = new Map(allBreakers.filter((b) => b.resetAt === null).map((b) => [b.scope, b.reason]));
    for (const s of scopes) {
      if (tripped.has(s.scope)) continue;
      const why = breakerShouldTrip(safety, s.cordons, s.size);
      if (why === undefined) continue;
      await db
        .insert(breakers)
        .values({ scope: s.scope, trippedAt: at, reason: why })
        .onConflictDoUpdate({ target: breakers.scope, set: { trippedAt: at, reason: why, resetAt: null, resetBy: null } });
      tripped.set(s.scope, why);
      await this.audit(at, "breaker_tripped", s.scope, { reason: why });
      this.log(`circuit breaker ${s.scope} tripped: ${why}`);
    }
    const paused = new Map((await db.select().from(pools).where(eq(pools.paused, true))).map((p) => [p.name, p.pausedReason ?? "paused"]));
    // Partition: many watched nodes silent past the heartbeat timeout at once.
    const watched = live.filter((n) => WATCHED.has(n.state) && n.lastHeartbeatAt !== null);
    const silent = watched.filter((n) => at - (n.lastHeartbeatAt ?? at) > server.heartbeat_timeout);
    const frozen = partitionSuspected(safety, silent.length, watched.length);
    return new Rails({
      safety,
      now: at,
      nodes: live,
      recentCordons,
      trippedBreakers: tripped,
      pausedPools: paused,
      ...(frozen ? { partitionFrozen: frozen } : {}),
    });
  }

  // ───────────────────────────── one node ─────────────────────────────

  private async step(node: NodeRow, ctx: PassContext): Promise<void> {
    const pool = this.poolConfig(node.pool);
    const { at } = ctx;
    if (node.nextActionAt !== null && node.nextActionAt > at && node.state === "requested") return;

    // A watched node whose agent went silent is Lost (unless a partition is suspected).
    if (WATCHED.has(node.state) && node.lastHeartbeatAt !== null && at - node.lastHeartbeatAt > this.config.server.heartbeat_timeout) {
      const may = ctx.rails.mayDeclareLost();
      if (!may.allowed) return this.blocked(node, may, ctx);
      await this.transition(node, "lost", `no heartbeat for ${Math.round((at - node.lastHeartbeatAt) / 1000)} s`, ctx, { nextActionAt: null });
      return;
    }

    switch (node.state) {
      case "requested":
        return this.launch(node, pool, ctx);
      case "provisioning":
      case "bootstrapping": {
        // The deadline was set at launch: time spent backing off before it does not count.
        const deadline = node.nextActionAt ?? (node.requestedAt ?? node.stateChangedAt) + (pool?.health.registration_timeout ?? 15 * 60_000);
        if (at > deadline) {
          await this.transition(node, "failed", `agent did not register within ${Math.round((pool?.health.registration_timeout ?? 0) / 60_000)} min`, ctx);
          await this.terminateInstance(node, ctx);
          return;
        }
        // SSH bootstrap: once the instance runs, its setup commands run in the background;
        // a later pass reads the outcome. Success waits here for the agent's registration.
        if (pool !== undefined && pool.setup_commands.length > 0) {
          this.bootstrapper ??= new Bootstrapper({
            store: this.store,
            now: this.now,
            log: this.log,
            wake: () => this.wake(),
            ...(this.opts.publicUrl !== undefined ? { publicUrl: this.opts.publicUrl } : {}),
          });
          const next = await this.bootstrapper.next(node, () => this.getInstance(node));
          if (next.kind === "start") {
            if (node.state !== "bootstrapping") await this.transition(node, "bootstrapping", next.reason, ctx);
            if (node.state === "bootstrapping") await this.bootstrapper.begin(node, pool, next.instance);
          } else if (next.kind === "failed") {
            await this.transition(node, "failed", next.reason, ctx);
            // transition() updates the row in place when the compare-and-set won.
            if ((node.state as NodeState) === "failed") await this.terminateInstance(node, ctx);
          } else if (next.reason !== undefined && node.stateReason !== next.reason) {
            await this.patch(node, { stateReason: next.reason }, at);
          }
        }
        return;
      }
      case "validating": {
        if (node.verdict === "unhealthy") return this.startIncident(node, pool, ctx, "failed validation");
        if (node.agentHealth !== null && node.nvmlAvailable && node.verdict !== null) {
          await this.transition(node, "ready", node.verdict === "healthy" ? "first full health check passed" : `ready with a degraded finding: ${this.reason(node)}`, ctx);
          await this.markReplacementReady(node, ctx);
        }
        return;
      }
      case "ready":
      case "suspect": {
        if (node.verdict === "unhealthy") return this.startIncident(node, pool, ctx, this.reason(node));
        if (node.state === "ready" && node.verdict === "degraded") return this.transition(node, "suspect", this.reason(node), ctx);
        if (node.state === "suspect" && node.verdict === "healthy") return this.transition(node, "ready", "healthy again", ctx);
        if (node.removal === "scale_down") return this.cordon(node, ctx, "scale down");
        return;
      }
      case "cordoned":
      case "draining": {
        // Recovered before it was taken out: undo our own cordon only (a human's stays).
        if (node.verdict === "healthy" && node.cordonedBy === this.actor && node.removal === "replace") {
          await this.scheduler.uncordon({ id: node.id, gpus: await this.readings(node.id) });
          await this.closeIncident(node, "recovered", "the node recovered before it was replaced", ctx);
          return this.transition(node, "ready", "recovered; uncordoned", ctx, { cordonedBy: null, removal: null, incidentId: null });
        }
        if (node.state === "cordoned") {
          // A human's plain cordon stays until a human uncordons it.
          if (node.removal === null) return;
          const deadline = at + (pool?.health.drain_timeout ?? 30 * 60_000);
          return this.transition(node, "draining", `draining until ${new Date(deadline).toISOString()}`, ctx, { nextActionAt: deadline });
        }
        return this.drain(node, pool, ctx);
      }
      case "terminating":
        return this.terminateInstance(node, ctx);
      case "lost":
        return this.handleLost(node, pool, ctx);
      case "held":
        return;
      default:
        return;
    }
  }

  private reason(node: NodeRow): string {
    return this.verdictReasons.get(node.id)?.reason ?? node.stateReason ?? "health verdict";
  }

  private async launch(node: NodeRow, pool: PoolConfig | undefined, ctx: PassContext): Promise<void> {
    if (pool === undefined) return this.transition(node, "failed", `pool ${node.pool ?? "-"} is not configured`, ctx);
    if (this.config.safety.dry_run) return this.blocked(node, { allowed: false, rail: "dry_run", reason: "safety.dry_run: would launch" }, ctx);
    const providerName = node.provider ?? pool.providers[0]!;
    const provider = this.opts.providers.get(providerName);
    if (provider === undefined) return this.transition(node, "failed", `provider ${providerName} is not available`, ctx);
    const key = `launch:${node.id}:${providerName}`;
    let ssh: { sshPublicKey?: string };
    try {
      ssh = this.sshPublicKey(pool);
    } catch (err) {
      return this.transition(node, "failed", `pool ${pool.name}: ssh_private_key_path ${pool.ssh_private_key_path}: ${err instanceof Error ? err.message : String(err)}`, ctx);
    }
    const outcome = await runOperation(this.store.db, { key, kind: "launch", nodeId: node.id, pool: pool.name }, ctx.at, () =>
      provider.launch({
        name: node.id,
        idempotencyKey: key,
        pool: pool.name,
        instanceType: pool.instance_type,
        region: pool.region,
        ...(pool.zones[0] ? { zone: pool.zones[0] } : {}),
        ...ssh,
        tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool.name, [TAG_OPERATION]: key },
      }),
    );
    if (outcome.ok) {
      const instance = outcome.result;
      await this.recordInstance(instance, pool.name, key, ctx.at);
      ctx.report.launched.push(node.id);
      await this.transition(node, "provisioning", `launched ${instance.id} on ${providerName}`, ctx, {
        nextActionAt: ctx.at + pool.health.registration_timeout,
        instanceName: instance.id,
        provider: providerName,
        instanceType: pool.instance_type,
        attempts: node.replacementOf ? node.attempts : 0,
      });
      return;
    }
    const err = outcome.error;
    const kind = err instanceof ProviderError ? err.kind : "transient";
    const message = err instanceof Error ? err.message : String(err);
    if (kind === "auth" || kind === "invalid") return this.transition(node, "failed", `launch refused: ${message}`, ctx);
    // Capacity and quota: try the pool's next provider now; after the last, back off.
    const next = pool.providers[pool.providers.findIndex((p) => p === providerName) + 1];
    if ((kind === "capacity" || kind === "quota") && next !== undefined) {
      await this.patch(node, { provider: next, stateReason: `${message}; failing over to ${next}` }, ctx.at);
      return;
    }
    const attempts = node.attempts + 1;
    const retryAfter = err instanceof ProviderError && err.retryAfterSeconds ? err.retryAfterSeconds * 1000 : 0;
    const backoff = Math.max(retryAfter, Math.min(MAX_LAUNCH_BACKOFF_MS, 5000 * 2 ** Math.min(attempts - 1, 12)));
    await this.patch(
      node,
      { attempts, provider: pool.providers[0] ?? providerName, nextActionAt: ctx.at + backoff, stateReason: `launch failed (${kind}): ${message}; retry in ${Math.round(backoff / 1000)} s` },
      ctx.at,
    );
  }

  /** The key bootstrap logs in with, installed on new machines by the provider (pools with setup_commands). */
  private sshPublicKey(pool: PoolConfig): { sshPublicKey?: string } {
    if (pool.ssh_private_key_path === undefined || pool.setup_commands.length === 0) return {};
    let key = this.publicKeys.get(pool.ssh_private_key_path);
    if (key === undefined) {
      key = publicKeyFromPrivate(readFileSync(pool.ssh_private_key_path));
      this.publicKeys.set(pool.ssh_private_key_path, key);
    }
    return { sshPublicKey: key };
  }

  private async startIncident(node: NodeRow, pool: PoolConfig | undefined, ctx: PassContext, reason: string): Promise<void> {
    let incidentId = node.incidentId;
    if (incidentId === null) {
      const faultAt = this.verdictReasons.get(node.id)?.faultAt ?? ctx.at;
      const [row] = await this.store.db
        .insert(incidents)
        .values({ nodeId: node.id, pool: node.pool, reason, faultAt, openedAt: ctx.at, status: "opened" })
        .returning({ id: incidents.id });
      incidentId = row!.id;
      await this.patch(node, { incidentId, removal: "replace" }, ctx.at);
      await this.audit(ctx.at, "incident_opened", node.id, { incidentId, reason });
    }
    if (node.state === "validating") {
      // Never in service: nothing to cordon or drain.
      return this.replaceOrHold(node, pool, ctx, `failed validation: ${reason}`);
    }
    await this.cordon(node, ctx, reason);
    if (node.state === "cordoned" && pool?.health.replacement === "surge" && pool.health.auto_replace) await this.surge(node, pool, ctx);
  }

  /** Surge: the replacement is launched now, while the node drains; needs room under max_nodes. */
  private async surge(node: NodeRow, pool: PoolConfig, ctx: PassContext): Promise<void> {
    const db = this.store.db;
    const [existing] = await db.select({ id: nodes.id }).from(nodes).where(and(eq(nodes.replacementOf, node.id), notInArray(nodes.state, [...TERMINAL])));
    if (existing !== undefined) return;
    const [size] = await db
      .select({ n: sql<number>`count(*)` })
      .from(nodes)
      .where(and(eq(nodes.pool, pool.name), notInArray(nodes.state, [...OUT_OF_POOL_STATES])));
    if (Number(size?.n ?? 0) >= pool.scaling.max_nodes) {
      await this.setIncidentStatus(node, `surge skipped: pool ${pool.name} is at max_nodes ${pool.scaling.max_nodes}; replacing after the drain`);
      return;
    }
    const newId = newNodeId(pool.name);
    await db.insert(nodes).values(requestedNode(newId, pool, ctx.at, `surge replacement for ${node.id}`, { replacementOf: node.id, attempts: this.slotAttempts(node, ctx.at) }));
    if (node.incidentId !== null) {
      await db.update(incidents).set({ replacementNodeId: newId, status: `cordoned; surge replacement ${newId} requested` }).where(eq(incidents.id, node.incidentId));
    }
    await this.audit(ctx.at, "surge", node.id, { replacement: newId });
  }

  private async cordon(node: NodeRow, ctx: PassContext, reason: string): Promise<void> {
    const may = ctx.rails.mayCordon(node.pool);
    if (!may.allowed) return this.blocked(node, may, ctx);
    await this.scheduler.cordon({ id: node.id, gpus: await this.readings(node.id) }, reason, node.incidentId ?? 0);
    ctx.rails.noteCordon(node.pool);
    if (node.incidentId !== null) {
      await this.store.db.update(incidents).set({ cordonedAt: ctx.at, status: "cordoned" }).where(eq(incidents.id, node.incidentId));
    }
    await this.transition(node, "cordoned", reason, ctx, { cordonedBy: this.actor, ...(node.removal ? {} : { removal: "scale_down" as const }) });
  }

  private async drain(node: NodeRow, pool: PoolConfig | undefined, ctx: PassContext): Promise<void> {
    const deadline = node.nextActionAt ?? ctx.at;
    const progress = await this.scheduler.drain({ id: node.id, gpus: await this.readings(node.id) }, deadline, ctx.at);
    if (!progress.done && ctx.at < deadline) {
      if (node.stateReason !== `draining: ${progress.detail}`) await this.patch(node, { stateReason: `draining: ${progress.detail}` }, ctx.at);
      return;
    }
    const how = progress.done ? progress.detail : `drain deadline passed (${progress.detail})`;
    if (node.incidentId !== null) {
      await this.store.db.update(incidents).set({ drainedAt: ctx.at, status: `drained: ${how}` }).where(eq(incidents.id, node.incidentId));
    }
    if (node.removal === "scale_down") {
      const may = ctx.rails.mayTerminate(node.pool);
      if (!may.allowed) return this.blocked(node, may, ctx);
      return this.transition(node, "terminating", `scale down; ${how}`, ctx, { nextActionAt: null });
    }
    // A drain a human asked for ends with the node held for them.
    if (node.removal === null) return this.transition(node, "held", `drained (${how}); held for the human who asked`, ctx, { nextActionAt: null });
    return this.replaceOrHold(node, pool, ctx, how);
  }

  /** Terminate-first replacement: in one transaction, the new node is requested and the old one starts terminating. */
  private async replaceOrHold(node: NodeRow, pool: PoolConfig | undefined, ctx: PassContext, how: string): Promise<void> {
    if (pool === undefined || !pool.health.auto_replace) {
      await this.setIncidentStatus(node, "held: health.auto_replace is off; waiting for a human");
      return this.transition(node, "held", `drained (${how}); health.auto_replace is off`, ctx);
    }
    // A drained node is already counted in flight; a Lost or never-ready one is not yet.
    const alreadyInFlight = node.state === "cordoned" || node.state === "draining";
    // A replacement a human asked for is theirs to decide: only dry run holds it back.
    const byHuman = node.cordonedBy?.startsWith("human:") === true;
    const may = byHuman
      ? this.config.safety.dry_run
        ? ({ allowed: false, rail: "dry_run", reason: "safety.dry_run is on" } as const)
        : ({ allowed: true } as const)
      : alreadyInFlight
        ? ctx.rails.mayTerminate(node.pool)
        : ctx.rails.mayStartReplacement(node.pool);
    if (!may.allowed) return this.blocked(node, may, ctx);
    const attempts = this.slotAttempts(node, ctx.at);
    const cap = ctx.rails.mayReplace(attempts);
    if (!cap.allowed) {
      await this.setIncidentStatus(node, `held: ${cap.reason}`);
      await this.closeIncident(node, "held", cap.reason, ctx);
      return this.transition(node, "held", cap.reason, ctx);
    }
    const db = this.store.db;
    const [surged] = await db.select().from(nodes).where(and(eq(nodes.replacementOf, node.id), notInArray(nodes.state, [...TERMINAL])));
    if (surged !== undefined) {
      // Surge: the replacement was launched at cordon time; retire this node once it is Ready.
      if (surged.state !== "ready" && surged.state !== "suspect") {
        const waiting = `drained (${how}); waiting for surge replacement ${surged.id} (${surged.state}) to be Ready`;
        if (node.stateReason !== waiting) await this.patch(node, { stateReason: waiting }, ctx.at);
        return;
      }
      await this.transition(node, "terminating", `replaced by ${surged.id} (surge): ${how}`, ctx, { nextActionAt: null });
      return;
    }
    const newId = newNodeId(pool.name);
    const moved = await db.transaction(async (tx) => {
      const updated = await tx
        .update(nodes)
        .set({ state: "terminating", stateReason: `replaced by ${newId}: ${how}`, stateChangedAt: ctx.at, nextActionAt: null, version: sql`${nodes.version} + 1`, updatedAt: ctx.at })
        .where(and(eq(nodes.id, node.id), eq(nodes.version, node.version)))
        .returning({ id: nodes.id });
      if (updated.length === 0) return false;
      await tx.insert(nodes).values(requestedNode(newId, pool, ctx.at, `replacement for ${node.id}`, { replacementOf: node.id, attempts }));
      if (node.incidentId !== null) {
        await tx.update(incidents).set({ replacementNodeId: newId, status: `replacing with ${newId}` }).where(eq(incidents.id, node.incidentId));
      }
      return true;
    });
    if (!moved) return;
    ctx.report.transitions.push({ node: node.id, from: node.state, to: "terminating", reason: `replaced by ${newId}` });
    await this.audit(ctx.at, "replace", node.id, { replacement: newId, how });
    Object.assign(node, { state: "terminating", version: node.version + 1 });
  }

  /** Replacements of the same slot in a row (one that fails within an hour of Ready counts as a retry). */
  private slotAttempts(node: NodeRow, at: number): number {
    const readyFor = node.registeredAt === null ? 0 : at - node.registeredAt;
    return node.replacementOf !== null && readyFor < MIN_HEALTHY_PERIOD_MS ? node.attempts + 1 : 1;
  }

  private async handleLost(node: NodeRow, pool: PoolConfig | undefined, ctx: PassContext): Promise<void> {
    // The agent is back: judge it afresh.
    if (node.lastHeartbeatAt !== null && ctx.at - node.lastHeartbeatAt <= this.config.server.heartbeat_timeout) {
      return this.transition(node, "validating", "heartbeats resumed", ctx);
    }
    // Fencing: replace only once the provider confirms the instance is stopped or gone.
    const instance = await this.getInstance(node);
    if (instance !== undefined && instance.state !== "terminated") {
      const may = ctx.rails.mayStartReplacement(node.pool);
      if (!may.allowed) return this.blocked(node, may, ctx);
      if (node.incidentId === null) {
        const [row] = await this.store.db
          .insert(incidents)
          .values({ nodeId: node.id, pool: node.pool, reason: "lost: no heartbeat", faultAt: node.lastHeartbeatAt ?? ctx.at, openedAt: ctx.at, status: "fencing" })
          .returning({ id: incidents.id });
        await this.patch(node, { incidentId: row!.id, removal: "replace" }, ctx.at);
      }
      await this.terminateCall(node, ctx);
      return;
    }
    if (node.incidentId === null) {
      const [row] = await this.store.db
        .insert(incidents)
        .values({ nodeId: node.id, pool: node.pool, reason: "lost: instance gone", faultAt: node.lastHeartbeatAt ?? ctx.at, openedAt: ctx.at, status: "instance gone" })
        .returning({ id: incidents.id });
      await this.patch(node, { incidentId: row!.id, removal: "replace" }, ctx.at);
    }
    return this.replaceOrHold(node, pool, ctx, "lost, and its instance is gone");
  }

  private async terminateInstance(node: NodeRow, ctx: PassContext): Promise<void> {
    if (node.instanceName === null) {
      if (node.state === "terminating") await this.finishTermination(node, ctx, "never launched");
      return;
    }
    await this.terminateCall(node, ctx);
    const instance = await this.getInstance(node);
    if (instance === undefined || instance.state === "terminated") {
      if (node.state === "terminating") await this.finishTermination(node, ctx, "the provider confirms it is gone");
    }
  }

  /** One terminate per node, ever: the operation key makes a retry after a crash a no-op. */
  private async terminateCall(node: NodeRow, ctx: PassContext): Promise<void> {
    const provider = node.provider ? this.opts.providers.get(node.provider) : undefined;
    if (provider === undefined || node.instanceName === null) return;
    const instanceId = node.instanceName;
    const outcome = await runOperation(
      this.store.db,
      { key: `terminate:${node.id}`, kind: "terminate", nodeId: node.id, pool: node.pool ?? "" },
      ctx.at,
      () => provider.terminate(instanceId),
      // Interrupted before it was recorded: if the instance is already gone, do not ask again.
      async () => {
        const instance = await provider.get(instanceId);
        return instance === undefined || instance.state === "terminated" ? { done: true, result: undefined } : { done: false };
      },
    );
    if (outcome.ok && !outcome.replayed) {
      ctx.report.terminated.push(node.id);
      await this.audit(ctx.at, "terminate", node.id, { instance: instanceId });
    }
    if (!outcome.ok) this.log(`terminate ${node.id}: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`);
  }

  private async finishTermination(node: NodeRow, ctx: PassContext, why: string): Promise<void> {
    if (node.incidentId !== null) {
      await this.store.db.update(incidents).set({ terminatedAt: ctx.at }).where(eq(incidents.id, node.incidentId));
    }
    if (node.instanceName !== null) {
      await this.store.db.update(instances).set({ state: "terminated", updatedAt: ctx.at }).where(eq(instances.providerId, node.instanceName));
    }
    await this.transition(node, "terminated", why, ctx, { nextActionAt: null });
  }

  private async markReplacementReady(node: NodeRow, ctx: PassContext): Promise<void> {
    if (node.replacementOf === null) return;
    const [incident] = await this.store.db.select().from(incidents).where(and(eq(incidents.replacementNodeId, node.id), isNull(incidents.closedAt)));
    if (incident === undefined) return;
    await this.store.db
      .update(incidents)
      .set({ replacementReadyAt: ctx.at, closedAt: ctx.at, outcome: "replaced", status: `replaced by ${node.id}, which is ready` })
      .where(eq(incidents.id, incident.id));
  }

  private async closeIncident(node: NodeRow, outcome: "recovered" | "cancelled" | "held", status: string, ctx: PassContext): Promise<void> {
    if (node.incidentId === null) return;
    await this.store.db.update(incidents).set({ closedAt: ctx.at, outcome, status }).where(eq(incidents.id, node.incidentId));
  }

  private async setIncidentStatus(node: NodeRow, status: string): Promise<void> {
    if (node.incidentId === null) return;
    await this.store.db.update(incidents).set({ status }).where(eq(incidents.id, node.incidentId));
  }

  // ───────────────────────────── scaling ─────────────────────────────

  private async scale(pool: PoolConfig, ctx: PassContext): Promise<void> {
    const db = this.store.db;
    const [row] = await db.select().from(pools).where(eq(pools.name, pool.name));
    if (row?.paused) return;
    // Counts and the utilisation average come from SQL aggregates: a pass stays cheap at 50,000 nodes.
    const counts = await db
      .select({ state: nodes.state, removal: nodes.removal, n: sql<number>`count(*)` })
      .from(nodes)
      .where(eq(nodes.pool, pool.name))
      .groupBy(nodes.state, nodes.removal);
    const countWhere = (pred: (c: (typeof counts)[number]) => boolean) => counts.filter(pred).reduce((sum, c) => sum + Number(c.n), 0);
    // A node with a surge replacement in the pool is counted once with it (replacements are not scaling).
    const [surging] = await db
      .select({ n: sql<number>`count(*)` })
      .from(nodes)
      .where(
        and(
          eq(nodes.pool, pool.name),
          eq(nodes.removal, "replace"),
          sql`${nodes.state} in ('cordoned', 'draining', 'held', 'lost')`,
          sql`exists (select 1 from nodes r where r.replacement_of = ${nodes.id} and r.state not in (${sql.join(OUT_OF_POOL_STATES.map((s) => sql`${s}`), sql`, `)}))`,
        ),
      );
    const total = countWhere((c) => IN_POOL.has(c.state)) - Number(surging?.n ?? 0);
    const readyCount = countWhere((c) => c.state === "ready" || c.state === "suspect");
    const autoscaleDue = ctx.at - (this.lastAutoscaleAt.get(pool.name) ?? Number.NEGATIVE_INFINITY) >= this.config.server.autoscale_interval;
    let utilization: number | undefined;
    if (autoscaleDue && pool.scaling.autoscaler !== undefined) {
      const [avg] = await db
        .select({ util: sql<number | null>`avg(json_extract(${gpus.lastSnapshot}, '$.utilizationPct'))` })
        .from(gpus)
        .innerJoin(nodes, eq(nodes.id, gpus.nodeId))
        .where(and(eq(nodes.pool, pool.name), sql`${nodes.state} in ('ready', 'suspect')`));
      utilization = avg?.util ?? undefined;
    }
    const queue = autoscaleDue && pool.scaling.autoscaler !== undefined && this.opts.queueMetrics ? await this.opts.queueMetrics(pool.name).catch(() => undefined) : undefined;
    const metrics: PoolMetrics = {
      nodes: {
        ready: readyCount,
        provisioning: countWhere((c) => ["requested", "provisioning", "bootstrapping", "validating"].includes(c.state)),
        replacing: countWhere((c) => IN_POOL.has(c.state) && c.removal === "replace"),
        total,
      },
      ...(utilization !== undefined ? { gpuUtilization: utilization } : {}),
      ...(queue !== undefined ? { queue } : {}),
    };
    // Between autoscale ticks only the bounds are enforced (min_nodes at once).
    const scaling = autoscaleDue ? pool.scaling : { ...pool.scaling, autoscaler: undefined };
    if (autoscaleDue) this.lastAutoscaleAt.set(pool.name, ctx.at);
    const decision = decideScale(
      scaling,
      metrics,
      { ...(row?.lastScaleAt ? { lastScaleAt: row.lastScaleAt } : {}), ...(row?.lastScaleDirection ? { lastDirection: row.lastScaleDirection } : {}) },
      ctx.at,
    );
    if (decision.desired === decision.current) return;
    if (this.config.safety.dry_run) {
      // Recorded once per distinct decision, not on every pass.
      const said = `${decision.current}→${decision.desired}`;
      if (this.dryRunSaid.get(pool.name) !== said) {
        this.dryRunSaid.set(pool.name, said);
        await this.audit(ctx.at, "dry_run", `pool:${pool.name}`, { would: "scale", from: decision.current, to: decision.desired, reason: decision.reason });
        this.log(`dry run: pool ${pool.name} would scale ${decision.current} → ${decision.desired}: ${decision.reason}`);
      }
      return;
    }
    if (decision.desired > decision.current) {
      for (let i = decision.current; i < decision.desired; i++) {
        const id = newNodeId(pool.name);
        await db.insert(nodes).values(requestedNode(id, pool, ctx.at, `scale up: ${decision.reason}`));
        ctx.report.transitions.push({ node: id, from: "requested", to: "requested", reason: decision.reason });
      }
    } else {
      // Remove what costs least first: not yet launched, then not yet in service, then ready.
      const order: NodeState[] = ["requested", "provisioning", "bootstrapping", "validating", "ready", "suspect"];
      const members = await db
        .select()
        .from(nodes)
        .where(and(eq(nodes.pool, pool.name), isNull(nodes.removal), sql`${nodes.state} in ('requested', 'provisioning', 'bootstrapping', 'validating', 'ready', 'suspect')`));
      const candidates = members.sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state));
      for (const n of candidates.slice(0, decision.current - decision.desired)) {
        if (n.state === "requested" || n.state === "provisioning" || n.state === "bootstrapping" || n.state === "validating") {
          await this.transition(n, "terminating", `scale down: ${decision.reason}`, ctx, { removal: "scale_down" });
        } else {
          await this.patch(n, { removal: "scale_down", stateReason: `scale down: ${decision.reason}` }, ctx.at);
        }
      }
    }
    await db
      .update(pools)
      .set({ lastScaleAt: ctx.at, lastScaleDirection: decision.desired > decision.current ? "up" : "down", updatedAt: ctx.at })
      .where(eq(pools.name, pool.name));
    await this.audit(ctx.at, "scale", `pool:${pool.name}`, { from: decision.current, to: decision.desired, reason: decision.reason, inputs: decision.inputs });
    this.log(`pool ${pool.name}: ${decision.reason}`);
  }

  // ───────────────────────────── inventory ─────────────────────────────

  /**
   * Adopt or reap: every instance we tagged is matched to a node. An instance with no
   * live node is terminated only after two sweeps in a row saw it so (never on one miss).
   */
  private async sweep(live: readonly LightNode[], ctx: PassContext): Promise<void> {
    const byName = new Map(live.map((n) => [n.id, n]));
    for (const [name, provider] of this.opts.providers) {
      let found: Instance[];
      try {
        found = await provider.list({ [TAG_MANAGED_BY]: "navarch" });
      } catch (err) {
        this.log(`inventory sweep of ${name}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      for (const instance of found) {
        if (instance.state === "terminated") continue;
        const known = byName.get(instance.name);
        if (known !== undefined) {
          this.orphanSweeps.delete(instance.id);
          // Created but not recorded (a crash between "create sent" and "create recorded"): adopt it.
          const [node] = known.instanceName === null ? await this.fullRows([known.id]) : [];
          if (node !== undefined && node.instanceName === null) {
            await this.recordInstance(instance, node.pool ?? "", instance.tags[TAG_OPERATION] ?? null, ctx.at);
            await this.patch(node, { instanceName: instance.id, provider: name }, ctx.at);
            await this.audit(ctx.at, "adopt", node.id, { instance: instance.id });
          }
          continue;
        }
        const seen = (this.orphanSweeps.get(instance.id) ?? 0) + 1;
        this.orphanSweeps.set(instance.id, seen);
        if (seen < 2 || this.config.safety.dry_run) continue;
        await runOperation(this.store.db, { key: `reap:${name}:${instance.id}`, kind: "reap" }, ctx.at, () => provider.terminate(instance.id));
        this.orphanSweeps.delete(instance.id);
        ctx.report.terminated.push(instance.id);
        await this.audit(ctx.at, "reap", instance.id, { provider: name, reason: "no node for it in two sweeps" });
        this.log(`reaped ${name} instance ${instance.id}: no node for it in two sweeps`);
      }
    }
  }

  private async recordInstance(instance: Instance, pool: string, operationKey: string | null, at: number): Promise<void> {
    await this.store.db
      .insert(instances)
      .values({
        name: instance.name,
        provider: instance.provider,
        providerId: instance.id,
        pool,
        instanceType: instance.instanceType,
        region: instance.region,
        state: instance.state,
        address: instance.address ?? null,
        operationKey,
        createdAt: at,
        updatedAt: at,
      })
      .onConflictDoUpdate({ target: instances.name, set: { providerId: instance.id, state: instance.state, address: instance.address ?? null, updatedAt: at } });
  }

  private async getInstance(node: NodeRow): Promise<Instance | undefined> {
    const provider = node.provider ? this.opts.providers.get(node.provider) : undefined;
    if (provider === undefined || node.instanceName === null) return undefined;
    return provider.get(node.instanceName);
  }

  // ───────────────────────────── writes ─────────────────────────────

  /** Compare-and-set state change; a node changed by someone else since it was read is left alone. */
  private async transition(node: NodeRow, to: NodeState, reason: string, ctx: PassContext, extra: Partial<NodeRow> = {}): Promise<void> {
    const updated = await this.store.db
      .update(nodes)
      .set({ ...extra, state: to, stateReason: reason, stateChangedAt: ctx.at, version: sql`${nodes.version} + 1`, updatedAt: ctx.at })
      .where(and(eq(nodes.id, node.id), eq(nodes.version, node.version)))
      .returning({ version: nodes.version });
    if (updated.length === 0) return;
    ctx.report.transitions.push({ node: node.id, from: node.state, to, reason });
    await this.audit(ctx.at, "transition", node.id, { from: node.state, to, reason });
    this.log(`${node.id}: ${node.state} → ${to}: ${reason}`);
    Object.assign(node, extra, { state: to, stateReason: reason, stateChangedAt: ctx.at, version: updated[0]!.version });
  }

  /** A field change that is not a state transition (still version-checked). */
  private async patch(node: NodeRow, fields: Partial<NodeRow>, at: number): Promise<void> {
    const updated = await this.store.db
      .update(nodes)
      .set({ ...fields, version: sql`${nodes.version} + 1`, updatedAt: at })
      .where(and(eq(nodes.id, node.id), eq(nodes.version, node.version)))
      .returning({ version: nodes.version });
    if (updated.length > 0) Object.assign(node, fields, { version: updated[0]!.version });
  }

  private async blocked(node: NodeRow, verdict: RailVerdict, ctx: PassContext): Promise<void> {
    if (verdict.allowed) return;
    const text = `blocked by ${verdict.rail}: ${verdict.reason}`;
    ctx.report.blocked.push({ node: node.id, rail: verdict.rail, reason: verdict.reason });
    if (node.stateReason === text) return; // already said so
    await this.patch(node, { stateReason: text }, ctx.at);
    await this.setIncidentStatus(node, text);
    await this.audit(ctx.at, "blocked", node.id, { rail: verdict.rail, reason: verdict.reason });
  }

  private async audit(at: number, action: string, target: string, details: unknown): Promise<void> {
    await this.store.db.insert(auditLog).values({ at, actor: this.actor, action, target, details });
  }
}

interface PassContext {
  at: number;
  report: PassReport;
  rails: Rails;
}

/** The row of a node the reconciler asks for (scale-up, replacement, surge): launched by the next pass. */
function requestedNode(id: string, pool: PoolConfig, at: number, reason: string, extra: { replacementOf?: string; attempts?: number } = {}): typeof nodes.$inferInsert {
  return {
    id,
    pool: pool.name,
    provider: pool.providers[0]!,
    instanceType: pool.instance_type,
    state: "requested",
    stateReason: reason,
    stateChangedAt: at,
    requestedAt: at,
    updatedAt: at,
    ...extra,
  };
}

/** A fresh node id in a pool: DNS-safe, ≤ 63 characters, and the instance's name at the provider. */
export function newNodeId(pool: string): string {
  return `${pool.slice(0, 50)}-${randomBytes(4).toString("hex")}`;
}
