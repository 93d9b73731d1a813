// The simulator: the real reconcile loop (reconciler/lifecycle/loop.ts: policy,
// lifecycle, rails, autoscalers, provider and scheduler interfaces) over a real libSQL
// database, with simulated agents, a simulated cloud per provider and a simulated
// scheduler, on virtual time.
//
// It is a discrete-event simulation. Time jumps from one thing to the next: a scripted
// event, a chaos fault, an agent's event reaching the reconciler, an instance finishing
// its boot, a job ending or arriving, a sample, or the next reconcile pass that is due.
// A real reconciler runs a pass every second; here a pass runs only when it can change
// something, which is what makes 10,000 nodes × 24 h tractable:
//   - at once after anything an agent or a human would wake the loop for (an event
//     stored, a registration, a restart, a breaker reset);
//   - `reconcile_interval` after a pass that changed something while a node still has a
//     next step to take (cordoned → draining → … each take one pass);
//   - at the deadlines the rows carry (next_action_at: launch backoff, drain deadline;
//     registration timeouts; a silent agent's heartbeat timeout) and at the times the
//     simulator knows things will change (a drain's jobs have stopped, a transient
//     finding's healthy delay is over);
//   - every health_check_interval while a node is being judged (consecutive failed
//     checks) or waits on something the simulator cannot predict (provider errors);
//   - every autoscale_interval for pools with an autoscaler; every 60 s while the cloud
//     runs instances no live node owns (the inventory sweep adopts or reaps them);
//   - and at least every `idle_pass_interval` (`pass_every` forces a fixed cadence).
// Heartbeats are written in bulk right before each pass (agents.ts), stamped with the
// agents' latest heartbeat time; a silenced agent's last heartbeat is written when it
// goes silent. Nothing reads the wall clock or Math.random: with the same seed two runs
// produce the same report.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import type { PoolConfig, QueueAutoscalerConfig, AutoscalerConfig } from "../../schema/config.ts";
import { auditLog, breakers, incidents, nodes, pools } from "../../schema/db.ts";
import { NODE_STATES, isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { Scenario } from "../../schema/scenario.ts";
import type { ChaosSpec } from "../../schema/scenario/chaos.ts";
import type { Check, Metric } from "../../schema/scenario/checks.ts";
import type { ScenarioEvent } from "../../schema/scenario/events.ts";
import type { Target } from "../../schema/scenario/targets.ts";
import { classifyXid, lookupXid } from "../../schema/xid-catalog.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import { DEFAULT_HEALTHY_DELAY_MS, defaultHealthPolicy, type OpenFinding } from "../health/policy.ts";
import { LightView } from "../lifecycle/live-nodes.ts";
import { Reconciler, type PassReport, type ReconcilerOptions } from "../lifecycle/loop.ts";
import { evaluate } from "../pools/autoscaler.ts";
import { SimulatedCloud } from "../providers/simulated.ts";
import { openStore, type Store } from "../store/store.ts";
import { SimulatedAgents } from "./agents.ts";
import { seedRunningFleet } from "./fleet.ts";
import { knownNodeTypes, nodeType } from "./node-types.ts";
import { Random } from "./random.ts";
import { describeCheck, formatAt, timing, type AssertResult, type PoolSeries, type SimReport, type SimStats, type TimelineEvent } from "./report.ts";
import { SimWorkload } from "./workload.ts";

export interface SimRunOptions {
  /** Overrides the scenario's seed. */
  seed?: number;
  /** Overrides sim.database. */
  database?: "file" | "memory";
  /** Progress lines (stderr); never part of the report. */
  progress?: (line: string) => void;
  /** The reconciler's own log lines, prefixed with the virtual time. */
  reconcilerLog?: (line: string) => void;
  /** Builds the loop (default: the real Reconciler); for experiments with a changed loop. */
  reconcilerFactory?: (options: ReconcilerOptions) => Pick<Reconciler, "pass">;
}

export interface SimResult {
  report: SimReport;
  stats: SimStats;
}

export async function runScenario(scenario: Scenario, options: SimRunOptions = {}): Promise<SimResult> {
  const sim = new Simulation(scenario, options);
  try {
    return await sim.run();
  } finally {
    sim.close();
  }
}

/** A node as the simulator names it: `<pool>-<N>`, N counting the pool's nodes in creation order. */
interface SimNode {
  id: string;
  name: string;
  pool: string;
  ordinal: number;
  rack: number;
  zone: string;
  gpus: number;
  inService: boolean;
}

interface FaultRecord {
  at: number;
  node: string;
  pool: string;
  xid: number;
  gpu: number;
  source: "scripted" | "chaos";
  correlated: boolean;
}

interface Delivery {
  at: number;
  nodeId: string;
  xid: number;
  gpu: number;
  time: number;
  seq: number;
}

const SWEEP_INTERVAL_MS = 60_000;
const NODE_ID = /[a-z0-9][a-z0-9-]*-[0-9a-f]{8}\b/g;

/**
 * Node-time in service per pool, integrated exactly at each change, and the shortfall: the
 * node-time the pool had fewer nodes in service than its min_nodes (capacity lost).
 */
class ServiceClock {
  private readonly pools = new Map<string, { count: number; since: number; ms: number; shortMs: number }>();

  constructor(
    private readonly start: number,
    private readonly minOf: (pool: string) => number,
  ) {}

  change(pool: string, delta: number, at: number): void {
    const p = this.settle(pool, at);
    p.count += delta;
  }

  hours(pool: string | undefined, at: number): number {
    return this.sum(pool, at, (p) => p.ms) / 3_600_000;
  }

  shortfallMinutes(pool: string | undefined, at: number): number {
    return this.sum(pool, at, (p) => p.shortMs) / 60_000;
  }

  private sum(pool: string | undefined, at: number, pick: (p: { ms: number; shortMs: number }) => number): number {
    let total = 0;
    for (const name of this.pools.keys()) if (pool === undefined || name === pool) total += pick(this.settle(name, at));
    return total;
  }

  private settle(pool: string, at: number) {
    const p = this.pools.get(pool) ?? { count: 0, since: this.start, ms: 0, shortMs: 0 };
    const dt = at - p.since;
    p.ms += p.count * dt;
    p.shortMs += Math.max(0, this.minOf(pool) - p.count) * dt;
    p.since = at;
    this.pools.set(pool, p);
    return p;
  }
}

class Simulation {
  private readonly seed: number;
  private readonly start: number;
  private readonly end: number;
  private clock: number;
  private readonly now = () => this.clock;
  private readonly progress: (line: string) => void;

  private dir: string | undefined;
  private store!: Store;
  /** The live nodes, kept from the change log as the loop keeps its own (lifecycle/live-nodes.ts). */
  private readonly view = new LightView();
  private readonly clouds = new Map<string, SimulatedCloud>();
  private readonly warmLaunches = new Map<string, number>();
  private agents!: SimulatedAgents;
  private workload!: SimWorkload;
  private reconciler!: Pick<Reconciler, "pass">;
  private operator!: Operator;

  private readonly rng: { chaos: Random; targets: Random; ids: Random; workload: Random };

  // Nodes by id, and names.
  private readonly simNodes = new Map<string, SimNode>();
  private readonly byName = new Map<string, string>();
  private readonly ordinals = new Map<string, number>();
  private lastRowid = 0;

  // The agenda.
  private eventIndex = 0;
  private readonly deliveries: Delivery[] = [];
  private deliverySeq = 0;
  private chaosNextAt: number | undefined;
  /** Drawn when the fault is scheduled, so a check pass can be planned before it. */
  private chaosNextXid = 79;
  private readonly silenceEnds = new Map<string, number>();
  /** Silent agents: when their last heartbeat was (for the Lost deadline). */
  private readonly lastBeatOfSilent = new Map<string, number>();
  private nextPassAt: number;
  /** Health-check passes planned ahead of non-fatal unhealthy faults (see planCheckBefore). */
  private readonly checkPasses: number[] = [];
  private nextSampleAt: number;
  private lastPassAt = Number.NEGATIVE_INFINITY;
  private lastBeatAt = Number.NEGATIVE_INFINITY;
  private lastAutoscaleAt = Number.NEGATIVE_INFINITY;
  private wakeNow = false;
  /** Whether the loop reads GPU readings (a pool has an autoscaler). */
  private readonly readingsRead: boolean;

  // What the report needs.
  private readonly faults: FaultRecord[] = [];
  private readonly service: ServiceClock;
  private readonly lastFaults = new Map<string, { xid: number; gpu: number }[]>();
  private readonly blocks = new Map<string, string>();
  private readonly events: TimelineEvent[] = [];
  private readonly asserts: AssertResult[] = [];
  private readonly warnings: string[] = [];
  private readonly samples: {
    t: number;
    states: Map<string, number>;
    pools: Map<string, { size: number; ready: number; queue?: number; desired?: number }>;
  }[] = [];
  private nodesAtStart: Record<string, number> = {};
  private passes = 0;
  private restarts = 0;
  private passWallMs = 0;
  private maxPassMs = 0;
  /** Wall time by phase (stats only). */
  private readonly phases: Record<string, number> = {};

  private async timed<T>(phase: string, f: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.phases[phase] = (this.phases[phase] ?? 0) + performance.now() - t0;
    }
  }

  constructor(
    private readonly scenario: Scenario,
    private readonly options: SimRunOptions,
  ) {
    this.seed = options.seed ?? scenario.seed;
    this.start = scenario.start;
    this.end = scenario.start + scenario.duration;
    this.clock = this.start;
    this.nextPassAt = this.start;
    this.service = new ServiceClock(this.start, (pool) => this.pool(pool)?.scaling.min_nodes ?? 0);
    this.nextSampleAt = this.start;
    this.progress = options.progress ?? (() => undefined);
    this.readingsRead = scenario.config.pools.some((p) => p.scaling.autoscaler !== undefined);
    this.rng = {
      chaos: new Random(this.seed, "chaos"),
      targets: new Random(this.seed, "targets"),
      ids: new Random(this.seed, "ids"),
      workload: new Random(this.seed, "workload"),
    };
  }

  close(): void {
    this.store?.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  async run(): Promise<SimResult> {
    const wallStart = performance.now();
    const cpuStart = process.cpuUsage();
    await this.timed("setup", () => this.setUp());
    const s = this.scenario;
    let lastProgress = performance.now();
    for (;;) {
      const t = Math.min(this.nextTime(), this.end);
      this.clock = t;
      await this.step(t);
      if (performance.now() - lastProgress > 5000) {
        lastProgress = performance.now();
        this.progress(
          `sim ${s.name}: ${formatAt(t - this.start)} of ${formatAt(s.duration)} simulated, ${this.passes} passes, ${((performance.now() - wallStart) / 1000).toFixed(1)} s`,
        );
      }
      if (t >= this.end) break;
    }
    const report = await this.timed("report", () => this.buildReport());
    const cpu = process.cpuUsage(cpuStart);
    const stats: SimStats = {
      wallMs: performance.now() - wallStart,
      cpuMs: (cpu.user + cpu.system) / 1000,
      phasesMs: { ...this.phases },
      passes: this.passes,
      passWallMs: this.passWallMs,
      maxPassMs: this.maxPassMs,
      virtualMs: s.duration,
      nodesAtEnd: Object.entries(report.summary.nodes_at_end).reduce((a, [k, n]) => a + (isIn("inPool", k as NodeState) ? n : 0), 0),
    };
    return { report, stats };
  }

  // ───────────────────────────── set-up ─────────────────────────────

  private async setUp(): Promise<void> {
    const s = this.scenario;
    const database = this.options.database ?? s.sim.database;
    if (database === "memory") this.store = await openStore({ url: ":memory:" });
    else {
      this.dir = mkdtempSync(join(tmpdir(), "navarch-sim-"));
      this.store = await openStore({ url: `file:${this.dir}/navarch.db`, scratch: true });
    }
    for (const [name, spec] of Object.entries(s.clouds)) {
      const random = new Random(this.seed, `cloud:${name}`);
      this.clouds.set(
        name,
        new SimulatedCloud({
          name,
          now: this.now,
          launchLatencyMs: spec.launch_latency,
          launchJitterMs: spec.launch_jitter,
          rebootLatencyMs: spec.reboot_latency,
          capacity: spec.capacity,
          ...(spec.quota !== undefined ? { quota: spec.quota } : {}),
          errorRate: spec.error_rate,
          bootstrapFailureRate: spec.bootstrap_failure_rate,
          random: () => random.next(),
          instanceTypes: knownNodeTypes(s.node_types).map((type) => {
            const t = nodeType(type, s.node_types)!;
            return { name: type, gpus: t.gpus, gpuModel: t.gpu_name };
          }),
        }),
      );
    }
    this.agents = new SimulatedAgents(this.store.db, [...this.clouds.values()], this.now, (type) => {
      const t = nodeType(type, s.node_types);
      return { count: t?.gpus ?? 8, name: t?.gpu_name ?? "NVIDIA GPU" };
    });
    // Which faults a reboot clears: each cloud's share, drawn from a seeded stream.
    const reboots = new Random(this.seed, "reboots");
    this.agents.rebootFixes = (nodeId) => {
      const pool = this.pool(this.simNodes.get(nodeId)?.pool);
      const spec = pool ? s.clouds[pool.providers[0]!] : undefined;
      return reboots.next() < (spec?.reboot_fixes ?? 1);
    };
    this.workload = new SimWorkload({
      now: this.now,
      random: this.rng.workload,
      drainGrace: s.workload.drain_grace,
      pools: s.workload.pools,
      onBusy: (id, busy) => this.agents.setBusyGpus(id, busy),
    });
    this.operator = new Operator(this.store.db, this.now);
    if (s.fleet.initial === "running") {
      const seeded = await seedRunningFleet(this.store, s, this.clouds, this.agents, this.rng.ids, this.start);
      for (const c of this.clouds.values()) this.warmLaunches.set(c.name, c.liveCount());
      await this.discoverNodes();
      for (const n of seeded) {
        const node = this.simNodes.get(n.id)!;
        node.inService = true;
        this.service.change(node.pool, 1, this.start);
        this.workload.addNode(n.id, n.pool, n.gpus);
      }
    }
    this.reconciler = this.newReconciler();
    this.nodesAtStart = await this.stateCounts();
    this.lastBeatAt = this.start;
    for (const e of s.events) if (e.kind === "fault") this.planCheckBefore(this.start + e.at, e.xid);
    this.scheduleChaos(this.start);
  }

  private newReconciler(): Pick<Reconciler, "pass"> {
    const log = this.options.reconcilerLog;
    const make = this.options.reconcilerFactory ?? ((o: ReconcilerOptions) => new Reconciler(o));
    // The workload's queue goes to the queue autoscaler where the loop accepts queue metrics
    // (`queueMetrics`); a loop without the option ignores it.
    const workload = this.workload;
    const options: ReconcilerOptions & { queueMetrics?: (pool: string) => Promise<{ pending: number; running: number } | undefined> } = {
      store: this.store,
      config: this.scenario.config,
      providers: this.clouds,
      policy: defaultHealthPolicy(),
      scheduler: workload,
      now: this.now,
      queueMetrics: async (pool) => (workload.pools().includes(pool) ? workload.metrics(pool) : undefined),
      ...(log ? { log: (line: string) => log(`[${formatAt(this.clock - this.start)}] ${this.rename(line)}`) } : {}),
    };
    return make(options);
  }

  // ───────────────────────────── the agenda ─────────────────────────────

  private nextTime(): number {
    const s = this.scenario;
    let t = this.end;
    const consider = (x: number | undefined) => {
      if (x !== undefined && x < t) t = Math.max(x, this.clock);
    };
    consider(s.events[this.eventIndex] ? this.start + s.events[this.eventIndex]!.at : undefined);
    consider(this.deliveries[0]?.at);
    consider(this.chaosNextAt);
    consider(this.workload.nextEventAt());
    for (const c of this.clouds.values()) consider(c.nextStartAt());
    for (const at of this.silenceEnds.values()) consider(at);
    consider(this.nextPassAt);
    consider(this.checkPasses[0]);
    consider(this.nextSampleAt);
    return t;
  }

  private async step(t: number): Promise<void> {
    const s = this.scenario;
    this.workload.advance(t);

    // Machines that finished booting: their agents register (the loop would be woken).
    const started = await this.timed("agents", () => this.agents.startNew());
    if (started.length > 0) {
      await this.discoverNodes();
      this.wakeNow = true;
    }
    for (const [id, at] of this.silenceEnds) {
      if (at > t) continue;
      this.silenceEnds.delete(id);
      this.lastBeatOfSilent.delete(id);
      this.agents.setSilent(id, false);
      await this.agents.heartbeatOne(id);
      this.wakeNow = true;
    }

    // Scripted events at t (asserts wait until after the pass).
    const asserts: (ScenarioEvent & { kind: "assert" })[] = [];
    while (this.eventIndex < s.events.length && this.start + s.events[this.eventIndex]!.at <= t) {
      const e = s.events[this.eventIndex++]!;
      if (e.kind === "assert") asserts.push(e);
      else await this.apply(e, t);
    }
    while (this.chaosNextAt !== undefined && this.chaosNextAt <= t) await this.chaosFault(t);
    while (this.deliveries.length > 0 && this.deliveries[0]!.at <= t) {
      const d = this.deliveries.shift()!;
      if (!this.agents.has(d.nodeId)) continue;
      await this.agents.xid(d.nodeId, d.xid, d.gpu, d.time);
      this.wakeNow = true;
    }

    let planned = false;
    while (this.checkPasses.length > 0 && this.checkPasses[0]! <= t) {
      this.checkPasses.shift();
      planned = true;
    }
    const every = s.sim.pass_every;
    if (this.wakeNow || planned || this.nextPassAt <= t || (every > 0 && t - this.lastPassAt >= every)) await this.pass(t);

    for (const e of asserts) await this.check(e, t);
    while (this.nextSampleAt <= t) {
      await this.timed("samples", () => this.sample(this.nextSampleAt));
      this.nextSampleAt += s.sim.sample_every;
    }
  }

  // ───────────────────────────── passes ─────────────────────────────

  private async pass(t: number): Promise<void> {
    const s = this.scenario;
    this.wakeNow = false;
    // GPU readings are read by the loop only to average utilisation for autoscalers (the
    // simulated scheduler knows what runs where): without one they need not be written.
    if (this.readingsRead) await this.timed("readings", () => this.agents.flushReadings());
    else this.agents.discardReadings();
    // The agents' latest heartbeat, on their interval grid since the start. The loop only asks
    // whether it is older than heartbeat_timeout, so it is rewritten only when it would be
    // (a silenced agent's is written when it goes silent): at 100,000 nodes each rewrite is
    // about 250 ms, the largest part of a simulated day.
    const { heartbeat_interval: interval, heartbeat_timeout: timeout } = s.config.server;
    const beat = this.start + Math.floor((t - this.start) / interval) * interval;
    if (beat > this.lastBeatAt && t - this.lastBeatAt > timeout) {
      await this.timed("heartbeats", () => this.agents.heartbeatAll(beat));
      this.lastBeatAt = beat;
    }
    const report = await this.timed("pass", () => this.reconciler.pass());
    this.passes++;
    this.passWallMs += report.durationMs;
    this.maxPassMs = Math.max(this.maxPassMs, report.durationMs);
    if (t - this.lastAutoscaleAt >= s.config.server.autoscale_interval) this.lastAutoscaleAt = t;
    this.lastPassAt = t;
    await this.timed("after-pass", () => this.afterPass(report, t));
  }

  private async afterPass(report: PassReport, t: number): Promise<void> {
    await this.discoverNodes();
    for (const tr of report.transitions) {
      const node = this.simNodes.get(tr.node);
      if (node === undefined) continue;
      const inService = tr.to === "ready" || tr.to === "suspect";
      if (inService && !node.inService && this.agents.has(node.id)) this.workload.addNode(node.id, node.pool, node.gpus);
      if (inService !== node.inService) this.service.change(node.pool, inService ? 1 : -1, t);
      node.inService = inService;
      if (!inService && tr.to !== "cordoned" && tr.to !== "draining") this.workload.removeNode(node.id);
      if (tr.to === "terminated") this.agents.remove(node.id);
    }
    for (const id of report.terminated) {
      const nodeId = this.simNodes.has(id) ? id : this.agents.nodeOfInstance(id);
      if (nodeId !== undefined) {
        this.agents.remove(nodeId);
        this.workload.removeNode(nodeId);
      }
    }
    for (const b of report.blocked) {
      const key = `${b.node}|${b.rail}`;
      if (!this.blocks.has(key)) this.blocks.set(key, b.rail);
    }
    this.nextPassAt = await this.wakeAfter(report, t);
  }

  /**
   * When the next pass is due (see the header). The lifecycle says when each node next
   * needs a look (the steps' own answers, report.looks); the simulator adds what only it
   * knows: when a drain's jobs stop, when a silent agent's node goes Lost, when a Lost
   * node's agent is back, and when findings are due a health check.
   */
  private async wakeAfter(report: PassReport, t: number): Promise<number> {
    const s = this.scenario;
    const { server } = s.config;
    const ri = s.sim.reconcile_interval;
    const changed = report.transitions.length + report.launched.length + report.terminated.length > 0;
    let wake = Number.POSITIVE_INFINITY;
    const tick = this.gridAfter(t);
    const at = (x: number, past = t + ri) => {
      const when = x > t ? x : past; // a look at or before now: the next pass
      if (when < wake) wake = when;
    };
    const soon = () => at(t + ri);
    for (const look of report.looks.values()) at(look);
    // Nodes a scale-up asked for are launched by the next pass (a real loop's next second).
    if (report.requested.length > 0) soon();
    // A node blocked by a capacity rail waits on other nodes' progress: look again when there was some.
    for (const b of report.blocked) if (changed && (b.rail === "in_flight_pool" || b.rail === "in_flight_fleet" || b.rail === "unhealthy_budget")) soon();
    const blocked = new Set(report.blocked.map((b) => b.node));
    // Only nodes that are not quiet: the light view names them without a scan of every row.
    const notQuiet = (await this.view.read(this.store.db, t)).filter((n) => !n.quiet).map((n) => n.id);
    const rows = await this.store.client.execute({
      sql: `SELECT id, state, verdict, findings, removal, consecutive_failures
       FROM nodes
       WHERE id IN (SELECT value FROM json_each(?)) AND state NOT IN ('terminated', 'failed', 'held')
         AND NOT (state = 'ready' AND verdict = 'healthy' AND consecutive_failures = 0 AND removal IS NULL AND findings = '[]')`,
      args: [JSON.stringify(notQuiet)],
    });
    for (const r of rows.rows) {
      const id = String(r.id);
      const state = String(r.state);
      if (state === "lost" && this.agents.has(id) && !this.agents.isSilent(id)) soon();
      if (state === "draining") {
        const done = this.workload.drainDoneAt(id);
        if (done !== undefined) at(done);
      }
      if (blocked.has(id)) continue;
      let any = false;
      for (const f of JSON.parse(String(r.findings)) as OpenFinding[]) {
        any = true;
        // Closed findings and counted failures happen at health checks: the first one due.
        if (f.result === "unhealthy") at(tick, tick);
        else if (f.persistence === "transient") {
          if (f.recoveredAt !== undefined) at(this.gridAfter(f.recoveredAt + DEFAULT_HEALTHY_DELAY_MS - 1), tick);
          else if (f.edge) at(this.gridAfter(f.lastFailedAt + DEFAULT_HEALTHY_DELAY_MS - 1), tick);
        }
      }
      if (Number(r.consecutive_failures) > 0 || (!any && (state === "ready" || state === "suspect"))) at(tick, tick);
    }
    // A silent agent's node goes Lost once its heartbeat is older than the timeout.
    for (const beat of this.lastBeatOfSilent.values()) if (beat + server.heartbeat_timeout + 1 > t) at(beat + server.heartbeat_timeout + 1);
    if (s.config.pools.some((p) => p.scaling.autoscaler !== undefined)) at(this.lastAutoscaleAt + server.autoscale_interval);
    if (await this.cloudsDisagree()) at(t + SWEEP_INTERVAL_MS);
    if (s.sim.idle_pass_interval > 0) at(t + s.sim.idle_pass_interval);
    if (s.sim.pass_every > 0) at(t + s.sim.pass_every);
    return wake;
  }

  /**
   * The first health-check time after `t`. A real loop judges every node once per
   * health_check_interval; the simulator keeps the passes that only wait for health checks
   * on one grid (start + k × interval), so a node's checks keep the real loop's rhythm.
   */
  private gridAfter(t: number): number {
    const hci = this.scenario.config.server.health_check_interval;
    return this.start + (Math.floor((t - this.start) / hci) + 1) * hci;
  }

  private gridAtOrBefore(t: number): number {
    const hci = this.scenario.config.server.health_check_interval;
    return this.start + Math.floor((t - this.start) / hci) * hci;
  }

  /**
   * A fault that is unhealthy but not fatal is counted over consecutive health checks
   * (unhealthy_threshold). In a real loop the node's last check was at most one interval
   * before the fault, so the event itself is judged between checks and the count starts
   * at the next one. An idle stretch of the simulator must not make the event's own pass a
   * check: a pass runs at the last grid point before the fault.
   */
  private planCheckBefore(faultAt: number, xid: number): void {
    const verdict = classifyXid(lookupXid(xid));
    if (verdict.severity !== "unhealthy" || verdict.persistence === "fatal") return;
    const g = this.gridAtOrBefore(faultAt);
    if (g <= this.lastPassAt || g < this.clock) return;
    const i = this.checkPasses.findIndex((x) => x >= g);
    if (this.checkPasses[i] === g) return;
    if (i < 0) this.checkPasses.push(g);
    else this.checkPasses.splice(i, 0, g);
  }

  /** The clouds run instances that no live node owns (a sweep will adopt or reap them). */
  private async cloudsDisagree(): Promise<boolean> {
    const live = [...this.clouds.values()].reduce((a, c) => a + c.liveCount(), 0);
    let owned = 0;
    for (const n of await this.view.read(this.store.db, this.clock)) if (n.instanceName !== null) owned++;
    return owned !== live;
  }

  // ───────────────────────────── nodes and names ─────────────────────────────

  /** Names the rows created since the last look, in creation order (rowid). */
  private async discoverNodes(): Promise<void> {
    const rows = await this.store.client.execute({
      sql: "SELECT rowid AS r, id, pool, instance_type FROM nodes WHERE rowid > ? ORDER BY rowid",
      args: [this.lastRowid],
    });
    const perRack = this.scenario.fleet.nodes_per_rack;
    for (const row of rows.rows) {
      this.lastRowid = Number(row.r);
      const id = String(row.id);
      if (this.simNodes.has(id)) continue;
      const pool = row.pool === null ? "-" : String(row.pool);
      const ordinal = this.ordinals.get(pool) ?? 0;
      this.ordinals.set(pool, ordinal + 1);
      const poolConfig = this.pool(pool);
      const zones = poolConfig ? (poolConfig.zones.length > 0 ? poolConfig.zones : [poolConfig.region]) : ["-"];
      const rack = Math.floor(ordinal / perRack);
      const type = row.instance_type === null ? poolConfig?.instance_type : String(row.instance_type);
      const node: SimNode = {
        id,
        name: `${pool}-${ordinal}`,
        pool,
        ordinal,
        rack,
        zone: zones[rack % zones.length]!,
        gpus: (type ? nodeType(type, this.scenario.node_types)?.gpus : undefined) ?? 8,
        inService: false,
      };
      this.simNodes.set(id, node);
      this.byName.set(node.name, id);
    }
  }

  private pool(name: string | undefined): PoolConfig | undefined {
    return name === undefined ? undefined : this.scenario.config.pools.find((p) => p.name === name);
  }

  private nameOf(id: string): string {
    return this.simNodes.get(id)?.name ?? id;
  }

  /** Replaces raw node ids (random per run) by the simulator's names. */
  private rename(text: string): string {
    return text.replace(NODE_ID, (id) => this.simNodes.get(id)?.name ?? id);
  }

  /** Nodes a target picks among `candidates` (in creation order). */
  private resolve(target: Target, candidates: SimNode[]): SimNode[] {
    if (target.pick.kind === "node") {
      const id = this.byName.get(target.pick.name);
      const node = id === undefined ? undefined : this.simNodes.get(id);
      return node !== undefined && candidates.includes(node) ? [node] : [];
    }
    const matching = candidates.filter(
      (n) =>
        (target.pool === undefined || n.pool === target.pool) &&
        (target.rack === undefined || n.rack === target.rack) &&
        (target.zone === undefined || n.zone === target.zone),
    );
    switch (target.pick.kind) {
      case "index": {
        const n = matching[target.pick.index];
        return n === undefined ? [] : [n];
      }
      case "random":
        return this.rng.targets.sample(matching, target.pick.count).sort((a, b) => a.ordinal - b.ordinal);
      case "all":
        return matching;
    }
  }

  /** Nodes with a live agent, in creation order; `inService` only for Ready/Suspect ones. */
  private candidates(inService: boolean): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.simNodes.values()) if (this.agents.has(n.id) && (!inService || n.inService)) out.push(n);
    return out.sort((a, b) => (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : a.ordinal - b.ordinal));
  }

  // ───────────────────────────── events ─────────────────────────────

  private async apply(e: ScenarioEvent, t: number): Promise<void> {
    const at = t - this.start;
    const note = e.note ? ` (${e.note})` : "";
    const miss = (what: string): void => {
      this.warnings.push(`events[${e.index}] (${e.kind} at ${formatAt(e.at)}): ${what}`);
    };
    switch (e.kind) {
      case "fault": {
        const targets = this.resolve(e.target, this.candidates(true));
        if (targets.length === 0) return miss("no node in service matches the target");
        for (const n of targets) this.fault(n, e.xid, e.gpu === "random" ? this.rng.targets.int(n.gpus) : Math.min(e.gpu, n.gpus - 1), t, "scripted", false);
        return;
      }
      case "recover": {
        const targets = this.resolve(e.target, this.candidates(false));
        if (targets.length === 0) return miss("no node with a running agent matches the target");
        for (const n of targets) {
          this.workload.unblock(n.id);
          if (e.by === "reboot") await this.agents.reboot(n.id);
          else
            for (const f of this.lastFaults.get(n.id) ?? [])
              await this.agents.event(n.id, { check: "xid", code: String(f.xid), severity: "healthy", action: "none", message: `Xid ${f.xid} cleared` }, f.gpu);
          this.lastFaults.delete(n.id);
          this.events.push({ at, kind: "recover", text: `${n.name} recovered by ${e.by}${note}`, pool: n.pool, node: n.name });
        }
        this.wakeNow = true;
        return;
      }
      case "silence":
      case "vanish": {
        const targets = this.resolve(e.target, this.candidates(false));
        if (targets.length === 0) return miss("no node with a running agent matches the target");
        const beat =
          this.start + Math.floor((t - this.start) / this.scenario.config.server.heartbeat_interval) * this.scenario.config.server.heartbeat_interval;
        for (const n of targets) {
          await this.store.db.update(nodes).set({ lastHeartbeatAt: beat }).where(sql`${nodes.id} = ${n.id} AND ${nodes.lastHeartbeatAt} < ${beat}`);
          this.agents.setSilent(n.id, true);
          this.lastBeatOfSilent.set(n.id, beat);
          if (e.kind === "vanish") {
            const instance = this.agents.instanceOf(n.id);
            for (const c of this.clouds.values()) if (instance !== undefined) c.vanish(instance);
            this.agents.remove(n.id);
            this.workload.removeNode(n.id);
            this.events.push({ at, kind: "vanish", text: `${n.name}: its machine vanished at the provider${note}`, pool: n.pool, node: n.name });
          } else {
            if (e.for !== undefined) this.silenceEnds.set(n.id, t + e.for);
            this.events.push({
              at,
              kind: "silence",
              text: `${n.name}: agent silent${e.for !== undefined ? ` for ${formatAt(e.for)}` : ""}${note}`,
              pool: n.pool,
              node: n.name,
            });
          }
        }
        this.nextPassAt = Math.min(this.nextPassAt, beat + this.scenario.config.server.heartbeat_timeout + 1);
        return;
      }
      case "jobs": {
        const gpus =
          e.gpus ?? this.scenario.workload.pools[e.pool]?.gpus_per_job ?? nodeType(this.pool(e.pool)?.instance_type ?? "", this.scenario.node_types)?.gpus ?? 8;
        this.workload.submit(e.pool, e.count, e.duration, gpus);
        this.events.push({
          at,
          kind: "jobs",
          text: `${e.count} job(s) of ${gpus} GPU(s) for ${formatAt(e.duration)} queued in ${e.pool}${note}`,
          pool: e.pool,
        });
        return;
      }
      case "outage": {
        const cloud = this.clouds.get(e.provider);
        if (cloud === undefined) return miss(`no cloud ${e.provider}`);
        for (const call of e.calls) {
          cloud.inject({
            on: call,
            kind: e.error,
            times: Number.POSITIVE_INFINITY,
            until: t + e.for,
            ...(e.instance_type ? { instanceType: e.instance_type } : {}),
            ...(e.region ? { region: e.region } : {}),
          });
        }
        const scope = [e.instance_type, e.region].filter((x) => x !== undefined).join(" in ");
        this.events.push({
          at,
          kind: "outage",
          text: `${e.provider}: ${e.error} errors on ${e.calls.join(", ")} for ${formatAt(e.for)}${scope ? ` (${scope})` : ""}${note}`,
        });
        this.nextPassAt = Math.min(this.nextPassAt, t + e.for);
        return;
      }
      case "restart":
        this.reconciler = this.newReconciler();
        this.restarts++;
        this.lastAutoscaleAt = Number.NEGATIVE_INFINITY;
        this.events.push({ at, kind: "restart", text: `reconciler restarted: a new process over the same database, its memory lost${note}` });
        this.wakeNow = true;
        return;
      case "breaker_reset":
        try {
          await this.operator.resetBreaker(e.scope, "sim");
          this.events.push({ at, kind: "breaker_reset", text: `breaker ${e.scope} reset by a human${note}` });
        } catch (err) {
          if (err instanceof OperatorError) return miss(err.message);
          throw err;
        }
        this.wakeNow = true;
        return;
      case "pool_resume":
        try {
          await this.operator.resumePool(e.pool, "sim");
          this.events.push({ at, kind: "pool_resume", text: `pool ${e.pool} resumed by a human${note}`, pool: e.pool });
        } catch (err) {
          if (err instanceof OperatorError) return miss(err.message);
          throw err;
        }
        this.wakeNow = true;
        return;
      case "assert":
        return;
    }
  }

  /** A fault happens on a node now; its agent's event reaches the reconciler after event_latency. */
  private fault(n: SimNode, xid: number, gpu: number, t: number, source: "scripted" | "chaos", correlated: boolean): void {
    this.faults.push({ at: t - this.start, node: n.name, pool: n.pool, xid, gpu, source, correlated });
    this.lastFaults.set(n.id, [...(this.lastFaults.get(n.id) ?? []), { xid, gpu }]);
    const entry = lookupXid(xid);
    // The job on it dies; a GPU the driver reports unhealthy takes no new work (the device plugin's view).
    if (classifyXid(entry).severity === "unhealthy") this.workload.block(n.id);
    this.workload.kill(n.id);
    this.events.push({
      at: t - this.start,
      kind: "fault",
      text: `Xid ${xid} (${entry.name}) on ${n.name} GPU ${gpu}${source === "chaos" ? (correlated ? " (chaos, correlated)" : " (chaos)") : ""}`,
      pool: n.pool,
      node: n.name,
    });
    const delivery: Delivery = { at: t + this.scenario.sim.event_latency, nodeId: n.id, xid, gpu, time: t, seq: this.deliverySeq++ };
    const i = this.deliveries.findIndex((d) => d.at > delivery.at);
    if (i < 0) this.deliveries.push(delivery);
    else this.deliveries.splice(i, 0, delivery);
  }

  // ───────────────────────────── chaos ─────────────────────────────

  private chaosPools(chaos: ChaosSpec): (n: SimNode) => boolean {
    return chaos.pools.length === 0 ? () => true : (n) => chaos.pools.includes(n.pool);
  }

  private scheduleChaos(from: number): void {
    const chaos = this.scenario.chaos;
    if (chaos === undefined || chaos.failure_rate <= 0) {
      this.chaosNextAt = undefined;
      return;
    }
    const windowStart = this.start + chaos.from;
    const windowEnd = this.start + (chaos.until ?? this.scenario.duration);
    const inPools = this.chaosPools(chaos);
    let count = 0;
    for (const n of this.simNodes.values()) if (n.inService && inPools(n)) count++;
    const begin = Math.max(from, windowStart);
    if (count === 0) {
      // Nothing to break yet: look again in a while.
      const next = begin + 15 * 60_000;
      this.chaosNextAt = next < windowEnd ? next : undefined;
      return;
    }
    const meanMs = (1000 * 3_600_000) / (chaos.failure_rate * count);
    const next = begin + Math.max(1, Math.round(this.rng.chaos.exponential(meanMs)));
    this.chaosNextAt = next < windowEnd ? next : undefined;
    this.chaosNextXid = this.rng.chaos.weighted(chaos.xids) ?? 79;
    if (this.chaosNextAt !== undefined) this.planCheckBefore(this.chaosNextAt, this.chaosNextXid);
  }

  private async chaosFault(t: number): Promise<void> {
    const chaos = this.scenario.chaos!;
    const inPools = this.chaosPools(chaos);
    const pool = this.candidates(true).filter(inPools);
    const first = this.rng.chaos.pick(pool);
    if (first !== undefined) {
      const xid = this.chaosNextXid;
      const hit = [first];
      const c = chaos.correlation;
      if (c !== undefined && this.rng.chaos.next() < c.probability) {
        const near = pool.filter((n) => n !== first && n.pool === first.pool && (c.scope === "rack" ? n.rack === first.rack : n.zone === first.zone));
        hit.push(...this.rng.chaos.sample(near, c.nodes - 1));
      }
      for (const n of hit) this.fault(n, xid, this.rng.chaos.int(n.gpus), t, "chaos", hit.length > 1);
    }
    this.scheduleChaos(t);
  }

  // ───────────────────────────── checks ─────────────────────────────

  private async check(e: ScenarioEvent & { kind: "assert" }, t: number): Promise<void> {
    for (const c of e.checks) {
      const actual = await this.measure(c.metric);
      const ok = c.op === "equals" ? actual === c.value : c.op === "at_least" ? actual >= c.value : actual <= c.value;
      const result: AssertResult = { at: t - this.start, event: e.index, check: describeCheck(c), actual, ok, ...(c.why ? { why: c.why } : {}) };
      this.asserts.push(result);
      this.events.push({ at: t - this.start, kind: "assert", text: `${ok ? "ok" : "FAILED"}: ${result.check} (actual ${actual})${c.why ? `: ${c.why}` : ""}` });
    }
  }

  async measure(m: Metric): Promise<number> {
    const db = this.store.db;
    switch (m.kind) {
      case "nodes": {
        const rows = await db
          .select({ state: nodes.state, pool: nodes.pool, provider: nodes.provider, n: sql<number>`count(*)` })
          .from(nodes)
          .groupBy(nodes.state, nodes.pool, nodes.provider);
        return rows
          .filter(
            (r) =>
              (m.pool === undefined || r.pool === m.pool) &&
              (m.provider === undefined || r.provider === m.provider) &&
              (m.states === undefined || m.states.includes(r.state)),
          )
          .reduce((a, r) => a + Number(r.n), 0);
      }
      case "incidents": {
        const rows = await db.select({ pool: incidents.pool, outcome: incidents.outcome, closedAt: incidents.closedAt }).from(incidents);
        return rows.filter(
          (r) =>
            (m.pool === undefined || r.pool === m.pool) && (m.outcome === undefined || (m.outcome === "open" ? r.closedAt === null : r.outcome === m.outcome)),
        ).length;
      }
      case "faults":
        return this.faults.filter((f) => (m.pool === undefined || f.pool === m.pool) && (m.xid === undefined || f.xid === m.xid)).length;
      case "breaker": {
        const rows = await db.select({ scope: breakers.scope, resetAt: breakers.resetAt }).from(breakers);
        return rows.filter((r) => r.resetAt === null && (m.scope === undefined || r.scope === m.scope)).length;
      }
      case "pools_held": {
        const rows = await db.select({ name: pools.name, hold: pools.registrationHold }).from(pools);
        return rows.filter((r) => r.hold !== null && (m.pool === undefined || r.name === m.pool)).length;
      }
      case "blocked":
        return [...this.blocks.values()].filter((rail) => m.rail === undefined || rail === m.rail).length;
      case "scale_events":
        return (await this.scaleDecisions()).filter(
          (d) => (m.pool === undefined || d.pool === m.pool) && (m.direction === undefined || d.direction === m.direction),
        ).length;
      case "leaked_instances":
        return this.leakedInstances();
      case "launches":
        return [...this.clouds.values()].filter((c) => m.provider === undefined || c.name === m.provider).reduce((a, c) => a + this.launched(c), 0);
      case "queue": {
        const q = this.workload.metrics(m.pool);
        return m.jobs === "pending" ? q.pending : m.jobs === "running" ? q.running : q.pending + q.running;
      }
      case "jobs":
        return this.workload.counts[m.outcome];
      case "service_hours":
        return Math.floor(this.service.hours(m.pool, this.clock));
      case "shortfall_minutes":
        return Math.round(this.service.shortfallMinutes(m.pool, this.clock));
      case "reboots":
        return [...this.clouds.values()].filter((c) => m.provider === undefined || c.name === m.provider).reduce((a, c) => a + c.calls.reboot, 0);
      case "cordon_delay": {
        const rows = await db.select({ pool: incidents.pool, faultAt: incidents.faultAt, cordonedAt: incidents.cordonedAt }).from(incidents);
        const delays = rows
          .filter((r) => r.cordonedAt !== null && (m.pool === undefined || r.pool === m.pool))
          .map((r) => (r.cordonedAt! - r.faultAt) / 1000)
          .sort((a, b) => a - b);
        if (delays.length === 0) return 0;
        return Math.ceil(m.stat === "max" ? delays.at(-1)! : delays[Math.floor((delays.length - 1) / 2)]!);
      }
    }
  }

  private launched(cloud: SimulatedCloud): number {
    return cloud.snapshot().records.length - (this.warmLaunches.get(cloud.name) ?? 0);
  }

  /** Instances a provider runs that no live node owns. */
  private async leakedInstances(): Promise<number> {
    const owned = new Set(
      (await this.store.client.execute("SELECT instance_name FROM nodes WHERE instance_name IS NOT NULL AND state NOT IN ('terminated', 'failed')")).rows.map(
        (r) => String(r.instance_name),
      ),
    );
    let leaked = 0;
    for (const c of this.clouds.values()) for (const i of c.running()) if (!owned.has(i.id)) leaked++;
    return leaked;
  }

  private async scaleDecisions(): Promise<{ at: number; pool: string; direction: "up" | "down"; from: number; to: number; reason: string }[]> {
    const rows = await this.store.db.select().from(auditLog).where(sql`${auditLog.action} = 'scale'`).orderBy(auditLog.id);
    return rows.map((r) => {
      const d = (r.details ?? {}) as { from?: number; to?: number; reason?: string };
      const from = Number(d.from ?? 0);
      const to = Number(d.to ?? 0);
      return {
        at: r.at - this.start,
        pool: r.target.replace(/^pool:/, ""),
        direction: to > from ? ("up" as const) : ("down" as const),
        from,
        to,
        reason: String(d.reason ?? ""),
      };
    });
  }

  // ───────────────────────────── samples and the report ─────────────────────────────

  private async stateCounts(): Promise<Record<string, number>> {
    const rows = await this.store.client.execute("SELECT state, count(*) AS n FROM nodes GROUP BY state");
    const out: Record<string, number> = {};
    for (const s of NODE_STATES) out[s] = 0;
    for (const r of rows.rows) out[String(r.state)] = Number(r.n);
    return out;
  }

  private async sample(at: number): Promise<void> {
    const rows = await this.store.client.execute("SELECT pool, state, count(*) AS n FROM nodes GROUP BY pool, state");
    const states = new Map<string, number>();
    const pools = new Map<string, { size: number; ready: number; queue?: number; desired?: number }>();
    for (const p of this.scenario.config.pools) pools.set(p.name, { size: 0, ready: 0 });
    for (const r of rows.rows) {
      const state = String(r.state);
      const n = Number(r.n);
      states.set(state, (states.get(state) ?? 0) + n);
      const p = pools.get(String(r.pool));
      if (p === undefined) continue;
      if (isIn("inPool", state as NodeState)) p.size += n;
      if (state === "ready" || state === "suspect") p.ready += n;
    }
    for (const pool of this.scenario.config.pools) {
      const p = pools.get(pool.name)!;
      if (this.scenario.workload.pools[pool.name] !== undefined || this.workload.pools().includes(pool.name)) {
        const q = this.workload.metrics(pool.name);
        p.queue = q.pending + q.running;
        const queueConfig = pool.scaling.autoscaler ? findQueue(pool.scaling.autoscaler) : undefined;
        if (queueConfig !== undefined) {
          const rec = evaluate(queueConfig, {
            scaling: pool.scaling,
            metrics: { nodes: { ready: p.ready, provisioning: 0, replacing: 0, total: p.size }, queue: q },
            now: at,
            current: p.size,
            jobsPerNode: queueConfig.jobs_per_node,
          });
          p.desired = Math.min(pool.scaling.max_nodes, Math.max(pool.scaling.min_nodes, rec.desired ?? p.size));
        }
      }
    }
    this.samples.push({ t: at - this.start, states, pools });
  }

  private async buildReport(): Promise<SimReport> {
    const s = this.scenario;
    const db = this.store.db;
    const incidentRows = await db.select().from(incidents).orderBy(incidents.id);
    const byOutcome: Record<string, number> = {};
    for (const i of incidentRows) if (i.outcome !== null) byOutcome[i.outcome] = (byOutcome[i.outcome] ?? 0) + 1;
    const toCordon = incidentRows.flatMap((i) => (i.cordonedAt === null ? [] : [i.cordonedAt - i.faultAt]));
    const toReady = incidentRows.flatMap((i) => (i.replacementReadyAt === null ? [] : [i.replacementReadyAt - i.faultAt]));
    for (const i of incidentRows) {
      const node = this.nameOf(i.nodeId);
      const pool = i.pool ?? undefined;
      const base = { ...(pool ? { pool } : {}), node };
      this.events.push({ at: i.openedAt - this.start, kind: "incident", text: `incident ${i.id} on ${node}: ${this.rename(i.reason)}`, ...base });
      if (i.cordonedAt !== null) this.events.push({ at: i.cordonedAt - this.start, kind: "cordon", text: `${node} cordoned (incident ${i.id})`, ...base });
      if (i.replacementReadyAt !== null && i.replacementNodeId !== null) {
        this.events.push({
          at: i.replacementReadyAt - this.start,
          kind: "replacement_ready",
          text: `${this.nameOf(i.replacementNodeId)} ready, replacing ${node} (incident ${i.id})`,
          ...base,
        });
      }
    }
    const tripped = await db.select().from(auditLog).where(sql`${auditLog.action} = 'breaker_tripped'`).orderBy(auditLog.id);
    const breakersTripped = tripped.map((r) => ({
      scope: r.target,
      at: r.at - this.start,
      reason: String((r.details as { reason?: string } | null)?.reason ?? ""),
    }));
    for (const b of breakersTripped) this.events.push({ at: b.at, kind: "breaker", text: `circuit breaker ${b.scope} tripped: ${b.reason}` });
    for (const r of await db.select().from(auditLog).where(sql`${auditLog.action} = 'pool_held'`).orderBy(auditLog.id)) {
      const pool = r.target.replace(/^pool:/, "");
      this.events.push({
        at: r.at - this.start,
        kind: "pool_held",
        text: `pool ${pool} held: ${String((r.details as { reason?: string } | null)?.reason ?? "")}`,
        pool,
      });
    }
    const decisions = await this.scaleDecisions();
    for (const d of decisions)
      this.events.push({ at: d.at, kind: "scale", text: `pool ${d.pool}: ${d.from} → ${d.to}: ${this.rename(d.reason)}`, pool: d.pool });

    const byXid: Record<string, number> = {};
    for (const f of this.faults) byXid[String(f.xid)] = (byXid[String(f.xid)] ?? 0) + 1;
    const byRail: Record<string, number> = {};
    for (const rail of this.blocks.values()) byRail[rail] = (byRail[rail] ?? 0) + 1;
    const clouds: SimReport["summary"]["clouds"] = {};
    for (const c of this.clouds.values()) clouds[c.name] = { launched: this.launched(c), running_at_end: c.liveCount(), calls: { ...c.calls } };

    const states = NODE_STATES.filter((st) => this.samples.some((x) => (x.states.get(st) ?? 0) > 0));
    const timelineStates: Record<string, number[]> = {};
    for (const st of states) timelineStates[st] = this.samples.map((x) => x.states.get(st) ?? 0);
    const poolSeries: Record<string, PoolSeries> = {};
    for (const p of s.config.pools) {
      const series: PoolSeries = {
        size: this.samples.map((x) => x.pools.get(p.name)?.size ?? 0),
        ready: this.samples.map((x) => x.pools.get(p.name)?.ready ?? 0),
      };
      if (this.samples.some((x) => x.pools.get(p.name)?.queue !== undefined)) series.queue = this.samples.map((x) => x.pools.get(p.name)?.queue ?? 0);
      if (this.samples.some((x) => x.pools.get(p.name)?.desired !== undefined))
        series.queue_desired = this.samples.map((x) => x.pools.get(p.name)?.desired ?? 0);
      poolSeries[p.name] = series;
    }
    const failed = this.asserts.filter((a) => !a.ok).length;
    const kindOrder: TimelineEvent["kind"][] = [
      "outage",
      "restart",
      "jobs",
      "fault",
      "silence",
      "vanish",
      "recover",
      "incident",
      "cordon",
      "breaker",
      "breaker_reset",
      "pool_held",
      "pool_resume",
      "replacement_ready",
      "scale",
      "assert",
      "note",
    ];
    const events = this.events
      .map((e, i) => ({ e, i }))
      .sort((a, b) => a.e.at - b.e.at || kindOrder.indexOf(a.e.kind) - kindOrder.indexOf(b.e.kind) || a.i - b.i)
      .map(({ e }) => e);
    const incidentsOpen = incidentRows.filter((i) => i.closedAt === null).length;
    return {
      scenario: { name: s.name, description: s.description, seed: this.seed, start: new Date(this.start).toISOString(), duration: formatAt(s.duration) },
      result: { ok: failed === 0, asserts_passed: this.asserts.length - failed, asserts_failed: failed },
      summary: {
        nodes_at_start: this.nodesAtStart,
        nodes_at_end: await this.stateCounts(),
        faults: {
          total: this.faults.length,
          scripted: this.faults.filter((f) => f.source === "scripted").length,
          chaos: this.faults.filter((f) => f.source === "chaos").length,
          correlated: this.faults.filter((f) => f.correlated).length,
          by_xid: byXid,
        },
        incidents: { total: incidentRows.length, open: incidentsOpen, by_outcome: byOutcome },
        replacements: { requested: incidentRows.filter((i) => i.replacementNodeId !== null).length, ready: toReady.length },
        fault_to_cordon: timing(toCordon),
        fault_to_replacement_ready: timing(toReady),
        rail_blocks: { total: this.blocks.size, by_rail: byRail },
        breakers_tripped: breakersTripped,
        scaling: {
          decisions: decisions.length,
          up: decisions.filter((d) => d.direction === "up").length,
          down: decisions.filter((d) => d.direction === "down").length,
          nodes_added: decisions.reduce((a, d) => a + Math.max(0, d.to - d.from), 0),
          nodes_removed: decisions.reduce((a, d) => a + Math.max(0, d.from - d.to), 0),
        },
        clouds,
        workload: { ...this.workload.counts },
        reconciler: { passes: this.passes, restarts: this.restarts },
        leaked_instances: await this.leakedInstances(),
      },
      asserts: this.asserts,
      warnings: this.warnings,
      timeline: { every_ms: s.sim.sample_every, t: this.samples.map((x) => x.t), states: timelineStates, pools: poolSeries },
      events,
    };
  }
}

/** The first queue autoscaler in a pool's tree (the one whose decision the report shows). */
function findQueue(config: AutoscalerConfig): QueueAutoscalerConfig | undefined {
  switch (config.type) {
    case "queue":
      return config;
    case "scheduled":
    case "predictive":
      return config.fallback ? findQueue(config.fallback) : undefined;
    case "composite":
      for (const c of config.autoscalers) {
        const q = findQueue(c);
        if (q) return q;
      }
      return undefined;
    default:
      return undefined;
  }
}

export type { Check };
