// How a scheduler mirror writes to the scheduler's nodes (a cordon, its undo, a condition):
// never on the loop's time. Writes to one node go out in order (an undo never overtakes its
// cordon), each retried with backoff until it lands or a newer intent for that node
// supersedes it; everything runs in the background and is tracked, so `settle` can wait for
// it and `stop` ends the retries; `nudge` (the scheduler answers again) ends every backoff at
// once, so a write queued during an outage lands as soon as the scheduler is back. Both
// mirrors (Kubernetes, Slurm) write this way.

/** Longest wait between two tries of one write. */
const MAX_BACKOFF_MS = 30_000;

export class NodeWrites {
  /** The latest intent asked for per node: a write retried after a newer one gives up. */
  private readonly intents = new Map<string, number>();
  /** The tail of each node's queue of writes. */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly background = new Set<Promise<unknown>>();
  /** The writes being tried now, with what they are and since when. */
  private readonly underWay = new Set<{ action: string; node: string; since: number }>();
  /** Retries waiting out their backoff: a nudge ends the wait. */
  private readonly sleeping = new Set<() => void>();
  private stopped = false;

  /** `label` prefixes the log lines (`kubernetes`, `slurm`). */
  constructor(
    private readonly label: string,
    private readonly log: (line: string) => void,
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  /** A new intent for the node (a cordon or an undo): writes of earlier intents stop retrying. */
  intend(name: string): number {
    const n = (this.intents.get(name) ?? 0) + 1;
    this.intents.set(name, n);
    return n;
  }

  /** Runs `write` until it succeeds (backing off up to 30 s) or a newer intent supersedes it. */
  async retrying(name: string, intent: number, what: string, write: () => Promise<unknown>): Promise<boolean> {
    const under = { action: what, node: name, since: Date.now() };
    this.underWay.add(under);
    try {
      for (let attempt = 0; !this.stopped && this.intents.get(name) === intent; attempt++) {
        try {
          await write();
          return true;
        } catch (err) {
          if (attempt === 0 || attempt % 10 === 0) this.log(`${this.label}: ${what} of ${name} failed (try ${attempt + 1}, retrying): ${errText(err)}`);
          await this.pause(Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt));
        }
      }
      return false;
    } finally {
      this.underWay.delete(under);
    }
  }

  /** The writes under way (sent, or waiting to be retried), oldest first: what waits for the scheduler. `node` is its name there. */
  waiting(): { action: string; node: string; since: number }[] {
    return [...this.underWay];
  }

  /** Queues a write to one node behind its earlier ones. */
  enqueue(name: string, work: () => Promise<void>): Promise<void> {
    const previous = this.queues.get(name) ?? Promise.resolve();
    const next = previous.then(work).catch((err: unknown) => this.log(`${this.label}: node ${name}: ${errText(err)}`));
    this.queues.set(name, next);
    this.track(
      next.finally(() => {
        if (this.queues.get(name) === next) this.queues.delete(name);
      }),
    );
    return next;
  }

  /** Whether a write to the node is still on its way. */
  pending(name: string): boolean {
    return this.queues.has(name);
  }

  /** Runs `work` in the background: its failure is logged, `settle` waits for it. */
  track(work: Promise<unknown>): void {
    const p = work.catch((err: unknown) => this.log(`${this.label}: ${errText(err)}`)).finally(() => this.background.delete(p));
    this.background.add(p);
  }

  /** Waits until nothing is left in the background (work started meanwhile included). */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** The scheduler answers again: every write waiting out its backoff tries now. */
  nudge(): void {
    for (const wake of [...this.sleeping]) wake();
  }

  /** Retries end; what is in flight finishes (`settle` waits for it). */
  stop(): void {
    this.stopped = true;
    this.nudge();
  }

  /** Waits `ms`, or less: a nudge or a stop ends the wait. */
  pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleeping.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeping.add(done);
    });
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
