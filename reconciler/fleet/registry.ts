// What agents tell the reconciler, written to the store: registrations, heartbeats
// and health events. Pure store operations; the HTTP layer validates before calling.
import { and, asc, desc, eq, max, sql } from "drizzle-orm";
import { gpus, healthEvents, nodes } from "../../schema/db.ts";
import type { EventBatch, Heartbeat, RegisterRequest } from "../../schema/wire.ts";
import type { Db } from "../store/store.ts";

export type Clock = () => number;

export type RegisterResult =
  | { ok: true; created: boolean; lastEventSeq: number; sameSpool: boolean }
  /** The node was terminated or given up on: its machine should not be running. */
  | { ok: false; state: string };

/** States in which a (re-)registration leaves the lifecycle state alone. */
const KEEP_STATE_ON_REGISTER = new Set(["ready", "suspect", "cordoned", "draining", "held"]);
/** States from which a registration is refused. */
const GONE_STATES = new Set(["terminating", "terminated", "failed"]);

export async function registerNode(db: Db, req: RegisterRequest, now: Clock): Promise<RegisterResult> {
  const at = now();
  const nvmlError = req.nvml.available ? null : (req.nvml.error ?? "NVML unavailable");
  return db.transaction(async (tx) => {
    const [existing] = await tx.select().from(nodes).where(eq(nodes.id, req.nodeId));
    if (existing && GONE_STATES.has(existing.state)) return { ok: false as const, state: existing.state };
    const fields = {
      pool: req.pool ?? existing?.pool ?? null,
      provider: req.provider ?? existing?.provider ?? null,
      instanceType: req.instanceType ?? existing?.instanceType ?? null,
      hostname: req.hostname,
      bootId: req.bootId,
      agentVersion: req.agentVersion,
      spoolId: req.spoolId,
      driverVersion: req.driverVersion ?? null,
      cudaVersion: req.cudaVersion ?? null,
      nvmlAvailable: req.nvml.available,
      nvmlError,
      lastHeartbeatAt: at,
      updatedAt: at,
    };
    if (existing === undefined) {
      await tx.insert(nodes).values({
        id: req.nodeId,
        ...fields,
        // A node is not Ready until its first full health check passes (lifecycle).
        state: "validating",
        stateReason: nvmlError ?? "awaiting first health check",
        stateChangedAt: at,
        registeredAt: at,
        evaluatedEventId: await endOfEventLog(tx),
      });
    } else {
      const keep = KEEP_STATE_ON_REGISTER.has(existing.state);
      await tx
        .update(nodes)
        .set({
          ...fields,
          registeredAt: existing.registeredAt ?? at,
          // First registration of a node we requested: its health cursor starts at the log's end.
          ...(existing.registeredAt === null ? { evaluatedEventId: await endOfEventLog(tx) } : {}),
          ...(keep ? {} : { state: "validating" as const, stateReason: nvmlError ?? "awaiting first health check", stateChangedAt: at }),
          version: sql`${nodes.version} + 1`,
        })
        .where(eq(nodes.id, req.nodeId));
    }
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
      lastEventSeq: existing?.lastEventSeq ?? 0,
      sameSpool: existing?.spoolId === req.spoolId,
    };
  });
}

/** The id of the newest health event (0 for an empty log). */
async function endOfEventLog(tx: Pick<Db, "select">): Promise<number> {
  const [row] = await tx.select({ id: max(healthEvents.id) }).from(healthEvents);
  return row?.id ?? 0;
}

/** Records a heartbeat; returns false when the node is unknown (it must register first). */
export async function recordHeartbeat(db: Db, hb: Heartbeat, now: Clock): Promise<boolean> {
  const at = now();
  // Two statements, no interactive transaction: heartbeats are the hottest write path
  // (goal: 2,000/s on 2 cores), and each statement is atomic on its own.
  const updated = await db
    .update(nodes)
    .set({
      lastHeartbeatAt: at,
      bootId: hb.bootId,
      nvmlAvailable: hb.nvml.available,
      nvmlError: hb.nvml.available ? null : (hb.nvml.error ?? "NVML unavailable"),
      agentHealth: hb.health.checked ? hb.health.worst : null,
      updatedAt: at,
    })
    .where(eq(nodes.id, hb.nodeId))
    .returning({ id: nodes.id });
  if (updated.length === 0) return false;
  if (hb.gpus.length > 0) {
    // Every GPU's readings in one statement: each row takes the snapshot with its index.
    await db.run(sql`
      UPDATE ${gpus}
      SET last_snapshot = (SELECT value FROM json_each(${JSON.stringify(hb.gpus)}) WHERE json_extract(value, '$.index') = ${gpus}.gpu_index),
          updated_at = ${at}
      WHERE node_id = ${hb.nodeId}
        AND gpu_index IN (SELECT json_extract(value, '$.index') FROM json_each(${JSON.stringify(hb.gpus)}))`);
  }
  return true;
}

export interface AppendResult {
  /** Events of the batch that were new; the rest were already stored (resends). */
  stored: { seq: number; check: string; severity: string }[];
  /** Highest seq stored for the node after this batch. */
  ackedSeq: number;
}

/** Appends a batch of health events, dropping any seq already stored; undefined for an unknown node. */
export async function appendEvents(db: Db, batch: EventBatch, now: Clock): Promise<AppendResult | undefined> {
  const at = now();
  return db.transaction(async (tx) => {
    const [node] = await tx.select({ id: nodes.id }).from(nodes).where(eq(nodes.id, batch.nodeId));
    if (node === undefined) return undefined;
    const inserted = await tx
      .insert(healthEvents)
      .values(
        batch.events.map((e) => ({
          nodeId: batch.nodeId,
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
        })),
      )
      .onConflictDoNothing({ target: [healthEvents.nodeId, healthEvents.seq] })
      .returning({ seq: healthEvents.seq, check: healthEvents.check, severity: healthEvents.severity });
    const [top] = await tx
      .select({ seq: max(healthEvents.seq) })
      .from(healthEvents)
      .where(eq(healthEvents.nodeId, batch.nodeId));
    const ackedSeq = top?.seq ?? 0;
    await tx.update(nodes).set({ lastEventSeq: ackedSeq, updatedAt: at }).where(eq(nodes.id, batch.nodeId));
    return { stored: inserted, ackedSeq };
  });
}

export async function listNodes(db: Db) {
  return db.select().from(nodes).orderBy(asc(nodes.id));
}

/** One node with its GPUs and most recent events, or undefined. */
export async function getNodeDetail(db: Db, nodeId: string, recentEvents = 50) {
  const [node] = await db.select().from(nodes).where(eq(nodes.id, nodeId));
  if (node === undefined) return undefined;
  const nodeGpus = await db.select().from(gpus).where(eq(gpus.nodeId, nodeId)).orderBy(asc(gpus.index));
  const events = await db
    .select()
    .from(healthEvents)
    .where(eq(healthEvents.nodeId, nodeId))
    .orderBy(desc(healthEvents.seq))
    .limit(recentEvents);
  return { node, gpus: nodeGpus, events };
}
