// Where a group of heartbeats and event batches is written: on this thread through the store's
// client, or, for a database file, in a worker thread with a connection of its own.
//
// Why a worker: libSQL's embedded driver runs SQLite synchronously on the calling thread, and
// writing a group costs about as much CPU as receiving, parsing and validating its requests.
// On the event loop's thread every commit stalls the HTTP server; in the worker the commit of
// one group overlaps the reception of the next, on the machine's other core. The event loop's
// own writes (the reconcile loop, operators) and the worker's groups take turns through the
// store's write lock (store/write-lock.ts).
//
// The WAL is copied back into the file (a checkpoint) at most every CHECKPOINT_EVERY_MS while
// groups flow, never inside a group's commit: SQLite's automatic checkpoint runs in the commit
// that crosses its threshold, and held that group's answers for 25–70 ms a few times a second
// at 10,000 heartbeats/s. Each checkpoint has two parts:
// - the copy, by a second worker thread over a connection of its own, beside the writes: a
//   PASSIVE checkpoint takes no write lock, so groups keep committing while it copies and
//   syncs (25 ms a checkpoint at 10,000 heartbeats/s);
// - the rest, by the writing worker between groups: what was written during the copy. Only a
//   WAL copied back to its end is started again from its beginning by the next write; without
//   this part, a WAL written without pause would grow for ever.
// With the whole checkpoint between groups, one group in ten waited for it: p90 20 ms, p99 38
// ms at 10,000 heartbeats/s, against 12 and 26 ms with the copy beside the writes.
import { existsSync } from "node:fs";
import { writeIngestGroup, type IngestGroup, type IngestResults, type WriteBatch } from "./write.ts";

export interface GroupWriter {
  write(group: IngestGroup, at: number): Promise<IngestResults>;
  close(): Promise<void>;
}

/** Writes on the calling thread through a client (tests, `:memory:` and remote databases). */
export function clientWriter(client: WriteBatch): GroupWriter {
  return { write: (group, at) => writeIngestGroup(client, group, at), close: async () => undefined };
}

/** What goes to the worker and comes back (both sides are this file and worker.ts). */
// The group travels as JSON text: structured cloning its objects costs the event loop's thread
// 5 to 10 times what JSON.stringify does (measured: a group of 100 heartbeats, 0.7–2.3 ms against 0.13–0.18 ms).
export type ToIngestWorker =
  | { kind: "open"; url: string }
  | { kind: "write"; id: number; group: string; at: number }
  | { kind: "checkpoint"; id: number }
  | { kind: "close" };
export type FromIngestWorker =
  | { kind: "opened" }
  | { kind: "closed" }
  | { kind: "written"; id: number; results: IngestResults }
  | { kind: "checkpointed"; id: number }
  | { kind: "failed"; id?: number; error: { message: string; code?: string } };

/** Most time between two checkpoints while groups are being written (about 1,000 WAL pages at 10,000 heartbeats/s). */
export const CHECKPOINT_EVERY_MS = 250;

/** Inside a `bun build --compile` binary, the worker is an extra entrypoint under /$bunfs/root/ (scripts/build.ts). */
const IS_COMPILED = import.meta.url.includes("/$bunfs/");

/** The worker module; in a binary built without it, undefined. */
function workerUrl(): URL | undefined {
  if (!IS_COMPILED) return new URL("./worker.ts", import.meta.url);
  const url = new URL("./ingest/worker.js", import.meta.url);
  return existsSync(decodeURIComponent(url.pathname)) ? url : undefined;
}

function asError(e: { message: string; code?: string }): Error {
  return Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code });
}

export interface WorkerWriterOptions {
  /** Told every error a write meets (the store's health monitor), as well as the caller. */
  observe: (err: unknown) => void;
  /** Told how long each checkpoint's parts took, in ms: the copy beside the writes, and the rest between groups (which groups wait for). */
  checkpointed?: (ms: { beside: number; between: number }) => void;
  /** Runs a write while none of the store's own runs (Store.exclusive). */
  exclusive: <T>(write: () => Promise<T>) => Promise<T>;
  /** Where groups go once the worker has died (the event loop's thread): heartbeats are never refused for it. */
  fallback: GroupWriter;
  log: (line: string) => void;
  /** Least time between two checkpoints while groups are written (default CHECKPOINT_EVERY_MS). */
  checkpointEveryMs?: number;
}

/** A thread running worker.ts over its own connection, and the calls in flight to it. */
class IngestThread {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: IngestResults | undefined) => void; reject: (err: unknown) => void }>();
  /** Set once the thread takes no more calls: stopped by close(), or died on its own. */
  ended: { how: "closed" | "died"; error: Error } | undefined;
  /** Resolves close()'s wait for the worker's answer. */
  private closed: (() => void) | undefined;

  private constructor(
    private readonly name: string,
    private readonly worker: Worker,
    observe: (err: unknown) => void,
    private readonly died: (why: string) => void,
  ) {
    worker.onmessage = (e: MessageEvent<FromIngestWorker>) => {
      const m = e.data;
      if (m.kind === "closed") this.closed?.();
      if (m.kind === "opened" || m.kind === "closed" || m.id === undefined) return;
      const call = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.kind === "written") call?.resolve(m.results);
      else if (m.kind === "checkpointed") call?.resolve(undefined);
      else {
        const err = asError(m.error);
        observe(err);
        call?.reject(err);
      }
    };
    worker.onerror = (e) => this.die(`${name} failed: ${e.message}`);
    worker.addEventListener("close", () => this.die(`${name}'s thread ended`));
  }

  /** Starts a thread and opens its connection to `url`; `died` is told why it ended, if it ends on its own. */
  static async start(name: string, module: URL, url: string, observe: (err: unknown) => void, died: (why: string) => void): Promise<IngestThread> {
    const worker = new Worker(module);
    const opened = new Promise<void>((resolve, reject) => {
      worker.addEventListener(
        "message",
        (e: MessageEvent<FromIngestWorker>) => (e.data.kind === "opened" ? resolve() : e.data.kind === "failed" ? reject(asError(e.data.error)) : undefined),
        { once: true },
      );
      worker.addEventListener("error", (e) => reject(new Error(e.message)), { once: true });
    });
    worker.postMessage({ kind: "open", url } satisfies ToIngestWorker);
    try {
      await opened;
    } catch (err) {
      worker.terminate();
      throw err;
    }
    return new IngestThread(name, worker, observe, died);
  }

  call(message: (id: number) => ToIngestWorker): Promise<IngestResults | undefined> {
    if (this.ended !== undefined) return Promise.reject(this.ended.error);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message(id));
    });
  }

  async close(): Promise<void> {
    if (this.ended === undefined) {
      this.ended = { how: "closed", error: new Error(`${this.name} was stopped`) };
      const closed = new Promise<void>((resolve) => (this.closed = resolve));
      this.worker.postMessage({ kind: "close" } satisfies ToIngestWorker);
      // A timer cleared once closed: a pending one would keep the process alive 2 s after a stop.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
    }
    this.worker.terminate();
    this.rejectPending(this.ended.error);
  }

  private die(why: string): void {
    if (this.ended !== undefined) return;
    this.ended = { how: "died", error: new Error(why) };
    this.rejectPending(this.ended.error);
    this.died(why);
  }

  private rejectPending(err: Error): void {
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
  }
}

/**
 * Writes in a worker thread over its own connection to `url` (a `file:` URL), and copies the
 * WAL back from a second one. A writing worker that dies (an uncaught error, the thread gone)
 * fails the groups it held; later ones are written by the fallback, said once in the log. A
 * copying worker that dies leaves the whole checkpoint to the writing one, between groups.
 */
export class WorkerWriter implements GroupWriter {
  private lastCheckpointAt = performance.now();
  private checkpointing = false;
  private copier: IngestThread | undefined;

  private constructor(
    private readonly writer: IngestThread,
    private readonly opts: WorkerWriterOptions,
  ) {}

  /** Starts the workers and opens their connections; undefined when this binary has no worker to start. */
  static async start(url: string, opts: WorkerWriterOptions): Promise<WorkerWriter | undefined> {
    const module = workerUrl();
    if (module === undefined) return undefined;
    const writer = await IngestThread.start("the ingest worker", module, url, opts.observe, (why) =>
      opts.log(`${why}: heartbeats and events are written on the main thread from now on`),
    );
    const self = new WorkerWriter(writer, opts);
    try {
      self.copier = await IngestThread.start("the WAL copier", module, url, opts.observe, (why) => {
        opts.log(`${why}: the WAL is copied back between groups from now on`);
        self.copier = undefined;
      });
    } catch (err) {
      await writer.close();
      throw err;
    }
    return self;
  }

  /** Writes the group while none of the store's own writes runs (store/write-lock.ts says why). */
  write(group: IngestGroup, at: number): Promise<IngestResults> {
    // Outside the lock: the fallback's own writes take it.
    if (this.writer.ended?.how === "died") return this.opts.fallback.write(group, at);
    const text = JSON.stringify(group);
    const written = this.opts.exclusive(() => this.writer.call((id) => ({ kind: "write", id, group: text, at }))) as Promise<IngestResults>;
    void written.then(
      () => this.checkpointIfDue(),
      () => undefined,
    );
    return written;
  }

  /** A checkpoint once the group is answered; its error goes to `observe` only. */
  private checkpointIfDue(): void {
    if (this.checkpointing || this.writer.ended !== undefined) return;
    if (performance.now() - this.lastCheckpointAt < (this.opts.checkpointEveryMs ?? CHECKPOINT_EVERY_MS)) return;
    this.checkpoint().catch(() => undefined);
  }

  /** Copies the WAL back into the database file now (PASSIVE): beside the writes, then the rest between groups. */
  async checkpoint(): Promise<void> {
    this.checkpointing = true;
    try {
      const started = performance.now();
      // A copier that dies meanwhile fails this call; the rest below still runs.
      await this.copier?.call((id) => ({ kind: "checkpoint", id })).catch(() => undefined);
      const copied = performance.now();
      await this.opts.exclusive(() => this.writer.call((id) => ({ kind: "checkpoint", id })));
      this.opts.checkpointed?.({ beside: copied - started, between: performance.now() - copied });
    } finally {
      this.checkpointing = false;
      this.lastCheckpointAt = performance.now();
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.writer.close(), this.copier?.close()]);
  }
}
