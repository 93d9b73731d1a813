// A small Kubernetes REST client on Bun's fetch. The connection (server, CA, client
// certificate, bearer token, in-cluster service account, exec plugins) comes from
// @kubernetes/client-node's KubeConfig, which does the kubeconfig parsing and token
// refresh; the requests themselves go through Bun.FetchSession with its `tls` option,
// which carries the CA and client certificate in a compiled binary too (client-node
// 2.x loses them under Bun: its https.Agent options are ignored by Bun's node:https).
//
// Requests are made on lanes, each with its own token bucket, its own cap on requests in
// flight and its own connection pool: cordons never wait behind a mass of evictions
// (NVSentinel hit a shared 5 QPS budget), and watches hold their long-lived connections
// apart from both.
import { KubeConfig } from "@kubernetes/client-node";
import type { RequestOptions } from "node:https";
import * as v from "valibot";
import type { Dependency } from "../../dependencies/status.ts";
import { AnyList, Status, WatchEvent } from "./types.ts";
import { textPrefix } from "../../../schema/text.ts";

export type LaneName = "cordon" | "eviction" | "default" | "watch";

export interface LaneBudget {
  /** Requests per second, sustained. */
  qps: number;
  /** Requests that may go at once after a quiet spell. */
  burst: number;
}

/** Where the connection comes from. */
export type KubeSource =
  /** A kubeconfig file (path absent: $KUBECONFIG, ~/.kube/config, then in-cluster). */
  | { kind: "kubeconfig"; path?: string; context?: string }
  /** The pod's service account; `root` prefixes the well-known paths (tests). */
  | { kind: "in-cluster"; root?: string }
  /** A server URL and a bearer token. */
  | { kind: "token"; server: string; token: string; caFile?: string; caPem?: string; insecureSkipTlsVerify?: boolean };

export interface KubeClientOptions {
  source: KubeSource;
  lanes?: Partial<Record<LaneName, LaneBudget>>;
  /** Per request, unless the call says otherwise. */
  timeoutMs?: number;
  userAgent?: string;
}

/** A refusal or failure from the API server, with what callers branch on. */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    /** HTTP status; 0 when the server was not reached. */
    readonly status: number,
    /** The Status reason (`NotFound`, `Conflict`, `TooManyRequests`, …) or a transport error name. */
    readonly reason: string,
    message: string,
    readonly retryAfterSeconds?: number,
    /** Field causes the server named (validation failures). */
    readonly causes: readonly { field?: string; message?: string }[] = [],
  ) {
    super(message);
  }

  /** Worth another try later (throttled, server trouble, not reached). */
  get transient(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

export interface RequestInitKube {
  lane?: LaneName;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Defaults to application/json when there is a body. */
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export const PATCH_JSON = "application/json-patch+json";
export const PATCH_MERGE = "application/merge-patch+json";
export const PATCH_STRATEGIC = "application/strategic-merge-patch+json";

const DEFAULT_LANES: Record<LaneName, LaneBudget> = {
  cordon: { qps: 100, burst: 200 },
  eviction: { qps: 20, burst: 40 },
  default: { qps: 50, burst: 100 },
  watch: { qps: 20, burst: 50 },
};

/**
 * Requests in flight per lane (a watch's stream aside). Bun's fetch sends at most 256 requests
 * at once per process (BUN_CONFIG_MAX_HTTP_REQUESTS) and queues the rest in one line for every
 * caller: uncapped, a mass drain's pod lists and evictions filled it and cordons waited behind
 * them. Capped, the other lanes always leave the cordon lane room.
 */
const IN_FLIGHT: Record<LaneName, number> = { cordon: 128, eviction: 32, default: 32, watch: 16 };

/** At most `limit` holders at once, first come first served. */
export class Slots {
  private used = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** Callers waiting now. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves once a slot is free, with the function that gives it back. */
  async acquire(): Promise<() => void> {
    if (this.used < this.limit) this.used++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // handed over by a release
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.used--;
    };
  }
}

/** A FIFO token bucket: `take()` resolves when the caller may go, with how long it waited. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private tail: Promise<unknown> = Promise.resolve();
  /** Callers waiting now. */
  queued = 0;
  taken = 0;

  constructor(readonly budget: LaneBudget) {
    this.tokens = budget.burst;
  }

  take(): Promise<number> {
    const asked = performance.now();
    this.queued++;
    const turn = this.tail.then(async () => {
      this.refill();
      if (this.tokens < 1) {
        await Bun.sleep(((1 - this.tokens) / this.budget.qps) * 1000);
        this.refill();
      }
      this.tokens -= 1;
      this.queued--;
      this.taken++;
      return performance.now() - asked;
    });
    this.tail = turn.catch(() => undefined);
    return turn;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.budget.burst, this.tokens + ((now - this.last) / 1000) * this.budget.qps);
    this.last = now;
  }
}

interface Lane {
  bucket: TokenBucket;
  slots: Slots;
  session: Bun.FetchSession;
  /** The longest a request waited for its slot and its token. */
  maxWaitMs: number;
}

export interface LaneStats {
  requests: number;
  /** Requests waiting for a slot or a token now. */
  queued: number;
  maxWaitMs: number;
}

export class KubeClient {
  private readonly lanes: Record<LaneName, Lane>;
  private authHeaders: { at: number; headers: Record<string, string> } | undefined;
  private closed = false;
  /** Aborts every request in flight when the client closes: a stop never waits for the API server. */
  private readonly closing = new AbortController();
  /** Told of each answer and each failure to get one (reconciler/dependencies/status.ts). */
  private dependency: Dependency | undefined;

  private constructor(
    private readonly kc: KubeConfig,
    /** The API server's base URL (no trailing slash). */
    readonly server: string,
    private readonly tls: BunFetchRequestInitTLS,
    lanes: Record<LaneName, LaneBudget>,
    /** The namespace of the kubeconfig context or the service account, if any. */
    readonly namespace: string | undefined,
    /** For log lines: where the connection came from (never a secret). */
    readonly describe: string,
    private readonly timeoutMs: number,
    private readonly userAgent: string,
  ) {
    const lane = (name: LaneName): Lane => ({
      bucket: new TokenBucket(lanes[name]),
      slots: new Slots(IN_FLIGHT[name]),
      session: new Bun.FetchSession({ tls: this.tls }),
      maxWaitMs: 0,
    });
    this.lanes = { cordon: lane("cordon"), eviction: lane("eviction"), default: lane("default"), watch: lane("watch") };
  }

  /** Loads the connection settings; throws a KubeApiError (status 0) naming what is wrong. */
  static async connect(opts: KubeClientOptions): Promise<KubeClient> {
    const kc = new KubeConfig();
    const source = opts.source;
    let describe: string;
    try {
      switch (source.kind) {
        case "kubeconfig":
          if (source.path !== undefined) {
            kc.loadFromFile(source.path);
            describe = `kubeconfig ${source.path}`;
          } else {
            kc.loadFromDefault();
            describe = process.env.KUBECONFIG ? `kubeconfig $KUBECONFIG (${process.env.KUBECONFIG})` : "the default kubeconfig";
          }
          if (source.context !== undefined) {
            if (!kc.getContexts().some((c) => c.name === source.context)) {
              throw new Error(
                `context ${source.context} is not in it (it has: ${
                  kc
                    .getContexts()
                    .map((c) => c.name)
                    .join(", ") || "none"
                })`,
              );
            }
            kc.setCurrentContext(source.context);
          }
          describe += `, context ${kc.getCurrentContext()}`;
          break;
        case "in-cluster":
          if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
            throw new Error("in_cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not running in a pod?)");
          }
          kc.loadFromCluster(source.root);
          describe = "the pod's service account (in cluster)";
          break;
        case "token":
          kc.loadFromOptions({
            clusters: [
              {
                name: "navarch",
                server: source.server,
                skipTLSVerify: source.insecureSkipTlsVerify ?? false,
                ...(source.caFile ? { caFile: source.caFile } : {}),
                ...(source.caPem ? { caData: Buffer.from(source.caPem).toString("base64") } : {}),
              },
            ],
            users: [{ name: "navarch", token: source.token }],
            contexts: [{ name: "navarch", cluster: "navarch", user: "navarch" }],
            currentContext: "navarch",
          });
          describe = `${source.server} with a bearer token`;
          break;
      }
    } catch (err) {
      throw new KubeApiError(0, "Config", `cannot load the Kubernetes connection: ${err instanceof Error ? err.message : String(err)}`);
    }
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new KubeApiError(0, "Config", `no cluster in ${describe}`);
    const https: RequestOptions = {};
    try {
      // Fills ca/cert/key (from files or inline data) and the auth header.
      await kc.applyToHTTPSOptions(https);
    } catch (err) {
      throw new KubeApiError(0, "Config", `cannot read the credentials of ${describe}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const pem = (x: unknown): string | undefined =>
      x === undefined || x === null ? undefined : Buffer.isBuffer(x) ? x.toString("utf8") : typeof x === "string" ? x : undefined;
    const ca = pem(https.ca);
    const cert = pem(https.cert);
    const key = pem(https.key);
    const tls: BunFetchRequestInitTLS = {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(cluster.skipTLSVerify ? { rejectUnauthorized: false } : {}),
      ...(cluster.tlsServerName ? { serverName: cluster.tlsServerName } : {}),
    };
    const lanes = { ...DEFAULT_LANES, ...opts.lanes };
    const namespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
    return new KubeClient(kc, cluster.server.replace(/\/+$/, ""), tls, lanes, namespace, describe, opts.timeoutMs ?? 30_000, opts.userAgent ?? "navarch");
  }

  /** Requests made, callers waiting and the longest wait per lane (for the log and the benchmarks). */
  laneStats(): Record<LaneName, LaneStats> {
    const stats = (l: Lane): LaneStats => ({ requests: l.bucket.taken, queued: l.slots.queued + l.bucket.queued, maxWaitMs: Math.round(l.maxWaitMs) });
    return { cordon: stats(this.lanes.cordon), eviction: stats(this.lanes.eviction), default: stats(this.lanes.default), watch: stats(this.lanes.watch) };
  }

  close(): void {
    this.closed = true;
    this.closing.abort(new KubeApiError(0, "Closed", "the Kubernetes client is closed"));
    for (const lane of Object.values(this.lanes)) lane.session.close();
  }

  /** Reports every request's outcome to `dependency`: no answer, a 5xx or refused credentials is the API down. */
  reportTo(dependency: Dependency): void {
    this.dependency = dependency;
  }

  private report(outcome: Response | KubeApiError): void {
    const dep = this.dependency;
    if (dep === undefined || this.closed) return;
    const status = outcome instanceof Response ? outcome.status : outcome.status;
    if (status === 0 || status >= 500 || status === 401 || status === 403) {
      dep.failed(outcome instanceof Response ? new Error(`HTTP ${status} from ${this.server}`) : outcome);
    } else dep.ok();
  }

  /** One request; the answer is parsed with `schema` (or returned as unknown). Throws KubeApiError. */
  async request<T = unknown>(method: string, path: string, init: RequestInitKube = {}, schema?: v.GenericSchema<unknown, T>): Promise<T> {
    const lane = this.lanes[init.lane ?? "default"];
    const asked = performance.now();
    const release = await lane.slots.acquire();
    let response: Response;
    let text: string;
    try {
      await lane.bucket.take();
      lane.maxWaitMs = Math.max(lane.maxWaitMs, performance.now() - asked);
      response = await this.send(lane, method, path, init);
      text = await response.text();
    } finally {
      release();
    }
    if (!response.ok) throw errorFrom(response, text, method, path);
    if (schema === undefined) return (text ? JSON.parse(text) : undefined) as T;
    const parsed = v.safeParse(schema, text ? JSON.parse(text) : undefined);
    if (!parsed.success) {
      const issue = parsed.issues[0];
      throw new KubeApiError(response.status, "Malformed", `${method} ${path}: unexpected answer (${v.getDotPath(issue) ?? "body"}: ${issue.message})`);
    }
    return parsed.output;
  }

  /** Every item of a (paged) list, each parsed with `item`; items that do not parse are skipped and counted. */
  async list<T>(
    path: string,
    item: v.GenericSchema<unknown, T>,
    init: RequestInitKube = {},
  ): Promise<{ items: T[]; resourceVersion: string; skipped: number }> {
    const items: T[] = [];
    let skipped = 0;
    let token: string | undefined;
    let resourceVersion = "";
    do {
      const page = await this.request("GET", path, { ...init, query: { limit: 500, ...init.query, ...(token ? { continue: token } : {}) } }, AnyList);
      for (const raw of page.items ?? []) {
        const parsed = v.safeParse(item, raw);
        if (parsed.success) items.push(parsed.output);
        else skipped++;
      }
      resourceVersion = page.metadata.resourceVersion ?? resourceVersion;
      token = page.metadata.continue ?? undefined;
    } while (token);
    return { items, resourceVersion, skipped };
  }

  /**
   * Streams a watch: calls `onEvent` per event until the server ends the stream
   * (resolves) or something fails (rejects with KubeApiError). Restarting is the
   * caller's job (Informer does it on every end and every error).
   */
  async watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (event: v.InferOutput<typeof WatchEvent>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const lane = this.lanes.watch;
    await lane.bucket.take();
    const response = await this.send(lane, "GET", path, { query: { ...query, watch: true, allowWatchBookmarks: true }, signal, timeoutMs: 0 });
    if (!response.ok) throw errorFrom(response, await response.text(), "WATCH", path);
    const body = response.body;
    if (body === null) return;
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let newline = buffered.indexOf("\n");
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf("\n");
          if (!line) continue;
          let raw: unknown;
          try {
            raw = JSON.parse(line);
          } catch {
            throw new KubeApiError(200, "Malformed", `WATCH ${path}: a line that is not JSON`);
          }
          const event = v.safeParse(WatchEvent, raw);
          if (event.success) onEvent(event.output);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      throw err instanceof KubeApiError ? err : new KubeApiError(0, "StreamError", `WATCH ${path}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      reader.releaseLock();
    }
  }

  private async send(lane: Lane, method: string, path: string, init: RequestInitKube): Promise<Response> {
    if (this.closed) throw new KubeApiError(0, "Closed", "the Kubernetes client is closed");
    const url = new URL(this.server + path);
    for (const [k, val] of Object.entries(init.query ?? {})) if (val !== undefined) url.searchParams.set(k, String(val));
    const headers: Record<string, string> = { Accept: "application/json", "User-Agent": this.userAgent, ...(await this.auth()) };
    let body: string | undefined;
    if (init.body !== undefined) {
      headers["Content-Type"] = init.contentType ?? "application/json";
      body = JSON.stringify(init.body);
    }
    const timeoutMs = init.timeoutMs ?? this.timeoutMs;
    const signals = [init.signal, this.closing.signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    try {
      const response = await lane.session.fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.any(signals),
      });
      this.report(response);
      return response;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const reason = err instanceof Error && err.name === "TimeoutError" ? "Timeout" : "Unreachable";
      const error = new KubeApiError(0, reason, `${method} ${path}: cannot reach ${this.server}: ${message}`);
      // A request we gave up on ourselves (a watch's stop) says nothing about the server.
      if (!init.signal?.aborted) this.report(error);
      throw error;
    }
  }

  /** The Authorization header (re-read every 30 s: projected service-account tokens rotate). */
  private async auth(): Promise<Record<string, string>> {
    const now = Date.now();
    if (this.authHeaders && now - this.authHeaders.at < 30_000) return this.authHeaders.headers;
    const opts: RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = {};
    for (const [k, val] of Object.entries(opts.headers ?? {})) if (typeof val === "string") headers[k] = val;
    if (opts.auth) headers.Authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
    this.authHeaders = { at: now, headers };
    return headers;
  }
}

function errorFrom(response: Response, text: string, method: string, path: string): KubeApiError {
  let status: Status | undefined;
  try {
    const parsed = v.safeParse(Status, JSON.parse(text));
    if (parsed.success) status = parsed.output;
  } catch {
    // not JSON: the text itself is the message
  }
  const retryHeader = Number(response.headers.get("Retry-After"));
  const retryAfter = status?.details?.retryAfterSeconds ?? (Number.isFinite(retryHeader) && retryHeader > 0 ? retryHeader : undefined);
  const reason = status?.reason ?? (response.status === 404 ? "NotFound" : response.statusText || `HTTP${response.status}`);
  const message = status?.message ?? (textPrefix(text, 300) || response.statusText);
  const causes = (status?.details?.causes ?? []).map((c) => ({ ...(c.field ? { field: c.field } : {}), ...(c.message ? { message: c.message } : {}) }));
  return new KubeApiError(response.status, reason, `${method} ${path}: ${response.status} ${reason}: ${message}`, retryAfter, causes);
}

/** `name=value,other` label selectors from a map. */
export function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, val]) => `${k}=${val}`)
    .join(",");
}
