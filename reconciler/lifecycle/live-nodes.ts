// Every live node, light: what the rails, the inventory sweep and the event window need of
// each, every pass. Kept in memory and brought up to date from the change log (node_changes,
// written by triggers on nodes: migration 0010), so a pass re-reads only the nodes whose light
// columns changed since the last one. A heartbeat changes none of them (its time is read
// separately: silentNodes), so a quiet fleet costs a pass almost nothing to read. At 100,000
// nodes, reading every light row was 170 ms of a 202 ms quiet pass.
//
// The whole view is read again when it cannot be trusted to be complete: at the first pass,
// when the log has a gap (another reconciler pruned past this one's cursor, or the database is
// not the one this view was read from), and every RESYNC_MS as a check. What that check finds
// different from the view is said: it would be a writer the triggers miss. A view prunes the
// log, keeping its last PRUNE_EVERY entries.
import { sql, type SQL } from "drizzle-orm";
import { nodes, nodeChanges } from "../../schema/db.ts";
import { stateNotIn } from "../../schema/lifecycle.ts";
import type { Db } from "../store/store.ts";
import { heartbeatAge } from "./silence.ts";
import type { NodeRow } from "../nodes/writer.ts";

export type LightNode = Pick<
  NodeRow,
  "id" | "pool" | "state" | "origin" | "incidentId" | "replacementOf" | "removal" | "cordonedBy" | "bootId" | "evaluatedEventId" | "instanceName"
> & {
  /** Whether the node was ever heard (a heartbeat or its registration); when, silentNodes says. */
  heard: boolean;
  /**
   * Ready, healthy, no findings, no failed checks, not leaving: nothing for this pass to do unless
   * an event or a silence says otherwise. next_action_at is not asked: a Ready node's step reads no
   * deadline, and one left from registration kept every node busy (all 5,000 full rows every pass).
   */
  quiet: boolean;
};

/** A full read this often at the latest, compared with the view. */
export const RESYNC_MS = 10 * 60_000;
/**
 * Once this many entries were read since the last prune, the log is pruned to the last this many
 * before the cursor: another view a little behind (the simulator's own) finds no gap.
 */
export const PRUNE_EVERY = 10_000;

type LightTuple = [
  rowid: number,
  id: LightNode["id"],
  pool: LightNode["pool"],
  state: LightNode["state"],
  origin: LightNode["origin"],
  incidentId: LightNode["incidentId"],
  replacementOf: LightNode["replacementOf"],
  removal: LightNode["removal"],
  cordonedBy: LightNode["cordonedBy"],
  heard: 0 | 1,
  bootId: LightNode["bootId"],
  evaluatedEventId: LightNode["evaluatedEventId"],
  instanceName: LightNode["instanceName"],
  quiet: 0 | 1,
];

interface Entry {
  rowid: number;
  node: LightNode;
}

/** The light rows of the live nodes `where` selects, as ONE JSON array built by SQLite (at 50,000 nodes 118 ms, drizzle's row objects 330). */
async function readTuples(db: Db, where: SQL): Promise<LightTuple[]> {
  const row = await db.get<{ rows: string | null }>(sql`
    SELECT json_group_array(json_array(${nodes}.rowid, ${nodes.id}, ${nodes.pool}, ${nodes.state}, ${nodes.origin}, ${nodes.incidentId}, ${nodes.replacementOf},
      ${nodes.removal}, ${nodes.cordonedBy}, ${nodes.lastHeartbeatAt} IS NOT NULL, ${nodes.bootId}, ${nodes.evaluatedEventId}, ${nodes.instanceName},
      ${nodes.state} = 'ready' AND ${nodes.verdict} = 'healthy' AND ${nodes.findings} = '[]' AND ${nodes.consecutiveFailures} = 0 AND ${nodes.removal} IS NULL)) AS rows
    FROM ${nodes} WHERE ${stateNotIn(nodes.state, "terminal")} AND ${where}`);
  // The store's own rows, written through the schema: their types are the columns'.
  return JSON.parse(row?.rows ?? "[]") as LightTuple[];
}

function entry(t: LightTuple): Entry {
  const [rowid, id, pool, state, origin, incidentId, replacementOf, removal, cordonedBy, heard, bootId, evaluatedEventId, instanceName, quiet] = t;
  return {
    rowid,
    node: {
      id,
      pool,
      state,
      origin,
      incidentId,
      replacementOf,
      removal,
      cordonedBy,
      heard: heard === 1,
      bootId,
      evaluatedEventId,
      instanceName,
      quiet: quiet === 1,
    },
  };
}

const same = (a: LightNode, b: LightNode) => (Object.keys(a) as (keyof LightNode)[]).every((k) => a[k] === b[k]);

export class LightView {
  /** Live nodes in table order (rowid): nodes are stepped in creation order, so a run is reproducible. */
  private entries: Entry[] = [];
  private readonly byId = new Map<string, Entry>();
  /** The entries' nodes, as read() returns them; undefined once anything changed. */
  private nodes: readonly LightNode[] | undefined;
  /** The change log's seq this view is current through; undefined: never read. */
  private cursor: number | undefined;
  private readAt = Number.NEGATIVE_INFINITY;
  private prunedThrough = 0;

  constructor(private readonly log: (line: string) => void = () => undefined) {}

  /** Every live node as of now, in table order. */
  async read(db: Db, at: number): Promise<readonly LightNode[]> {
    const log = await db.get<{ top: number | null; low: number | null }>(
      sql`SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'node_changes') AS top, (SELECT min(${nodeChanges.seq}) FROM ${nodeChanges}) AS low`,
    );
    const top = log?.top ?? 0;
    const low = log?.low ?? null;
    const c = this.cursor;
    // A gap: entries past the cursor are gone (pruned by another reconciler), or the log is behind
    // it (not the database this view was read from).
    const gap = c !== undefined && (top < c || (top > c && (low === null || low > c + 1)));
    if (c === undefined || gap || top - c > this.entries.length / 2) await this.readAll(db, top, at, undefined);
    else if (at - this.readAt >= RESYNC_MS) await this.readAll(db, top, at, c);
    else if (top > c) await this.readChanged(db, c);
    if (this.cursor !== undefined && this.cursor - this.prunedThrough >= 2 * PRUNE_EVERY) {
      this.prunedThrough = this.cursor - PRUNE_EVERY;
      await db.delete(nodeChanges).where(sql`${nodeChanges.seq} <= ${this.prunedThrough}`);
    }
    this.nodes ??= this.entries.map((e) => e.node);
    return this.nodes;
  }

  get(id: string): LightNode | undefined {
    return this.byId.get(id)?.node;
  }

  /**
   * The whole view again. `top` was read first: what changes during the read is read again next
   * time. With `check` (the view's cursor), nodes that differ from the view are counted, except
   * those the log shows changed since that cursor.
   */
  private async readAll(db: Db, top: number, at: number, check: number | undefined): Promise<void> {
    const fresh = (await readTuples(db, sql`1`)).map(entry);
    if (check !== undefined) {
      const changed = new Set((await this.changesSince(db, check)).map((c) => c.nodeId));
      const freshIds = new Set<string>();
      let differ = 0;
      for (const e of fresh) {
        freshIds.add(e.node.id);
        const had = this.byId.get(e.node.id);
        if (!changed.has(e.node.id) && (had === undefined || !same(had.node, e.node))) differ++;
      }
      for (const id of this.byId.keys()) if (!freshIds.has(id) && !changed.has(id)) differ++;
      if (differ > 0) this.log(`light view: the periodic full read found ${differ} node(s) changed that the change log did not show`);
    }
    this.entries = fresh;
    this.nodes = undefined;
    this.byId.clear();
    for (const e of fresh) this.byId.set(e.node.id, e);
    this.cursor = top;
    this.readAt = at;
  }

  private changesSince(db: Db, cursor: number): Promise<{ seq: number; nodeId: string }[]> {
    return db.select({ seq: nodeChanges.seq, nodeId: nodeChanges.nodeId }).from(nodeChanges).where(sql`${nodeChanges.seq} > ${cursor}`);
  }

  /** Re-reads the nodes the log names past `cursor`: changed, new, or gone (terminal or deleted). */
  private async readChanged(db: Db, cursor: number): Promise<void> {
    const changes = await this.changesSince(db, cursor);
    if (changes.length === 0) return;
    this.nodes = undefined;
    this.cursor = changes.reduce((m, c) => Math.max(m, c.seq), cursor);
    const ids = [...new Set(changes.map((c) => c.nodeId))];
    const fresh = new Map<string, Entry>();
    for (let i = 0; i < ids.length; i += 10_000) {
      const chunk = JSON.stringify(ids.slice(i, i + 10_000));
      for (const t of await readTuples(db, sql`${nodes.id} IN (SELECT value FROM json_each(${chunk}))`)) {
        const e = entry(t);
        fresh.set(e.node.id, e);
      }
    }
    // New rows at the end are appended; anything else (a node gone, a row moved) re-sorts.
    let resort = false;
    let last = this.entries.at(-1)?.rowid ?? Number.NEGATIVE_INFINITY;
    for (const id of ids) {
      const had = this.byId.get(id);
      const now = fresh.get(id);
      if (had !== undefined && now !== undefined && had.rowid === now.rowid) {
        had.node = now.node;
      } else if (now === undefined) {
        if (this.byId.delete(id)) resort = true;
      } else {
        this.byId.set(id, now);
        if (had === undefined && !resort && now.rowid > last) {
          this.entries.push(now);
          last = now.rowid;
        } else resort = true;
      }
    }
    if (resort) this.entries = [...this.byId.values()].sort((a, b) => a.rowid - b.rowid);
  }
}

/**
 * Live nodes silent past the heartbeat timeout, with their last heartbeat: a scan that returns
 * only those (11 ms at 100,000 nodes). Silence counts from `heardSince` at the earliest (a
 * down reconciler could not have heard anything).
 */
export async function silentNodes(db: Db, at: number, timeout: number, heardSince: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (heartbeatAge(Number.NEGATIVE_INFINITY, at, heardSince) <= timeout) return out;
  const rows = await db
    .select({ id: nodes.id, lastHeartbeatAt: nodes.lastHeartbeatAt })
    .from(nodes)
    .where(sql`${nodes.lastHeartbeatAt} < ${at - timeout} AND ${stateNotIn(nodes.state, "terminal")}`);
  for (const r of rows) if (r.lastHeartbeatAt !== null && heartbeatAge(r.lastHeartbeatAt, at, heardSince) > timeout) out.set(r.id, r.lastHeartbeatAt);
  return out;
}
