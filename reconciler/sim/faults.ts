// Faults on simulated nodes, scripted or from chaos: a fault kills the jobs on its node (a
// GPU the driver reports unhealthy also takes no new work), goes on the report's timeline,
// and its Xid event reaches the reconciler `event_latency` later, when the node's agent
// pushes it. Every fault is recorded for the `faults` check and the report; the faults
// since a node's last recovery are what a recovery `by: report` clears. A fault trace's
// causes (fault-trace.ts) may also be a finding of another check than the Xid one, or a
// host that stops; an unhealthy fault keeps gang jobs from starting on the node
// (workload.ts: broken) until the node is repaired.
import { classifyXid, lookupXid } from "../../schema/xid-catalog.ts";
import type { AgentEvent, SimulatedAgents } from "./agents.ts";
import type { RunLog } from "./run-log.ts";
import type { SimNode } from "./sim-nodes.ts";
import type { SimWorkload } from "./workload.ts";

export interface FaultRecord {
  /** Milliseconds since the start. */
  at: number;
  node: string;
  pool: string;
  /** The Xid, for an Xid fault. */
  xid?: number;
  /** The check and code, for another check's finding. */
  check?: string;
  /** The cause of interruption it was drawn as (a fault trace's). */
  cause?: string;
  gpu: number;
  source: "scripted" | "chaos";
  correlated: boolean;
}

/** An agent's event on its way to the reconciler: an Xid, or another check's finding. */
interface Delivery {
  at: number;
  nodeId: string;
  xid?: number;
  event?: AgentEvent;
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
  inject(n: SimNode, xid: number, gpu: number, t: number, source: "scripted" | "chaos", correlated: boolean, cause?: string): void {
    const { start, workload } = this.opts;
    this.records.push({ at: t - start, node: n.name, pool: n.pool, xid, ...(cause !== undefined ? { cause } : {}), gpu, source, correlated });
    this.sinceRecovery.set(n.id, [...(this.sinceRecovery.get(n.id) ?? []), { xid, gpu }]);
    const entry = lookupXid(xid);
    // The job on it dies; a GPU the driver reports unhealthy takes no new work (the device plugin's view).
    if (classifyXid(entry).severity === "unhealthy") {
      workload.block(n.id);
      workload.markBroken(n.id);
    }
    workload.kill(n.id, cause ?? `xid_${xid}`);
    this.opts.log.event({
      at: t - start,
      kind: "fault",
      text: `Xid ${xid} (${entry.name}) on ${n.name} GPU ${gpu}${source === "chaos" ? (correlated ? " (chaos, correlated)" : " (chaos)") : ""}${cause !== undefined ? `: ${cause}` : ""}`,
      pool: n.pool,
      node: n.name,
    });
    this.deliver({ at: t + this.opts.eventLatency, nodeId: n.id, xid, gpu, time: t });
  }

  /**
   * Another check's finding on a node now (a NIC's port down, a GPU at its thermal limit): the
   * jobs on it die; an unhealthy one keeps gang jobs from starting there, which the scheduler
   * does not see (no device plugin reports it). Its event reaches the reconciler after
   * event_latency. `gpu` is -1 for a check of the node, not of a GPU.
   */
  injectCheck(n: SimNode, event: AgentEvent, gpu: number, t: number, cause: string): void {
    const { start, workload } = this.opts;
    this.records.push({
      at: t - start,
      node: n.name,
      pool: n.pool,
      check: `${event.check}/${event.code ?? ""}`,
      cause,
      gpu: Math.max(0, gpu),
      source: "chaos",
      correlated: false,
    });
    if (event.severity === "unhealthy") workload.markBroken(n.id);
    workload.kill(n.id, cause);
    this.opts.log.event({ at: t - start, kind: "fault", text: `${event.check} ${event.code ?? ""} on ${n.name}: ${cause}`, pool: n.pool, node: n.name });
    this.deliver({ at: t + this.opts.eventLatency, nodeId: n.id, event, gpu, time: t });
  }

  /** The host stops now: the jobs on it die and it takes none (its agent's silence is the caller's). */
  hostDown(n: SimNode, t: number, cause: string): void {
    const { start, workload } = this.opts;
    this.records.push({ at: t - start, node: n.name, pool: n.pool, cause, gpu: 0, source: "chaos", correlated: false });
    workload.block(n.id);
    workload.markBroken(n.id);
    workload.kill(n.id, cause);
    this.opts.log.event({ at: t - start, kind: "fault", text: `${n.name} stopped (the host is down): ${cause}`, pool: n.pool, node: n.name });
  }

  private deliver(delivery: Delivery): void {
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
      if (d.event !== undefined) await this.opts.agents.event(d.nodeId, d.event, d.gpu, d.time);
      else if (d.xid !== undefined) await this.opts.agents.xid(d.nodeId, d.xid, d.gpu, d.time);
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
