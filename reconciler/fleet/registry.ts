// What agents tell the reconciler, written to the store: registrations, heartbeats
// and health events. Pure store operations; the HTTP layer validates before calling.
import type { InStatement } from "@libsql/client";
import { and, asc, desc, eq, gt, max, or } from "drizzle-orm";
import { gpus, healthEvents, nodes } from "../../schema/db.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import { READING_RANGES, withinRange } from "../../schema/reading-ranges.ts";
import type { EventBatch, HealthEvent, Heartbeat, RegisterRequest } from "../../schema/wire.ts";
import { NodeWriter, type Tx } from "../lifecycle/transition.ts";
import type { Db } from "../store/store.ts";

export type Clock = () => number;

export type RegisterResult =
  | { ok: true; created: boolean; lastEventSeq: number; sameSpool: boolean; origin: "launched" | "registered" }
  /** The node was terminated or given up on: its machine should not be running. */
  | { ok: false; state: string };

/**
 * States in which a (re-)registration leaves the lifecycle state alone. A rebooting node
 * too: the loop sees the new boot id and moves it on.
 */
const KEEP_STATE_ON_REGISTER = new Set<NodeState>(["validating", "ready", "suspect", "cordoned", "draining", "rebooting", "held"]);

/**
 * A registration. A node Navarch launched keeps what Navarch recorded for it (pool,
 * provider, instance type: never the agent's word). A node id Navarch does not know is
 * recorded as `registered`: monitored, never counted in a pool's size. Either way the
 * agent's open findings of this boot come along and are stored when the reconciler
 * lacks them (its database lost or restored from an older copy), so nothing broken
 * comes back into service because the reconciler forgot.
 */
export async function registerNode(db: Db, req: RegisterRequest, now: Clock): Promise<RegisterResult> {
  const at = now();
  const nvmlError = req.nvml.available ? null : (req.nvml.error ?? "NVML unavailable");
  const writer = new NodeWriter(db);
  return db.transaction(async (tx) => {
    const [existing] = await tx.select().from(nodes).where(eq(nodes.id, req.nodeId));
    if (existing && isIn("outOfPool", existing.state)) return { ok: false as const, state: existing.state };
    // What the store held before this registration (the writer updates `existing` in place).
    const before = existing === undefined ? undefined : { spoolId: existing.spoolId, lastEventSeq: existing.lastEventSeq, origin: existing.origin };
    const reported = {
      hostname: req.hostname,
      bootId: req.bootId,
      agentVersion: req.agentVersion,
      spoolId: req.spoolId,
      driverVersion: req.driverVersion ?? null,
      cudaVersion: req.cudaVersion ?? null,
      nvmlAvailable: req.nvml.available,
      nvmlError,
      lastHeartbeatAt: at,
    };
    const waiting = nvmlError ?? "awaiting first health check";
    if (existing === undefined) {
      await tx.insert(nodes).values({
        id: req.nodeId,
        origin: "registered",
        // What the agent says of itself: labels to show, never acted on (origin decides that).
        pool: req.pool ?? null,
        provider: req.provider ?? null,
        instanceType: req.instanceType ?? null,
        ...reported,
        // A node is not Ready until its first full health check passes (lifecycle).
        state: "validating",
        stateReason: waiting,
        stateChangedAt: at,
        registeredAt: at,
        evaluatedEventId: await endOfEventLog(tx),
        updatedAt: at,
      });
    } else {
      const fields = {
        ...reported,
        registeredAt: existing.registeredAt ?? at,
        // First registration of a node we requested: its health cursor starts at the log's end.
        ...(existing.registeredAt === null ? { evaluatedEventId: await endOfEventLog(tx) } : {}),
        // A monitored node describes itself; a launched one is what Navarch recorded. Once the
        // scheduler named a monitored node's machine, its provider is that, never the agent's word.
        ...(existing.origin === "registered"
          ? {
              pool: req.pool ?? existing.pool,
              provider: existing.instanceName === null ? (req.provider ?? existing.provider) : existing.provider,
              instanceType: req.instanceType ?? existing.instanceType,
            }
          : {}),
      };
      const change = { at, actor: `agent:${req.nodeId}`, reason: waiting, fields };
      const ok = KEEP_STATE_ON_REGISTER.has(existing.state)
        ? await writer.patch(existing, fields, at, {}, tx)
        : await writer.transition(existing, "validating", { ...change, action: "register" }, tx);
      if (!ok) throw new Error(`node ${req.nodeId} changed while it registered; try again`);
    }
    const lastEventSeq = await storeOpenFindings(tx, req, before?.lastEventSeq ?? 0, at);
    await tx.delete(gpus).where(eq(gpus.nodeId, req.nodeId));
    if (req.gpus.length > 0) {
      await tx.insert(gpus).values(
        req.gpus.map((g) => ({
          nodeId: req.nodeId,
          index: g.index,
          uuid: g.uuid,
          pciBusId: g.pciBusId,
          name: g.name,
          memoryTotalBytes: g.memoryTotalBytes ?? null,
          updatedAt: at,
        })),
      );
    }
    return {
      ok: true as const,
      created: existing === undefined,
      lastEventSeq,
      sameSpool: before?.spoolId === req.spoolId,
      origin: before?.origin ?? "registered",
    };
  });
}

/**
 * The agent's open findings of this boot that the store lacks (seq past what it has for the
 * node) are stored as the events they were; returns the node's highest stored seq after.
 */
async function storeOpenFindings(tx: Tx, req: RegisterRequest, storedSeq: number, at: number): Promise<number> {
  const missing = (req.openFindings ?? []).filter((e) => e.seq > storedSeq && e.bootId === req.bootId);
  if (missing.length === 0) return storedSeq;
  await tx
    .insert(healthEvents)
    .values(missing.map((e) => eventRow(req.nodeId, e, at)))
    .onConflictDoNothing({ target: [healthEvents.nodeId, healthEvents.seq] });
  const [top] = await tx
    .select({ seq: max(healthEvents.seq) })
    .from(healthEvents)
    .where(eq(healthEvents.nodeId, req.nodeId));
  const seq = top?.seq ?? storedSeq;
  await tx.update(nodes).set({ lastEventSeq: seq }).where(eq(nodes.id, req.nodeId));
  return seq;
}

function eventRow(nodeId: string, e: HealthEvent, at: number): typeof healthEvents.$inferInsert {
  return {
    nodeId,
    seq: e.seq,
    bootId: e.bootId,
    time: Date.parse(e.time),
    receivedAt: at,
    check: e.check,
    code: e.code ?? null,
    severity: e.severity,
    action: e.action,
    gpuIndex: e.gpu?.index ?? null,
    gpuUuid: e.gpu?.uuid ?? null,
    gpuPciBusId: e.gpu?.pciBusId ?? null,
    message: e.message,
    count: e.count ?? 1,
  };
}

/** The id of the newest health event (0 for an empty log). */
async function endOfEventLog(tx: Pick<Db, "select">): Promise<number> {
  const [row] = await tx.select({ id: max(healthEvents.id) }).from(healthEvents);
  return row?.id ?? 0;
}

// ───────────────────────────── heartbeats and events ─────────────────────────────

/** A heartbeat's answer: the highest event seq stored for the node; undefined: it must register first. */
export type HeartbeatResult = { lastEventSeq: number } | undefined;

export interface AppendResult {
  /** Events of the batch that were new; the rest were already stored (resends). */
  stored: { seq: number; check: string; severity: string }[];
  /** Highest seq stored for the node after this batch. */
  ackedSeq: number;
}

/** Heartbeats and event batches written together (fleet/ingest.ts gathers them). */
export interface IngestGroup {
  heartbeats: readonly Heartbeat[];
  batches: readonly EventBatch[];
}

export interface IngestResults {
  /** Each heartbeat's answer, in the group's order. */
  heartbeats: HeartbeatResult[];
  /** Each batch's answer, in the group's order; undefined for a node the store does not know. */
  batches: (AppendResult | undefined)[];
}

// Every heartbeat of a group in two statements, whatever the group's size: one UPDATE of their
// nodes and one of all their GPUs' readings, each joined to the group's JSON (json_each). A
// node that is unknown, or known only as launched and never registered (a database restored
// from before its registration), is not updated and gets no answer row: it must register.
const HEARTBEAT_NODES = `UPDATE nodes SET last_heartbeat_at = ?1, boot_id = j.boot, nvml_available = j.nvml, nvml_error = j.err, agent_health = j.health,
  gpu_readings = j.readings, gpu_temperature_max_c = j.temp_max, gpu_utilization_sum = j.util_sum, gpu_utilization_count = j.util_count, updated_at = ?1
FROM (SELECT value->>0 AS id, value->>1 AS boot, value->>2 AS nvml, value->>3 AS err, value->>4 AS health,
             value->>5 AS readings, value->>6 AS temp_max, value->>7 AS util_sum, value->>8 AS util_count FROM json_each(?2)) AS j
WHERE nodes.id = j.id AND nodes.registered_at IS NOT NULL
RETURNING nodes.id AS id, nodes.last_event_seq AS seq`;
const HEARTBEAT_GPUS = `UPDATE gpus SET last_snapshot = j.snapshot, updated_at = ?1
FROM (SELECT value->>0 AS node, value->>1 AS gpu, value->>2 AS snapshot FROM json_each(?2)) AS j
WHERE gpus.node_id = j.node AND gpus.gpu_index = j.gpu
  AND EXISTS (SELECT 1 FROM nodes WHERE nodes.id = j.node AND nodes.registered_at IS NOT NULL)`;
// One event batch: its new events (a seq already stored is a resend, dropped), only for a node
// the store knows; then the node's highest stored seq, which is the batch's answer (no row: unknown node).
const EVENTS_INSERT = `INSERT INTO health_events (node_id, seq, boot_id, "time", received_at, "check", code, severity, action, gpu_index, gpu_uuid, gpu_pci_bus_id, message, count)
SELECT ?1, value->>0, value->>1, value->>2, ?2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10, value->>11
FROM json_each(?3) WHERE EXISTS (SELECT 1 FROM nodes WHERE id = ?1)
ON CONFLICT (node_id, seq) DO NOTHING
RETURNING seq, "check", severity`;
const EVENTS_ACK = `UPDATE nodes SET last_event_seq = coalesce((SELECT max(seq) FROM health_events WHERE node_id = ?1), 0), updated_at = ?2
WHERE id = ?1 RETURNING last_event_seq AS seq`;

/**
 * Writes a group of heartbeats and event batches in ONE transaction and answers each as if
 * they had been written one after another: the batches first, then the heartbeats (they
 * arrived together, so that is an order they could have come in). Two heartbeats of one node
 * in a group: the later one's readings are stored, and both get the same answer.
 */
export async function writeIngestGroup(db: Db, group: IngestGroup, at: number): Promise<IngestResults> {
  const statements: InStatement[] = [];
  for (const batch of group.batches) {
    const rows = batch.events.map((e) => [
      e.seq,
      e.bootId,
      Date.parse(e.time),
      e.check,
      e.code ?? null,
      e.severity,
      e.action,
      e.gpu?.index ?? null,
      e.gpu?.uuid ?? null,
      e.gpu?.pciBusId ?? null,
      e.message,
      e.count ?? 1,
    ]);
    statements.push({ sql: EVENTS_INSERT, args: [batch.nodeId, at, JSON.stringify(rows)] }, { sql: EVENTS_ACK, args: [batch.nodeId, at] });
  }
  // The latest heartbeat of each node; of each GPU index in it, the first reading (as the store always kept).
  const latest = new Map<string, Heartbeat>();
  for (const hb of group.heartbeats) latest.set(hb.nodeId, hb);
  if (latest.size > 0) {
    const beats: unknown[] = [];
    const readings: unknown[] = [];
    for (const hb of latest.values()) {
      const seen = new Set<number>();
      let tempMax: number | null = null;
      let utilSum = 0;
      let utilCount = 0;
      for (const g of hb.gpus) {
        if (seen.has(g.index)) continue;
        seen.add(g.index);
        readings.push([hb.nodeId, g.index, JSON.stringify(g)]);
        const temp = g.temperatureC === undefined ? undefined : withinRange(g.temperatureC, READING_RANGES.temperatureC);
        if (temp !== undefined) tempMax = Math.max(tempMax ?? -Infinity, temp);
        const util = g.utilizationPct === undefined ? undefined : withinRange(g.utilizationPct, READING_RANGES.utilizationPct);
        if (util !== undefined) {
          utilSum += util;
          utilCount++;
        }
      }
      beats.push([
        hb.nodeId,
        hb.bootId,
        hb.nvml.available ? 1 : 0,
        hb.nvml.available ? null : (hb.nvml.error ?? "NVML unavailable"),
        hb.health.checked ? hb.health.worst : null,
        seen.size,
        tempMax,
        utilCount > 0 ? utilSum : null,
        utilCount,
      ]);
    }
    statements.push({ sql: HEARTBEAT_NODES, args: [at, JSON.stringify(beats)] });
    if (readings.length > 0) statements.push({ sql: HEARTBEAT_GPUS, args: [at, JSON.stringify(readings)] });
  }
  if (statements.length === 0) return { heartbeats: [], batches: [] };
  const results = await db.$client.batch(statements, "write");
  const batches = group.batches.map((_, i): AppendResult | undefined => {
    const [ack] = results[2 * i + 1]!.rows;
    if (ack === undefined) return undefined;
    const stored = results[2 * i]!.rows.map((r) => ({ seq: Number(r.seq), check: String(r.check), severity: String(r.severity) }));
    return { stored: stored.sort((a, b) => a.seq - b.seq), ackedSeq: Number(ack.seq) };
  });
  const seqs = new Map<string, number>();
  if (latest.size > 0) for (const r of results[2 * group.batches.length]!.rows) seqs.set(String(r.id), Number(r.seq));
  const heartbeats = group.heartbeats.map((hb): HeartbeatResult => {
    const seq = seqs.get(hb.nodeId);
    return seq === undefined ? undefined : { lastEventSeq: seq };
  });
  return { heartbeats, batches };
}

/**
 * Records one heartbeat (the simulator, tests; the API groups them through fleet/ingest.ts);
 * returns the highest event seq stored for the node, or undefined when it must register first.
 */
export async function recordHeartbeat(db: Db, hb: Heartbeat, now: Clock): Promise<HeartbeatResult> {
  return (await writeIngestGroup(db, { heartbeats: [hb], batches: [] }, now())).heartbeats[0];
}

/** Appends one batch of health events, dropping any seq already stored; undefined for an unknown node. */
export async function appendEvents(db: Db, batch: EventBatch, now: Clock): Promise<AppendResult | undefined> {
  return (await writeIngestGroup(db, { heartbeats: [], batches: [batch] }, now())).batches[0];
}

/** Which nodes a listing wants; without `limit`, all of them. */
export interface NodeFilter {
  pool?: string;
  state?: NodeState;
  /** Judged unhealthy, or Lost. */
  unhealthy?: boolean;
  /** Only ids after this one (keyset paging). */
  after?: string;
  limit?: number;
}

/** Nodes in id order. */
export async function listNodes(db: Db, f: NodeFilter = {}) {
  const where = and(
    f.pool === undefined ? undefined : eq(nodes.pool, f.pool),
    f.state === undefined ? undefined : eq(nodes.state, f.state),
    f.unhealthy ? or(eq(nodes.verdict, "unhealthy"), eq(nodes.state, "lost")) : undefined,
    f.after === undefined ? undefined : gt(nodes.id, f.after),
  );
  const query = db.select().from(nodes).where(where).orderBy(asc(nodes.id));
  return f.limit === undefined ? query : query.limit(f.limit);
}

/** One node with its GPUs and most recent events, or undefined. */
export async function getNodeDetail(db: Db, nodeId: string, recentEvents = 50) {
  const [node] = await db.select().from(nodes).where(eq(nodes.id, nodeId));
  if (node === undefined) return undefined;
  const nodeGpus = await db.select().from(gpus).where(eq(gpus.nodeId, nodeId)).orderBy(asc(gpus.index));
  const events = await db.select().from(healthEvents).where(eq(healthEvents.nodeId, nodeId)).orderBy(desc(healthEvents.seq)).limit(recentEvents);
  return { node, gpus: nodeGpus, events };
}
