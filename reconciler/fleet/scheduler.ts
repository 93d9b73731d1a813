// Where workloads are scheduled: the reconciler cordons and drains through this
// interface. The Kubernetes mirror (and Slurm) implement it; without a scheduler
// the reconciler's own cordon is the only one, and a drain waits for the node's
// GPUs to go idle or for the pool's drain deadline.
import type { GpuSnapshot } from "../../schema/wire.ts";

export interface DrainProgress {
  done: boolean;
  /** What is still running, for the node's status line (e.g. "3 pods left, 1 blocked by a PDB"). */
  detail: string;
  /** Set when the drain must stop and wait for a human (why); the loop holds the node. */
  hold?: string;
}

export interface SchedulerNode {
  id: string;
  /** Latest per-GPU readings from the agent (utilisation tells whether work is running). */
  gpus: GpuSnapshot[];
}

export interface SchedulerMirror {
  readonly name: string;
  /** Stop new work from landing on the node; idempotent. */
  cordon(node: SchedulerNode, reason: string, incidentId: number): Promise<void>;
  /** Undo our cordon (only ever called for cordons we made); idempotent. */
  uncordon(node: SchedulerNode): Promise<void>;
  /** Move work off the node; called repeatedly until done or the deadline passes. */
  drain(node: SchedulerNode, deadlineAt: number, now: number): Promise<DrainProgress>;
}

/** No scheduler: drained once every GPU reports 0 % utilisation (no work left). */
export const NO_SCHEDULER: SchedulerMirror = {
  name: "none",
  async cordon() {},
  async uncordon() {},
  async drain(node) {
    if (node.gpus.length === 0) return { done: true, detail: "no GPU readings: nothing known to be running" };
    const busy = node.gpus.filter((g) => (g.utilizationPct ?? 0) > 0);
    return busy.length === 0
      ? { done: true, detail: "all GPUs idle" }
      : { done: false, detail: `${busy.length} of ${node.gpus.length} GPUs still busy (${busy.map((g) => `GPU ${g.index} ${g.utilizationPct}%`).join(", ")})` };
  },
};
