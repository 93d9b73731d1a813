// When the simulator runs a reconcile pass. A real reconciler runs one every second; here a
// pass runs only when it can change something, which is what makes 10,000 nodes × 24 h
// tractable:
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
import type { Scenario } from "../../schema/scenario.ts";
import { classifyXid, lookupXid } from "../../schema/xid-catalog.ts";
import { DEFAULT_HEALTHY_DELAY_MS, type OpenFinding } from "../health/findings.ts";
import type { PassReport } from "../lifecycle/context.ts";
import { LightView } from "../lifecycle/live-nodes.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Store } from "../store/store.ts";
import type { SimulatedAgents } from "./agents.ts";
import type { Silences } from "./silences.ts";
import type { SimWorkload } from "./workload.ts";

const SWEEP_INTERVAL_MS = 60_000;

export interface PassScheduleOptions {
  scenario: Scenario;
  now: () => number;
  store: Store;
  clouds: ReadonlyMap<string, SimulatedCloud>;
  agents: SimulatedAgents;
  workload: SimWorkload;
  silences: Silences;
}

export class PassSchedule {
  private readonly start: number;
  /** The live nodes, kept from the change log as the loop keeps its own (lifecycle/live-nodes.ts). */
  private readonly view = new LightView();
  private nextPassAt: number;
  /** Health-check passes planned ahead of non-fatal unhealthy faults (see planCheckBefore). */
  private readonly checkPasses: number[] = [];
  private lastPassAt = Number.NEGATIVE_INFINITY;
  private lastAutoscaleAt = Number.NEGATIVE_INFINITY;
  private wakeNow = false;

  constructor(private readonly opts: PassScheduleOptions) {
    this.start = opts.scenario.start;
    this.nextPassAt = this.start;
  }

  /** Something the loop would be woken for happened: a pass runs now. */
  wake(): void {
    this.wakeNow = true;
  }

  /** A pass runs at `at` at the latest. */
  passBy(at: number): void {
    this.nextPassAt = Math.min(this.nextPassAt, at);
  }

  /** The reconciler restarted: its autoscalers' memory is gone. */
  restarted(): void {
    this.lastAutoscaleAt = Number.NEGATIVE_INFINITY;
  }

  /** When the next pass is planned. */
  nextAt(): number {
    return Math.min(this.nextPassAt, this.checkPasses[0] ?? Number.POSITIVE_INFINITY);
  }

  /** Whether a pass runs at `t` (the planned check passes up to `t` are used up). */
  due(t: number): boolean {
    let planned = false;
    while (this.checkPasses.length > 0 && this.checkPasses[0]! <= t) {
      this.checkPasses.shift();
      planned = true;
    }
    const every = this.opts.scenario.sim.pass_every;
    return this.wakeNow || planned || this.nextPassAt <= t || (every > 0 && t - this.lastPassAt >= every);
  }

  /** A pass starts at `t`. */
  passStarted(): void {
    this.wakeNow = false;
  }

  /** The pass at `t` ran. */
  passRan(t: number): void {
    if (t - this.lastAutoscaleAt >= this.opts.scenario.config.server.autoscale_interval) this.lastAutoscaleAt = t;
    this.lastPassAt = t;
  }

  /**
   * Plans the next pass after the one at `t` (see the header). The lifecycle says when each
   * node next needs a look (the steps' own answers, report.looks); the simulator adds what
   * only it knows: when a drain's jobs stop, when a silent agent's node goes Lost, when a
   * Lost node's agent is back, and when findings are due a health check.
   */
  async planAfter(report: PassReport, t: number): Promise<void> {
    const { scenario: s, store, agents, workload } = this.opts;
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
    const notQuiet = (await this.view.read(store.db, t)).filter((n) => !n.quiet).map((n) => n.id);
    const rows = await store.client.execute({
      sql: `SELECT id, state, verdict, findings, removal, consecutive_failures
       FROM nodes
       WHERE id IN (SELECT value FROM json_each(?)) AND state NOT IN ('terminated', 'failed', 'held')
         AND NOT (state = 'ready' AND verdict = 'healthy' AND consecutive_failures = 0 AND removal IS NULL AND findings = '[]')`,
      args: [JSON.stringify(notQuiet)],
    });
    for (const r of rows.rows) {
      const id = String(r.id);
      const state = String(r.state);
      if (state === "lost" && agents.has(id) && !agents.isSilent(id)) soon();
      if (state === "draining") {
        const done = workload.drainDoneAt(id);
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
    for (const beat of this.opts.silences.lastBeats()) if (beat + server.heartbeat_timeout + 1 > t) at(beat + server.heartbeat_timeout + 1);
    if (s.config.pools.some((p) => p.scaling.autoscaler !== undefined)) at(this.lastAutoscaleAt + server.autoscale_interval);
    if (await this.cloudsDisagree()) at(t + SWEEP_INTERVAL_MS);
    if (s.sim.idle_pass_interval > 0) at(t + s.sim.idle_pass_interval);
    if (s.sim.pass_every > 0) at(t + s.sim.pass_every);
    this.nextPassAt = wake;
  }

  /**
   * A fault that is unhealthy but not fatal is counted over consecutive health checks
   * (unhealthy_threshold). In a real loop the node's last check was at most one interval
   * before the fault, so the event itself is judged between checks and the count starts
   * at the next one. An idle stretch of the simulator must not make the event's own pass a
   * check: a pass runs at the last grid point before the fault.
   */
  planCheckBefore(faultAt: number, xid: number): void {
    const verdict = classifyXid(lookupXid(xid));
    if (verdict.severity !== "unhealthy" || verdict.persistence === "fatal") return;
    const g = this.gridAtOrBefore(faultAt);
    if (g <= this.lastPassAt || g < this.opts.now()) return;
    const i = this.checkPasses.findIndex((x) => x >= g);
    if (this.checkPasses[i] === g) return;
    if (i < 0) this.checkPasses.push(g);
    else this.checkPasses.splice(i, 0, g);
  }

  /**
   * The first health-check time after `t`. A real loop judges every node once per
   * health_check_interval; the simulator keeps the passes that only wait for health checks
   * on one grid (start + k × interval), so a node's checks keep the real loop's rhythm.
   */
  private gridAfter(t: number): number {
    const hci = this.opts.scenario.config.server.health_check_interval;
    return this.start + (Math.floor((t - this.start) / hci) + 1) * hci;
  }

  private gridAtOrBefore(t: number): number {
    const hci = this.opts.scenario.config.server.health_check_interval;
    return this.start + Math.floor((t - this.start) / hci) * hci;
  }

  /** The clouds run instances that no live node owns (a sweep will adopt or reap them). */
  private async cloudsDisagree(): Promise<boolean> {
    const live = [...this.opts.clouds.values()].reduce((a, c) => a + c.liveCount(), 0);
    let owned = 0;
    for (const n of await this.view.read(this.opts.store.db, this.opts.now())) if (n.instanceName !== null) owned++;
    return owned !== live;
  }
}
