// The reconcile loop: level-triggered over the rows in libSQL. Each pass reads the
// nodes as they are, judges their health from the events the agents sent, and gives
// every node that can change one step of its lifecycle (steps/, one per state, each
// saying when it next needs a look). Then each pool is scaled, and every minute the
// providers' inventory is swept. A pass never waits for anything outside the store:
// provider calls and metrics queries run beside it (beside.ts), and scheduler mirrors
// queue their writes. Events and operators only wake the loop; deadlines live in the rows;
// every write goes through the one writer (transition.ts), fenced by the leader lease when
// there is one. A crash at any point resumes from the rows.
import { eq, inArray } from "drizzle-orm";
import { readFileSync } from "node:fs";
import { publicKeyFromPrivate } from "../../bootstrap/ssh.ts";
import type { LoopStatus } from "../../schema/admin.ts";
import type { NavarchConfig, PoolConfig } from "../../schema/config.ts";
import { breakers, gpuReadings, nodes, pools } from "../../schema/db.ts";
import type { GpuSnapshot, RecommendedAction } from "../../schema/wire.ts";
import { Bootstrapper } from "./ssh-bootstrap.ts";
import type { HealthPolicy } from "../health/policy-evaluation.ts";
import type { Clock } from "../../schema/time.ts";
import { NO_SCHEDULER, type SchedulerMirror } from "../schedulers/scheduler.ts";
import { layeredSources, queueSource, type MetricsSource, type SourcedMetrics } from "../pools/metrics-source.ts";
import { Dependencies, type Dependency } from "../dependencies/status.ts";
import { InstanceTypeGpus } from "../providers/instance-gpus.ts";
import { ProviderError, type Provider } from "../providers/provider.ts";
import type { BesideCall } from "../safety/operations.ts";
import { loadRails } from "../safety/rails.ts";
import type { Store } from "../store/store.ts";
import { BesideCalls } from "../dependencies/beside.ts";
import { blocked, emptyReport, type Look, type PassReport, type Services, type StepContext } from "./context.ts";
import { HealthJudge } from "./verdicts.ts";
import { Incidents } from "./incidents.ts";
import { Inventory } from "./inventory.ts";
import { LightView, silentNodes, type LightNode } from "./live-nodes.ts";
import { PoolLaunches } from "./launches.ts";
import { RegistrationDeadlines } from "../nodes/registration-deadlines.ts";
import { NO_NODES, Scaler, poolCounts } from "./scale.ts";
import { STEPS } from "./steps/index.ts";
import { declareLost, silent } from "./steps/lost.ts";
import { FencedError, NodeWriter, type Fence, type NodeRow } from "../nodes/writer.ts";

export type { PassReport } from "./context.ts";

export interface ReconcilerOptions {
  store: Store;
  config: NavarchConfig;
  /** Providers by config name (`lambda`, `local`, …). */
  providers: ReadonlyMap<string, Provider>;
  policy: HealthPolicy;
  scheduler?: SchedulerMirror;
  /** Pending and running jobs of a pool (Kubernetes pods labelled navarch.dev/pool); undefined when unknown. */
  queueMetrics?: (pool: string) => Promise<{ pending: number; running: number } | undefined>;
  /** Autoscaling inputs from elsewhere (Prometheus); what it knows replaces the queue above and the agents' utilisation. */
  metricsSource?: MetricsSource;
  now?: Clock;
  log?: (line: string) => void;
  /** Who the audit log names for the reconciler's own actions. */
  actor?: string;
  /** The URL new machines reach this reconciler at: `{{.ControlPlane}}` in setup_commands. */
  publicUrl?: string;
  /** The leader lease: passes run and writes land only while it holds. */
  fence?: Fence;
  /** Where the providers' health is reported (serve's, for /v1/status and the gauge); default: the loop's own. */
  dependencies?: Dependencies;
  /**
   * The calls beside the loop (providerCalls(), serve's: one per process, so that a call under
   * way is seen again, never made twice, when this process leads again); default: the loop's own.
   */
  beside?: BesideCalls;
}

/** An inventory sweep runs this often (and at start). */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * The longest a provider call (a launch, a terminate, a listing) may take beside the loop: each
 * HTTP request of one has its own 30 s timeout, and a call may be a few of them.
 */
const PROVIDER_CALL_DEADLINE_MS = 2 * 60_000;

/** The calls beside a loop, with the providers' deadline; `wake` runs a pass when one settles. */
export function providerCalls(wake: () => void): BesideCalls {
  return new BesideCalls({ wake, deadlineMs: PROVIDER_CALL_DEADLINE_MS });
}

/** The longest the metrics sources may take to answer for a pool (each query has its own, shorter, timeout). */
const METRICS_DEADLINE_MS = 60_000;

export class Reconciler implements Services {
  /** When this loop was made: silences are counted from here at the earliest (heardSince). */
  private readonly startedAt: number;
  readonly store: Store;
  readonly writer: NodeWriter;
  readonly incidents: Incidents;
  readonly launches: PoolLaunches;
  readonly deadlines: RegistrationDeadlines;
  readonly instanceGpus: InstanceTypeGpus;
  readonly providers: ReadonlyMap<string, Provider>;
  readonly scheduler: SchedulerMirror;
  readonly fence: Fence | undefined;
  readonly actor: string;
  /** Provider calls under way beside the loop (beside.ts). */
  readonly beside: BesideCalls;
  private readonly ownsBeside: boolean;
  readonly dependencies: Dependencies;
  private readonly now: Clock;
  private readonly logLine: (line: string) => void;
  private currentConfig: NavarchConfig;
  /** The config file's pools; pools from custom resources come and go around them (updatePools). */
  private readonly filePools: PoolConfig[];
  private crdPoolNames: ReadonlySet<string> = new Set();
  private readonly judge: HealthJudge;
  private readonly scaler = new Scaler();
  /** The scheduler's queue, then the configured metrics source over it. */
  private readonly sources: MetricsSource;
  private readonly inventory = new Inventory();
  private readonly light: LightView;
  /** Public keys derived from the pools' ssh_private_key_path, by path. */
  private readonly publicKeys = new Map<string, string>();
  /** Pools whose nodes outlived their configuration (said once). */
  private readonly unconfiguredSaid = new Set<string>();
  private boot: Bootstrapper | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The loop body, once start() ran. */
  private tick: (() => Promise<void>) | undefined;
  private running: Promise<PassReport> | undefined;
  private wakeRequested = false;
  private stopped = true;
  private lastPassError: string | undefined;
  private passStartedAt: number | undefined;
  private lastPassAt: number | undefined;
  private lastPassFailure: string | undefined;

  constructor(private readonly opts: ReconcilerOptions) {
    this.store = opts.store;
    this.currentConfig = opts.config;
    this.filePools = opts.config.pools;
    this.providers = opts.providers;
    this.scheduler = opts.scheduler ?? NO_SCHEDULER;
    this.fence = opts.fence;
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.logLine = opts.log ?? (() => undefined);
    this.actor = opts.actor ?? "navarch";
    this.writer = new NodeWriter(opts.store.db, { ...(opts.fence ? { fence: opts.fence } : {}), log: this.logLine });
    this.incidents = new Incidents(this.writer, this.actor);
    this.launches = new PoolLaunches(opts.store.db, this.writer, this.logLine);
    this.deadlines = new RegistrationDeadlines(this.logLine);
    this.instanceGpus = new InstanceTypeGpus(opts.providers, this.now);
    this.judge = new HealthJudge(opts.store.db, opts.policy, opts.fence);
    this.ownsBeside = opts.beside === undefined;
    this.beside = opts.beside ?? providerCalls(() => this.wake());
    this.dependencies = opts.dependencies ?? new Dependencies();
    for (const name of this.providers.keys()) {
      const dep = this.providerDependency(name);
      dep.queuedBy(() => this.beside.waitingFor(dep));
    }
    this.light = new LightView(this.logLine);
    this.sources = layeredSources([
      ...(opts.queueMetrics ? [queueSource("scheduler queue", opts.queueMetrics)] : []),
      ...(opts.metricsSource ? [opts.metricsSource] : []),
    ]);
  }

  // ───────────────────────────── running ─────────────────────────────

  /** Runs passes every `intervalMs` and whenever woken, until stop(). */
  start(intervalMs = 1000): void {
    this.stopped = false;
    this.tick = async () => {
      if (this.stopped) return;
      this.timer = undefined;
      try {
        await this.pass();
        this.lastPassError = undefined;
      } catch (err) {
        // Said once per distinct failure, not once a second.
        const text = err instanceof FencedError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
        if (text !== this.lastPassError) this.log(`reconcile pass failed: ${text}`);
        this.lastPassError = text;
      }
      if (!this.stopped) this.timer = setTimeout(() => void this.tick?.(), this.wakeRequested ? 0 : intervalMs);
    };
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ownsBeside) this.beside.stop();
    await this.running?.catch(() => undefined);
    await this.boot?.settled();
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
    if (this.running === undefined) {
      this.passStartedAt = Date.now();
      this.running = this.runPass().then(
        (report) => {
          this.passEnded(undefined);
          return report;
        },
        (err: unknown) => {
          this.passEnded(err instanceof Error ? err.message : String(err));
          throw err;
        },
      );
    }
    return this.running;
  }

  /** When the last pass ended and how, and the one under way (wall clock): GET /v1/status and /readyz. */
  status(): LoopStatus {
    return { lastPassAt: this.lastPassAt ?? null, lastPassError: this.lastPassFailure ?? null, passStartedAt: this.passStartedAt ?? null };
  }

  private passEnded(error: string | undefined): void {
    this.running = undefined;
    this.passStartedAt = undefined;
    this.lastPassAt = Date.now();
    this.lastPassFailure = error;
  }

  // ───────────────────────────── services for the steps ─────────────────────────────

  config(): NavarchConfig {
    return this.currentConfig;
  }

  heardSince(): number {
    return this.startedAt;
  }

  pool(name: string | null): PoolConfig | undefined {
    return name === null ? undefined : this.currentConfig.pools.find((p) => p.name === name);
  }

  log(line: string): void {
    this.logLine(line);
  }

  verdictReason(node: NodeRow): string {
    return this.judge.reason(node);
  }

  faultAt(node: NodeRow, fallback: number): number {
    return this.judge.faultAt(node, fallback);
  }

  faultCause(node: NodeRow): string {
    return this.judge.cause(node);
  }

  recommendedAction(node: NodeRow): RecommendedAction | undefined {
    return this.judge.action(node);
  }

  async readings(nodeId: string): Promise<GpuSnapshot[]> {
    const [row] = await this.store.db.select({ readings: gpuReadings.readings }).from(gpuReadings).where(eq(gpuReadings.nodeId, nodeId));
    return Array.isArray(row?.readings) ? (row.readings as GpuSnapshot[]) : [];
  }

  unclaimedInstances(pool: string): number {
    return this.inventory.unclaimed(pool);
  }

  inventoryKnown(pool: PoolConfig): boolean {
    return pool.providers.every((name) => !this.providers.has(name) || this.inventory.swept(name));
  }

  async sourcedMetrics(pool: PoolConfig): Promise<SourcedMetrics | undefined> {
    const outcome = await this.beside.run(`metrics:${pool.name}`, () => this.sources.poolMetrics(pool), {
      action: "metrics",
      deadlineMs: METRICS_DEADLINE_MS,
    });
    if (!outcome.settled) return undefined;
    return outcome.ok
      ? outcome.value
      : { problems: [`${this.sources.name}: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`] };
  }

  providerCall(name: string, action: string, node?: string): BesideCall {
    return {
      calls: this.beside,
      dependency: this.providerDependency(name),
      // A refusal (no capacity, a bad request) is an answer; an outage, a timeout or refused credentials are not.
      isOutage: (err) => !(err instanceof ProviderError) || err.kind === "transient" || err.kind === "auth",
      action,
      ...(node !== undefined ? { node } : {}),
    };
  }

  providerWaiting(name: string, action: string, since: number): string {
    const dep = this.providerDependency(name);
    const why = dep.current === "down" ? `; ${dep.waiting()}` : "";
    return `${action} call to ${name} under way since ${new Date(since).toISOString()}, beside the loop${why}`;
  }

  private providerDependency(name: string): Dependency {
    return this.dependencies.add(`provider:${name}`, `the ${name} provider's API`, `providers.${name}`);
  }

  bootstrapper(): Bootstrapper {
    this.boot ??= new Bootstrapper({
      store: this.store,
      now: this.now,
      log: this.logLine,
      wake: () => this.wake(),
      ...(this.opts.publicUrl !== undefined ? { publicUrl: this.opts.publicUrl } : {}),
      providerKey: async (provider) => this.providers.get(provider)?.sshPrivateKey?.(),
    });
    return this.boot;
  }

  sshPublicKey(pool: PoolConfig): { sshPublicKey?: string; sshOwnKey?: boolean } {
    if (pool.setup_commands.length === 0) return {};
    // No key of the operator's: the provider's own, which bootstrap then logs in with.
    if (pool.ssh_private_key_path === undefined) return { sshOwnKey: true };
    let key = this.publicKeys.get(pool.ssh_private_key_path);
    if (key === undefined) {
      key = publicKeyFromPrivate(readFileSync(pool.ssh_private_key_path));
      this.publicKeys.set(pool.ssh_private_key_path, key);
    }
    return { sshPublicKey: key };
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
    this.currentConfig = { ...this.currentConfig, pools: [...this.filePools, ...taken] };
    return crdPools.filter((p) => fileNames.has(p.name)).map((p) => p.name);
  }

  /** Writes every configured pool's spec; returns the pools whose spec changed. */
  private async syncPools(at: number): Promise<string[]> {
    const stored = new Map((await this.store.db.select({ name: pools.name, spec: pools.spec }).from(pools)).map((p) => [p.name, JSON.stringify(p.spec)]));
    const changed: string[] = [];
    for (const pool of this.currentConfig.pools) {
      const before = stored.get(pool.name);
      if (before !== undefined && before !== JSON.stringify(pool)) changed.push(pool.name);
      const source = this.crdPoolNames.has(pool.name) ? ("crd" as const) : ("config" as const);
      await this.store.db
        .insert(pools)
        .values({ name: pool.name, source, spec: pool, createdAt: at, updatedAt: at })
        .onConflictDoUpdate({ target: pools.name, set: { spec: pool, source, updatedAt: at } });
    }
    return changed;
  }

  /** Nodes of a pool that is no longer configured are left as they are (never removed by a config edit); said once. */
  private sayUnconfigured(live: readonly { pool: string | null; state: string }[]): void {
    const counts = new Map<string, number>();
    const configured = new Set(this.currentConfig.pools.map((p) => p.name));
    for (const n of live) if (n.pool !== null && !configured.has(n.pool)) counts.set(n.pool, (counts.get(n.pool) ?? 0) + 1);
    for (const [pool, count] of counts) {
      if (this.unconfiguredSaid.has(pool)) continue;
      this.unconfiguredSaid.add(pool);
      this.log(
        `pool ${pool} is no longer configured: its ${count} node(s) are left running, watched for faults and never scaled; scale it to 0 first to remove them`,
      );
    }
    for (const pool of this.unconfiguredSaid) if (!counts.has(pool)) this.unconfiguredSaid.delete(pool);
  }

  // ───────────────────────────── the pass ─────────────────────────────

  private async runPass(): Promise<PassReport> {
    this.wakeRequested = false;
    this.fence?.check();
    // A store that cannot be written (deleted or replaced under us, corrupt, full) gets no
    // half-done pass: nothing acts until it can be written again (or, for some, a restart).
    const health = this.store.health();
    if (!health.ready) throw new Error(`store not ready, no pass: ${health.reason}`);
    const started = performance.now();
    const at = this.now();
    const report = emptyReport(at);
    const db = this.store.db;
    const config = this.currentConfig;
    const changed = await this.syncPools(at);
    await this.deadlines.load(db);
    await this.launches.load(this.deadlines, at);
    for (const pool of changed) await this.launches.lift(pool, at, "its configuration changed");
    // Asked of the providers in the background, so that a machine is launched knowing its GPUs.
    for (const pool of config.pools) for (const provider of pool.providers) this.instanceGpus.gpus(provider, pool.instance_type);
    // Every live node, light (kept up to date from the change log): what the rails, the sweep
    // and the event window need. Full rows only for the nodes this pass can act on (at 10,000
    // mostly quiet nodes, reading every full row was most of a pass).
    let light = await this.light.read(db, at);
    // The inventory first: what a provider runs for us but the rows lack (a database restored
    // from an older copy) is adopted or counted before any pool is sized. Each provider's listing
    // runs beside the loop; a pool is not grown before its providers' first one is swept.
    const swept = await this.inventory.sweep(
      (name) => this.light.get(name),
      (ids) => this.fullRows(ids),
      { at, report, svc: this },
      SWEEP_INTERVAL_MS,
    );
    if (swept) light = await this.light.read(db, at); // with what the sweep adopted
    this.sayUnconfigured(light);
    const events = await this.judge.newEvents(light, (id) => this.light.get(id));
    const timeout = config.server.heartbeat_timeout;
    const silence = await silentNodes(db, at, timeout, this.startedAt);
    const busyAt: number[] = [];
    for (let i = 0; i < light.length; i++) {
      const n = light[i]!;
      if (!n.quiet || events.has(n.id) || silence.has(n.id)) busyAt.push(i);
    }
    const busy = busyAt.map((i) => light[i]!.id);
    const live = await this.fullRows(busy);
    await this.judge.judge(live, events, config, (p) => this.pool(p), at);
    this.judge.settleQuiet(new Set(busy), at, config.server.health_check_interval);

    // The rails count the full rows where there are any: steps update those in place, so a
    // cordon made earlier in this pass counts for the nodes after it.
    const fullById = new Map(live.map((n) => [n.id, n]));
    const railNodes: (NodeRow | LightNode)[] = light.slice();
    for (const i of busyAt) railNodes[i] = fullById.get(light[i]!.id) ?? light[i]!;
    const rails = await loadRails(
      db,
      {
        safety: config.safety,
        actor: this.actor,
        poolNames: config.pools.map((p) => p.name),
        nodes: railNodes,
        silent: silence,
        at,
      },
      (scope, why) => this.tripBreaker(scope, why, at),
    );
    const ctx: StepContext = { at, report, rails, svc: this };
    for (const node of live) {
      this.fence?.check();
      try {
        // A silent node is Lost, unless a partition is suspected: then it is judged as it is
        // (a broken GPU is still quarantined; a cordon needs no agent) and says what holds it.
        const quiet = silent(node, ctx);
        const frozen = quiet ? ctx.rails.mayDeclareLost() : undefined;
        const look = quiet && frozen?.allowed ? await declareLost(node, ctx) : await STEPS[node.state](node, ctx);
        if (frozen !== undefined && !frozen.allowed && node.state !== "lost" && !report.transitions.some((t) => t.node === node.id))
          await blocked(node, frozen, ctx);
        noteLook(report, node.id, look);
      } catch (err) {
        if (err instanceof FencedError) throw err;
        this.log(`node ${node.id}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Scale on the rows as the steps left them (a replacement requested this pass counts).
    const counts = poolCounts(await this.light.read(db, at));
    for (const pool of config.pools) await this.scaler.scale(pool, ctx, counts.get(pool.name) ?? NO_NODES);
    report.durationMs = performance.now() - started;
    return report;
  }

  /**
   * Full rows of these nodes, in the order given (the table's: nodes are stepped in creation
   * order, so a run is reproducible; an IN query returns them in id order, and ids are random).
   * In chunks: SQLite limits the variables of one statement.
   */
  private async fullRows(ids: readonly string[]): Promise<NodeRow[]> {
    const byId = new Map<string, NodeRow>();
    for (let i = 0; i < ids.length; i += 500) {
      for (const row of await this.store.db
        .select()
        .from(nodes)
        .where(inArray(nodes.id, ids.slice(i, i + 500))))
        byId.set(row.id, row);
    }
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  private async tripBreaker(scope: string, why: string, at: number): Promise<void> {
    this.fence?.check();
    await this.store.db
      .insert(breakers)
      .values({ scope, trippedAt: at, reason: why })
      .onConflictDoUpdate({ target: breakers.scope, set: { trippedAt: at, reason: why, resetAt: null, resetBy: null } });
    await this.writer.audit(at, this.actor, "breaker_tripped", scope, { reason: why });
    this.log(`circuit breaker ${scope} tripped: ${why}`);
  }
}

function noteLook(report: PassReport, node: string, look: Look): void {
  if (look === undefined) return;
  report.looks.set(node, look);
  if (report.nextLookAt === undefined || look < report.nextLookAt) report.nextLookAt = look;
}
