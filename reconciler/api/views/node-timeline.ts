// GET /v1/nodes/:id/timeline: one node's story: its row, its GPUs, its latest health events,
// its incidents (and those of the nodes it replaced) as timelines, what the reconciler and
// humans did to it, and the provider calls made for it.
import { asc, desc, eq, or } from "drizzle-orm";
import * as v from "valibot";
import { NodeRow } from "../../../schema/admin.ts";
import { auditLog, healthEvents, incidents, nodes, operations } from "../../../schema/db.ts";
import { NODE_STATES } from "../../../schema/lifecycle.ts";
import { nodeGpus } from "../../nodes/agent-reports.ts";
import type { Store } from "../../store/store.ts";
import { EventView } from "./events.ts";
import { IncidentTimeline, incidentTimeline } from "./incident-timeline.ts";
import { AuditRow } from "./table-rows.ts";
import { Ms } from "./time.ts";

export const GpuView = v.object({
  index: v.number(),
  uuid: v.string(),
  pciBusId: v.string(),
  name: v.string(),
  memoryTotalBytes: v.nullable(v.number()),
  lastSnapshot: v.nullable(v.pipe(v.record(v.string(), v.unknown()), v.description("the latest heartbeat's readings (GpuSnapshot)"))),
  updatedAt: Ms,
});

export const OperationView = v.object({
  key: v.string(),
  kind: v.string(),
  state: v.string(),
  attempts: v.number(),
  error: v.nullable(v.string()),
  createdAt: Ms,
  updatedAt: Ms,
});

export const NodeTimeline = v.object({
  at: Ms,
  // The admin API's node row (schema/admin.ts), plus what only this view shows.
  node: v.object({
    ...NodeRow.entries,
    instanceName: v.nullable(v.string()),
    requestedAt: v.nullable(Ms),
    removal: v.nullable(v.picklist(["replace", "scale_down"])),
    attempts: v.number(),
    findings: v.pipe(v.unknown(), v.description("open findings of the health policy")),
  }),
  replacedBy: v.array(v.object({ id: v.string(), state: v.picklist(NODE_STATES) })),
  gpus: v.array(GpuView),
  events: v.pipe(v.array(EventView), v.description("the node's latest health events, newest first")),
  incidents: v.pipe(v.array(IncidentTimeline), v.description("incidents of this node and the ones it replaced, newest first")),
  audit: v.pipe(v.array(AuditRow), v.description("what the reconciler and humans did to this node, newest first")),
  operations: v.pipe(v.array(OperationView), v.description("provider calls for this node (launch, terminate) and their outcome")),
});
export type NodeTimeline = v.InferOutput<typeof NodeTimeline>;

/** The node's timeline; undefined when there is no node of that id. */
export async function readNodeTimeline(store: Store, id: string, now: () => number): Promise<NodeTimeline | undefined> {
  const db = store.db;
  const [node] = await db.select().from(nodes).where(eq(nodes.id, id));
  if (node === undefined) return undefined;
  const [gpuRows, events, nodeIncidents, audit, ops, replacedBy] = await Promise.all([
    nodeGpus(db, id),
    db.select().from(healthEvents).where(eq(healthEvents.nodeId, id)).orderBy(desc(healthEvents.seq)).limit(200),
    db
      .select()
      .from(incidents)
      .where(or(eq(incidents.nodeId, id), eq(incidents.replacementNodeId, id)))
      .orderBy(desc(incidents.id))
      .limit(50),
    db.select().from(auditLog).where(eq(auditLog.target, id)).orderBy(desc(auditLog.id)).limit(200),
    db.select().from(operations).where(eq(operations.nodeId, id)).orderBy(asc(operations.createdAt)),
    db.select({ id: nodes.id, state: nodes.state }).from(nodes).where(eq(nodes.replacementOf, id)),
  ]);
  return {
    at: now(),
    node,
    replacedBy,
    gpus: gpuRows,
    events: events.map((e) => ({ ...e, pool: node.pool })),
    incidents: nodeIncidents.map(incidentTimeline),
    audit,
    operations: ops.map((o) => ({
      key: o.key,
      kind: o.kind,
      state: o.state,
      attempts: o.attempts,
      error: o.error,
      createdAt: o.createdAt,
      updatedAt: o.updatedAt,
    })),
  };
}
