// The scenario's scripted events (`events:`), played at their times: faults, recoveries,
// silent or vanished agents, jobs, provider outages, a reconciler restart, a human's
// breaker reset or pool resume; and the asserts, whose checks are measured after the pass
// at their time. An event whose target matches no node is skipped with a warning.
import { sql } from "drizzle-orm";
import { nodes } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import type { ScenarioEvent } from "../../schema/scenario/events.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Store } from "../store/store.ts";
import type { SimulatedAgents } from "./agents.ts";
import type { Faults } from "./faults.ts";
import type { Measurements } from "./measurements.ts";
import { nodeType } from "./node-types.ts";
import type { PassSchedule } from "./pass-schedule.ts";
import { Random } from "./random.ts";
import { describeCheck, formatAt, type AssertResult } from "./report.ts";
import type { RunLog } from "./run-log.ts";
import type { Silences } from "./silences.ts";
import type { SimNodes } from "./sim-nodes.ts";
import type { SimWorkload } from "./workload.ts";

export type AssertEvent = ScenarioEvent & { kind: "assert" };

export interface ScriptedEventsOptions {
  scenario: Scenario;
  seed: number;
  now: () => number;
  store: Store;
  clouds: ReadonlyMap<string, SimulatedCloud>;
  agents: SimulatedAgents;
  workload: SimWorkload;
  nodes: SimNodes;
  faults: Faults;
  silences: Silences;
  schedule: PassSchedule;
  measurements: Measurements;
  log: RunLog;
  /** A new reconciler process over the same database. */
  restartReconciler: () => void;
}

export class ScriptedEvents {
  /** The next event to play (the scenario's events are in time order). */
  private index = 0;
  /** Target picks and random GPUs draw from the run's "targets" stream. */
  private readonly random: Random;
  private readonly operator: Operator;

  constructor(private readonly opts: ScriptedEventsOptions) {
    this.random = new Random(opts.seed, "targets");
    this.operator = new Operator(opts.store.db, opts.now);
  }

  /** When the next event is due. */
  nextAt(): number | undefined {
    const e = this.opts.scenario.events[this.index];
    return e ? this.opts.scenario.start + e.at : undefined;
  }

  /** Plays the events due by `t`; the asserts among them are returned, to be checked after the pass. */
  async playDue(t: number): Promise<AssertEvent[]> {
    const { events, start } = this.opts.scenario;
    const asserts: AssertEvent[] = [];
    while (this.index < events.length && start + events[this.index]!.at <= t) {
      const e = events[this.index++]!;
      if (e.kind === "assert") asserts.push(e);
      else await this.play(e, t);
    }
    return asserts;
  }

  /** Measures an assert's checks and records the results. */
  async check(e: AssertEvent, t: number): Promise<void> {
    const { log, measurements } = this.opts;
    const at = t - this.opts.scenario.start;
    for (const c of e.checks) {
      const actual = await measurements.measure(c.metric);
      const ok = c.op === "equals" ? actual === c.value : c.op === "at_least" ? actual >= c.value : actual <= c.value;
      const result: AssertResult = { at, event: e.index, check: describeCheck(c), actual, ok, ...(c.why ? { why: c.why } : {}) };
      log.asserts.push(result);
      log.event({ at, kind: "assert", text: `${ok ? "ok" : "FAILED"}: ${result.check} (actual ${actual})${c.why ? `: ${c.why}` : ""}` });
    }
  }

  private async play(e: ScenarioEvent, t: number): Promise<void> {
    const { scenario, store, clouds, agents, workload, nodes: simNodes, faults, silences, schedule, log } = this.opts;
    const server = scenario.config.server;
    const at = t - scenario.start;
    const note = e.note ? ` (${e.note})` : "";
    const miss = (what: string): void => {
      log.warn(`events[${e.index}] (${e.kind} at ${formatAt(e.at)}): ${what}`);
    };
    switch (e.kind) {
      case "fault": {
        const targets = simNodes.resolve(e.target, simNodes.candidates(true), this.random);
        if (targets.length === 0) return miss("no node in service matches the target");
        for (const n of targets) faults.inject(n, e.xid, e.gpu === "random" ? this.random.int(n.gpus) : Math.min(e.gpu, n.gpus - 1), t, "scripted", false);
        return;
      }
      case "recover": {
        const targets = simNodes.resolve(e.target, simNodes.candidates(false), this.random);
        if (targets.length === 0) return miss("no node with a running agent matches the target");
        for (const n of targets) {
          workload.unblock(n.id);
          const cleared = faults.recovered(n.id);
          if (e.by === "reboot") await agents.reboot(n.id);
          else
            for (const f of cleared)
              await agents.event(n.id, { check: "xid", code: String(f.xid), severity: "healthy", action: "none", message: `Xid ${f.xid} cleared` }, f.gpu);
          log.event({ at, kind: "recover", text: `${n.name} recovered by ${e.by}${note}`, pool: n.pool, node: n.name });
        }
        schedule.wake();
        return;
      }
      case "silence":
      case "vanish": {
        const targets = simNodes.resolve(e.target, simNodes.candidates(false), this.random);
        if (targets.length === 0) return miss("no node with a running agent matches the target");
        const beat = scenario.start + Math.floor((t - scenario.start) / server.heartbeat_interval) * server.heartbeat_interval;
        for (const n of targets) {
          await store.db.update(nodes).set({ lastHeartbeatAt: beat }).where(sql`${nodes.id} = ${n.id} AND ${nodes.lastHeartbeatAt} < ${beat}`);
          if (e.kind === "vanish") {
            silences.silence(n.id, beat);
            const instance = agents.instanceOf(n.id);
            for (const c of clouds.values()) if (instance !== undefined) c.vanish(instance);
            agents.remove(n.id);
            workload.removeNode(n.id);
            log.event({ at, kind: "vanish", text: `${n.name}: its machine vanished at the provider${note}`, pool: n.pool, node: n.name });
          } else {
            silences.silence(n.id, beat, e.for !== undefined ? t + e.for : undefined);
            log.event({
              at,
              kind: "silence",
              text: `${n.name}: agent silent${e.for !== undefined ? ` for ${formatAt(e.for)}` : ""}${note}`,
              pool: n.pool,
              node: n.name,
            });
          }
        }
        schedule.passBy(beat + server.heartbeat_timeout + 1);
        return;
      }
      case "jobs": {
        const gpus =
          e.gpus ?? scenario.workload.pools[e.pool]?.gpus_per_job ?? nodeType(simNodes.pool(e.pool)?.instance_type ?? "", scenario.node_types)?.gpus ?? 8;
        workload.submit(e.pool, e.count, e.duration, gpus);
        log.event({
          at,
          kind: "jobs",
          text: `${e.count} job(s) of ${gpus} GPU(s) for ${formatAt(e.duration)} queued in ${e.pool}${note}`,
          pool: e.pool,
        });
        return;
      }
      case "outage": {
        const cloud = clouds.get(e.provider);
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
        log.event({
          at,
          kind: "outage",
          text: `${e.provider}: ${e.error} errors on ${e.calls.join(", ")} for ${formatAt(e.for)}${scope ? ` (${scope})` : ""}${note}`,
        });
        schedule.passBy(t + e.for);
        return;
      }
      case "restart":
        this.opts.restartReconciler();
        log.event({ at, kind: "restart", text: `reconciler restarted: a new process over the same database, its memory lost${note}` });
        schedule.wake();
        return;
      case "breaker_reset":
        try {
          await this.operator.resetBreaker(e.scope, "sim");
          log.event({ at, kind: "breaker_reset", text: `breaker ${e.scope} reset by a human${note}` });
        } catch (err) {
          if (err instanceof OperatorError) return miss(err.message);
          throw err;
        }
        schedule.wake();
        return;
      case "pool_resume":
        try {
          await this.operator.resumePool(e.pool, "sim");
          log.event({ at, kind: "pool_resume", text: `pool ${e.pool} resumed by a human${note}`, pool: e.pool });
        } catch (err) {
          if (err instanceof OperatorError) return miss(err.message);
          throw err;
        }
        schedule.wake();
        return;
      case "assert":
        return;
    }
  }
}
