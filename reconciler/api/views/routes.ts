// Read-only views under /v1 for the dashboard and the CLI: a fleet overview (overview.ts), a
// pool page (pool-view.ts), a node's timeline (node-timeline.ts: GPUs, events, incidents with
// the duration of each step, what the reconciler did and refused), the health-event log with
// filters (events.ts), and a server-sent-event stream that says when any of it changed
// (change-stream.ts). Everything is read from the store as it is; nothing here writes.
//
// The answer shapes are valibot schemas (exported beside each view): the CLI validates what it
// reads with them and the OpenAPI document (openapi.ts) is generated from them.
import type { Hono } from "hono";
import type { ErrorBody } from "../../../schema/wire.ts";
import type { Store } from "../../store/store.ts";
import { validatedQuery } from "../query.ts";
import { ChangeWatcher, watchStream } from "./change-stream.ts";
import { EventQuery, listEvents } from "./events.ts";
import { readNodeTimeline } from "./node-timeline.ts";
import { readOverview } from "./overview.ts";
import { readPoolView } from "./pool-view.ts";
import { parseTime } from "./time.ts";

export interface ViewOptions {
  store: Store;
  now: () => number;
  /** How often the change stream looks at the store (ms). */
  watchIntervalMs?: number;
}

export function registerViewRoutes(v1: Hono, opts: ViewOptions): void {
  const { store, now } = opts;
  const watcher = new ChangeWatcher(store, opts.watchIntervalMs ?? 1000);

  v1.get("/overview", async (c) => c.json(await readOverview(store, now)));

  v1.get("/pools/:name", async (c) => {
    const name = c.req.param("name");
    const body = await readPoolView(store, name, now);
    if (body === undefined) return c.json<ErrorBody>({ error: `pool ${name} not found` }, 404);
    return c.json(body);
  });

  v1.get("/nodes/:id/timeline", async (c) => {
    const id = c.req.param("id");
    const body = await readNodeTimeline(store, id, now);
    if (body === undefined) return c.json<ErrorBody>({ error: `node ${id} not found` }, 404);
    return c.json(body);
  });

  v1.get("/events", async (c) => {
    const q = validatedQuery(c, EventQuery);
    if (q instanceof Response) return q;
    const since = q.since === undefined ? undefined : parseTime(q.since);
    if (since === null) return c.json<ErrorBody>({ error: `since: expected epoch milliseconds or an ISO-8601 time, got ${JSON.stringify(q.since)}` }, 400);
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (limit < 1 || limit > 1000) return c.json<ErrorBody>({ error: `limit: expected 1 to 1000, got ${limit}` }, 400);
    const after = q.after === undefined ? undefined : Number(q.after);
    return c.json(await listEvents(store, { ...q, since, after, limit }));
  });

  v1.get("/watch", (c) => watchStream(c, watcher));
}
