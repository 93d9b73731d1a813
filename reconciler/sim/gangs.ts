// A gang job's life and its goodput ledger: the simulated scheduler (workload.ts) places it
// on its nodes, all or none, and tells it what happens; this says what state it is in and
// where every moment of its wall time went. From its first start it is always in one of:
//
//   waiting    not placed: fewer schedulable nodes than it needs       → lost: waiting_for_nodes
//   stalled    placed, but one of its nodes is broken and nothing has  → lost: waiting_for_nodes
//              taken that node out yet: the job cannot start on it
//   starting   placed again after an interruption, loading its last    → lost: restart
//              checkpoint (restart_overhead; not on the first start)
//   running    useful work; a checkpoint after every checkpoint_interval of it. An interruption
//              loses the work since the last checkpoint               → lost: recompute (drain
//              when a drain evicted it without a checkpoint)
//
// so that its wall time from the first start to its end (or the run's) is its useful work
// plus its lost time, and ETTR = useful ÷ wall. Work since the last checkpoint that is still
// running at the end of the run counts as useful: nothing has lost it.
import type { Millis } from "../../schema/config.ts";
import type { GangJobSpec } from "../../schema/scenario/workload.ts";

export const LOST_CAUSES = ["recompute", "restart", "waiting_for_nodes", "drain"] as const;
export type LostCause = (typeof LOST_CAUSES)[number];

export type GangState = "queued" | "waiting" | "stalled" | "starting" | "running" | "done";

/** How an interruption ends the job's run: a fault or failure, a drain, or a planned stop (checkpointed). */
export type InterruptionKind = "fault" | "drain" | "planned";

export interface Interruption {
  /** When (epoch ms). */
  at: number;
  cause: string;
  kind: InterruptionKind;
  /** Work lost (redone later), ms. */
  lost: Millis;
  /** The node it happened on, where one did. */
  node?: string;
}

export class Gang {
  state: GangState = "queued";
  /** When the current state began. */
  private since: number;
  /** Useful work done, as of `since` while running. */
  progress: Millis = 0;
  /** Work saved by the last checkpoint. */
  checkpointed: Millis = 0;
  firstStartAt: number | undefined;
  endedAt: number | undefined;
  /** When the restart overhead ends (starting). */
  private startsAt = 0;
  /** GPUs of its nodes, from its first placement. */
  gpus = 0;
  /** Lost wall time by cause, ms. */
  readonly lost: Record<LostCause, Millis> = { recompute: 0, restart: 0, waiting_for_nodes: 0, drain: 0 };
  readonly interruptions: Interruption[] = [];
  /** The nodes it holds (placed: stalled, starting, running), in placement order. */
  nodes: string[] = [];
  /** The nodes it held last: it restarts on those of them that may still take it. */
  lastNodes: string[] = [];
  /** Whether it has started once (a later start pays the restart overhead). */
  private hasRun = false;

  constructor(
    readonly id: number,
    readonly pool: string,
    readonly spec: GangJobSpec,
    at: number,
  ) {
    this.since = at;
  }

  get name(): string {
    return this.spec.name;
  }

  get placed(): boolean {
    return this.state === "stalled" || this.state === "starting" || this.state === "running";
  }

  /** Started or running: an interruption now costs it work or restart time. */
  get active(): boolean {
    return this.state === "starting" || this.state === "running";
  }

  /** Puts the time since the last change where it belongs. */
  private accrue(at: number): void {
    const dt = Math.max(0, at - this.since);
    this.since = Math.max(this.since, at);
    switch (this.state) {
      case "waiting":
      case "stalled":
        if (this.firstStartAt !== undefined) this.lost.waiting_for_nodes += dt;
        return;
      case "starting":
        this.lost.restart += dt;
        return;
      case "running": {
        this.progress = Math.min(this.spec.work, this.progress + dt);
        const every = this.spec.checkpoint_interval;
        if (every !== undefined) this.checkpointed = Math.max(this.checkpointed, Math.floor(this.progress / every) * every);
        return;
      }
      case "queued":
      case "done":
        return;
    }
  }

  /** Placed on `nodes` at `at`; stalled when one of them is broken. */
  place(at: number, nodes: string[], gpus: number, broken: boolean): void {
    this.accrue(at);
    const restarting = this.firstStartAt !== undefined && this.hasRun;
    if (this.firstStartAt === undefined) {
      this.firstStartAt = at;
      this.gpus = gpus;
    }
    this.nodes = nodes;
    if (broken) this.state = "stalled";
    else if (restarting && this.spec.restart_overhead > 0) {
      this.state = "starting";
      this.startsAt = at + this.spec.restart_overhead;
    } else this.state = "running";
    if (!broken) this.hasRun = true;
  }

  /**
   * Its run ends at `at` (a fault, a failure, a drain, a planned stop): the work since the last
   * checkpoint is lost, unless `checkpoint` (a checkpoint is taken first). It waits to be placed
   * again. Whether it was an interruption (it was starting or running).
   */
  interrupt(at: number, cause: string, kind: InterruptionKind, checkpoint: boolean, node?: string): boolean {
    this.accrue(at);
    const interrupted = this.active;
    let lost = 0;
    if (this.state === "running") {
      if (checkpoint) this.checkpointed = this.progress;
      lost = this.progress - this.checkpointed;
      this.lost[kind === "drain" ? "drain" : "recompute"] += lost;
      this.progress = this.checkpointed;
    }
    if (interrupted) this.interruptions.push({ at, cause, kind, lost, ...(node !== undefined ? { node } : {}) });
    this.state = this.firstStartAt === undefined ? "queued" : "waiting";
    this.lastNodes = this.nodes;
    this.nodes = [];
    return interrupted;
  }

  /** The next time it changes by itself: its restart overhead ends, or its work is done. */
  nextEventAt(): number | undefined {
    if (this.state === "starting") return this.startsAt;
    if (this.state === "running") return this.since + (this.spec.work - this.progress);
    return undefined;
  }

  /** Moves it through what happened by `at`; true when it finished (its nodes are free). */
  advance(at: number): boolean {
    if (this.state === "starting" && this.startsAt <= at) {
      this.accrue(this.startsAt);
      this.state = "running";
    }
    if (this.state === "running" && this.since + (this.spec.work - this.progress) <= at) {
      this.accrue(this.since + (this.spec.work - this.progress));
      this.state = "done";
      this.endedAt = this.since;
      this.lastNodes = this.nodes;
      this.nodes = [];
      return true;
    }
    return false;
  }

  /** Brings the ledger up to `at` without changing its state (for a sample or the report). */
  settle(at: number): void {
    if (this.state !== "done") this.accrue(at);
  }

  /** Wall time of its window so far: from its first start to its end, or to `at`. */
  wall(at: number): Millis {
    if (this.firstStartAt === undefined) return 0;
    return (this.endedAt ?? at) - this.firstStartAt;
  }

  /** Lost time so far, all causes. */
  lostTotal(): Millis {
    return LOST_CAUSES.reduce((a, c) => a + this.lost[c], 0);
  }
}
