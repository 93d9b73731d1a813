// A fault trace (scenario `chaos: { trace: … }`): the faults of the whole run drawn in
// advance from a stream of their own ("fault-trace"), at a rate for a fixed node count, so
// that nothing the reconciler does changes when they happen or what they are: every
// `compare:` variant of a scenario replays the same trace (compare.ts). Each fault is a
// time, a cause of interruption (schema/scenario/causes.ts; an Xid of `chaos.xids` is the
// cause xid_N) and two uniform draws that pick, when it happens, its node and GPU: one of
// the nodes that run a gang job (whose interruptions a published table counts), or, when
// none does, one of the pool's nodes in service. Then it does what its cause does: an Xid or
// another check's finding (faults.ts), a job that fails on its own, a planned restart, a
// drain for host maintenance (the operator's reboot), or a host that stops answering.
import { sql } from "drizzle-orm";
import { CHECKS } from "../../schema/checks.ts";
import { nodes as nodesTable } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import { causeOf } from "../../schema/scenario/causes.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import type { Store } from "../store/store.ts";
import type { Faults } from "./faults.ts";
import type { PassSchedule } from "./pass-schedule.ts";
import { Random } from "./random.ts";
import type { RunLog } from "./run-log.ts";
import type { Silences } from "./silences.ts";
import type { SimNode, SimNodes } from "./sim-nodes.ts";
import type { SimWorkload } from "./workload.ts";

export interface TraceFault {
  /** Epoch ms. */
  at: number;
  cause: string;
  /** Uniform in [0, 1): which of the candidate nodes, and which of its GPUs. */
  pick: number;
  gpu: number;
}

/** The trace of a scenario's chaos for a seed: a function of the scenario's chaos, start, duration and seed alone. */
export function drawTrace(scenario: Scenario, seed: number): TraceFault[] {
  const chaos = scenario.chaos;
  if (chaos?.trace === undefined || chaos.failure_rate <= 0) return [];
  const random = new Random(seed, "fault-trace");
  const from = scenario.start + chaos.from;
  const until = scenario.start + Math.min(chaos.until ?? scenario.duration, scenario.duration);
  if (until <= from) return [];
  const causes = chaos.causes ?? chaos.xids.map(([xid, w]): [string, number] => [`xid_${xid}`, w]);
  const perMs = (chaos.failure_rate * chaos.trace.nodes) / 1000 / 3_600_000;
  const out: TraceFault[] = [];
  if (chaos.trace.draw === "exact") {
    const total = perMs * (until - from);
    const weights = causes.reduce((a, [, w]) => a + w, 0);
    for (const [cause, w] of causes) {
      const expected = (total * w) / weights;
      const count = Math.floor(expected) + (random.next() < expected - Math.floor(expected) ? 1 : 0);
      for (let i = 0; i < count; i++) out.push({ at: from + Math.floor(random.next() * (until - from)), cause, pick: random.next(), gpu: random.next() });
    }
    // Stable: equal times keep the causes' order.
    return out
      .map((f, i) => ({ f, i }))
      .sort((a, b) => a.f.at - b.f.at || a.i - b.i)
      .map(({ f }) => f);
  }
  for (let t = from; ; ) {
    t += Math.max(1, Math.round(random.exponential(1 / perMs)));
    if (t >= until) break;
    out.push({ at: t, cause: random.weighted(causes) ?? causes[0]![0], pick: random.next(), gpu: random.next() });
  }
  return out;
}

/** A short fingerprint of a trace (FNV-1a): two runs replayed the same faults when theirs agree. */
export function traceDigest(trace: readonly TraceFault[]): string {
  let h = 0x811c9dc5;
  for (const f of trace) {
    const line = `${f.at}|${f.cause}|${f.pick}|${f.gpu};`;
    for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line.charCodeAt(i), 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** How many faults of each cause a trace holds, most first. */
export function traceCauses(trace: readonly TraceFault[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of trace) out[f.cause] = (out[f.cause] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort(([a, x], [b, y]) => y - x || a.localeCompare(b)));
}

export interface FaultTraceOptions {
  scenario: Scenario;
  seed: number;
  now: () => number;
  store: Store;
  nodes: SimNodes;
  faults: Faults;
  workload: SimWorkload;
  silences: Silences;
  schedule: PassSchedule;
  log: RunLog;
}

export class FaultTrace {
  readonly trace: TraceFault[];
  private next = 0;
  private readonly operator: Operator;

  constructor(private readonly opts: FaultTraceOptions) {
    this.trace = drawTrace(opts.scenario, opts.seed);
    this.operator = new Operator(opts.store.db, opts.now);
    // A non-fatal unhealthy Xid is judged over health checks: a pass on the grid before it (pass-schedule.ts).
    for (const f of this.trace) {
      const effect = causeOf(f.cause)?.effect;
      if (effect?.kind === "xid") opts.schedule.planCheckBefore(f.at, effect.xid);
    }
  }

  /** When the next fault of the trace happens. */
  get nextAt(): number | undefined {
    return this.trace[this.next]?.at;
  }

  /** The trace is drawn once, in advance: nothing to plan. */
  schedule(_from: number): void {}

  /** Plays the faults due by `t`. */
  async injectDue(t: number): Promise<void> {
    while (this.next < this.trace.length && this.trace[this.next]!.at <= t) await this.play(this.trace[this.next++]!, t);
  }

  private target(pick: number): SimNode | undefined {
    const pools = this.opts.scenario.chaos?.pools ?? [];
    const inService = this.opts.nodes.candidates(true).filter((n) => pools.length === 0 || pools.includes(n.pool));
    const gangs = inService.filter((n) => this.opts.workload.runsGang(n.id));
    const from = gangs.length > 0 ? gangs : inService;
    return from[Math.floor(pick * from.length)];
  }

  private async play(f: TraceFault, t: number): Promise<void> {
    const { faults, workload, log, schedule, scenario } = this.opts;
    const effect = causeOf(f.cause)?.effect;
    const node = this.target(f.pick);
    const at = t - scenario.start;
    if (effect === undefined) return;
    if (node === undefined) {
      log.event({ at, kind: "note", text: `${f.cause}: no node in service to strike` });
      return;
    }
    const gpu = Math.min(node.gpus - 1, Math.floor(f.gpu * node.gpus));
    const note = (text: string) => log.event({ at, kind: "note", text, pool: node.pool, node: node.name });
    switch (effect.kind) {
      case "xid":
        faults.inject(node, effect.xid, gpu, t, "chaos", false, f.cause);
        return;
      case "check": {
        const { check, code, severity, action, message } = effect;
        // A node's check (InfiniBand) names no GPU.
        faults.injectCheck(node, { check, code, severity, action, message }, CHECKS[check].scope === "node" ? -1 : gpu, t, f.cause);
        return;
      }
      case "job_failure":
        if (!workload.runsGang(node.id)) return note(`${f.cause}: no job runs on ${node.name}`);
        note(`${f.cause}: the job on ${node.name} fails; no node check sees it`);
        workload.kill(node.id, f.cause);
        return;
      case "planned":
        if (!workload.runsGang(node.id)) return note(`${f.cause}: no job runs on ${node.name}`);
        note(`${f.cause}: an operator checkpoints the job on ${node.name} and restarts it`);
        workload.restartGangOn(node.id, f.cause);
        return;
      case "maintenance":
        try {
          await this.operator.reboot(node.id, "sim", `host maintenance (${f.cause})`);
        } catch (err) {
          if (err instanceof OperatorError) return note(`${f.cause}: ${node.name} not drained: ${err.message}`);
          throw err;
        }
        workload.noteDrainCause(node.id, f.cause);
        note(`${f.cause}: ${node.name} drained and rebooted by an operator`);
        schedule.wake();
        return;
      case "host_down": {
        faults.hostDown(node, t, f.cause);
        // Its agent's last heartbeat was on the interval's grid; it goes Lost after the timeout.
        const { heartbeat_interval: interval, heartbeat_timeout: timeout } = scenario.config.server;
        const beat = scenario.start + Math.floor((t - scenario.start) / interval) * interval;
        await this.opts.store.db
          .update(nodesTable)
          .set({ lastHeartbeatAt: beat })
          .where(sql`${nodesTable.id} = ${node.id} AND ${nodesTable.lastHeartbeatAt} < ${beat}`);
        this.opts.silences.silence(node.id, beat);
        schedule.passBy(beat + timeout + 1);
        return;
      }
    }
  }
}
