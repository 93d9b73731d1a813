// Cordons and uncordons a scheduler mirror was asked for while it could not map the node (the
// scheduler never read: down since start; a node not in its last listing): the latest ask per
// node, in the order asked. Once the scheduler is read, each is carried out after a look at
// the node as it is then: a node no longer taken out (a human returned it to service, it was
// replaced) is not cordoned. Both mirrors (Kubernetes, Slurm) queue this way.
import { isIn } from "../../schema/lifecycle.ts";
import type { QueuedAction } from "../dependencies/status.ts";
import type { SchedulerHost, SchedulerNode, SchedulerNodeView } from "./scheduler.ts";

export type AskAction = "cordon" | "uncordon";

export interface QueuedAsk {
  action: AskAction;
  node: SchedulerNodeView;
  reason: string;
  incidentId: number;
  /** When it was asked (real time). */
  since: number;
}

export class QueuedAsks {
  private readonly asks = new Map<string, QueuedAsk>();

  /** `label` prefixes the log lines; `names` is what a cordon and an uncordon are called there (`drain`, `resume` in Slurm). */
  constructor(
    private readonly label: string,
    private readonly names: Record<AskAction, string>,
    private readonly log: (line: string) => void,
  ) {}

  has(nodeId: string): boolean {
    return this.asks.has(nodeId);
  }

  action(nodeId: string): AskAction | undefined {
    return this.asks.get(nodeId)?.action;
  }

  forget(nodeId: string): void {
    this.asks.delete(nodeId);
  }

  /** Queues the ask as the node's latest (it goes last). */
  ask(action: AskAction, node: SchedulerNodeView, reason: string, incidentId: number, since = Date.now()): void {
    const { readings: _, ...view } = node as SchedulerNode;
    this.asks.delete(node.id);
    this.asks.set(node.id, { action, node: view, reason, incidentId, since });
  }

  /** What waits, for the dependency's status. */
  waiting(): QueuedAction[] {
    return [...this.asks.values()].map((q) => ({ action: q.action, node: q.node.id, since: q.since }));
  }

  /** Carries out every ask in order, each on the node as the store has it now; one that no longer applies is dropped and said. */
  async replay(host: SchedulerHost, carryOut: (ask: QueuedAsk, node: SchedulerNode) => Promise<void>): Promise<void> {
    if (this.asks.size === 0) return;
    const views = new Map((await host.nodes()).map((v) => [v.id, v]));
    for (const [id, ask] of [...this.asks]) {
      this.asks.delete(id);
      const view = views.get(id);
      const takenOut = view !== undefined && view.cordonedBy !== null && isIn("takenOut", view.state);
      const waited = `${Math.round((Date.now() - ask.since) / 1000)} s`;
      if (ask.action === "cordon" && !takenOut) {
        this.log(`${this.label}: the queued ${this.names.cordon} of ${id} is dropped: the node is ${view?.state ?? "gone"} now (waited ${waited})`);
        continue;
      }
      this.log(`${this.label}: carrying out the queued ${this.names[ask.action]} of ${id} (waited ${waited})`);
      await carryOut(ask, { ...(view ?? ask.node), readings: async () => [] });
    }
  }
}
