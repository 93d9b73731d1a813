// Incidents: one per unhealthy episode of a node, with the clock of each step (fault,
// cordon, drain, termination, replacement Ready) for the timing metrics and the
// timeline. Opened and closed here, always in the same transaction as the node's own
// change, through the one writer.
import { and, eq, isNull } from "drizzle-orm";
import { incidents } from "../../schema/db.ts";
import type { Executor, NodeRow, NodeWriter } from "../nodes/writer.ts";

/** A rung of the remediation ladder an incident is on (remedy.ts decides which). */
export type Remedy = "reboot" | "replace";

export class Incidents {
  constructor(
    private readonly writer: NodeWriter,
    private readonly actor: string,
  ) {}

  /**
   * Opens the node's incident unless it has one; the node is marked for removal (a
   * replacement, or the scale-down it was already on). `cause` is what goodput counts the
   * episode under (schema/fault-causes.ts). False when the node changed since it was read
   * (nothing is written then).
   */
  async open(node: NodeRow, at: number, reason: string, faultAt: number, remedy: Remedy, cause: string, status = "opened"): Promise<boolean> {
    if (node.incidentId !== null) return true;
    return this.writer
      .atomically(async (tx) => {
        const [row] = await tx
          .insert(incidents)
          .values({ nodeId: node.id, pool: node.pool, reason, cause, faultAt, openedAt: at, status, remedy })
          .returning({ id: incidents.id });
        const ok = await this.writer.patch(
          node,
          { incidentId: row!.id, removal: node.removal ?? "replace" },
          at,
          { actor: this.actor, action: "incident_opened", details: { incidentId: row!.id, reason } },
          tx,
        );
        if (!ok) tx.rollback();
        return ok;
      })
      .catch((err: unknown) => {
        if (err instanceof Error && err.name === "TransactionRollbackError") return false;
        throw err;
      });
  }

  /** Closes the incident a replacement was launched for, once the replacement is Ready. */
  async replacementReady(node: NodeRow, at: number, tx?: Executor): Promise<void> {
    if (node.replacementOf === null) return;
    await this.writer.atomically(async (t) => {
      const db = tx ?? t;
      const [incident] = await db
        .select({ id: incidents.id })
        .from(incidents)
        .where(and(eq(incidents.replacementNodeId, node.id), isNull(incidents.closedAt)));
      if (incident === undefined) return;
      await db
        .update(incidents)
        .set({ replacementReadyAt: at, closedAt: at, outcome: "replaced", status: `replaced by ${node.id}, which is ready` })
        .where(eq(incidents.id, incident.id));
    });
  }
}
