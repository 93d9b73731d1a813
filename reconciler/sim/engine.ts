// The simulator: the real reconcile loop (reconciler/lifecycle/loop.ts: policy,
// lifecycle, rails, autoscalers, provider and scheduler interfaces) over a real libSQL
// database, with simulated agents, a simulated cloud per provider and a simulated
// scheduler, on virtual time.
//
// It is a discrete-event simulation, and this is its event loop. Time jumps from one thing
// to the next: a scripted event (scripted-events.ts), a chaos fault (chaos.ts), an agent's
// event reaching the reconciler (faults.ts), an instance finishing its boot, a silence
// ending (silences.ts), a job ending or arriving (workload.ts), a sample (samples.ts), or
// the next reconcile pass that is due (pass-schedule.ts: a pass runs only when it can
// change something). Heartbeats are written in bulk right before each pass (agents.ts),
// stamped with the agents' latest heartbeat time; a silenced agent's last heartbeat is
// written when it goes silent. At the end, measurements.ts and report-builder.ts turn what
// happened into the report. Nothing reads the wall clock or Math.random: with the same seed
// two runs produce the same report.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { Scenario } from "../../schema/scenario.ts";
import { defaultHealthPolicy } from "../health/compile-policy.ts";
import type { PassReport } from "../lifecycle/context.ts";
import { Reconciler, type ReconcilerOptions } from "../lifecycle/loop.ts";
import { SimulatedCloud } from "../providers/simulated.ts";
import { openStore, type Store } from "../store/store.ts";
import { SimulatedAgents } from "./agents.ts";
import { Chaos } from "./chaos.ts";
import { Faults } from "./faults.ts";
import { seedRunningFleet } from "./fleet.ts";
import { Measurements } from "./measurements.ts";
import { knownNodeTypes, nodeType } from "./node-types.ts";
import { PassSchedule } from "./pass-schedule.ts";
import { Random } from "./random.ts";
import { formatAt, type SimReport, type SimStats } from "./report.ts";
import { buildReport } from "./report-builder.ts";
import { RunLog } from "./run-log.ts";
import { Samples } from "./samples.ts";
import { ScriptedEvents } from "./scripted-events.ts";
import { ServiceClock } from "./service-clock.ts";
import { Silences } from "./silences.ts";
import { SimNodes } from "./sim-nodes.ts";
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

class Simulation {
  private readonly seed: number;
  private readonly start: number;
  private readonly end: number;
  private clock: number;
  private readonly now = () => this.clock;
  private readonly progress: (line: string) => void;
  /** Whether the loop reads GPU readings (a pool has an autoscaler). */
  private readonly readingsRead: boolean;

  private dir: string | undefined;
  private store!: Store;
  private readonly clouds = new Map<string, SimulatedCloud>();
  private agents!: SimulatedAgents;
  private workload!: SimWorkload;
  private reconciler!: Pick<Reconciler, "pass">;

  // The simulator's parts, each with its own state (built once the store is open).
  private nodes!: SimNodes;
  private silences!: Silences;
  private schedule!: PassSchedule;
  private faults!: Faults;
  private chaos!: Chaos;
  private scripted!: ScriptedEvents;
  private measurements!: Measurements;
  private samples!: Samples;
  private readonly service: ServiceClock;
  private readonly log = new RunLog();

  /** The agents' heartbeat last written for all of them. */
  private lastBeatAt = Number.NEGATIVE_INFINITY;
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
    this.service = new ServiceClock(this.start, (pool) => this.nodes.pool(pool)?.scaling.min_nodes ?? 0);
    this.progress = options.progress ?? (() => undefined);
    this.readingsRead = scenario.config.pools.some((p) => p.scaling.autoscaler !== undefined);
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
    const report = await this.timed("report", () =>
      buildReport({
        scenario: s,
        seed: this.seed,
        store: this.store,
        clouds: this.clouds,
        workload: this.workload,
        nodes: this.nodes,
        faults: this.faults,
        log: this.log,
        samples: this.samples,
        measurements: this.measurements,
        nodesAtStart: this.nodesAtStart,
        passes: this.passes,
        restarts: this.restarts,
      }),
    );
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
    const agents = this.agents;
    this.nodes = new SimNodes(s, (id) => agents.has(id));
    // Which faults a reboot clears: each cloud's share, drawn from a seeded stream.
    const reboots = new Random(this.seed, "reboots");
    this.agents.rebootFixes = (nodeId) => {
      const pool = this.nodes.pool(this.nodes.get(nodeId)?.pool);
      const spec = pool ? s.clouds[pool.providers[0]!] : undefined;
      return reboots.next() < (spec?.reboot_fixes ?? 1);
    };
    this.workload = new SimWorkload({
      now: this.now,
      random: new Random(this.seed, "workload"),
      drainGrace: s.workload.drain_grace,
      pools: s.workload.pools,
      onBusy: (id, busy) => agents.setBusyGpus(id, busy),
    });
    const { store, clouds, workload, nodes, log } = this;
    this.silences = new Silences(agents);
    this.schedule = new PassSchedule({ scenario: s, now: this.now, store, clouds, agents, workload, silences: this.silences });
    this.faults = new Faults({ start: this.start, eventLatency: s.sim.event_latency, agents, workload, log });
    this.chaos = new Chaos({ scenario: s, seed: this.seed, nodes, faults: this.faults, schedule: this.schedule });
    this.measurements = new Measurements({ start: this.start, now: this.now, store, clouds, workload, service: this.service, faults: this.faults, log });
    this.samples = new Samples(s, store, workload);
    this.scripted = new ScriptedEvents({
      scenario: s,
      seed: this.seed,
      now: this.now,
      store,
      clouds,
      agents,
      workload,
      nodes,
      faults: this.faults,
      silences: this.silences,
      schedule: this.schedule,
      measurements: this.measurements,
      log,
      restartReconciler: () => {
        this.reconciler = this.newReconciler();
        this.restarts++;
        this.schedule.restarted();
      },
    });
    if (s.fleet.initial === "running") {
      const seeded = await seedRunningFleet(store, s, clouds, agents, new Random(this.seed, "ids"), this.start);
      this.measurements.countWarmStart();
      await nodes.discover(store);
      for (const n of seeded) {
        const node = nodes.get(n.id)!;
        node.inService = true;
        this.service.change(node.pool, 1, this.start);
        workload.addNode(n.id, n.pool, n.gpus);
      }
    }
    this.reconciler = this.newReconciler();
    this.nodesAtStart = await this.measurements.stateCounts();
    this.lastBeatAt = this.start;
    for (const e of s.events) if (e.kind === "fault") this.schedule.planCheckBefore(this.start + e.at, e.xid);
    this.chaos.schedule(this.start);
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
      ...(log ? { log: (line: string) => log(`[${formatAt(this.clock - this.start)}] ${this.nodes.rename(line)}`) } : {}),
    };
    return make(options);
  }

  // ───────────────────────────── the event loop ─────────────────────────────

  /** The time of the next thing that happens (the end at the latest). */
  private nextTime(): number {
    let t = this.end;
    const consider = (x: number | undefined) => {
      if (x !== undefined && x < t) t = Math.max(x, this.clock);
    };
    consider(this.scripted.nextAt());
    consider(this.faults.nextDeliveryAt());
    consider(this.chaos.nextAt);
    consider(this.workload.nextEventAt());
    for (const c of this.clouds.values()) consider(c.nextStartAt());
    consider(this.silences.nextEndAt());
    consider(this.schedule.nextAt());
    consider(this.samples.nextAt);
    return t;
  }

  private async step(t: number): Promise<void> {
    this.workload.advance(t);

    // Machines that finished booting: their agents register (the loop would be woken).
    const started = await this.timed("agents", () => this.agents.startNew());
    if (started.length > 0) {
      await this.nodes.discover(this.store);
      this.schedule.wake();
    }
    if (await this.silences.endDue(t)) this.schedule.wake();

    // Scripted events at t (asserts wait until after the pass), chaos, agents' events arriving.
    const asserts = await this.scripted.playDue(t);
    this.chaos.injectDue(t);
    if (await this.faults.deliverDue(t)) this.schedule.wake();

    if (this.schedule.due(t)) await this.pass(t);

    for (const e of asserts) await this.scripted.check(e, t);
    while (this.samples.nextAt <= t) await this.timed("samples", () => this.samples.take());
  }

  // ───────────────────────────── passes ─────────────────────────────

  private async pass(t: number): Promise<void> {
    const s = this.scenario;
    this.schedule.passStarted();
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
    this.schedule.passRan(t);
    await this.timed("after-pass", () => this.afterPass(report, t));
  }

  /** What the pass changed, told to the simulator's parts; then the next pass is planned. */
  private async afterPass(report: PassReport, t: number): Promise<void> {
    await this.nodes.discover(this.store);
    for (const tr of report.transitions) {
      const node = this.nodes.get(tr.node);
      if (node === undefined) continue;
      const inService = tr.to === "ready" || tr.to === "suspect";
      if (inService && !node.inService && this.agents.has(node.id)) this.workload.addNode(node.id, node.pool, node.gpus);
      if (inService !== node.inService) this.service.change(node.pool, inService ? 1 : -1, t);
      node.inService = inService;
      if (!inService && tr.to !== "cordoned" && tr.to !== "draining") this.workload.removeNode(node.id);
      if (tr.to === "terminated") this.agents.remove(node.id);
    }
    for (const id of report.terminated) {
      const nodeId = this.nodes.has(id) ? id : this.agents.nodeOfInstance(id);
      if (nodeId !== undefined) {
        this.agents.remove(nodeId);
        this.workload.removeNode(nodeId);
      }
    }
    for (const b of report.blocked) this.log.blocked(b.node, b.rail);
    await this.schedule.planAfter(report, t);
  }
}
