// Group commit for what agents send most: heartbeats and event batches. Requests that arrive
// together are written in ONE transaction (ingest-write.ts: set-based statements, two for every
// heartbeat of the group whatever its size; in a worker thread for a database file,
// ingest-writer.ts), and each request is answered only once
// that transaction has committed, so an answer never promises what the store could still lose.
//
// Why: the store's cost is mostly per transaction (the WAL frames of every page it touched), and
// 10,000 heartbeats a second each in its own transaction spend the whole machine on it. A group
// forms by itself: the first request after a quiet spell is written at the next turn of the event
// loop (no timer, no added wait), and whatever arrives while a group is being written forms the
// next one. A group is at most `maxGroup` requests.
//
// A group that fails for one request's sake (not a busy, full, unwritable or corrupt store, which
// would fail each of them alike) is written again one request at a time, so one bad request
// fails alone.
import { classifyError } from "../store/writable.ts";
import type { EventBatch, Heartbeat } from "../../schema/wire.ts";
import type { AppendResult, HeartbeatResult } from "./write.ts";
import type { GroupWriter } from "./writer.ts";
import type { Clock } from "../../schema/time.ts";

type Job =
  | { kind: "heartbeat"; body: Heartbeat; resolve: (r: HeartbeatResult) => void; reject: (err: unknown) => void }
  | { kind: "events"; body: EventBatch; resolve: (r: AppendResult | undefined) => void; reject: (err: unknown) => void };

export interface IngestOptions {
  now: Clock;
  /** Most requests in one transaction (default 1,000). */
  maxGroup?: number;
  /** Told the size of each group written (navarch_ingest_group_requests). */
  observe?: (requests: number) => void;
}

export interface IngestStats {
  groups: number;
  requests: number;
  largestGroup: number;
}

export class Ingest {
  private queue: Job[] = [];
  private writing: Promise<void> | undefined;
  private readonly maxGroup: number;
  readonly stats: IngestStats = { groups: 0, requests: 0, largestGroup: 0 };

  constructor(
    private readonly writer: GroupWriter,
    private readonly opts: IngestOptions,
  ) {
    this.maxGroup = Math.max(1, opts.maxGroup ?? 1000);
  }

  /** Records a heartbeat with the group it arrives in; undefined when the node must register first. */
  heartbeat(body: Heartbeat): Promise<HeartbeatResult> {
    return new Promise((resolve, reject) => this.enqueue({ kind: "heartbeat", body, resolve, reject }));
  }

  /** Appends an event batch with the group it arrives in; undefined for an unknown node. */
  events(body: EventBatch): Promise<AppendResult | undefined> {
    return new Promise((resolve, reject) => this.enqueue({ kind: "events", body, resolve, reject }));
  }

  /** Resolves once every request queued so far is written (before the store closes). */
  async drain(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  /** Writes what is queued, then stops the writer. */
  async close(): Promise<void> {
    await this.drain();
    await this.writer.close();
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    // The requests read in this turn of the event loop join this group; it is written at the next.
    this.writing ??= new Promise<void>((done) => setImmediate(done)).then(() => this.writeAll());
  }

  private async writeAll(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxGroup);
        this.stats.groups++;
        this.stats.requests += group.length;
        this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
        this.opts.observe?.(group.length);
        await this.write(group);
      }
    } finally {
      this.writing = undefined;
    }
  }

  private async write(group: Job[]): Promise<void> {
    const heartbeats = group.filter((j) => j.kind === "heartbeat");
    const batches = group.filter((j) => j.kind === "events");
    try {
      const results = await this.writer.write({ heartbeats: heartbeats.map((j) => j.body), batches: batches.map((j) => j.body) }, this.opts.now());
      heartbeats.forEach((j, i) => j.resolve(results.heartbeats[i]));
      batches.forEach((j, i) => j.resolve(results.batches[i]));
    } catch (err) {
      if (group.length === 1 || classifyError(err) !== "other") {
        for (const j of group) j.reject(err);
        return;
      }
      for (const j of group) await this.write([j]);
    }
  }
}
