// What agents tell the reconciler, written to the store: registrations, heartbeats
// and health events. Pure store operations; the HTTP layer validates before calling.
import { and, asc, desc, eq, gt, max, or } from "drizzle-orm";
import { gpuReadings, gpus, healthEvents, instances, nodes, operations } from "../../schema/db.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { EventBatch, HealthEvent, Heartbeat, RegisterRequest } from "../../schema/wire.ts";
import { minutes, recordRegistration } from "./registration-deadlines.ts";
import { NodeWriter, type NodeRow, type Tx } from "./writer.ts";
import type { Clock } from "../../schema/time.ts";
import type { Db } from "../store/store.ts";
import { writeIngestGroup, type AppendResult, type HeartbeatResult } from "../ingest/write.ts";

export type { AppendResult, HeartbeatResult } from "../ingest/write.ts";

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
    // A machine given up whose agent comes late, while its instance is still there, is welcome back.
    const late = existing !== undefined && existing.state === "failed" && (await stillThere(tx, existing));
    if (existing && isIn("outOfPool", existing.state) && !late) return { ok: false as const, state: existing.state };
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
        ...(req.gpus.length > 0 ? { gpuCount: req.gpus.length } : {}),
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
        ...(existing.gpuCount === null && req.gpus.length > 0 ? { gpuCount: req.gpus.length } : {}),
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
      const launchedAt = existing.launchedAt;
      const reason = late
        ? `registered ${minutes(at - (launchedAt ?? existing.stateChangedAt))} after its launch, after it was given up; adopted back into pool ${existing.pool}: ${waiting}`
        : waiting;
      const change = { at, actor: `agent:${req.nodeId}`, reason, fields };
      // The first registration of a machine Navarch launched teaches its pool how long its kind takes.
      if (existing.registeredAt === null && existing.origin === "launched" && launchedAt !== null && existing.adoptedAt === null && existing.pool !== null) {
        await recordRegistration(tx, {
          pool: existing.pool,
          provider: existing.provider ?? "",
          instanceType: existing.instanceType ?? "",
          nodeId: existing.id,
          launchedAt,
          registeredAt: at,
          late,
        });
      }
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
 * Whether a failed machine's instance is still there as far as Navarch knows: launched by
 * Navarch, and neither a terminate call it accepted nor a reap of it. (A terminate that
 * failed leaves it running until a sweep reaps it; its agent may register meanwhile.)
 */
async function stillThere(tx: Tx, node: NodeRow): Promise<boolean> {
  if (node.origin !== "launched" || node.instanceName === null || node.provider === null) return false;
  const [terminated] = await tx
    .select({ key: operations.key })
    .from(operations)
    .where(and(eq(operations.key, `terminate:${node.id}`), eq(operations.state, "succeeded")));
  if (terminated !== undefined) return false;
  const [instance] = await tx
    .select({ state: instances.state })
    .from(instances)
    .where(and(eq(instances.provider, node.provider), eq(instances.providerId, node.instanceName)));
  return instance !== undefined && instance.state !== "terminated";
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

/**
 * Records one heartbeat (the simulator, tests; the API groups them through ingest/group-commit.ts);
 * returns the highest event seq stored for the node, or undefined when it must register first.
 */
export async function recordHeartbeat(db: Db, hb: Heartbeat, now: Clock): Promise<HeartbeatResult> {
  return (await writeIngestGroup(db.$client, { heartbeats: [hb], batches: [] }, now())).heartbeats[0];
}

/** Appends one batch of health events, dropping any seq already stored; undefined for an unknown node. */
export async function appendEvents(db: Db, batch: EventBatch, now: Clock): Promise<AppendResult | undefined> {
  return (await writeIngestGroup(db.$client, { heartbeats: [], batches: [batch] }, now())).batches[0];
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

/** A node's GPUs in index order, each with its latest heartbeat's readings (null without one). */
export async function nodeGpus(db: Db, nodeId: string) {
  const [rows, [latest]] = await Promise.all([
    db.select().from(gpus).where(eq(gpus.nodeId, nodeId)).orderBy(asc(gpus.index)),
    db.select({ readings: gpuReadings.readings }).from(gpuReadings).where(eq(gpuReadings.nodeId, nodeId)),
  ]);
  const byIndex = new Map<unknown, Record<string, unknown>>();
  if (Array.isArray(latest?.readings))
    for (const r of latest.readings as unknown[])
      if (typeof r === "object" && r !== null && !Array.isArray(r)) byIndex.set((r as { index?: unknown }).index, r as Record<string, unknown>);
  return rows.map((g) => ({ ...g, lastSnapshot: byIndex.get(g.index) ?? null }));
}

/** One node with its GPUs and most recent events, or undefined. */
export async function getNodeDetail(db: Db, nodeId: string, recentEvents = 50) {
  const [node] = await db.select().from(nodes).where(eq(nodes.id, nodeId));
  if (node === undefined) return undefined;
  const events = await db.select().from(healthEvents).where(eq(healthEvents.nodeId, nodeId)).orderBy(desc(healthEvents.seq)).limit(recentEvents);
  return { node, gpus: await nodeGpus(db, nodeId), events };
}
