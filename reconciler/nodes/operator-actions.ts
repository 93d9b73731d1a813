// What a human can tell the reconciler to do, as store writes the loop then acts
// on (the API, the CLI and the dashboard all come through here). Every action is
// a compare-and-set on the node and is written to the audit log with its actor.
// A human's cordon is never undone by the reconciler; a human's uncordon cancels
// the reconciler's incident on that node.
import { and, desc, eq, isNull, or } from "drizzle-orm";
import * as v from "valibot";
import { auditLog, breakers, incidents, nodes, pools } from "../../schema/db.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import { NodeWriter, type IncidentChange } from "./writer.ts";
import type { Db } from "../store/store.ts";

/** The part of a stored pool spec (the normalised config pool) a scale request is checked against. */
const ScalingOfSpec = v.object({
  scaling: v.object({ min_nodes: v.number(), max_nodes: v.number(), autoscaler: v.nullish(v.object({ type: v.string() })) }),
});

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

/** What a human may take out of service: a node serving, or about to. */
const inService = (state: NodeState) => state === "validating" || isIn("inService", state);

export class Operator {
  private readonly writer: NodeWriter;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {
    this.writer = new NodeWriter(db);
  }

  /** Stops new work landing on the node; it stays cordoned until a human uncordons it. */
  async cordon(nodeId: string, actor: string, reason: string): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (!inService(node.state)) throw new OperatorError(`node ${nodeId} is ${node.state}; only a node in service can be cordoned`, 409);
    return this.set(node, actor, "cordon", "cordoned", `cordoned by ${actor}: ${reason}`, { cordonedBy: `human:${actor}`, removal: null });
  }

  /** Cordons (if needed) and drains; once drained the node is Held for the human. */
  async drain(nodeId: string, actor: string, reason: string, deadlineMs: number): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (!inService(node.state) && node.state !== "cordoned") {
      throw new OperatorError(`node ${nodeId} is ${node.state}; only a node in service or cordoned can be drained`, 409);
    }
    return this.set(node, actor, "drain", "draining", `drain requested by ${actor}: ${reason}`, {
      cordonedBy: node.cordonedBy ?? `human:${actor}`,
      nextActionAt: this.now() + deadlineMs,
    });
  }

  /**
   * Takes the node out and reboots it through its provider (the loop drains, reboots, and
   * returns it to service once its health check passes in the new boot).
   */
  async reboot(nodeId: string, actor: string, reason: string): Promise<NodeRow> {
    return this.remediate(nodeId, actor, reason, "reboot");
  }

  /** Takes the node out and replaces it (the loop drains, terminates and launches). */
  async replace(nodeId: string, actor: string, reason: string): Promise<NodeRow> {
    return this.remediate(nodeId, actor, reason, "replace");
  }

  private async remediate(nodeId: string, actor: string, reason: string, remedy: "reboot" | "replace"): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (remedy === "reboot" && (node.origin !== "launched" || node.instanceName === null)) {
      throw new OperatorError(`node ${nodeId} was not launched by Navarch; only its owner can reboot it`, 409);
    }
    if (remedy === "reboot" && node.state === "rebooting") throw new OperatorError(`node ${nodeId} is rebooting already`, 409);
    if (!inService(node.state) && !isIn("takenOut", node.state) && node.state !== "lost")
      throw new OperatorError(`node ${nodeId} is ${node.state}; it cannot be replaced now`, 409);
    const at = this.now();
    let incidentId = node.incidentId;
    if (incidentId === null) {
      const [row] = await this.db
        .insert(incidents)
        .values({
          nodeId,
          pool: node.pool,
          reason: `${remedy === "reboot" ? "reboot" : "replacement"} requested by ${actor}: ${reason}`,
          cause: "maintenance",
          faultAt: at,
          openedAt: at,
          cordonedAt: at,
          status: "cordoned by a human",
          remedy,
        })
        .returning({ id: incidents.id });
      incidentId = row!.id;
    }
    const state: NodeState = inService(node.state) || node.state === "held" ? "cordoned" : node.state;
    // A held node's incident was closed when it was handed over: the human reopens it, with their remedy.
    const what = remedy === "reboot" ? "reboot" : "replacement";
    const reopen: IncidentChange = {
      closedAt: null,
      outcome: null,
      status: `${what} requested by ${actor}`,
      remedy,
      ...(remedy === "reboot" ? { rebootedAt: null, backAt: null } : {}),
    };
    return this.set(
      node,
      actor,
      remedy,
      state,
      `${what} requested by ${actor}: ${reason}`,
      { incidentId, removal: "replace", cordonedBy: node.cordonedBy ?? `human:${actor}` },
      node.incidentId !== null ? reopen : undefined,
    );
  }

  /** Returns the node to service; cancels the reconciler's incident if there is one. */
  async uncordon(nodeId: string, actor: string): Promise<NodeRow> {
    const node = await this.node(nodeId);
    if (node.state === "rebooting")
      throw new OperatorError(`node ${nodeId} is rebooting; it returns to service by itself once its health check passes (or use replace)`, 409);
    if (!isIn("takenOut", node.state))
      throw new OperatorError(`node ${nodeId} is ${node.state}; only a cordoned, draining or held node can be uncordoned`, 409);
    // The incident ends cancelled: an open one, and one Navarch held for a human (closed as
    // `held` when it was handed over), whom this uncordon answers.
    const cancellable =
      node.incidentId === null
        ? []
        : await this.db
            .select({ id: incidents.id })
            .from(incidents)
            .where(and(eq(incidents.id, node.incidentId), or(isNull(incidents.closedAt), eq(incidents.outcome, "held"))));
    const cancel: IncidentChange | undefined =
      cancellable.length > 0 ? { closedAt: this.now(), outcome: "cancelled", status: `cancelled: uncordoned by ${actor}` } : undefined;
    return this.set(
      node,
      actor,
      "uncordon",
      "ready",
      `uncordoned by ${actor}`,
      {
        cordonedBy: null,
        removal: null,
        incidentId: null,
        nextActionAt: null,
        // The human vouches for the node: its open findings are dropped (new events reopen them).
        findings: [],
        consecutiveFailures: 0,
        verdict: "healthy",
      },
      cancel,
    );
  }

  async pausePool(pool: string, actor: string, reason: string): Promise<void> {
    await this.poolRow(pool);
    await this.db
      .update(pools)
      .set({ paused: true, pausedReason: `by ${actor}: ${reason}`, updatedAt: this.now() })
      .where(eq(pools.name, pool));
    await this.audit(actor, "pause", `pool:${pool}`, { reason });
  }

  /**
   * Sets the size a pool without an autoscaler is held at (`navarch pools scale`, the seed's
   * Pattern 2: nodes provisioned when explicitly requested), within its bounds. The loop
   * launches or removes nodes toward it through the usual rails; replacements keep it.
   */
  async scalePool(pool: string, size: number, actor: string, reason: string): Promise<{ from: number | null; to: number }> {
    const row = await this.poolRow(pool);
    const spec = v.safeParse(ScalingOfSpec, row.spec);
    if (!spec.success) throw new OperatorError(`pool ${pool}: its stored spec has no scaling bounds to check ${size} against`, 409);
    const { min_nodes: min, max_nodes: max, autoscaler } = spec.output.scaling;
    if (autoscaler !== undefined && autoscaler !== null) {
      throw new OperatorError(
        `pool ${pool} has a ${autoscaler.type} autoscaler, which decides its size: change its bounds (scaling.min_nodes, max_nodes), or remove the autoscaler to size it by hand`,
        409,
      );
    }
    // 409, not 400: the request is well formed; the pool's bounds as they are now refuse it.
    if (size < min || size > max) {
      throw new OperatorError(`pool ${pool}: ${size} nodes is outside scaling.min_nodes..max_nodes (${min}..${max}); change the bounds first`, 409);
    }
    await this.db.update(pools).set({ requestedNodes: size, requestedBy: actor, updatedAt: this.now() }).where(eq(pools.name, pool));
    await this.audit(actor, "scale_request", `pool:${pool}`, { from: row.requestedNodes, to: size, reason });
    return { from: row.requestedNodes, to: size };
  }

  /**
   * Lifts an operator's pause and a hold for machines that did not register (the pool's count
   * of them starts again at 0, and its next launch is not held back by their back-off).
   */
  async resumePool(pool: string, actor: string): Promise<void> {
    const row = await this.poolRow(pool);
    await this.db
      .update(pools)
      .set({
        paused: false,
        pausedReason: null,
        registrationFailures: 0,
        registrationFailedAt: null,
        registrationHold: null,
        registrationHeldAt: null,
        ...(row.launchFailures === 0 ? { launchRetryAt: null } : {}),
        updatedAt: this.now(),
      })
      .where(eq(pools.name, pool));
    await this.audit(actor, "resume", `pool:${pool}`, row.registrationHold !== null ? { held: row.registrationHold } : {});
  }

  /** Resets a tripped breaker; what it held back is judged again against current health, not replayed. */
  async resetBreaker(scope: string, actor: string): Promise<void> {
    const [row] = await this.db
      .select()
      .from(breakers)
      .where(and(eq(breakers.scope, scope), isNull(breakers.resetAt)));
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

  private async set(
    node: NodeRow,
    actor: string,
    action: string,
    to: NodeState,
    reason: string,
    fields: Partial<NodeRow>,
    incident?: IncidentChange,
  ): Promise<NodeRow> {
    const ok = await this.writer.transition(node, to, { at: this.now(), actor, reason, fields, action, ...(incident ? { incident } : {}) });
    if (!ok) throw new OperatorError(`node ${node.id} changed while this request was handled; try again`, 409);
    return node;
  }

  private async audit(actor: string, action: string, target: string, details: unknown): Promise<void> {
    await this.db.insert(auditLog).values({ at: this.now(), actor, action, target, details });
  }
}
