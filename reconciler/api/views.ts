// Read-only views under /v1 for the dashboard and the CLI: a fleet overview, a pool
// page, a node's timeline (GPUs, events, incidents with the duration of each step,
// what the reconciler did and refused), the health-event log with filters, and a
// server-sent-event stream that says when any of it changed. Everything is read
// from the store as it is; nothing here writes.
//
// The answer shapes are valibot schemas (exported): the CLI validates what it reads
// with them and the OpenAPI document (openapi.ts) is generated from them.
import { and, asc, desc, eq, gt, gte, inArray, isNull, lte, or, sql, type SQL } from "drizzle-orm";
import type { Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import * as v from "valibot";
import { auditLog, breakers, healthEvents, incidents, nodes, operations, pools } from "../../schema/db.ts";
import { NODE_STATES, isIn, stateNotIn, type NodeState } from "../../schema/lifecycle.ts";
import { NODE_ORIGINS, NodeRow } from "../../schema/admin.ts";
import { SEVERITIES, type ErrorBody } from "../../schema/wire.ts";
import { parseIsoTime } from "../../schema/time.ts";
import { nodeGpus } from "../nodes/agent-reports.ts";
import type { Store } from "../store/store.ts";
import { validatedQuery } from "./query.ts";

// ───────────────────────────── shapes ─────────────────────────────

export const Ms = v.pipe(v.number(), v.description("milliseconds since the epoch (UTC)"));
const Verdict = v.picklist(["healthy", "degraded", "unhealthy"]);
const StateCounts = v.pipe(v.record(v.string(), v.number()), v.description("node count by lifecycle state"));

/**
 * The most node tiles a view carries: past it a page would be megabytes at 100,000 nodes and
 * no one reads that many tiles. The ones left out are healthy and Ready (those needing
 * attention come first) and are in the counts.
 */
export const TILE_LIMIT = 500;

/** A node as a tile: enough to color it and say why. */
export const NodeTile = v.object({
  id: v.string(),
  origin: v.picklist(NODE_ORIGINS),
  pool: v.nullable(v.string()),
  state: v.picklist(NODE_STATES),
  verdict: v.nullable(Verdict),
  stateReason: v.nullable(v.string()),
  stateChangedAt: Ms,
  incidentId: v.nullable(v.number()),
  cordonedBy: v.nullable(v.string()),
  lastHeartbeatAt: v.nullable(Ms),
  replacementOf: v.nullable(v.string()),
});
export type NodeTile = v.InferOutput<typeof NodeTile>;

export const IncidentRow = v.object({
  id: v.number(),
  nodeId: v.string(),
  pool: v.nullable(v.string()),
  reason: v.string(),
  faultAt: Ms,
  openedAt: Ms,
  cordonedAt: v.nullable(Ms),
  drainedAt: v.nullable(Ms),
  terminatedAt: v.nullable(Ms),
  replacementNodeId: v.nullable(v.string()),
  replacementReadyAt: v.nullable(Ms),
  remedy: v.nullable(v.pipe(v.picklist(["reboot", "replace"]), v.description("the remediation's rung: reboot first, or replace"))),
  rebootedAt: v.nullable(Ms),
  rebootFromBoot: v.nullable(v.string()),
  backAt: v.nullable(v.pipe(Ms, v.description("when the rebooted node came back with a new boot"))),
  status: v.pipe(v.string(), v.description("what the reconciler is doing about it, or which rail blocks it")),
  closedAt: v.nullable(Ms),
  outcome: v.nullable(v.picklist(["replaced", "recovered", "rebooted", "cancelled", "held", "terminated"])),
});
export type IncidentRow = v.InferOutput<typeof IncidentRow>;

export const BreakerRow = v.object({
  scope: v.pipe(v.string(), v.description('"fleet" or "pool:<name>"')),
  trippedAt: Ms,
  reason: v.string(),
  resetAt: v.nullable(Ms),
  resetBy: v.nullable(v.string()),
});

export const AuditRow = v.object({
  id: v.number(),
  at: Ms,
  actor: v.string(),
  action: v.pipe(v.string(), v.description("transition, blocked, scale, incident_opened, replace, terminate, reap, breaker_tripped, dry_run, cordon, …")),
  target: v.string(),
  details: v.unknown(),
});
export type AuditRow = v.InferOutput<typeof AuditRow>;

export const PoolRow = v.object({
  name: v.string(),
  source: v.picklist(["config", "crd"]),
  spec: v.pipe(v.unknown(), v.description("the normalised pool spec from the config, as validated")),
  paused: v.boolean(),
  pausedReason: v.nullable(v.string()),
  lastScaleAt: v.nullable(Ms),
  lastScaleDirection: v.nullable(v.picklist(["up", "down"])),
  launchFailures: v.pipe(v.number(), v.description("launches that failed in a row (0 once one succeeds)")),
  launchRetryAt: v.nullable(Ms),
  launchError: v.nullable(v.string()),
  launchErrorKind: v.nullable(v.picklist(["permanent", "transient"])),
  launchFailingSince: v.nullable(Ms),
  registrationFailures: v.pipe(v.number(), v.description("machines in a row whose agent did not register (0 once one registers)")),
  registrationFailedAt: v.nullable(Ms),
  registrationHold: v.nullable(
    v.pipe(v.string(), v.description("while the pool launches nothing because its machines did not register: the pattern, and what to change")),
  ),
  registrationHeldAt: v.nullable(Ms),
  requestedNodes: v.nullable(v.pipe(v.number(), v.description("the size an operator set with navarch pools scale (held while the pool has no autoscaler)"))),
  requestedBy: v.nullable(v.string()),
  createdAt: Ms,
  updatedAt: Ms,
});
export type PoolRow = v.InferOutput<typeof PoolRow>;

export const PoolList = v.object({ pools: v.array(PoolRow) });
export const IncidentList = v.object({ incidents: v.array(IncidentRow) });
export const BreakerList = v.object({ breakers: v.array(BreakerRow) });
export const AuditList = v.object({ audit: v.array(AuditRow) });

/** A pool with its sizes and counts, as the overview and the pool page show it. */
export const PoolSummary = v.object({
  name: v.string(),
  paused: v.boolean(),
  pausedReason: v.nullable(v.string()),
  minNodes: v.nullable(v.number()),
  maxNodes: v.nullable(v.number()),
  autoscaler: v.nullable(v.pipe(v.string(), v.description("the autoscaler type, or null for none"))),
  requestedNodes: v.nullable(v.pipe(v.number(), v.description("the size an operator set with navarch pools scale"))),
  requestedBy: v.nullable(v.string()),
  providers: v.array(v.string()),
  instanceType: v.nullable(v.string()),
  size: v.pipe(v.number(), v.description("nodes Navarch launched that count toward the pool's size (live, not terminating); monitored nodes never do")),
  monitored: v.pipe(v.number(), v.description("live nodes that registered on their own (a DaemonSet's): watched and quarantined, never counted in size")),
  healthy: v.number(),
  unhealthy: v.number(),
  byState: StateCounts,
  lastScaleAt: v.nullable(Ms),
  lastScaleDirection: v.nullable(v.picklist(["up", "down"])),
  breaker: v.nullable(v.pipe(v.string(), v.description("why the pool's circuit breaker is tripped, when it is"))),
  launches: v.nullable(
    v.pipe(
      v.object({ failures: v.number(), kind: v.picklist(["permanent", "transient"]), error: v.string(), since: Ms, retryAt: v.nullable(Ms) }),
      v.description("set while the pool's launches keep failing: the pool backs off and says why"),
    ),
  ),
  held: v.nullable(
    v.pipe(
      v.object({ reason: v.string(), since: Ms, failures: v.number() }),
      v.description("set while the pool launches nothing because its last machines did not register (`navarch pools resume` lifts it)"),
    ),
  ),
});
export type PoolSummary = v.InferOutput<typeof PoolSummary>;

export const Overview = v.object({
  at: Ms,
  pools: v.array(PoolSummary),
  nodes: v.pipe(
    v.array(NodeTile),
    v.description(`live nodes (not terminated or failed), at most ${TILE_LIMIT}: those that need attention first, then in pool and id order`),
  ),
  totals: v.object({
    nodes: v.pipe(v.number(), v.description("every live node, drawn or not")),
    tilesOmitted: v.pipe(v.number(), v.description(`live nodes left out of \`nodes\` (the fleet has more than ${TILE_LIMIT})`)),
    byState: StateCounts,
    unhealthy: v.number(),
    openIncidents: v.number(),
    terminated: v.number(),
    failed: v.number(),
  }),
  breakers: v.array(BreakerRow),
  incidents: v.pipe(v.array(IncidentRow), v.description("open incidents, newest first")),
  blocked: v.pipe(v.array(AuditRow), v.description("the latest actions a safety rail refused")),
});
export type Overview = v.InferOutput<typeof Overview>;

export const PoolView = v.object({
  at: Ms,
  pool: PoolRow,
  summary: PoolSummary,
  nodes: v.pipe(v.array(NodeTile), v.description(`the pool's live nodes, at most ${TILE_LIMIT}: those that need attention first`)),
  tilesOmitted: v.pipe(v.number(), v.description("the pool's live nodes left out of `nodes`")),
  decisions: v.pipe(v.array(AuditRow), v.description('autoscaler decisions ("scale" and "dry_run" rows), newest first')),
  blocked: v.pipe(v.array(AuditRow), v.description("actions on this pool's nodes that a rail refused, newest first")),
  breakers: v.pipe(v.array(BreakerRow), v.description("tripped breakers that apply to this pool (its own and the fleet's)")),
  incidents: v.array(IncidentRow),
});
export type PoolView = v.InferOutput<typeof PoolView>;

export const GpuView = v.object({
  index: v.number(),
  uuid: v.string(),
  pciBusId: v.string(),
  name: v.string(),
  memoryTotalBytes: v.nullable(v.number()),
  lastSnapshot: v.nullable(v.pipe(v.record(v.string(), v.unknown()), v.description("the latest heartbeat's readings (GpuSnapshot)"))),
  updatedAt: Ms,
});

export const EventView = v.object({
  id: v.number(),
  nodeId: v.string(),
  pool: v.nullable(v.string()),
  seq: v.number(),
  time: Ms,
  receivedAt: Ms,
  check: v.string(),
  code: v.nullable(v.string()),
  severity: v.picklist(SEVERITIES),
  action: v.string(),
  gpuIndex: v.nullable(v.number()),
  message: v.string(),
  count: v.number(),
});
export type EventView = v.InferOutput<typeof EventView>;

export const IncidentStep = v.object({
  step: v.picklist(["fault", "opened", "cordoned", "drained", "rebooted", "back", "terminated", "replacement_ready", "closed"]),
  at: Ms,
  /** Milliseconds since the previous step. */
  sincePreviousMs: v.nullable(v.number()),
});

export const IncidentTimeline = v.object({
  ...IncidentRow.entries,
  steps: v.array(IncidentStep),
  durations: v.object({
    faultToCordonMs: v.nullable(v.number()),
    cordonToDrainedMs: v.nullable(v.number()),
    drainedToTerminatedMs: v.nullable(v.number()),
    rebootToBackMs: v.nullable(v.pipe(v.number(), v.description("how long the reboot took, to the new boot"))),
    faultToReplacementReadyMs: v.nullable(v.number()),
  }),
});
export type IncidentTimeline = v.InferOutput<typeof IncidentTimeline>;

export const OperationView = v.object({
  key: v.string(),
  kind: v.string(),
  state: v.string(),
  attempts: v.number(),
  error: v.nullable(v.string()),
  createdAt: Ms,
  updatedAt: Ms,
});

export const NodeTimeline = v.object({
  at: Ms,
  // The admin API's node row (schema/admin.ts), plus what only this view shows.
  node: v.object({
    ...NodeRow.entries,
    instanceName: v.nullable(v.string()),
    requestedAt: v.nullable(Ms),
    removal: v.nullable(v.picklist(["replace", "scale_down"])),
    attempts: v.number(),
    findings: v.pipe(v.unknown(), v.description("open findings of the health policy")),
  }),
  replacedBy: v.array(v.object({ id: v.string(), state: v.picklist(NODE_STATES) })),
  gpus: v.array(GpuView),
  events: v.pipe(v.array(EventView), v.description("the node's latest health events, newest first")),
  incidents: v.pipe(v.array(IncidentTimeline), v.description("incidents of this node and the ones it replaced, newest first")),
  audit: v.pipe(v.array(AuditRow), v.description("what the reconciler and humans did to this node, newest first")),
  operations: v.pipe(v.array(OperationView), v.description("provider calls for this node (launch, terminate) and their outcome")),
});
export type NodeTimeline = v.InferOutput<typeof NodeTimeline>;

export const EventList = v.object({
  events: v.pipe(v.array(EventView), v.description("oldest first")),
  cursor: v.pipe(v.number(), v.description("pass as `after` to get only newer events (follow)")),
});
export type EventList = v.InferOutput<typeof EventList>;

/** GET /v1/events query; every field optional. */
export const EventQuery = v.object({
  node: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  pool: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  severity: v.optional(v.pipe(v.picklist(SEVERITIES), v.description("at least this severity"))),
  check: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(64))),
  since: v.optional(v.pipe(v.string(), v.description("epoch milliseconds or an ISO-8601 time: events at or after it"))),
  after: v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/, "must be an event id (the previous answer's cursor)"))),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/, "must be a whole number from 1 to 1000"))),
});

// ───────────────────────────── routes ─────────────────────────────

export interface ViewOptions {
  store: Store;
  now: () => number;
  /** How often the change stream looks at the store (ms). */
  watchIntervalMs?: number;
}

const tileColumns = {
  id: nodes.id,
  origin: nodes.origin,
  pool: nodes.pool,
  state: nodes.state,
  verdict: nodes.verdict,
  stateReason: nodes.stateReason,
  stateChangedAt: nodes.stateChangedAt,
  incidentId: nodes.incidentId,
  cordonedBy: nodes.cordonedBy,
  lastHeartbeatAt: nodes.lastHeartbeatAt,
  replacementOf: nodes.replacementOf,
};

export function registerViewRoutes(v1: Hono, opts: ViewOptions): void {
  const { store, now } = opts;
  const db = store.db;
  const watcher = new ChangeWatcher(store, opts.watchIntervalMs ?? 1000);

  v1.get("/overview", async (c) => {
    const [poolRows, tiles, counts, openIncidents, tripped, blocked] = await Promise.all([
      db.select().from(pools).orderBy(asc(pools.name)),
      liveTiles(db),
      stateCounts(store),
      db.select().from(incidents).where(isNull(incidents.closedAt)).orderBy(desc(incidents.id)).limit(200),
      db.select().from(breakers).where(isNull(breakers.resetAt)),
      db.select().from(auditLog).where(eq(auditLog.action, "blocked")).orderBy(desc(auditLog.id)).limit(20),
    ]);
    const byState: Record<string, number> = {};
    for (const r of counts) byState[r.state] = (byState[r.state] ?? 0) + r.n;
    const body: Overview = {
      at: now(),
      pools: poolRows.map((p) => summarize(p, counts, tripped)),
      nodes: tiles,
      totals: {
        nodes: liveCount(counts),
        tilesOmitted: omitted(counts, tiles),
        byState,
        unhealthy: counts.filter((r) => isIn("inPool", r.state)).reduce((s, r) => s + r.unhealthy, 0),
        openIncidents: openIncidents.length,
        terminated: byState.terminated ?? 0,
        failed: byState.failed ?? 0,
      },
      breakers: tripped,
      incidents: openIncidents,
      blocked,
    };
    return c.json(body);
  });

  v1.get("/pools/:name", async (c) => {
    const name = c.req.param("name");
    const [row] = await db.select().from(pools).where(eq(pools.name, name));
    if (row === undefined) return c.json<ErrorBody>({ error: `pool ${name} not found` }, 404);
    const poolNodes = db.select({ id: nodes.id }).from(nodes).where(eq(nodes.pool, name));
    const [tiles, counts, decisions, blocked, tripped, poolIncidents] = await Promise.all([
      liveTiles(db, name),
      stateCounts(store, name),
      db
        .select()
        .from(auditLog)
        .where(and(inArray(auditLog.action, ["scale", "dry_run"]), eq(auditLog.target, `pool:${name}`)))
        .orderBy(desc(auditLog.id))
        .limit(50),
      db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.action, "blocked"), inArray(auditLog.target, poolNodes)))
        .orderBy(desc(auditLog.id))
        .limit(50),
      db
        .select()
        .from(breakers)
        .where(and(isNull(breakers.resetAt), inArray(breakers.scope, ["fleet", `pool:${name}`]))),
      db.select().from(incidents).where(eq(incidents.pool, name)).orderBy(desc(incidents.id)).limit(50),
    ]);
    const body: PoolView = {
      at: now(),
      pool: row,
      summary: summarize(row, counts, tripped),
      nodes: tiles,
      tilesOmitted: omitted(counts, tiles),
      decisions,
      blocked,
      breakers: tripped,
      incidents: poolIncidents,
    };
    return c.json(body);
  });

  v1.get("/nodes/:id/timeline", async (c) => {
    const id = c.req.param("id");
    const [node] = await db.select().from(nodes).where(eq(nodes.id, id));
    if (node === undefined) return c.json<ErrorBody>({ error: `node ${id} not found` }, 404);
    const [gpuRows, events, nodeIncidents, audit, ops, replacedBy] = await Promise.all([
      nodeGpus(db, id),
      db.select().from(healthEvents).where(eq(healthEvents.nodeId, id)).orderBy(desc(healthEvents.seq)).limit(200),
      db
        .select()
        .from(incidents)
        .where(or(eq(incidents.nodeId, id), eq(incidents.replacementNodeId, id)))
        .orderBy(desc(incidents.id))
        .limit(50),
      db.select().from(auditLog).where(eq(auditLog.target, id)).orderBy(desc(auditLog.id)).limit(200),
      db.select().from(operations).where(eq(operations.nodeId, id)).orderBy(asc(operations.createdAt)),
      db.select({ id: nodes.id, state: nodes.state }).from(nodes).where(eq(nodes.replacementOf, id)),
    ]);
    const body: NodeTimeline = {
      at: now(),
      node,
      replacedBy,
      gpus: gpuRows,
      events: events.map((e) => ({ ...e, pool: node.pool })),
      incidents: nodeIncidents.map(incidentTimeline),
      audit,
      operations: ops.map((o) => ({
        key: o.key,
        kind: o.kind,
        state: o.state,
        attempts: o.attempts,
        error: o.error,
        createdAt: o.createdAt,
        updatedAt: o.updatedAt,
      })),
    };
    return c.json(body);
  });

  v1.get("/events", async (c) => {
    const q = validatedQuery(c, EventQuery);
    if (q instanceof Response) return q;
    const since = q.since === undefined ? undefined : parseTime(q.since);
    if (since === null) return c.json<ErrorBody>({ error: `since: expected epoch milliseconds or an ISO-8601 time, got ${JSON.stringify(q.since)}` }, 400);
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (limit < 1 || limit > 1000) return c.json<ErrorBody>({ error: `limit: expected 1 to 1000, got ${limit}` }, 400);
    const after = q.after === undefined ? undefined : Number(q.after);
    return c.json(await listEvents(store, { ...q, since, after, limit }));
  });

  v1.get("/watch", (c) => watchStream(c, watcher));
}

// ───────────────────────────── queries ─────────────────────────────

interface StateCount {
  pool: string | null;
  state: NodeState;
  n: number;
  /** Of n, nodes that registered on their own (origin monitored). */
  monitored: number;
  healthy: number;
  unhealthy: number;
}

/** Node counts by pool and state, with how many of each are healthy (Ready and judged healthy) or unhealthy. */
/** At most TILE_LIMIT live nodes (of one pool): those not healthy and Ready first; shown in pool and id order. */
async function liveTiles(db: Store["db"], pool?: string): Promise<NodeTile[]> {
  const attention = sql`case when ${nodes.state} = 'ready' and ${nodes.verdict} = 'healthy' then 1 else 0 end`;
  const rows = await db
    .select(tileColumns)
    .from(nodes)
    .where(pool === undefined ? stateNotIn(nodes.state, "terminal") : and(eq(nodes.pool, pool), stateNotIn(nodes.state, "terminal")))
    .orderBy(attention, asc(nodes.pool), asc(nodes.id))
    .limit(TILE_LIMIT);
  return rows.sort((a, b) => (a.pool ?? "").localeCompare(b.pool ?? "") || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function liveCount(counts: readonly StateCount[]): number {
  return counts.filter((r) => !isIn("terminal", r.state)).reduce((t, r) => t + r.n, 0);
}

/** Live nodes not drawn (never below 0: the counts and the tiles are two reads). */
function omitted(counts: readonly StateCount[], tiles: readonly NodeTile[]): number {
  return Math.max(0, liveCount(counts) - tiles.length);
}

async function stateCounts(store: Store, pool?: string): Promise<StateCount[]> {
  const rows = await store.db
    .select({
      pool: nodes.pool,
      state: nodes.state,
      n: sql<number>`count(*)`,
      monitored: sql<number>`sum(case when ${nodes.origin} = 'monitored' then 1 else 0 end)`,
      healthy: sql<number>`sum(case when ${nodes.state} = 'ready' and ${nodes.verdict} = 'healthy' then 1 else 0 end)`,
      unhealthy: sql<number>`sum(case when ${nodes.verdict} = 'unhealthy' or ${nodes.state} = 'lost' then 1 else 0 end)`,
    })
    .from(nodes)
    .where(pool === undefined ? undefined : eq(nodes.pool, pool))
    .groupBy(nodes.pool, nodes.state);
  return rows.map((r) => ({ ...r, n: Number(r.n), monitored: Number(r.monitored), healthy: Number(r.healthy), unhealthy: Number(r.unhealthy) }));
}

/** The parts of a pool's spec the views show; everything else stays in `spec`. */
const SpecView = v.object({
  instance_type: v.optional(v.string()),
  providers: v.optional(v.array(v.string())),
  provider: v.optional(v.string()),
  scaling: v.optional(
    v.object({
      min_nodes: v.optional(v.number()),
      max_nodes: v.optional(v.number()),
      autoscaler: v.optional(v.nullable(v.object({ type: v.optional(v.string()) }))),
    }),
  ),
});

function summarize(p: typeof pools.$inferSelect, counts: StateCount[], tripped: { scope: string; reason: string }[]): PoolSummary {
  const spec = v.safeParse(SpecView, p.spec);
  const s = spec.success ? spec.output : {};
  const mine = counts.filter((r) => r.pool === p.name);
  const byState: Record<string, number> = {};
  for (const r of mine) byState[r.state] = r.n;
  const live = mine.filter((r) => isIn("inPool", r.state));
  return {
    name: p.name,
    paused: p.paused,
    pausedReason: p.pausedReason,
    minNodes: s.scaling?.min_nodes ?? null,
    maxNodes: s.scaling?.max_nodes ?? null,
    autoscaler: s.scaling?.autoscaler?.type ?? null,
    requestedNodes: p.requestedNodes,
    requestedBy: p.requestedBy,
    providers: s.providers ?? (s.provider ? [s.provider] : []),
    instanceType: s.instance_type ?? null,
    size: live.reduce((sum, r) => sum + r.n - r.monitored, 0),
    monitored: live.reduce((sum, r) => sum + r.monitored, 0),
    healthy: live.reduce((sum, r) => sum + r.healthy, 0),
    unhealthy: live.reduce((sum, r) => sum + r.unhealthy, 0),
    byState,
    lastScaleAt: p.lastScaleAt,
    lastScaleDirection: p.lastScaleDirection,
    breaker: tripped.find((b) => b.scope === `pool:${p.name}`)?.reason ?? null,
    launches:
      p.launchFailures > 0
        ? {
            failures: p.launchFailures,
            kind: p.launchErrorKind ?? "transient",
            error: p.launchError ?? "unknown error",
            since: p.launchFailingSince ?? p.updatedAt,
            retryAt: p.launchRetryAt,
          }
        : null,
    held: p.registrationHold === null ? null : { reason: p.registrationHold, since: p.registrationHeldAt ?? p.updatedAt, failures: p.registrationFailures },
  };
}

/** An incident with its steps in order and the time each took. */
export function incidentTimeline(i: typeof incidents.$inferSelect): IncidentTimeline {
  const points: [IncidentTimeline["steps"][number]["step"], number | null][] = [
    ["fault", i.faultAt],
    ["opened", i.openedAt],
    ["cordoned", i.cordonedAt],
    ["drained", i.drainedAt],
    ["rebooted", i.rebootedAt],
    ["back", i.backAt],
    ["terminated", i.terminatedAt],
    ["replacement_ready", i.replacementReadyAt],
    ["closed", i.closedAt],
  ];
  const steps: IncidentTimeline["steps"] = [];
  let previous: number | undefined;
  for (const [step, at] of points) {
    if (at === null) continue;
    steps.push({ step, at, sincePreviousMs: previous === undefined ? null : Math.max(0, at - previous) });
    previous = at;
  }
  const span = (from: number | null, to: number | null) => (from === null || to === null ? null : Math.max(0, to - from));
  return {
    ...i,
    steps,
    durations: {
      faultToCordonMs: span(i.faultAt, i.cordonedAt),
      cordonToDrainedMs: span(i.cordonedAt, i.drainedAt),
      drainedToTerminatedMs: span(i.drainedAt, i.terminatedAt),
      rebootToBackMs: span(i.rebootedAt, i.backAt),
      faultToReplacementReadyMs: span(i.faultAt, i.replacementReadyAt),
    },
  };
}

export interface EventFilter {
  node?: string | undefined;
  pool?: string | undefined;
  severity?: (typeof SEVERITIES)[number] | undefined;
  check?: string | undefined;
  since?: number | undefined;
  after?: number | undefined;
  limit: number;
}

/**
 * Health events matching the filter, oldest first. Without `after`: the newest `limit`
 * of them. With `after` (a previous cursor): the oldest `limit` newer than it, so a
 * follower pages forward without gaps. The cursor covers every event that existed
 * when the query ran, matching or not.
 */
export async function listEvents(store: Store, f: EventFilter): Promise<EventList> {
  const db = store.db;
  const [top] = await db.select({ id: sql<number | null>`max(${healthEvents.id})` }).from(healthEvents);
  const end = Number(top?.id ?? 0);
  const where: SQL[] = [lte(healthEvents.id, end)];
  if (f.after !== undefined) where.push(gt(healthEvents.id, f.after));
  if (f.node !== undefined) where.push(eq(healthEvents.nodeId, f.node));
  if (f.pool !== undefined) where.push(eq(nodes.pool, f.pool));
  if (f.check !== undefined) where.push(eq(healthEvents.check, f.check));
  if (f.since !== undefined) where.push(gte(healthEvents.time, f.since));
  if (f.severity !== undefined) where.push(inArray(healthEvents.severity, SEVERITIES.slice(SEVERITIES.indexOf(f.severity))));
  const rows = await db
    .select({
      id: healthEvents.id,
      nodeId: healthEvents.nodeId,
      pool: nodes.pool,
      seq: healthEvents.seq,
      time: healthEvents.time,
      receivedAt: healthEvents.receivedAt,
      check: healthEvents.check,
      code: healthEvents.code,
      severity: healthEvents.severity,
      action: healthEvents.action,
      gpuIndex: healthEvents.gpuIndex,
      message: healthEvents.message,
      count: healthEvents.count,
    })
    .from(healthEvents)
    .leftJoin(nodes, eq(nodes.id, healthEvents.nodeId))
    .where(and(...where))
    .orderBy(f.after === undefined ? desc(healthEvents.id) : asc(healthEvents.id))
    .limit(f.limit);
  if (f.after === undefined) rows.reverse();
  // A full page going forward may stop short of the end: continue from its last row.
  const cursor = f.after !== undefined && rows.length === f.limit ? (rows.at(-1)?.id ?? end) : Math.max(end, f.after ?? 0);
  return { events: rows, cursor };
}

/** A query's time: epoch ms, or an ISO-8601 time of a real date (2026-02-31 is refused, not rolled over); null when neither. */
export function parseTime(s: string): number | null {
  if (/^\d{1,15}$/.test(s)) return Number(s);
  return parseIsoTime(s) ?? null;
}

// ───────────────────────────── change stream ─────────────────────────────

/**
 * A cheap fingerprint of what the views show: newest audit row, event and incident,
 * the sum of node versions (every transition and patch bumps one), the verdict mix,
 * open breakers and paused pools. Heartbeats do not change it.
 */
async function fingerprint(store: Store): Promise<string> {
  const rs = await store.client.execute(`select
    (select coalesce(max(id), 0) from audit_log) as a,
    (select coalesce(max(id), 0) from health_events) as e,
    (select coalesce(max(id), 0) from incidents) as i,
    (select coalesce(sum(version), 0) || '.' || count(*) || '.' ||
       coalesce(sum(case verdict when 'healthy' then 1 when 'degraded' then 1000 when 'unhealthy' then 1000000 else 0 end), 0) from nodes) as n,
    (select count(*) || '.' || coalesce(max(tripped_at), 0) from breakers where reset_at is null) as b,
    (select coalesce(sum(paused), 0) || '.' || coalesce(max(updated_at), 0) from pools where paused = 1) as p`);
  const row = rs.rows[0];
  return row === undefined ? "" : [row.a, row.e, row.i, row.n, row.b, row.p].map(String).join("/");
}

/** One store poll per interval however many dashboards listen. */
class ChangeWatcher {
  private last: { at: number; value: Promise<string> } | undefined;
  constructor(
    private readonly store: Store,
    readonly intervalMs: number,
  ) {}

  current(): Promise<string> {
    const t = performance.now();
    if (this.last === undefined || t - this.last.at >= this.intervalMs / 2) {
      this.last = { at: t, value: fingerprint(this.store).catch(() => "unavailable") };
    }
    return this.last.value;
  }
}

/**
 * Server-sent events: `change` (with the new fingerprint) whenever the views would differ; a
 * ping every 5 s otherwise, inside Bun.serve's 10 s idle timeout (which would end the stream).
 */
const WATCH_PING_MS = 5_000;

function watchStream(c: Context, watcher: ChangeWatcher): Response {
  c.header("Cache-Control", "no-store");
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (stream) => {
    let open = true;
    stream.onAbort(() => {
      open = false;
    });
    let last = await watcher.current();
    await stream.writeSSE({ event: "hello", data: JSON.stringify({ version: last }) });
    let sincePing = 0;
    while (open) {
      await stream.sleep(watcher.intervalMs);
      if (!open) break;
      const now = await watcher.current();
      if (now !== last) {
        last = now;
        await stream.writeSSE({ event: "change", data: JSON.stringify({ version: now }) });
        sincePing = 0;
      } else if ((sincePing += watcher.intervalMs) >= WATCH_PING_MS) {
        await stream.writeSSE({ event: "ping", data: "{}" });
        sincePing = 0;
      }
    }
  });
}
