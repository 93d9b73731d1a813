// The health-event log: GET /v1/events's filters, the events as the views answer them, and the
// query that pages through them (backwards for the newest, forwards from a cursor to follow).
import { and, asc, desc, eq, gt, gte, inArray, lte, sql, type SQL } from "drizzle-orm";
import * as v from "valibot";
import { healthEvents, nodes } from "../../../schema/db.ts";
import { SEVERITIES } from "../../../schema/wire.ts";
import type { Store } from "../../store/store.ts";
import { Ms } from "./time.ts";

export const EventView = v.object({
  id: v.number(),
  nodeId: v.string(),
  pool: v.nullable(v.string()),
  seq: v.number(),
  time: Ms,
  receivedAt: Ms,
  check: v.string(),
  code: v.nullable(v.string()),
  severity: v.picklist(SEVERITIES),
  action: v.string(),
  gpuIndex: v.nullable(v.number()),
  message: v.string(),
  count: v.number(),
});
export type EventView = v.InferOutput<typeof EventView>;

export const EventList = v.object({
  events: v.pipe(v.array(EventView), v.description("oldest first")),
  cursor: v.pipe(v.number(), v.description("pass as `after` to get only newer events (follow)")),
});
export type EventList = v.InferOutput<typeof EventList>;

/** GET /v1/events query; every field optional. */
export const EventQuery = v.object({
  node: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  pool: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  severity: v.optional(v.pipe(v.picklist(SEVERITIES), v.description("at least this severity"))),
  check: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(64))),
  since: v.optional(v.pipe(v.string(), v.description("epoch milliseconds or an ISO-8601 time: events at or after it"))),
  after: v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/, "must be an event id (the previous answer's cursor)"))),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/, "must be a whole number from 1 to 1000"))),
});

export interface EventFilter {
  node?: string | undefined;
  pool?: string | undefined;
  severity?: (typeof SEVERITIES)[number] | undefined;
  check?: string | undefined;
  since?: number | undefined;
  after?: number | undefined;
  limit: number;
}

/**
 * Health events matching the filter, oldest first. Without `after`: the newest `limit`
 * of them. With `after` (a previous cursor): the oldest `limit` newer than it, so a
 * follower pages forward without gaps. The cursor covers every event that existed
 * when the query ran, matching or not.
 */
export async function listEvents(store: Store, f: EventFilter): Promise<EventList> {
  const db = store.db;
  const [top] = await db.select({ id: sql<number | null>`max(${healthEvents.id})` }).from(healthEvents);
  const end = Number(top?.id ?? 0);
  const where: SQL[] = [lte(healthEvents.id, end)];
  if (f.after !== undefined) where.push(gt(healthEvents.id, f.after));
  if (f.node !== undefined) where.push(eq(healthEvents.nodeId, f.node));
  if (f.pool !== undefined) where.push(eq(nodes.pool, f.pool));
  if (f.check !== undefined) where.push(eq(healthEvents.check, f.check));
  if (f.since !== undefined) where.push(gte(healthEvents.time, f.since));
  if (f.severity !== undefined) where.push(inArray(healthEvents.severity, SEVERITIES.slice(SEVERITIES.indexOf(f.severity))));
  const rows = await db
    .select({
      id: healthEvents.id,
      nodeId: healthEvents.nodeId,
      pool: nodes.pool,
      seq: healthEvents.seq,
      time: healthEvents.time,
      receivedAt: healthEvents.receivedAt,
      check: healthEvents.check,
      code: healthEvents.code,
      severity: healthEvents.severity,
      action: healthEvents.action,
      gpuIndex: healthEvents.gpuIndex,
      message: healthEvents.message,
      count: healthEvents.count,
    })
    .from(healthEvents)
    .leftJoin(nodes, eq(nodes.id, healthEvents.nodeId))
    .where(and(...where))
    .orderBy(f.after === undefined ? desc(healthEvents.id) : asc(healthEvents.id))
    .limit(f.limit);
  if (f.after === undefined) rows.reverse();
  // A full page going forward may stop short of the end: continue from its last row.
  const cursor = f.after !== undefined && rows.length === f.limit ? (rows.at(-1)?.id ?? end) : Math.max(end, f.after ?? 0);
  return { events: rows, cursor };
}
