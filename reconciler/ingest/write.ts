// The write of a group of heartbeats and event batches (ingest/group-commit.ts gathers them): one
// transaction of set-based statements, whatever the group's size. Used on the event loop's
// thread for single writes (the simulator, tests) and in the ingest worker for the API's groups.
import type { SqlStatement } from "../store/prepared.ts";
// The group's rows go to SQLite as JSON (json_each), whose functions decode each string's
// escapes: wellFormedJson keeps a lone surrogate from becoming bytes that are not UTF-8, which
// libSQL aborts the process on reading. The API refuses such a string before (api/body.ts).
import { wellFormedJson as sqlJson } from "../../schema/text.ts";
import { READING_RANGES, withinRange } from "../../schema/reading-ranges.ts";
import type { EventBatch, Heartbeat } from "../../schema/wire.ts";

/** A heartbeat's answer: the highest event seq stored for the node; undefined: it must register first. */
export type HeartbeatResult = { lastEventSeq: number } | undefined;

export interface AppendResult {
  /** Events of the batch that were new; the rest were already stored (resends). */
  stored: { seq: number; check: string; severity: string }[];
  /** Highest seq stored for the node after this batch. */
  ackedSeq: number;
}

/** Heartbeats and event batches written together (ingest/group-commit.ts gathers them). */
export interface IngestGroup {
  heartbeats: readonly Heartbeat[];
  batches: readonly EventBatch[];
}

/**
 * Where a group is written: one write transaction of statements, each one's rows by column
 * name. A libSQL client is one; so is the ingest worker's connection, which keeps its
 * statements prepared (store/prepared.ts).
 */
export interface WriteBatch {
  batch(statements: SqlStatement[], mode: "write"): Promise<{ rows: Record<string, unknown>[] }[]>;
}

export interface IngestResults {
  /** Each heartbeat's answer, in the group's order. */
  heartbeats: HeartbeatResult[];
  /** Each batch's answer, in the group's order; undefined for a node the store does not know. */
  batches: (AppendResult | undefined)[];
}

// Every heartbeat of a group in two statements, whatever the group's size: one UPDATE of their
// nodes and one upsert of their readings (one row per node), each joined to the group's JSON
// (json_each). A node that is unknown, or known only as launched and never registered (a
// database restored from before its registration), is not written and gets no answer row: it
// must register.
const HEARTBEAT_NODES = `UPDATE nodes SET last_heartbeat_at = ?1, boot_id = j.boot, nvml_available = j.nvml, nvml_error = j.err, agent_health = j.health,
  gpu_readings = j.readings, gpu_temperature_max_c = j.temp_max, gpu_utilization_sum = j.util_sum, gpu_utilization_count = j.util_count, updated_at = ?1
FROM (SELECT value->>0 AS id, value->>1 AS boot, value->>2 AS nvml, value->>3 AS err, value->>4 AS health,
             value->>5 AS readings, value->>6 AS temp_max, value->>7 AS util_sum, value->>8 AS util_count FROM json_each(?2)) AS j
WHERE nodes.id = j.id AND nodes.registered_at IS NOT NULL
RETURNING nodes.id AS id, nodes.last_event_seq AS seq`;
const HEARTBEAT_READINGS = `INSERT INTO gpu_readings (node_id, readings, updated_at)
SELECT value->>0, value->1, ?1 FROM json_each(?2) AS j
WHERE EXISTS (SELECT 1 FROM nodes WHERE nodes.id = j.value->>0 AND nodes.registered_at IS NOT NULL)
ON CONFLICT (node_id) DO UPDATE SET readings = excluded.readings, updated_at = excluded.updated_at`;
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
export async function writeIngestGroup(client: WriteBatch, group: IngestGroup, at: number): Promise<IngestResults> {
  const statements: SqlStatement[] = [];
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
    statements.push({ sql: EVENTS_INSERT, args: [batch.nodeId, at, sqlJson(rows)] }, { sql: EVENTS_ACK, args: [batch.nodeId, at] });
  }
  // The latest heartbeat of each node; of each GPU index in it, the first reading (as the store always kept).
  const latest = new Map<string, Heartbeat>();
  for (const hb of group.heartbeats) latest.set(hb.nodeId, hb);
  if (latest.size > 0) {
    const beats: unknown[] = [];
    const readings: unknown[] = [];
    for (const hb of latest.values()) {
      const seen = new Set<number>();
      const snapshots: Heartbeat["gpus"] = [];
      let tempMax: number | null = null;
      let utilSum = 0;
      let utilCount = 0;
      for (const g of hb.gpus) {
        if (seen.has(g.index)) continue;
        seen.add(g.index);
        snapshots.push(g);
        const temp = g.temperatureC === undefined ? undefined : withinRange(g.temperatureC, READING_RANGES.temperatureC);
        if (temp !== undefined) tempMax = Math.max(tempMax ?? -Infinity, temp);
        const util = g.utilizationPct === undefined ? undefined : withinRange(g.utilizationPct, READING_RANGES.utilizationPct);
        if (util !== undefined) {
          utilSum += util;
          utilCount++;
        }
      }
      if (snapshots.length > 0) readings.push([hb.nodeId, snapshots]);
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
    statements.push({ sql: HEARTBEAT_NODES, args: [at, sqlJson(beats)] });
    if (readings.length > 0) statements.push({ sql: HEARTBEAT_READINGS, args: [at, sqlJson(readings)] });
  }
  if (statements.length === 0) return { heartbeats: [], batches: [] };
  const results = await client.batch(statements, "write");
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
