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
// The worker's connection copies the WAL back into the file (a checkpoint) between groups, at
// most every CHECKPOINT_EVERY_MS, never inside one: SQLite's automatic checkpoint runs in the
// commit that crosses its threshold, and held that group's answers for 25–70 ms a few times a
// second at 10,000 heartbeats/s.
import { existsSync } from "node:fs";
import type { Client } from "@libsql/client";
import { writeIngestGroup, type IngestGroup, type IngestResults } from "./ingest-write.ts";

export interface GroupWriter {
  write(group: IngestGroup, at: number): Promise<IngestResults>;
  close(): Promise<void>;
}

/** Writes on the calling thread through a client (tests, `:memory:` and remote databases). */
export function clientWriter(client: Pick<Client, "batch">): GroupWriter {
  return { write: (group, at) => writeIngestGroup(client, group, at), close: async () => undefined };
}

/** What goes to the worker and comes back (both sides are this file and ingest-worker.ts). */
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
  if (!IS_COMPILED) return new URL("./ingest-worker.ts", import.meta.url);
  const url = new URL("./fleet/ingest-worker.js", import.meta.url);
  return existsSync(decodeURIComponent(url.pathname)) ? url : undefined;
}

function asError(e: { message: string; code?: string }): Error {
  return Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code });
}

export interface WorkerWriterOptions {
  /** Told every error a write meets (the store's health monitor), as well as the caller. */
  observe: (err: unknown) => void;
  /** Told how long each checkpoint between groups took, in ms. */
  checkpointed?: (ms: number) => void;
  /** Runs a write while none of the store's own runs (Store.exclusive). */
  exclusive: <T>(write: () => Promise<T>) => Promise<T>;
  /** Where groups go once the worker has died (the event loop's thread): heartbeats are never refused for it. */
  fallback: GroupWriter;
  log: (line: string) => void;
}

/**
 * Writes in a worker thread over its own connection to `url` (a `file:` URL). A worker that
 * dies (an uncaught error, the thread gone) fails the groups it held; later ones are written
 * by the fallback, said once in the log.
 */
export class WorkerWriter implements GroupWriter {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: IngestResults | undefined) => void; reject: (err: unknown) => void }>();
  private lastCheckpointAt = performance.now();
  private checkpointing = false;
  /** Set once the worker takes no more groups: stopped by close(), or died on its own (then the fallback writes). */
  private ended: { how: "closed" | "died"; error: Error } | undefined;
  /** Resolves close()'s wait for the worker's answer. */
  private closed: (() => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly opts: WorkerWriterOptions,
  ) {
    const { observe } = opts;
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
    worker.onerror = (e) => this.die(`the ingest worker failed: ${e.message}`);
    worker.addEventListener("close", () => this.die("the ingest worker's thread ended"));
  }

  /** Starts the worker and opens its connection; undefined when this binary has no worker to start. */
  static async start(url: string, opts: WorkerWriterOptions): Promise<WorkerWriter | undefined> {
    const module = workerUrl();
    if (module === undefined) return undefined;
    const worker = new Worker(module);
    const opened = new Promise<void>((resolve, reject) => {
      worker.addEventListener(
        "message",
        (e: MessageEvent<FromIngestWorker>) => (e.data.kind === "opened" ? resolve() : e.data.kind === "failed" ? reject(asError(e.data.error)) : undefined),
        {
          once: true,
        },
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
    return new WorkerWriter(worker, opts);
  }

  /** Writes the group while none of the store's own writes runs (store/write-lock.ts says why). */
  write(group: IngestGroup, at: number): Promise<IngestResults> {
    // Outside the lock: the fallback's own writes take it.
    if (this.ended?.how === "died") return this.opts.fallback.write(group, at);
    const text = JSON.stringify(group);
    const written = this.opts.exclusive(() => this.call((id) => ({ kind: "write", id, group: text, at }))) as Promise<IngestResults>;
    void written.then(
      () => this.checkpointIfDue(),
      () => undefined,
    );
    return written;
  }

  /** A checkpoint once the group is answered, under the write lock like a group; its error goes to `observe` only. */
  private checkpointIfDue(): void {
    if (this.checkpointing || this.ended !== undefined || performance.now() - this.lastCheckpointAt < CHECKPOINT_EVERY_MS) return;
    this.checkpointing = true;
    this.opts
      .exclusive(async () => {
        const started = performance.now();
        await this.call((id) => ({ kind: "checkpoint", id }));
        this.opts.checkpointed?.(performance.now() - started);
      })
      .catch(() => undefined)
      .finally(() => {
        this.checkpointing = false;
        this.lastCheckpointAt = performance.now();
      });
  }

  private call(message: (id: number) => ToIngestWorker): Promise<IngestResults | undefined> {
    if (this.ended !== undefined) return Promise.reject(this.ended.error);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message(id));
    });
  }

  async close(): Promise<void> {
    if (this.ended === undefined) {
      this.ended = { how: "closed", error: new Error("the ingest worker was stopped") };
      const closed = new Promise<void>((resolve) => (this.closed = resolve));
      this.worker.postMessage({ kind: "close" } satisfies ToIngestWorker);
      await Promise.race([closed, Bun.sleep(2000)]);
    }
    this.worker.terminate();
    this.rejectPending(this.ended.error);
  }

  private die(why: string): void {
    if (this.ended !== undefined) return;
    this.ended = { how: "died", error: new Error(why) };
    this.opts.log(`${why}: heartbeats and events are written on the main thread from now on`);
    this.rejectPending(this.ended.error);
  }

  private rejectPending(err: Error): void {
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
  }
}
