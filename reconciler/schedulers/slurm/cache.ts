// The cluster as last read from slurmrestd: nodes (read every poll), jobs and partitions
// (read when someone needs them, at most once per max age). Concurrent readers share one
// request, so many draining nodes and the queue autoscaler cost one GET, not one each. The
// mirror's calls from the loop only peek: they read what is there and start a read beside.
// Times are real time: they measure how fresh an answer is, not the reconciler's clock.
import type { SlurmJob, SlurmNode, SlurmPartition } from "./api.ts";
import type { SlurmClient } from "./client.ts";

export interface Snapshot<T> {
  items: T[];
  /** When the request that read it started (real time, ms). */
  at: number;
}

class Shared<T> {
  private last: Snapshot<T> | undefined;
  private inFlight: Promise<Snapshot<T>> | undefined;

  constructor(private readonly read: () => Promise<T[]>) {}

  get latest(): Snapshot<T> | undefined {
    return this.last;
  }

  /** A snapshot started at or after `notBefore` (real time); reads again when the last one is older. */
  async since(notBefore: number): Promise<Snapshot<T>> {
    if (this.last !== undefined && this.last.at >= notBefore) return this.last;
    // A read already under way counts only if it started late enough.
    const pending = this.inFlight;
    if (pending !== undefined) {
      const got = await pending;
      if (got.at >= notBefore) return got;
    }
    return this.refresh();
  }

  /**
   * A snapshot started at or after `notBefore`, if there is one; otherwise undefined, and one is
   * read beside the caller (one at a time; `then` runs once it is in). Never waits for slurmrestd.
   */
  peek(notBefore: number, then?: () => void): Snapshot<T> | undefined {
    if (this.last !== undefined && this.last.at >= notBefore) return this.last;
    if (this.inFlight === undefined)
      void this.refresh().then(
        () => then?.(),
        () => undefined,
      );
    return undefined;
  }

  refresh(): Promise<Snapshot<T>> {
    const at = Date.now();
    const request = this.read().then((items) => {
      const snapshot = { items, at };
      if (this.last === undefined || this.last.at <= at) this.last = snapshot;
      return snapshot;
    });
    this.inFlight = request;
    return request.finally(() => {
      if (this.inFlight === request) this.inFlight = undefined;
    });
  }
}

export class SlurmCache {
  readonly nodes: Shared<SlurmNode>;
  readonly jobs: Shared<SlurmJob>;
  readonly partitions: Shared<SlurmPartition>;

  constructor(client: SlurmClient) {
    this.nodes = new Shared(() => client.nodes());
    this.jobs = new Shared(() => client.jobs());
    this.partitions = new Shared(() => client.partitions());
  }
}
