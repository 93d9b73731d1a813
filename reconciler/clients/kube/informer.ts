// List + watch with a local cache. Unlike client-node's informer, which stops on any
// error other than 410 Gone, this one restarts on every error and every end of the
// stream: a stream that ends is watched again from the last resourceVersion; an error
// (410, a dropped connection, a 5xx, a bad line) relists after a backoff, and the relist
// is diffed against the cache so handlers see deletions that happened meanwhile. A full
// relist also runs every `resyncMs`, in case a watch silently missed something.
import * as v from "valibot";
import { KubeApiError, type KubeClient } from "./client.ts";
import { objectKey, type ObjectMeta } from "./types.ts";

export type InformerEvent = "added" | "modified" | "deleted";

export interface InformerOptions<T extends { metadata: ObjectMeta }> {
  /** Collection path, e.g. `/api/v1/nodes`. */
  path: string;
  query?: Record<string, string>;
  schema: v.GenericSchema<unknown, T>;
  onEvent?: (event: InformerEvent, object: T, old: T | undefined) => void;
  log?: (line: string) => void;
  /** Full relist interval; 0 disables. */
  resyncMs?: number;
  /** Server-side timeout of one watch request (the server ends the stream after it). */
  watchTimeoutSeconds?: number;
}

export class Informer<T extends { metadata: ObjectMeta }> {
  private readonly cache = new Map<string, T>();
  private resourceVersion = "";
  private abort = new AbortController();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private lastList = 0;
  /** Restarts so far (for tests and the log). */
  restarts = 0;
  synced = false;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: InformerOptions<T>,
  ) {}

  /** Lists once (resolves when the cache is filled), then keeps watching in the background. */
  async start(): Promise<void> {
    await this.relist();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop?.catch(() => undefined);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  get size(): number {
    return this.cache.size;
  }

  /** Puts a fresher copy (from our own write's answer) into the cache; a later watch event wins if newer. */
  observe(object: T): void {
    const key = objectKey(object.metadata);
    const old = this.cache.get(key);
    if (old && Number(old.metadata.resourceVersion ?? 0) >= Number(object.metadata.resourceVersion ?? 0)) return;
    this.cache.set(key, object);
    this.notify(old ? "modified" : "added", object, old);
  }

  /** A handler that throws is logged; it never stops the watch. */
  private notify(event: InformerEvent, object: T, old: T | undefined): void {
    try {
      this.opts.onEvent?.(event, object, old);
    } catch (err) {
      this.opts.log?.(`watch ${this.opts.path}: handler failed on ${event} ${objectKey(object.metadata)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async run(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      try {
        if (this.opts.resyncMs && Date.now() - this.lastList > this.opts.resyncMs) await this.relist();
        await this.client.watch(
          this.opts.path,
          { ...this.opts.query, resourceVersion: this.resourceVersion, timeoutSeconds: this.opts.watchTimeoutSeconds ?? 240 },
          (event) => this.apply(event.type, event.object),
          this.abort.signal,
        );
        backoff = 200; // a clean end (the server's timeout): watch again from where we are
      } catch (err) {
        if (this.stopped) return;
        this.restarts++;
        const gone = err instanceof KubeApiError && err.status === 410;
        if (!gone) this.opts.log?.(`watch ${this.opts.path} failed (restarting in ${backoff} ms): ${err instanceof Error ? err.message : String(err)}`);
        await this.pause(gone ? 0 : backoff);
        if (this.stopped) return;
        backoff = Math.min(backoff * 2, 5000);
        try {
          await this.relist();
        } catch (listErr) {
          if (!this.stopped) this.opts.log?.(`relist ${this.opts.path} failed: ${listErr instanceof Error ? listErr.message : String(listErr)}`);
        }
      }
    }
  }

  /** Waits `ms`, or less when stopped: a stop never waits out a backoff. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.abort.signal;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done);
    });
  }

  private apply(type: string, raw: unknown): void {
    if (type === "ERROR") {
      const code = typeof raw === "object" && raw !== null && "code" in raw ? Number((raw as { code: unknown }).code) : 0;
      const message = typeof raw === "object" && raw !== null && "message" in raw ? String((raw as { message: unknown }).message) : "watch error";
      throw new KubeApiError(code, code === 410 ? "Expired" : "WatchError", message);
    }
    if (type === "BOOKMARK") {
      const rv = (raw as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
      if (typeof rv === "string") this.resourceVersion = rv;
      return;
    }
    const parsed = v.safeParse(this.opts.schema, raw);
    if (!parsed.success) {
      this.opts.log?.(`watch ${this.opts.path}: skipped an object that does not parse (${parsed.issues[0].message})`);
      return;
    }
    const object = parsed.output;
    const key = objectKey(object.metadata);
    if (object.metadata.resourceVersion) this.resourceVersion = object.metadata.resourceVersion;
    const old = this.cache.get(key);
    if (type === "DELETED") {
      this.cache.delete(key);
      this.notify("deleted", object, old);
      return;
    }
    this.cache.set(key, object);
    this.notify(old ? "modified" : "added", object, old);
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.list(this.opts.path, this.opts.schema, {
      lane: "watch",
      ...(this.opts.query ? { query: this.opts.query } : {}),
    });
    this.lastList = Date.now();
    const seen = new Set<string>();
    for (const object of items) {
      const key = objectKey(object.metadata);
      seen.add(key);
      const old = this.cache.get(key);
      if (old?.metadata.resourceVersion === object.metadata.resourceVersion) continue;
      this.cache.set(key, object);
      this.notify(old ? "modified" : "added", object, old);
    }
    for (const [key, old] of this.cache) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.notify("deleted", old, old);
    }
    this.resourceVersion = resourceVersion;
    this.synced = true;
  }
}
