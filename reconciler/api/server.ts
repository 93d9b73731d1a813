// The reconciler's HTTP surface (hono): the /v1 agent API, the admin reads, and
// /healthz, /readyz, /metrics. Every body is validated with the shared wire schema.
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import * as v from "valibot";
import {
  ERROR_CODES,
  EventBatch,
  Heartbeat,
  MAX_BODY_BYTES,
  ONE_ISSUE_PER_VALUE,
  RegisterRequest,
  issuePaths,
  type ErrorBody,
  type EventBatchResponse,
  type HeartbeatResponse,
  type RegisterResponse,
} from "../../schema/wire.ts";
import { accepts } from "../../schema/accept.ts";
import { NODE_PAGE_MAX, NodeQuery, type DependencyStatus, type LoopStatus, type NodeList, type ReconcilerStatus } from "../../schema/admin.ts";
import { NodeCredentialCache } from "../auth/credentials.ts";
import { Ingest } from "../ingest/group-commit.ts";
import { clientWriter } from "../ingest/writer.ts";
import { getNodeDetail, listNodes, registerNode } from "../nodes/agent-reports.ts";
import type { Clock } from "../../schema/time.ts";
import { checkLabel } from "../metrics/labels.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { Provider } from "../providers/provider.ts";
import { registerAdminRoutes } from "./admin.ts";
import { registerDashboardRoutes } from "./dashboard.ts";
import { registerReportRoutes } from "./report.ts";
import { registerViewRoutes } from "./views/routes.ts";
import { authenticate, credentialForRegistration, principalOf } from "./auth.ts";
import { validatedQuery } from "./query.ts";
import { jsonBodyOr400 } from "./body.ts";
import { registerTokenRoutes } from "./tokens.ts";
import { registerRequestRoutes } from "./requests.ts";
import { AgentRequests } from "../nodes/agent-requests.ts";
import type { MetricsAuth } from "../../schema/config.ts";
import { registerInstallRoutes } from "./install.ts";
import type { ServedRelease } from "../release/agent-release.ts";
import type { Store } from "../store/store.ts";

export interface ApiOptions {
  store: Store;
  metrics: Metrics;
  /** The shared secret every /v1 call must present as `Authorization: Bearer …`. */
  authToken: string;
  heartbeatIntervalSeconds: number;
  now: Clock;
  log: (line: string) => void;
  /** Tells the reconcile loop that something happened (an event, an operator action). */
  wake?: () => void;
  providers?: () => ReadonlyMap<string, Provider>;
  /** The URL machines reach this reconciler at (baked into /install.sh); absent: the request's. */
  publicUrl?: () => string | undefined;
  /** The agent binary served at /download/navarch-node (default: navarch-node beside this executable). */
  agentBinary?: string;
  /** server.agent_release, verified: its navarch-node, SHA256SUMS and signature are served instead. */
  agentRelease?: ServedRelease;
  /** Whether this reconciler leads or stands by, for /readyz (one line). */
  role?: () => string | undefined;
  /** GET /v1/status's answer (the role, the loop, the dependencies); /readyz reads it too. */
  status?: () => ReconcilerStatus;
  /** Who may read /metrics (server.metrics_auth): anyone (the default) or a viewer's token. */
  metricsAuth?: MetricsAuth;
  /** False when /metrics has a listener of its own (createMetricsApp). */
  metricsHere?: boolean;
  /** Set when the API is plain HTTP off loopback: the dashboard shows it on every page (config/exposure.ts). */
  plainHttpBanner?: string;
  /** Writes heartbeats and event batches in groups (default: one of its own over the store). */
  ingest?: Ingest;
}

type MetricsOptions = Pick<ApiOptions, "store" | "metrics" | "authToken" | "now" | "metricsAuth">;

function serveMetrics(app: Hono, opts: MetricsOptions): void {
  app.get("/metrics", async (c) => {
    if (opts.metricsAuth === "viewer") {
      const refused = await authenticate(c, { db: opts.store.db, adminToken: opts.authToken, now: opts.now });
      if (refused !== undefined) return refused;
    }
    const body = await opts.metrics.render();
    return c.body(body, 200, { "Content-Type": opts.metrics.contentType });
  });
}

/**
 * A path the API serves, asked with a method it does not serve: 405 with the methods it does
 * (`Allow`), before any token is looked at, instead of a 404 or a 403 that hides which.
 */
function refuseOtherMethods(app: Hono): void {
  // Built at the first request (every route is registered by then): the methods of each
  // static path, looked up at once (agents' paths are static), and the patterns of the others.
  let exact: Map<string, Set<string>> | undefined;
  const patterns = new Map<string, { pattern: RegExp; methods: Set<string> }>();
  const build = (): Map<string, Set<string>> => {
    const paths = new Map<string, Set<string>>();
    for (const r of app.routes) {
      if (r.method === "ALL") continue;
      const methods = paths.get(r.path) ?? new Set<string>();
      methods.add(r.method);
      if (r.method === "GET") methods.add("HEAD");
      paths.set(r.path, methods);
    }
    for (const [path, methods] of paths) {
      if (!path.includes(":")) continue;
      const pattern = new RegExp(`^${path.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/:[A-Za-z]+/g, "[^/]+")}/?$`);
      patterns.set(path, { pattern, methods });
    }
    const statics = new Map<string, Set<string>>();
    for (const [path, methods] of paths) if (!path.includes(":")) statics.set(path, union(path, methods));
    return statics;
  };
  const union = (path: string, methods: Set<string>): Set<string> => {
    const all = new Set(methods);
    for (const { pattern, methods: m } of patterns.values()) if (pattern.test(path)) for (const x of m) all.add(x);
    return all;
  };
  const allowed = (path: string): Set<string> | undefined => {
    exact ??= build();
    const known = exact.get(path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path);
    if (known !== undefined) return known;
    const methods = union(path, new Set());
    return methods.size === 0 ? undefined : methods;
  };
  app.use(async (c, next) => {
    const methods = allowed(c.req.path);
    if (methods !== undefined && !methods.has(c.req.method)) {
      const list = [...methods].sort().join(", ");
      return c.json<ErrorBody>({ error: `${c.req.method} is not allowed on ${c.req.path} (allowed: ${list})` }, 405, { Allow: list });
    }
    await next();
  });
}

/** The listener of server.metrics_address: /metrics (with the same rule for tokens) and /healthz only. */
export function createMetricsApp(opts: MetricsOptions): Hono {
  const app = new Hono();
  refuseOtherMethods(app);
  app.get("/healthz", (c) => c.text("ok"));
  serveMetrics(app, opts);
  app.notFound((c) => c.json<ErrorBody>({ error: `no route ${c.req.method} ${c.req.path} (this listener serves /metrics only)` }, 404));
  return app;
}

export function createApi(opts: ApiOptions): Hono {
  const { store, metrics, now } = opts;
  const ingest = opts.ingest ?? new Ingest(clientWriter(store.db.$client), { now });
  const nodeCredentials = new NodeCredentialCache();
  // What operators ask of agents: sent in heartbeat answers, answered by the agents.
  const agentRequests = new AgentRequests(store.db, now, opts.log);
  const app = new Hono();

  app.onError((err, c) => {
    opts.log(`error: ${c.req.method} ${c.req.path}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return c.json<ErrorBody>({ error: "internal error; see the reconciler's log" }, 500);
  });
  app.notFound((c) => c.json<ErrorBody>({ error: `no route ${c.req.method} ${c.req.path}` }, 404));
  refuseOtherMethods(app);

  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", async (c) => {
    // Ready while the core job works: the store takes a write (answered promptly) and, on the
    // leader, the loop runs. A dependency that is down is named, not a reason to be unready:
    // Navarch goes on protecting the fleet without it. Leader and standby are both ready: both
    // serve agents and operators; only one acts.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const health = await Promise.race([
      store.checkHealth(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), READY_PROBE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (health === undefined) return c.text(`not ready: the database did not take a probe write within ${READY_PROBE_MS / 1000} s`, 503);
    if (!health.ready) return c.text(`not ready: ${health.reason}`, 503);
    const status = opts.status?.();
    const stalled = status?.leading && status.loop ? loopStalled(status.loop, Date.now()) : undefined;
    if (stalled !== undefined) return c.text(`not ready: ${stalled}`, 503);
    const role = opts.role?.();
    const degraded = (status?.dependencies ?? []).filter((d) => d.state !== "up").map(describeDegraded);
    return c.text(`${role ? `ready (${role})` : "ready"}${degraded.length > 0 ? `; degraded: ${degraded.join("; ")}` : ""}`);
  });
  // /metrics here unless a listener of its own serves it (server.metrics_address).
  if (opts.metricsHere !== false) serveMetrics(app, opts);

  const v1 = new Hono();
  const tooLarge = (c: Context) => c.json<ErrorBody>({ error: `request body over ${MAX_BODY_BYTES} bytes` }, 413);
  const countChunked = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });
  v1.use((c, next) => {
    // A body with a Content-Length is measured by its header. hono's bodyLimit asks the request
    // for its body stream first, which Bun builds on demand: 4 % of a core at 10,000 heartbeats/s.
    const length = c.req.header("Content-Length");
    if (length !== undefined && c.req.header("Transfer-Encoding") === undefined) return Number(length) > MAX_BODY_BYTES ? Promise.resolve(tooLarge(c)) : next();
    return countChunked(c, next);
  });
  v1.use(async (c, next) => {
    // The admin token, a node's own credential (its own node only) or a one-time bootstrap token.
    const refused = await authenticate(c, { db: store.db, adminToken: opts.authToken, now, nodeCredentials });
    if (refused !== undefined) return refused;
    await next();
  });

  v1.post("/register", async (c) => {
    const body = await validated(c, RegisterRequest);
    if (body instanceof Response) return body;
    // An enroll token's nodes join its pool (auth.ts has refused any other).
    const enrolled = principalOf(c);
    if (enrolled?.kind === "enroll") body.pool = enrolled.pool;
    // Registering with a bootstrap token spends it and issues the node's own credential.
    const credential = await credentialForRegistration(c, store.db, body.nodeId, now(), nodeCredentials);
    if (credential instanceof Response) return credential;
    const result = await registerNode(store.db, body, now);
    if (!result.ok) {
      return c.json<ErrorBody>({ error: `node ${body.nodeId} is ${result.state}; this machine is being or has been removed from the fleet` }, 409);
    }
    if (result.created) opts.log(`node ${body.nodeId} registered (${body.gpus.length} GPUs, NVML ${body.nvml.available ? "ok" : "unavailable"})`);
    if (credential.nodeToken !== undefined) opts.log(`node ${body.nodeId} registered with its bootstrap token; issued its own credential`);
    return c.json<RegisterResponse>({
      nodeId: body.nodeId,
      heartbeatIntervalSeconds: opts.heartbeatIntervalSeconds,
      lastEventSeq: result.lastEventSeq,
      sameSpool: result.sameSpool,
      ...credential,
    });
  });

  v1.post("/heartbeat", async (c) => {
    const body = await validated(c, Heartbeat);
    if (body instanceof Response) return body;
    const recorded = await ingest.heartbeat(body);
    if (recorded === undefined) {
      return c.json<ErrorBody>({ error: `node ${body.nodeId} is not registered; register first`, code: ERROR_CODES.unknownNode }, 404);
    }
    metrics.heartbeats.inc();
    // Nearly every heartbeat: nothing waits for this node, answered without a query.
    const waiting = agentRequests.forHeartbeat(body.nodeId);
    const requests = waiting === undefined ? [] : await waiting;
    return c.json<HeartbeatResponse>({
      heartbeatIntervalSeconds: opts.heartbeatIntervalSeconds,
      lastEventSeq: recorded.lastEventSeq,
      ...(requests.length > 0 ? { requests } : {}),
    });
  });

  v1.post("/events", async (c) => {
    const body = await validated(c, EventBatch);
    if (body instanceof Response) return body;
    const result = await ingest.events(body);
    if (result === undefined) {
      return c.json<ErrorBody>({ error: `node ${body.nodeId} is not registered; register first`, code: ERROR_CODES.unknownNode }, 404);
    }
    for (const e of result.stored) metrics.healthEvents.inc({ check: checkLabel(e.check), severity: e.severity });
    // Level-triggered, but not slow: a new finding gets a pass now instead of at the next tick.
    if (result.stored.length > 0) opts.wake?.();
    return c.json<EventBatchResponse>({ ackedSeq: result.ackedSeq, stored: result.stored.length });
  });

  v1.get("/nodes", async (c) => {
    const q = validatedQuery(c, NodeQuery);
    if (q instanceof Response) return q;
    const limit = q.limit === undefined ? NODE_PAGE_MAX : Number(q.limit);
    if (limit < 1 || limit > NODE_PAGE_MAX) return c.json<ErrorBody>({ error: `limit: expected 1 to ${NODE_PAGE_MAX}, got ${limit}` }, 400);
    const rows = await listNodes(store.db, {
      ...(q.pool !== undefined ? { pool: q.pool } : {}),
      ...(q.state !== undefined ? { state: q.state } : {}),
      ...(q.after !== undefined ? { after: q.after } : {}),
      unhealthy: q.unhealthy === "true",
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const body: NodeList = { nodes: page, next: rows.length > limit ? page.at(-1)!.id : null };
    return c.json(body);
  });
  v1.get("/nodes/:id", async (c) => {
    const events = c.req.query("events");
    const limit = events === undefined ? 50 : /^\d{1,5}$/.test(events) ? Number(events) : NaN;
    if (!Number.isInteger(limit) || limit < 0 || limit > 10_000) {
      return c.json<ErrorBody>({ error: `events: expected a whole number from 0 to 10000, got ${JSON.stringify(events)}` }, 400);
    }
    const detail = await getNodeDetail(store.db, c.req.param("id"), limit);
    if (detail === undefined) return c.json<ErrorBody>({ error: `node ${c.req.param("id")} not found` }, 404);
    return c.json(detail);
  });

  v1.get("/status", (c) => {
    const status: ReconcilerStatus = opts.status?.() ?? {
      role: opts.role?.() ?? "serving the API only (no fleet)",
      leading: false,
      loop: null,
      dependencies: [],
    };
    return c.json(status);
  });

  registerAdminRoutes(v1, { store, now, wake: () => opts.wake?.(), providers: () => opts.providers?.() ?? new Map() });
  registerInstallRoutes(app, v1, {
    store,
    now,
    log: opts.log,
    ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
    ...(opts.agentBinary ? { agentBinary: opts.agentBinary } : {}),
    ...(opts.agentRelease ? { agentRelease: opts.agentRelease } : {}),
  });
  registerViewRoutes(v1, { store, now });
  registerReportRoutes(v1, { store, now });
  registerTokenRoutes(v1, { store, now });
  registerRequestRoutes(v1, agentRequests);
  registerDashboardRoutes(app, opts.plainHttpBanner);
  app.route("/v1", v1);
  return app;
}

/** How long /readyz waits for the store's probe write before it says the database does not answer. */
const READY_PROBE_MS = 2_000;

/** A leader's loop that has not ended a pass for this long (and none is under way for less) is not running. */
export const LOOP_STALL_MS = 60_000;

/** Why the loop does not count as running, or undefined when it does (a pass ended, or started, within LOOP_STALL_MS). */
export function loopStalled(loop: LoopStatus, now: number): string | undefined {
  if (loop.passStartedAt !== null && now - loop.passStartedAt > LOOP_STALL_MS)
    return `the reconcile pass under way started ${Math.round((now - loop.passStartedAt) / 1000)} s ago and has not ended`;
  if (loop.passStartedAt === null && loop.lastPassAt !== null && now - loop.lastPassAt > LOOP_STALL_MS)
    return `the reconcile loop has run no pass for ${Math.round((now - loop.lastPassAt) / 1000)} s`;
  return undefined;
}

/** One dependency that is not up, as /readyz names it. */
function describeDegraded(d: DependencyStatus): string {
  const state = d.state === "unknown" ? `not reached since ${new Date(d.since).toISOString()}` : `down since ${new Date(d.since).toISOString()}`;
  const error = d.lastError !== null ? `: ${d.lastError.message.slice(0, 200)}` : "";
  const queued = d.queuedCount > 0 ? `; ${d.queuedCount} action(s) waiting` : "";
  return `${d.name} (${d.label} at ${d.target}, ${state}${error}${queued})`;
}

/** Parses the JSON body against a schema; answers 400 with every failing field path. */
async function validated<S extends v.GenericSchema>(c: Context, schema: S): Promise<v.InferOutput<S> | Response> {
  const raw = await jsonBodyOr400(c);
  if (raw instanceof Response) return raw;
  // Most bodies are well-formed: a fast yes for them, valibot for the rest (and its messages).
  if (accepts(schema)?.(raw) === true) return raw as v.InferOutput<S>;
  const parsed = v.safeParse(schema, raw, ONE_ISSUE_PER_VALUE);
  if (!parsed.success) {
    return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(parsed.issues) }, 400);
  }
  return parsed.output;
}
