// A simulated scheduler and its workload: a queue of jobs per pool, placed first-fit on
// the pool's in-service, schedulable nodes (in the order they came into service). It is
// the reconciler's SchedulerMirror in the simulator: cordon stops new placements on a
// node, drain evicts the node's jobs (they take `drain_grace` to stop, then go back to
// the front of their queue with the work they have left) and reports done once the node
// is empty. A fault on a node kills its jobs (requeued the same way). Jobs keep their GPUs
// busy, and the busy GPUs are what the node's agent reports as utilisation, which the
// reactive autoscaler reads. The queue (pending + running) feeds the loop's queue
// autoscaler (ReconcilerOptions.queueMetrics) and the report.
import type { Millis } from "../../schema/config.ts";
import type { PoolWorkloadSpec } from "../../schema/scenario/workload.ts";
import type { DrainProgress, SchedulerMirror, SchedulerNode } from "../schedulers/scheduler.ts";
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

  constructor(private readonly opts: WorkloadOptions) {
    const at = opts.now();
    for (const [pool, spec] of Object.entries(opts.pools)) {
      const queue = this.queue(pool);
      queue.spec = spec;
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
      this.refreshFree(existing);
      this.place();
      return;
    }
    const node: WorkNode = { id, pool, gpus, used: 0, jobs: new Set(), cordoned: false, blocked: false };
    this.nodes.set(id, node);
    this.refreshFree(node);
    this.place();
  }

  /** The node is gone (terminated, lost, vanished): its jobs go back to the queue. */
  removeNode(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    this.requeueAll(node, "killed");
    this.nodes.delete(id);
    this.free.get(node.pool)?.delete(id);
    this.place();
  }

  /** A fault on the node killed its jobs. */
  kill(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.jobs.size === 0) return;
    this.requeueAll(node, "killed");
    this.place();
  }

  /** The node may not take new work (its GPU was reported unhealthy) until it is uncordoned or back in service. */
  block(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    node.blocked = true;
    this.refreshFree(node);
  }

  /** A recovered node takes work again (unless it is cordoned). */
  unblock(id: string): void {
    const node = this.nodes.get(id);
    if (node === undefined) return;
    node.blocked = false;
    this.refreshFree(node);
    this.place();
  }

  // ───────────────────────────── SchedulerMirror ─────────────────────────────

  async cordon(node: SchedulerNode): Promise<void> {
    const n = this.nodes.get(node.id);
    if (n === undefined) return;
    n.cordoned = true;
    this.refreshFree(n);
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
    if (n === undefined || n.jobs.size === 0) return undefined;
    return n.evictAt;
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

  /** The next time something happens in the workload by itself (a job ends, a job arrives). */
  nextEventAt(): number | undefined {
    this.dropStale();
    let next: number | undefined = this.heap[0]?.endsAt;
    for (const q of this.queues.values()) {
      if (q.nextArrivalAt !== undefined && (next === undefined || q.nextArrivalAt < next)) next = q.nextArrivalAt;
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
    return { pending: q?.pending.length ?? 0, running: q?.running ?? 0 };
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

  /** First fit, in queue order; a job that fits nowhere waits (and so do the ones behind it). */
  private place(): void {
    const now = this.opts.now();
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
