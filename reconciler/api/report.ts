// GET /v1/report: what the fleet cost and gave over a window, section by section, for
// `navarch report`. Each section is one key of the answer, computed by one function from
// the store and rendered by one function of reconciler/cli/report.ts; a new section (goodput,
// lemons) is a key, its schema and those two functions. First section: the machines
// launched and terminated without ever serving, and the GPU-hours they cost.
import type { Hono } from "hono";
import * as v from "valibot";
import type { ErrorBody } from "../../schema/wire.ts";
import { neverServed } from "../pools/never-served.ts";
import type { Store } from "../store/store.ts";
import { validatedQuery } from "./query.ts";
import { Ms, parseTime } from "./views/time.ts";

/** The default window: the last seven days. */
export const REPORT_WINDOW_MS = 7 * 24 * 3_600_000;

const Hours = v.pipe(v.number(), v.minValue(0));

export const NeverServedRow = v.object({
  pool: v.string(),
  provider: v.string(),
  machines: v.pipe(v.number(), v.description("machines launched and terminated without ever entering service")),
  machineHours: v.pipe(Hours, v.description("from their launch (or adoption) to their terminate call")),
  gpuHours: v.pipe(Hours, v.description("machine-hours times each machine's GPUs")),
  gpusUnknown: v.pipe(v.number(), v.description("machines whose GPU count nobody knows (no machine of their type ever registered): no GPU-hours counted")),
});
export type NeverServedRow = v.InferOutput<typeof NeverServedRow>;

export const Report = v.object({
  from: v.pipe(Ms, v.description("the window's start: what ended at or after it is counted")),
  to: Ms,
  neverServed: v.pipe(
    v.object({
      pools: v.array(NeverServedRow),
      total: v.object({ machines: v.number(), machineHours: Hours, gpuHours: Hours }),
    }),
    v.description("machines launched and terminated without ever serving, per pool and provider"),
  ),
});
export type Report = v.InferOutput<typeof Report>;

/** GET /v1/report query. */
export const ReportQuery = v.object({
  since: v.optional(v.pipe(v.string(), v.description("epoch milliseconds or an ISO-8601 time (default: seven days ago)"))),
});

export async function buildReport(store: Store, from: number, to: number): Promise<Report> {
  const pools = await neverServed(store.db, from);
  const sum = (pick: (r: NeverServedRow) => number) => pools.reduce((t, r) => t + pick(r), 0);
  return {
    from,
    to,
    neverServed: { pools, total: { machines: sum((r) => r.machines), machineHours: sum((r) => r.machineHours), gpuHours: sum((r) => r.gpuHours) } },
  };
}

export function registerReportRoutes(v1: Hono, opts: { store: Store; now: () => number }): void {
  v1.get("/report", async (c) => {
    const q = validatedQuery(c, ReportQuery);
    if (q instanceof Response) return q;
    const to = opts.now();
    const from = q.since === undefined ? to - REPORT_WINDOW_MS : parseTime(q.since);
    if (from === null) return c.json<ErrorBody>({ error: `since: expected epoch milliseconds or an ISO-8601 time, got ${JSON.stringify(q.since)}` }, 400);
    return c.json<Report>(await buildReport(opts.store, from, to));
  });
}
