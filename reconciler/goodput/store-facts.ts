// What goodput's fold (outages.ts) reads of the store: the audit log's changes of state in the
// order they were committed, a batch at a time, and the facts of the nodes they name (pool,
// provider, GPUs, replacement chain) and of the incidents of those whose outage starts (its
// cause). Each row is checked with valibot as it is read back.
//
// What it costs: a fold of a few transitions (a scrape's, most of the time) looks its nodes up by
// primary key; a long one (the first scrape after a start, a report) reads every node in one scan,
// which at 20,000 rows is a fifth of the time of the lookups. Incidents are read per batch for the
// outages that start in it only, so a cause is never read from a stale copy. Nothing is read at
// all when no transition was written since the last fold.
import { sql, type SQL } from "drizzle-orm";
import * as v from "valibot";
import { isIn, NODE_STATES } from "../../schema/lifecycle.ts";
import type { Db } from "../store/store.ts";
import type { Facts, IncidentFacts, NodeFacts, Transition } from "./outages.ts";

/** Transitions read per batch. */
export const BATCH = 20_000;
/** Ids per `IN (…)` list. */
const CHUNK = 1_000;

const State = v.picklist(NODE_STATES);
const TransitionRow = v.object({ id: v.number(), at: v.number(), node: v.string(), action: v.string(), from: State, to: State });
const NodeRow = v.object({
  id: v.string(),
  pool: v.nullable(v.string()),
  provider: v.nullable(v.string()),
  gpus: v.nullable(v.number()),
  type: v.nullable(v.string()),
  replacementOf: v.nullable(v.string()),
});
const IncidentRow = v.object({ nodeId: v.string(), openedAt: v.number(), closedAt: v.nullable(v.number()), cause: v.nullable(v.string()) });
const IdRow = v.object({ id: v.string() });

const STATES_SQL = sql.raw(`(${NODE_STATES.map((s) => `'${s}'`).join(", ")})`);
const NODE_COLUMNS = sql.raw(`id, pool, provider, gpu_count AS gpus, instance_type AS type, replacement_of AS "replacementOf"`);

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

/** What a fold reads of the whole fleet once: the nodes that have a replacement, and each instance type's GPUs. */
export interface FleetFacts {
  replaced: ReadonlySet<string>;
  /** `provider/instance type` → GPUs of a machine of that type (for a node nobody counted). */
  typeGpus: ReadonlyMap<string, number>;
}

export async function fleetFacts(db: Db): Promise<FleetFacts> {
  const replaced = new Set<string>();
  for (const r of await db.all(sql`SELECT DISTINCT replacement_of AS id FROM nodes WHERE replacement_of IS NOT NULL`)) replaced.add(v.parse(IdRow, r).id);
  const typeGpus = new Map<string, number>();
  const types = await db.all(sql`SELECT provider, instance_type AS type, max(gpu_count) AS gpus FROM nodes WHERE gpu_count IS NOT NULL GROUP BY 1, 2`);
  for (const t of types) {
    const row = v.parse(v.object({ provider: v.nullable(v.string()), type: v.nullable(v.string()), gpus: v.number() }), t);
    typeGpus.set(`${row.provider}/${row.type}`, row.gpus);
  }
  return { replaced, typeGpus };
}

/** Node and incident facts as the fold asks for them. */
export class StoreFacts implements Facts {
  private readonly nodes = new Map<string, NodeFacts>();
  private incidentsOf = new Map<string, IncidentFacts[]>();

  constructor(private readonly fleet: FleetFacts) {}

  node(id: string): NodeFacts | undefined {
    return this.nodes.get(id);
  }

  incidents(nodeId: string): readonly IncidentFacts[] {
    return this.incidentsOf.get(nodeId) ?? [];
  }

  /** Every node, in one scan. */
  async loadAllNodes(db: Db): Promise<void> {
    for (const r of await db.all(sql`SELECT ${NODE_COLUMNS} FROM nodes`)) this.add(r);
  }

  /** The nodes named that it does not know, and the nodes up their replacement chains; `fresh`: read again. */
  async ensureNodes(db: Db, ids: Iterable<string>, fresh: Iterable<string> = []): Promise<void> {
    const again = new Set(fresh);
    let wanted = [...new Set(ids)].filter((id) => again.has(id) || !this.nodes.has(id));
    // Up the chains a level at a time (a chain is a few machines long).
    for (let depth = 0; wanted.length > 0 && depth < 64; depth++) {
      const found = await inChunks(
        db,
        wanted,
        (list) => sql`SELECT ${NODE_COLUMNS} FROM nodes WHERE id IN ${list}`,
        (r) => this.add(r),
      );
      wanted = [...new Set(found.flatMap((n) => (n.replacementOf !== null && !this.nodes.has(n.replacementOf) ? [n.replacementOf] : [])))];
    }
  }

  /** The incidents of these nodes as they are now (it forgets those of other nodes). */
  async loadIncidents(db: Db, ids: Iterable<string>): Promise<void> {
    this.incidentsOf = new Map();
    const rows = await inChunks(
      db,
      [...new Set(ids)],
      (list) => sql`SELECT node_id AS "nodeId", opened_at AS "openedAt", closed_at AS "closedAt", cause FROM incidents WHERE node_id IN ${list}`,
      (r) => v.parse(IncidentRow, r),
    );
    for (const i of rows) {
      const f = { openedAt: i.openedAt, closedAt: i.closedAt, cause: i.cause };
      const list = this.incidentsOf.get(i.nodeId);
      if (list) list.push(f);
      else this.incidentsOf.set(i.nodeId, [f]);
    }
  }

  private add(row: unknown): NodeFacts {
    const r = v.parse(NodeRow, row);
    // GPUs of a node nobody counted: those of another machine of its provider and instance type.
    const facts: NodeFacts = {
      id: r.id,
      pool: r.pool,
      provider: r.provider,
      gpus: r.gpus ?? this.fleet.typeGpus.get(`${r.provider}/${r.type}`) ?? null,
      replacementOf: r.replacementOf,
      hasSuccessor: this.fleet.replaced.has(r.id),
    };
    this.nodes.set(r.id, facts);
    return facts;
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
 * time with the facts it needs; returns the id of the last one folded. `allNodes`: read every node
 * at once from the start (a fold of the whole log).
 */
export async function foldLog(
  db: Db,
  afterId: number,
  apply: (t: Transition, facts: Facts) => void,
  opts: { upTo?: number; allNodes?: boolean } = {},
): Promise<number> {
  let cursor = afterId;
  let fleet: FleetFacts | undefined;
  let shared: StoreFacts | undefined;
  for (;;) {
    const batch = await transitionsAfter(db, cursor, opts.upTo);
    if (batch.length === 0) return cursor;
    fleet ??= await fleetFacts(db);
    if (shared === undefined && (opts.allNodes === true || batch.length >= BATCH)) {
      shared = new StoreFacts(fleet);
      await shared.loadAllNodes(db);
    }
    // A short fold's facts are let go with its batch.
    const facts = shared ?? new StoreFacts(fleet);
    // An outage's node and cause are read as they are now when it starts (its GPUs may have been
    // counted since a long fold read every node): the nodes that leave service, and their incidents.
    const leaving = batch.filter((t) => isIn("inService", t.from) && !isIn("inService", t.to)).map((t) => t.node);
    await facts.ensureNodes(
      db,
      batch.map((t) => t.node),
      shared === undefined ? [] : leaving,
    );
    await facts.loadIncidents(db, leaving);
    for (const t of batch) apply(t, facts);
    cursor = batch.at(-1)!.id;
    if (batch.length < BATCH) return cursor;
  }
}
