// What goodput's fold (outages.ts) reads of the store: the audit log's changes of state in the
// order they were committed, a batch at a time, and the facts of the nodes a batch names (their
// pool, provider and GPUs, their replacement chain, their incidents). Each row is checked with
// valibot as it is read back. Batches keep memory flat however long the log is: the facts of a
// batch are loaded for it and let go after it.
import { sql, type SQL } from "drizzle-orm";
import * as v from "valibot";
import { NODE_STATES } from "../../schema/lifecycle.ts";
import type { Db } from "../store/store.ts";
import type { Facts, IncidentFacts, NodeFacts, Transition } from "./outages.ts";

/** Transitions read per batch. */
export const BATCH = 20_000;
/** Ids per `IN (…)` list. */
const CHUNK = 500;

const State = v.picklist(NODE_STATES);
const TransitionRow = v.object({ id: v.number(), at: v.number(), node: v.string(), action: v.string(), from: State, to: State });
const NodeRow = v.object({
  id: v.string(),
  pool: v.nullable(v.string()),
  provider: v.nullable(v.string()),
  gpus: v.nullable(v.number()),
  replacementOf: v.nullable(v.string()),
});
const IncidentRow = v.object({ nodeId: v.string(), openedAt: v.number(), closedAt: v.nullable(v.number()), cause: v.nullable(v.string()) });
const IdRow = v.object({ id: v.string() });

const STATES_SQL = sql.raw(`(${NODE_STATES.map((s) => `'${s}'`).join(", ")})`);

/**
 * The changes of state committed after audit row `afterId` (and at or before `upTo`), in order:
 * the audit rows that say `from` and `to` (the one writer writes one for every change of state).
 */
export async function transitionsAfter(db: Db, afterId: number, upTo = Number.MAX_SAFE_INTEGER, limit = BATCH): Promise<Transition[]> {
  const rows = await db.all(sql`
    SELECT id, at, target AS node, action, json_extract(details, '$.from') AS "from", json_extract(details, '$.to') AS "to"
    FROM audit_log
    WHERE id > ${afterId} AND at <= ${upTo}
      AND json_extract(details, '$.to') IN ${STATES_SQL} AND json_extract(details, '$.from') IN ${STATES_SQL}
    ORDER BY id LIMIT ${limit}`);
  return rows.map((r) => v.parse(TransitionRow, r));
}

/** The facts of the nodes a batch of transitions names, and of the nodes up their replacement chains. */
export class BatchFacts implements Facts {
  private readonly nodes = new Map<string, NodeFacts>();
  private readonly incidentsOf = new Map<string, IncidentFacts[]>();

  private constructor() {}

  static async load(db: Db, ids: Iterable<string>): Promise<BatchFacts> {
    const facts = new BatchFacts();
    // GPUs of a node nobody counted: those of another machine of its provider and instance type.
    const typeGpus = new Map<string, number>();
    const types = await db.all(sql`SELECT provider, instance_type AS type, max(gpu_count) AS gpus FROM nodes WHERE gpu_count IS NOT NULL GROUP BY 1, 2`);
    for (const t of types) {
      const row = v.parse(v.object({ provider: v.nullable(v.string()), type: v.nullable(v.string()), gpus: v.number() }), t);
      typeGpus.set(`${row.provider}/${row.type}`, row.gpus);
    }
    let wanted = [...new Set(ids)];
    // The chain upwards, a level at a time (a chain is a few machines long).
    for (let depth = 0; wanted.length > 0 && depth < 64; depth++) {
      const found = await inChunks(
        db,
        wanted,
        (list) => sql`SELECT id, pool, provider, gpu_count AS gpus, instance_type AS type, replacement_of AS "replacementOf" FROM nodes WHERE id IN ${list}`,
        (r) => {
          const row = v.parse(v.object({ ...NodeRow.entries, type: v.nullable(v.string()) }), r);
          return { ...row, gpus: row.gpus ?? typeGpus.get(`${row.provider}/${row.type}`) ?? null };
        },
      );
      for (const r of found) facts.nodes.set(r.id, { ...r, hasSuccessor: false });
      wanted = [...new Set(found.flatMap((r) => (r.replacementOf !== null && !facts.nodes.has(r.replacementOf) ? [r.replacementOf] : [])))];
    }
    const all = [...facts.nodes.keys()];
    const successors = await inChunks(
      db,
      all,
      (list) => sql`SELECT DISTINCT replacement_of AS id FROM nodes WHERE replacement_of IN ${list}`,
      (r) => v.parse(IdRow, r),
    );
    for (const s of successors) {
      const n = facts.nodes.get(s.id);
      if (n !== undefined) n.hasSuccessor = true;
    }
    const incidents = await inChunks(
      db,
      all,
      (list) => sql`SELECT node_id AS "nodeId", opened_at AS "openedAt", closed_at AS "closedAt", cause FROM incidents WHERE node_id IN ${list}`,
      (r) => v.parse(IncidentRow, r),
    );
    for (const i of incidents) {
      const list = facts.incidentsOf.get(i.nodeId);
      const f = { openedAt: i.openedAt, closedAt: i.closedAt, cause: i.cause };
      if (list) list.push(f);
      else facts.incidentsOf.set(i.nodeId, [f]);
    }
    return facts;
  }

  node(id: string): NodeFacts | undefined {
    return this.nodes.get(id);
  }

  incidents(nodeId: string): readonly IncidentFacts[] {
    return this.incidentsOf.get(nodeId) ?? [];
  }
}

async function inChunks<T>(db: Db, ids: readonly string[], query: (list: SQL) => SQL, parse: (row: unknown) => T): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    const list = sql`(${sql.join(
      chunk.map((id) => sql`${id}`),
      sql`, `,
    )})`;
    for (const r of await db.all(query(list))) out.push(parse(r));
  }
  return out;
}

/**
 * Folds every transition after `afterId` (and at or before `upTo`) through `apply`, a batch at a
 * time with that batch's facts; returns the id of the last one folded.
 */
export async function foldLog(db: Db, afterId: number, apply: (t: Transition, facts: BatchFacts) => void, upTo = Number.MAX_SAFE_INTEGER): Promise<number> {
  let cursor = afterId;
  for (;;) {
    const batch = await transitionsAfter(db, cursor, upTo);
    if (batch.length === 0) return cursor;
    const facts = await BatchFacts.load(
      db,
      batch.map((t) => t.node),
    );
    for (const t of batch) apply(t, facts);
    cursor = batch.at(-1)!.id;
    if (batch.length < BATCH) return cursor;
  }
}
