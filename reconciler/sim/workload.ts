// A simulated scheduler and its workload: a queue of jobs per pool, placed first-fit on
// the pool's in-service, schedulable nodes (in the order they came into service). It is
// the reconciler's SchedulerMirror in the simulator: cordon stops new placements on a
// node, drain evicts the node's jobs (they take `drain_grace` to stop, then go back to
// the front of their queue with the work they have left) and reports done once the node
// is empty. A fault on a node kills its jobs (requeued the same way). Jobs keep their GPUs
// busy, and the busy GPUs are what the node's agent reports as utilisation, which the
// reactive autoscaler reads. The queue (pending + running) feeds the loop's queue
// autoscaler (ReconcilerOptions.queueMetrics) and the report.
//
// Gang jobs (a pool's `jobs:`) span whole nodes, all of them or none (gangs.ts keeps their
// states and goodput ledger), and are placed before the single-node jobs. A gang restarts on
// the nodes it held that may still take it, and on the first free ones for the rest. The
// scheduler sees what a device plugin and a cordon tell it: a node whose GPU the driver
// reported unhealthy (blocked) or that is cordoned takes no gang. A node with a fault the
// scheduler cannot see (a NIC, a thermal sensor: broken) still takes one, and the gang cannot
// start there (stalled) until something takes that node out: Navarch's cordon, or a human.
import type { Millis } from "../../schema/config.ts";
import type { PoolWorkloadSpec } from "../../schema/scenario/workload.ts";
import type { DrainProgress, SchedulerMirror, SchedulerNode } from "../schedulers/scheduler.ts";
import { Gang, type InterruptionKind } from "./gangs.ts";
import type { Random } from "./random.ts";

interface Job {
  id: number;
  pool: string;
  gpus: number;
  /** Work left, ms (kept across evictions: jobs checkpoint). */
  remaining: Millis;
  node?: string;
  startedAt?: number;
  endsAt?: number;
  /** Bumped whenever the job stops running: heap entries of an older generation are stale. */
  gen: number;
}

interface HeapEntry {
  job: Job;
  endsAt: number;
  gen: number;
}

interface WorkNode {
  id: string;
  pool: string;
  gpus: number;
  used: number;
  jobs: Set<Job>;
  /** Cordoned by the reconciler (or draining). */
  cordoned: boolean;
  /** A GPU reported unhealthy: no new work until it recovers. */
  blocked: boolean;
  /** Set by the first drain call: when the evicted jobs have stopped. */
  evictAt?: number;
  /** The gang job holding the whole node. */
  gang?: Gang;
  /** A fault the scheduler does not see keeps any gang placed here from starting (see the header). */
  broken: boolean;
  /** Why it is being drained, where the simulator knows (host maintenance): a gang's interruption cause. */
  drainCause?: string;
}

interface PoolQueue {
  pending: Job[];
  running: number;
  spec?: PoolWorkloadSpec;
  nextArrivalAt?: number;
}

export interface WorkloadOptions {
  now: () => number;
  random: Random;
  drainGrace: Millis;
  pools: Readonly<Record<string, PoolWorkloadSpec>>;
  /** Called when a node's busy GPU count changes. */
  onBusy: (nodeId: string, busyGpus: number) => void;
}

export class SimWorkload implements SchedulerMirror {
  readonly name = "simulated";
  private readonly nodes = new Map<string, WorkNode>();
  /** Nodes with at least one free GPU that may take work, per pool, in service order. */
  private readonly free = new Map<string, Set<string>>();
  private readonly queues = new Map<string, PoolQueue>();
  /** Running jobs by end time (a binary heap; evicted jobs are skipped when popped). */
  private readonly heap: HeapEntry[] = [];
  private nextId = 1;
  /** Jobs finished, evicted and killed, for the report. */
  readonly counts = { submitted: 0, completed: 0, evicted: 0, killed: 0 };
  /** Gang jobs, in the order the scenario lists them. */
  private readonly gangList: Gang[] = [];
  /** Stalled gangs one of whose nodes changed: they are placed again. */
  private readonly restall = new Set<Gang>();

  constructor(private readonly opts: WorkloadOptions) {
    const at = opts.now();
    for (const [pool, spec] of Object.entries(opts.pools)) {
      const queue = this.queue(pool);
      queue.spec = spec;
      for (const job of spec.jobs ?? []) {
        this.gangList.push(new Gang(this.nextId++, pool, job, at));
        this.counts.submitted++;
      }
      if (spec.arrivals_per_hour > 0) queue.nextArrivalAt = at + Math.round(opts.random.exponential(3_600_000 / spec.arrivals_per_hour));
      if (spec.initial_jobs > 0) this.submit(pool, spec.initial_jobs, spec.job_duration, spec.gpus_per_job, true);
    }
  }

  // ───────────────────────────── nodes ─────────────────────────────

  /** A node came into service (Ready): it may take work. */
  addNode(id: string, pool: string, gpus: number): void {
    const existing = this.nodes.get(id);
    if (existing !== undefined) {
      existing.cordoned = false;
      existing.blocked = false;
      existing.broken = false;
      this.restallOf(existing);
      this.refreshFree(existing);
      this.place();
      return;
    }
    const node: WorkNode = { id, pool, gpus, used: 0, jobs: new Set(), cordoned: false, blocked: false, broken: false };
    this.nodes.set(id, node);
    this.refreshFree(node);
    this.place();
  }

  /** The node is gone (terminated, lost, vanished): its jobs go back to the queue. */
  removeNode(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    if (node.gang !== undefined) this.stopGang(node.gang, "node_lost", "fault", false, id);
    this.requeueAll(node, "killed");
    this.nodes.delete(id);
    this.free.get(node.pool)?.delete(id);
    this.place();
  }

  /** A fault on the node (or its job's own failure: `cause`) killed its jobs. */
  kill(id: string, cause = "fault"): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    const gang = node.gang;
    const jobs = node.jobs.size > 0;
    if (gang === undefined && !jobs) return;
    if (gang !== undefined) this.stopGang(gang, cause, "fault", false, id);
    if (jobs) this.requeueAll(node, "killed");
    this.place();
  }

  /** An operator stops the gang job on the node with a checkpoint and restarts it (a planned interruption). */
  restartGangOn(id: string, cause: string): void {
    const gang = this.nodes.get(id)?.gang;
    if (gang === undefined) return;
    this.stopGang(gang, cause, "planned", true, id);
    this.place();
  }

  /** The node may not take new work (its GPU was reported unhealthy) until it is uncordoned or back in service. */
  block(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    node.blocked = true;
    this.refreshFree(node);
    if (this.restallOf(node)) this.place();
  }

  /** A recovered node takes work again (unless it is cordoned). */
  unblock(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    node.blocked = false;
    node.broken = false;
    this.restallOf(node);
    this.refreshFree(node);
    this.place();
  }

  /** The node has a fault that keeps a gang job from starting on it, seen by the scheduler or not (see the header). */
  markBroken(id: string): void {
    const node = this.nodes.get(id);
    if (node !== undefined) node.broken = true;
  }

  /** Why the node is about to be drained (a gang job it evicts is interrupted by that cause). */
  noteDrainCause(id: string, cause: string): void {
    const node = this.nodes.get(id);
    if (node !== undefined) node.drainCause = cause;
  }

  /** Whether a gang job holds the node. */
  runsGang(id: string): boolean {
    return this.nodes.get(id)?.gang !== undefined;
  }

  /** The gang jobs, in the scenario's order. */
  gangs(): readonly Gang[] {
    return this.gangList;
  }

  /** Nodes of a pool that may take a gang job's share now (known to the scheduler, not cordoned, not blocked). */
  schedulable(pool: string): number {
    let n = 0;
    for (const node of this.nodes.values()) if (node.pool === pool && !node.cordoned && !node.blocked) n++;
    return n;
  }

  // ───────────────────────────── SchedulerMirror ─────────────────────────────

  async cordon(node: SchedulerNode): Promise<void> {
    const n = this.nodes.get(node.id);
    if (n === undefined) return;
    n.cordoned = true;
    this.refreshFree(n);
    if (this.restallOf(n)) this.place();
  }

  async uncordon(node: SchedulerNode): Promise<void> {
    const n = this.nodes.get(node.id);
    if (n === undefined) return;
    n.cordoned = false;
    n.blocked = false;
    n.evictAt = undefined;
    this.refreshFree(n);
    this.place();
  }

  async drain(node: SchedulerNode, _deadlineAt: number, now: number): Promise<DrainProgress> {
    const n = this.nodes.get(node.id);
    if (n?.gang !== undefined) return this.drainGang(n, n.gang, now);
    if (n === undefined || n.jobs.size === 0) return { done: true, detail: "no jobs on the node" };
    n.cordoned = true;
    this.refreshFree(n);
    n.evictAt ??= now + this.opts.drainGrace;
    if (now >= n.evictAt) {
      const evicted = n.jobs.size;
      this.requeueAll(n, "evicted");
      this.place();
      return { done: true, detail: `${evicted} job(s) evicted and requeued` };
    }
    return { done: false, detail: `${n.jobs.size} job(s) stopping (grace until ${new Date(n.evictAt).toISOString()})` };
  }

  /** When a draining node's jobs will have stopped (a pass then finds it drained). */
  drainDoneAt(id: string): number | undefined {
    const n = this.nodes.get(id);
    if (n?.gang !== undefined) return n.evictAt;
    if (n === undefined || n.jobs.size === 0) return undefined;
    return n.evictAt;
  }

  /** A gang job on a draining node: one that has not started moves at once; a running one stops after the grace. */
  private drainGang(n: WorkNode, gang: Gang, now: number): DrainProgress {
    n.cordoned = true;
    this.refreshFree(n);
    if (!gang.active) {
      this.stopGang(gang, "drain", "drain", false, n.id);
      this.place();
      return { done: true, detail: `gang job ${gang.name} had not started; placed elsewhere` };
    }
    n.evictAt ??= now + this.opts.drainGrace;
    if (now < n.evictAt) return { done: false, detail: `gang job ${gang.name} stopping (grace until ${new Date(n.evictAt).toISOString()})` };
    const checkpoint = this.queues.get(gang.pool)?.spec?.checkpoint_on_drain ?? false;
    const cause = n.drainCause ?? "drain";
    n.drainCause = undefined;
    this.stopGang(gang, cause, "drain", checkpoint, n.id);
    this.place();
    return { done: true, detail: `gang job ${gang.name} evicted${checkpoint ? " with a checkpoint" : ": its work since the last checkpoint is lost"}` };
  }

  // ───────────────────────────── jobs ─────────────────────────────

  submit(pool: string, count: number, duration: Millis, gpus: number, randomDurations = false): void {
    const queue = this.queue(pool);
    for (let i = 0; i < count; i++) {
      const remaining = randomDurations ? Math.max(60_000, Math.round(this.opts.random.exponential(duration))) : duration;
      queue.pending.push({ id: this.nextId++, pool, gpus, remaining, gen: 0 });
      this.counts.submitted++;
    }
    this.place();
  }

  /** The next time something happens in the workload by itself (a job ends, a job arrives, a gang job starts working). */
  nextEventAt(): number | undefined {
    this.dropStale();
    let next: number | undefined = this.heap[0]?.endsAt;
    for (const q of this.queues.values()) {
      if (q.nextArrivalAt !== undefined && (next === undefined || q.nextArrivalAt < next)) next = q.nextArrivalAt;
    }
    for (const g of this.gangList) {
      const at = g.nextEventAt();
      if (at !== undefined && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /** Completes the jobs that ended by `now`, adds background arrivals, places what fits. */
  advance(now: number): void {
    for (;;) {
      this.dropStale();
      const entry = this.heap[0];
      if (entry === undefined || entry.endsAt > now) break;
      heapPop(this.heap);
      const top = entry.job;
      const node = top.node === undefined ? undefined : this.nodes.get(top.node);
      if (node !== undefined) this.release(node, top);
      this.queue(top.pool).running--;
      this.counts.completed++;
      top.node = undefined;
      top.endsAt = undefined;
      top.gen++;
    }
    for (const g of this.gangList) {
      const held = g.nodes;
      if (g.advance(now)) {
        this.releaseNodes(held);
        this.counts.completed++;
      }
    }
    for (const [pool, q] of this.queues) {
      const spec = q.spec;
      if (spec === undefined || spec.arrivals_per_hour <= 0) continue;
      while (q.nextArrivalAt !== undefined && q.nextArrivalAt <= now) {
        this.submit(pool, 1, spec.job_duration, spec.gpus_per_job, true);
        q.nextArrivalAt += Math.max(1, Math.round(this.opts.random.exponential(3_600_000 / spec.arrivals_per_hour)));
      }
    }
    this.place();
  }

  metrics(pool: string): { pending: number; running: number } {
    const q = this.queues.get(pool);
    let pending = q?.pending.length ?? 0;
    let running = q?.running ?? 0;
    for (const g of this.gangList) {
      if (g.pool !== pool) continue;
      if (g.placed) running++;
      else if (g.state !== "done") pending++;
    }
    return { pending, running };
  }

  pools(): string[] {
    return [...this.queues.keys()];
  }

  // ───────────────────────────── internals ─────────────────────────────

  private queue(pool: string): PoolQueue {
    let q = this.queues.get(pool);
    if (q === undefined) {
      q = { pending: [], running: 0 };
      this.queues.set(pool, q);
    }
    return q;
  }

  private refreshFree(node: WorkNode): void {
    let set = this.free.get(node.pool);
    if (set === undefined) {
      set = new Set();
      this.free.set(node.pool, set);
    }
    if (!node.cordoned && !node.blocked && node.used < node.gpus) set.add(node.id);
    else set.delete(node.id);
  }

  /** Gang jobs first (see placeGangs); then first fit, in queue order; a job that fits nowhere waits (and so do the ones behind it). */
  private place(): void {
    const now = this.opts.now();
    if (this.gangList.length > 0) this.placeGangs(now);
    for (const [pool, q] of this.queues) {
      const free = this.free.get(pool);
      while (q.pending.length > 0 && free !== undefined && free.size > 0) {
        const job = q.pending[0]!;
        let target: WorkNode | undefined;
        for (const id of free) {
          const n = this.nodes.get(id);
          if (n !== undefined && n.gpus - n.used >= job.gpus) {
            target = n;
            break;
          }
        }
        if (target === undefined) break;
        q.pending.shift();
        q.running++;
        job.node = target.id;
        job.startedAt = now;
        job.endsAt = now + job.remaining;
        target.jobs.add(job);
        target.used += job.gpus;
        this.refreshFree(target);
        this.opts.onBusy(target.id, target.used);
        job.gen++;
        heapPush(this.heap, { job, endsAt: job.endsAt, gen: job.gen });
      }
    }
  }

  /**
   * Places every gang job that waits, in the scenario's order, and again the stalled ones one of
   * whose nodes changed: on the nodes it held that may still take it, then on the first free
   * ones (in the order they came into service). It waits while fewer are free than it needs.
   */
  private placeGangs(now: number): void {
    for (const g of this.gangList) {
      if (g.state === "stalled" && this.restall.has(g)) this.stopGang(g, "restall", "fault", false);
      if (g.state !== "queued" && g.state !== "waiting") continue;
      const free = this.free.get(g.pool);
      const need = g.spec.nodes;
      if (free === undefined || free.size < need) continue;
      const chosen: WorkNode[] = [];
      const taken = new Set<string>();
      const fits = (n: WorkNode | undefined): n is WorkNode => n !== undefined && n.gang === undefined && n.used === 0 && !n.cordoned && !n.blocked;
      for (const id of g.lastNodes) {
        if (chosen.length >= need) break;
        const n = this.nodes.get(id);
        if (fits(n) && n.pool === g.pool && !taken.has(id)) {
          chosen.push(n);
          taken.add(id);
        }
      }
      for (const id of free) {
        if (chosen.length >= need) break;
        const n = this.nodes.get(id);
        if (!taken.has(id) && fits(n)) {
          chosen.push(n);
          taken.add(id);
        }
      }
      if (chosen.length < need) continue;
      let gpus = 0;
      let broken = false;
      for (const n of chosen) {
        n.gang = g;
        n.used = n.gpus;
        gpus += n.gpus;
        broken ||= n.broken;
        this.refreshFree(n);
        this.opts.onBusy(n.id, n.used);
      }
      g.place(
        now,
        chosen.map((n) => n.id),
        gpus,
        broken,
      );
    }
    this.restall.clear();
  }

  /** Ends a gang job's run (see Gang.interrupt) and frees its nodes. */
  private stopGang(gang: Gang, cause: string, kind: InterruptionKind, checkpoint: boolean, node?: string): void {
    const held = gang.nodes;
    if (gang.interrupt(this.opts.now(), cause, kind, checkpoint, node)) {
      if (kind === "fault") this.counts.killed++;
      else if (kind === "drain") this.counts.evicted++;
    }
    this.releaseNodes(held);
  }

  private releaseNodes(ids: readonly string[]): void {
    for (const id of ids) {
      const n = this.nodes.get(id);
      if (n === undefined) continue;
      n.gang = undefined;
      n.used = 0;
      n.evictAt = undefined;
      this.refreshFree(n);
      this.opts.onBusy(n.id, 0);
    }
  }

  /** A stalled gang on this node is placed again at the next placement; whether there is one. */
  private restallOf(node: WorkNode): boolean {
    if (node.gang?.state !== "stalled") return false;
    this.restall.add(node.gang);
    return true;
  }

  private release(node: WorkNode, job: Job): void {
    node.jobs.delete(job);
    node.used -= job.gpus;
    this.refreshFree(node);
    this.opts.onBusy(node.id, node.used);
  }

  private requeueAll(node: WorkNode, why: "evicted" | "killed"): void {
    const now = this.opts.now();
    const jobs = [...node.jobs].sort((a, b) => a.id - b.id);
    const q = (pool: string) => this.queue(pool);
    for (const job of jobs) {
      this.release(node, job);
      q(job.pool).running--;
      job.remaining = Math.max(1000, (job.endsAt ?? now) - now);
      job.node = undefined;
      job.endsAt = undefined;
      job.gen++; // its heap entry is now stale
      this.counts[why]++;
    }
    for (const job of jobs.reverse()) q(job.pool).pending.unshift(job);
    node.evictAt = undefined;
  }

  private dropStale(): void {
    while (this.heap.length > 0 && this.heap[0]!.gen !== this.heap[0]!.job.gen) heapPop(this.heap);
  }
}

// A binary min-heap of running jobs by end time (ties by job id: deterministic). Entries are
// immutable; a job that stopped early (evicted, killed) leaves a stale entry behind, known
// by its generation, and dropped when it reaches the top.
function less(a: HeapEntry, b: HeapEntry): boolean {
  return a.endsAt < b.endsAt || (a.endsAt === b.endsAt && (a.job.id < b.job.id || (a.job.id === b.job.id && a.gen < b.gen)));
}

function heapPush(heap: HeapEntry[], entry: HeapEntry): void {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!less(heap[i]!, heap[parent]!)) break;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function heapPop(heap: HeapEntry[]): HeapEntry | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last !== undefined) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
  return top;
}
