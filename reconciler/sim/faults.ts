// Faults on simulated nodes, scripted or from chaos: a fault kills the jobs on its node (a
// GPU the driver reports unhealthy also takes no new work), goes on the report's timeline,
// and its Xid event reaches the reconciler `event_latency` later, when the node's agent
// pushes it. Every fault is recorded for the `faults` check and the report; the faults
// since a node's last recovery are what a recovery `by: report` clears.
import { classifyXid, lookupXid } from "../../schema/xid-catalog.ts";
import type { SimulatedAgents } from "./agents.ts";
import type { RunLog } from "./run-log.ts";
import type { SimNode } from "./sim-nodes.ts";
import type { SimWorkload } from "./workload.ts";

export interface FaultRecord {
  /** Milliseconds since the start. */
  at: number;
  node: string;
  pool: string;
  xid: number;
  gpu: number;
  source: "scripted" | "chaos";
  correlated: boolean;
}

/** An agent's Xid event on its way to the reconciler. */
interface Delivery {
  at: number;
  nodeId: string;
  xid: number;
  gpu: number;
  /** When the fault happened (the event's own time). */
  time: number;
}

export interface FaultsOptions {
  start: number;
  /** From a fault on the node to its event stored by the reconciler. */
  eventLatency: number;
  agents: SimulatedAgents;
  workload: SimWorkload;
  log: RunLog;
}

export class Faults {
  /** Every fault so far, in the order they happened. */
  readonly records: FaultRecord[] = [];
  /** Per node, the faults since its last recovery. */
  private readonly sinceRecovery = new Map<string, { xid: number; gpu: number }[]>();
  /** In delivery order (equal times in fault order). */
  private readonly deliveries: Delivery[] = [];

  constructor(private readonly opts: FaultsOptions) {}

  /** A fault happens on a node now; its agent's event reaches the reconciler after event_latency. */
  inject(n: SimNode, xid: number, gpu: number, t: number, source: "scripted" | "chaos", correlated: boolean): void {
    const { start, workload } = this.opts;
    this.records.push({ at: t - start, node: n.name, pool: n.pool, xid, gpu, source, correlated });
    this.sinceRecovery.set(n.id, [...(this.sinceRecovery.get(n.id) ?? []), { xid, gpu }]);
    const entry = lookupXid(xid);
    // The job on it dies; a GPU the driver reports unhealthy takes no new work (the device plugin's view).
    if (classifyXid(entry).severity === "unhealthy") workload.block(n.id);
    workload.kill(n.id);
    this.opts.log.event({
      at: t - start,
      kind: "fault",
      text: `Xid ${xid} (${entry.name}) on ${n.name} GPU ${gpu}${source === "chaos" ? (correlated ? " (chaos, correlated)" : " (chaos)") : ""}`,
      pool: n.pool,
      node: n.name,
    });
    const delivery: Delivery = { at: t + this.opts.eventLatency, nodeId: n.id, xid, gpu, time: t };
    const i = this.deliveries.findIndex((d) => d.at > delivery.at);
    if (i < 0) this.deliveries.push(delivery);
    else this.deliveries.splice(i, 0, delivery);
  }

  /** When the next agent event reaches the reconciler. */
  nextDeliveryAt(): number | undefined {
    return this.deliveries[0]?.at;
  }

  /** Stores the agent events due by `t` (agents gone since are skipped); whether any was stored. */
  async deliverDue(t: number): Promise<boolean> {
    let stored = false;
    while (this.deliveries.length > 0 && this.deliveries[0]!.at <= t) {
      const d = this.deliveries.shift()!;
      if (!this.opts.agents.has(d.nodeId)) continue;
      await this.opts.agents.xid(d.nodeId, d.xid, d.gpu, d.time);
      stored = true;
    }
    return stored;
  }

  /** The node recovered: the faults since its last recovery, forgotten here. */
  recovered(nodeId: string): { xid: number; gpu: number }[] {
    const faults = this.sinceRecovery.get(nodeId) ?? [];
    this.sinceRecovery.delete(nodeId);
    return faults;
  }
}
