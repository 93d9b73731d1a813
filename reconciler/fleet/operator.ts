// What a human can tell the reconciler to do, as store writes the loop then acts
// on (the API, the CLI and the dashboard all come through here). Every action is
// a compare-and-set on the node and is written to the audit log with its actor.
// A human's cordon is never undone by the reconciler; a human's uncordon cancels
// the reconciler's incident on that node.
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { auditLog, breakers, incidents, nodes, pools, type NodeState } from "../../schema/db.ts";
import type { Db } from "../store/store.ts";

export class OperatorError extends Error {
  override readonly name = "OperatorError";
  constructor(
    message: string,
    /** HTTP status the API answers with. */
    readonly status: 400 | 404 | 409,
  ) {
    super(message);
  }
}

type NodeRow = typeof nodes.$inferSelect;

const IN_SERVICE: readonly NodeState[] = ["validating", "ready", "suspect"];
const TAKEN_OUT: readonly NodeState[] = ["cordoned", "draining", "held"];

export class Operator {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  /** Stops new work landing on the node; it stays cordoned until a human uncordons it. */
  async cordon(nodeId: string, actor: string, reason: string): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (!IN_SERVICE.includes(node.state)) throw new OperatorError(`node ${nodeId} is ${node.state}; only a node in service can be cordoned`, 409);
    return this.set(node, actor, "cordon", { state: "cordoned", cordonedBy: `human:${actor}`, removal: null, stateReason: `cordoned by ${actor}: ${reason}` });
  }

  /** Cordons (if needed) and drains; once drained the node is Held for the human. */
  async drain(nodeId: string, actor: string, reason: string, deadlineMs: number): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (!IN_SERVICE.includes(node.state) && node.state !== "cordoned") {
      throw new OperatorError(`node ${nodeId} is ${node.state}; only a node in service or cordoned can be drained`, 409);
    }
    return this.set(node, actor, "drain", {
      state: "draining",
      cordonedBy: node.cordonedBy ?? `human:${actor}`,
      nextActionAt: this.now() + deadlineMs,
      stateReason: `drain requested by ${actor}: ${reason}`,
    });
  }

  /** Takes the node out and replaces it (the loop drains, terminates and launches). */
  async replace(nodeId: string, actor: string, reason: string): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (![...IN_SERVICE, ...TAKEN_OUT, "lost"].includes(node.state)) throw new OperatorError(`node ${nodeId} is ${node.state}; it cannot be replaced now`, 409);
    const at = this.now();
    let incidentId = node.incidentId;
    if (incidentId === null) {
      const [row] = await this.db
        .insert(incidents)
        .values({ nodeId, pool: node.pool, reason: `replacement requested by ${actor}: ${reason}`, faultAt: at, openedAt: at, cordonedAt: at, status: "cordoned by a human" })
        .returning({ id: incidents.id });
      incidentId = row!.id;
    }
    const state: NodeState = IN_SERVICE.includes(node.state) || node.state === "held" ? "cordoned" : node.state;
    return this.set(node, actor, "replace", {
      state,
      incidentId,
      removal: "replace",
      cordonedBy: node.cordonedBy ?? `human:${actor}`,
      stateReason: `replacement requested by ${actor}: ${reason}`,
    });
  }

  /** Returns the node to service; cancels the reconciler's incident if there is one. */
  async uncordon(nodeId: string, actor: string): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (!TAKEN_OUT.includes(node.state)) throw new OperatorError(`node ${nodeId} is ${node.state}; only a cordoned, draining or held node can be uncordoned`, 409);
    if (node.incidentId !== null) {
      await this.db
        .update(incidents)
        .set({ closedAt: this.now(), outcome: "cancelled", status: `cancelled: uncordoned by ${actor}` })
        .where(and(eq(incidents.id, node.incidentId), isNull(incidents.closedAt)));
    }
    return this.set(node, actor, "uncordon", {
      state: "ready",
      cordonedBy: null,
      removal: null,
      incidentId: null,
      nextActionAt: null,
      // The human vouches for the node: its open findings are dropped (new events reopen them).
      findings: [],
      consecutiveFailures: 0,
      verdict: "healthy",
      stateReason: `uncordoned by ${actor}`,
    });
  }

  async pausePool(pool: string, actor: string, reason: string): Promise<void> {
    await this.poolRow(pool);
    await this.db.update(pools).set({ paused: true, pausedReason: `by ${actor}: ${reason}`, updatedAt: this.now() }).where(eq(pools.name, pool));
    await this.audit(actor, "pause", `pool:${pool}`, { reason });
  }

  async resumePool(pool: string, actor: string): Promise<void> {
    await this.poolRow(pool);
    await this.db.update(pools).set({ paused: false, pausedReason: null, updatedAt: this.now() }).where(eq(pools.name, pool));
    await this.audit(actor, "resume", `pool:${pool}`, {});
  }

  /** Resets a tripped breaker; what it held back is judged again against current health, not replayed. */
  async resetBreaker(scope: string, actor: string): Promise<void> {
    const [row] = await this.db.select().from(breakers).where(and(eq(breakers.scope, scope), isNull(breakers.resetAt)));
    if (row === undefined) throw new OperatorError(`no tripped breaker ${scope}`, 404);
    await this.db.update(breakers).set({ resetAt: this.now(), resetBy: actor }).where(eq(breakers.scope, scope));
    await this.audit(actor, "breaker_reset", scope, { trippedAt: row.trippedAt, reason: row.reason });
  }

  async auditTail(limit: number) {
    return this.db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(limit);
  }

  private async node(nodeId: string): Promise<NodeRow> {
    const [node] = await this.db.select().from(nodes).where(eq(nodes.id, nodeId));
    if (node === undefined) throw new OperatorError(`node ${nodeId} not found`, 404);
    return node;
  }

  private async poolRow(pool: string) {
    const [row] = await this.db.select().from(pools).where(eq(pools.name, pool));
    if (row === undefined) throw new OperatorError(`pool ${pool} not found`, 404);
    return row;
  }

  private async set(node: NodeRow, actor: string, action: string, fields: Partial<NodeRow>): Promise<NodeRow> {
    const at = this.now();
    const stateChange = fields.state !== undefined && fields.state !== node.state ? { stateChangedAt: at } : {};
    const [updated] = await this.db
      .update(nodes)
      .set({ ...fields, ...stateChange, version: sql`${nodes.version} + 1`, updatedAt: at })
      .where(and(eq(nodes.id, node.id), eq(nodes.version, node.version)))
      .returning();
    if (updated === undefined) throw new OperatorError(`node ${node.id} changed while this request was handled; try again`, 409);
    await this.audit(actor, action, node.id, { from: node.state, to: updated.state, reason: fields.stateReason });
    return updated;
  }

  private async audit(actor: string, action: string, target: string, details: unknown): Promise<void> {
    await this.db.insert(auditLog).values({ at: this.now(), actor, action, target, details });
  }
}
