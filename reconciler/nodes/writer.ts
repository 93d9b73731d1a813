// The one writer of node states. The reconcile loop, the operator (API, CLI,
// dashboard), registration and the scheduler mirrors all change a node through here:
// a compare-and-set on the node's version, refused unless the lifecycle lists the
// transition, with its audit row and its incident's update in the same transaction.
// The loop's writer also carries the leader's fence: a reconciler that lost the lease
// writes nothing.
import { and, eq, sql, type SQL } from "drizzle-orm";
import { auditLog, incidents, nodes } from "../../schema/db.ts";
import { isIn, isLegalTransition, type NodeState } from "../../schema/lifecycle.ts";
import type { Db } from "../store/store.ts";

export type NodeRow = typeof nodes.$inferSelect;
export type IncidentChange = Partial<Omit<typeof incidents.$inferInsert, "id" | "nodeId">>;
/** A transaction of the store, or the store itself. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
export type Executor = Db | Tx;

export class IllegalTransition extends Error {
  override readonly name = "IllegalTransition";
  constructor(
    readonly nodeId: string,
    readonly from: NodeState,
    readonly to: NodeState,
  ) {
    super(`node ${nodeId}: ${from} → ${to} is not a legal transition`);
  }
}

/** What every write of a writer must satisfy; the leader lease provides it for the loop. */
export interface Fence {
  /** Throws when this process must not act (it is not, or no longer surely, the leader). */
  check(): void;
  /** A condition true only while the lease is still ours, evaluated inside each write. */
  guard(): SQL;
}

export interface Change {
  at: number;
  /** Who the audit row names: `navarch`, `human:alice`, `agent`, `kubernetes`. */
  actor: string;
  reason: string;
  /** Other columns to set with it. */
  fields?: Partial<NodeRow>;
  /** Changes to the node's open incident (node.incidentId, or fields.incidentId), in the same transaction. */
  incident?: IncidentChange;
  /** The audit row's action (default `transition`, or `update` when the state stays). */
  action?: string;
  /** More for the audit row. */
  details?: Record<string, unknown>;
}

export class NodeWriter {
  constructor(
    private readonly db: Db,
    private readonly opts: { fence?: Fence; log?: (line: string) => void } = {},
  ) {}

  /**
   * Moves `node` to `to`. Returns false, changing nothing, when the node changed since it
   * was read (someone else won the compare-and-set) or the fence no longer holds; on
   * success updates `node` in place. An illegal transition throws.
   */
  async transition(node: NodeRow, to: NodeState, change: Change, tx?: Executor): Promise<boolean> {
    if (to !== node.state && !isLegalTransition(node.state, to)) throw new IllegalTransition(node.id, node.state, to);
    const moved = to !== node.state;
    const set: Partial<NodeRow> = {
      ...change.fields,
      state: to,
      stateReason: change.reason,
      ...(moved ? { stateChangedAt: change.at } : {}),
      // A machine that never served is what a slow or broken bootstrap costs (pools/never-served.ts).
      ...(node.servedAt === null && isIn("inService", to) ? { servedAt: change.at } : {}),
    };
    const from = node.state;
    const ok = await this.write(node, set, change, change.action ?? (moved ? "transition" : "update"), tx);
    if (ok && moved) this.opts.log?.(`${node.id}: ${from} → ${to}: ${change.reason}`);
    return ok;
  }

  /** A change of fields that is not a change of state (still compare-and-set, still fenced). Not audited unless `action` is given. */
  async patch(
    node: NodeRow,
    fields: Partial<NodeRow>,
    at: number,
    opts: { actor?: string; action?: string; incident?: IncidentChange; details?: Record<string, unknown> } = {},
    tx?: Executor,
  ): Promise<boolean> {
    if (fields.state !== undefined && fields.state !== node.state) throw new Error(`patch of ${node.id} may not change its state; use transition()`);
    return this.write(
      node,
      fields,
      {
        at,
        actor: opts.actor ?? "navarch",
        reason: "",
        ...(opts.incident ? { incident: opts.incident } : {}),
        ...(opts.details ? { details: opts.details } : {}),
      },
      opts.action,
      tx,
    );
  }

  /** Updates an incident on its own (status lines, timings), fenced like every write. */
  async incident(id: number | null, change: IncidentChange, tx?: Executor): Promise<void> {
    if (id === null) return;
    this.opts.fence?.check();
    const where = this.opts.fence ? and(eq(incidents.id, id), this.opts.fence.guard()) : eq(incidents.id, id);
    await (tx ?? this.db).update(incidents).set(change).where(where);
  }

  /** An audit row on its own (decisions that change no node: scale, reap, breaker). */
  async audit(at: number, actor: string, action: string, target: string, details: unknown, tx?: Executor): Promise<void> {
    this.opts.fence?.check();
    await (tx ?? this.db).insert(auditLog).values({ at, actor, action, target, details });
  }

  /** Runs `body` in one transaction that commits only while the fence holds. */
  async atomically<T>(body: (tx: Tx) => Promise<T>): Promise<T> {
    this.opts.fence?.check();
    return this.db.transaction(async (tx) => {
      if (this.opts.fence) {
        const held = await tx.get<{ one: number } | undefined>(sql`select 1 as one where ${this.opts.fence.guard()}`);
        if (held === undefined) throw new FencedError();
      }
      return body(tx);
    });
  }

  private async write(node: NodeRow, set: Partial<NodeRow>, change: Change, action: string | undefined, outer?: Executor): Promise<boolean> {
    this.opts.fence?.check();
    const from = node.state;
    const conditions = [eq(nodes.id, node.id), eq(nodes.version, node.version)];
    if (this.opts.fence) conditions.push(this.opts.fence.guard());
    const body = async (tx: Executor) => {
      const updated = await tx
        .update(nodes)
        .set({ ...set, version: sql`${nodes.version} + 1`, updatedAt: change.at })
        .where(and(...conditions))
        .returning({ version: nodes.version });
      if (updated.length === 0) return undefined;
      // A change that sets a new incident applies to it; one that clears it, to the one it had.
      const incidentId = set.incidentId ?? node.incidentId;
      if (change.incident !== undefined && incidentId !== null) await tx.update(incidents).set(change.incident).where(eq(incidents.id, incidentId));
      if (action !== undefined) {
        // A change of state says from and to; any other audited change, the state it was made in.
        const to = set.state ?? from;
        const details: Record<string, unknown> = {
          ...(to !== from ? { from, to } : { state: from }),
          ...(change.reason ? { reason: change.reason } : {}),
          ...change.details,
        };
        await tx.insert(auditLog).values({ at: change.at, actor: change.actor, action, target: node.id, details });
      }
      return updated[0]!.version;
    };
    // An audit row or an incident change must not outlive a lost compare-and-set: one transaction.
    const version =
      outer !== undefined || (action === undefined && change.incident === undefined) ? await body(outer ?? this.db) : await this.db.transaction(body);
    if (version === undefined) return false;
    Object.assign(node, set, { version, updatedAt: change.at });
    return true;
  }
}

/** A write refused because this process no longer holds the leader lease. */
export class FencedError extends Error {
  override readonly name = "FencedError";
  constructor(message = "this reconciler no longer holds the leader lease") {
    super(message);
  }
}
