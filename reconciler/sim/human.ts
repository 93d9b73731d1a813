// No automation (a `compare:` variant with `automation: none`): what a fleet without
// Navarch's remediation looks like. Navarch's pools are paused (`navarch pools pause`), so the
// reconciler only watches: it opens an incident for each unhealthy node, and cordons,
// drains, reboots and replaces nothing on its own. A simulated human acts on each incident
// `delay` after it opens, and on each node whose agent went silent (which in a paused pool
// opens none) `delay` after it was declared Lost, through the operator's own actions: a
// reboot where the incident's first rung is a reboot, a replacement otherwise. The loop then
// carries the human's request out (a human's request passes the rails that a pause holds).
import { and, eq, gt, isNull } from "drizzle-orm";
import type { Millis } from "../../schema/config.ts";
import { incidents, nodes } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import type { PassReport } from "../lifecycle/context.ts";
import { Operator, OperatorError } from "../nodes/operator-actions.ts";
import type { Store } from "../store/store.ts";
import { formatAt } from "./report.ts";
import type { RunLog } from "./run-log.ts";
import type { SimNodes } from "./sim-nodes.ts";

/** Who the human's actions are recorded as (the incidents they open are theirs, not the reconciler's). */
export const HUMAN_ACTOR = "sim-human";

interface Pending {
  at: number;
  nodeId: string;
  /** The incident acted on; undefined for a Lost node (none was opened). */
  incident?: number;
  /** When the node stopped serving (the fault, or its last heartbeat). */
  since: number;
}

export interface SimulatedHumanOptions {
  scenario: Scenario;
  delay: Millis;
  now: () => number;
  store: Store;
  nodes: SimNodes;
  log: RunLog;
}

export class SimulatedHuman {
  private readonly operator: Operator;
  private paused = false;
  private lastIncident = 0;
  private readonly pending: Pending[] = [];
  /** Node-time spent waiting for the human, ms: from each fault to the human's action (to the end for those still waiting). */
  private waitedMs = 0;

  constructor(private readonly opts: SimulatedHumanOptions) {
    this.operator = new Operator(opts.store.db, opts.now);
  }

  /** When the human next acts. */
  nextAt(): number | undefined {
    return this.pending[0]?.at;
  }

  /** After a pass: pause the pools (the first time), then note the incidents opened and the nodes gone Lost. */
  async afterPass(report: PassReport, t: number): Promise<void> {
    const db = this.opts.store.db;
    if (!this.paused) {
      this.paused = true;
      for (const pool of this.opts.scenario.config.pools) await this.operator.pausePool(pool.name, "sim", "no automation: Navarch only watches");
    }
    const opened = await db
      .select({ id: incidents.id, nodeId: incidents.nodeId, faultAt: incidents.faultAt, openedAt: incidents.openedAt, reason: incidents.reason })
      .from(incidents)
      .where(gt(incidents.id, this.lastIncident))
      .orderBy(incidents.id);
    for (const i of opened) {
      this.lastIncident = i.id;
      // The human's own requests (and an operator's maintenance) are not theirs to answer.
      if (/ requested by sim/.test(i.reason)) continue;
      this.add({ at: i.openedAt + this.opts.delay, nodeId: i.nodeId, incident: i.id, since: i.faultAt });
    }
    for (const tr of report.transitions) {
      if (tr.to === "lost" && !this.pending.some((p) => p.nodeId === tr.node)) this.add({ at: t + this.opts.delay, nodeId: tr.node, since: t });
    }
  }

  /** Acts on what is due by `t`; whether it asked for anything (the loop is woken). */
  async actDue(t: number): Promise<boolean> {
    let acted = false;
    while (this.pending.length > 0 && this.pending[0]!.at <= t) {
      const p = this.pending.shift()!;
      this.waitedMs += t - p.since;
      if (await this.act(p, t)) acted = true;
    }
    return acted;
  }

  /** Node-hours nodes waited for the human so far (those still waiting, up to `at`). */
  waitingHours(at: number): number {
    return (this.waitedMs + this.pending.reduce((a, p) => a + Math.max(0, at - p.since), 0)) / 3_600_000;
  }

  private add(p: Pending): void {
    const i = this.pending.findIndex((x) => x.at > p.at);
    if (i < 0) this.pending.push(p);
    else this.pending.splice(i, 0, p);
  }

  private async act(p: Pending, t: number): Promise<boolean> {
    const db = this.opts.store.db;
    const [node] = await db.select({ state: nodes.state }).from(nodes).where(eq(nodes.id, p.nodeId));
    if (node === undefined || node.state === "terminated" || node.state === "terminating" || node.state === "failed") return false;
    let remedy: "reboot" | "replace" = "replace";
    if (p.incident !== undefined) {
      const [open] = await db
        .select({ remedy: incidents.remedy })
        .from(incidents)
        .where(and(eq(incidents.id, p.incident), isNull(incidents.closedAt)));
      if (open === undefined) return false; // it recovered by itself meanwhile
      if (open.remedy === "reboot" && node.state !== "lost") remedy = "reboot";
    }
    const name = this.opts.nodes.nameOf(p.nodeId);
    const why = p.incident !== undefined ? `incident ${p.incident}` : "silent agent";
    try {
      if (remedy === "reboot") await this.operator.reboot(p.nodeId, HUMAN_ACTOR, why);
      else await this.operator.replace(p.nodeId, HUMAN_ACTOR, why);
    } catch (err) {
      if (err instanceof OperatorError) return false;
      throw err;
    }
    this.opts.log.event({
      at: t - this.opts.scenario.start,
      kind: "note",
      text: `a human ${remedy === "reboot" ? "reboots" : "replaces"} ${name} (${why}), ${formatAt(t - p.since)} after it stopped serving`,
      node: name,
    });
    return true;
  }
}
