// GET /v1/report: what the fleet cost and gave over a window, section by section, for
// `navarch report` and the dashboard's Goodput page. Each section is one key of the answer,
// computed by one function from the store and rendered by one function of
// reconciler/cli/report.ts; a new section (lemons) is a key, its schema and those two
// functions. The sections: the machines launched and terminated without ever serving, and the
// GPU-hours they cost; goodput: the GPU-hours lost while nodes were out of service, by cause,
// rung and node, with the mean time to repair per rung (reconciler/goodput/window.ts).
import type { Hono } from "hono";
import * as v from "valibot";
import type { ErrorBody } from "../../schema/wire.ts";
import { RUNGS } from "../goodput/outages.ts";
import { goodputWindow, WORST_NODES } from "../goodput/window.ts";
import { neverServed } from "../pools/never-served.ts";
import type { Store } from "../store/store.ts";
import { validatedQuery } from "./query.ts";
import { Ms, parseSince } from "./views/time.ts";

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

const Seconds = v.pipe(v.number(), v.minValue(0));
const Rung = v.pipe(v.picklist(RUNGS), v.description("the rung of the remediation ladder the node was on"));

export const CauseLoss = v.object({
  cause: v.pipe(v.string(), v.description("the incident's fault class (memory, pcie, infiniband, …), maintenance, scale_down, no_heartbeat, other")),
  episodes: v.pipe(v.number(), v.description("outages of this cause that overlap the window")),
  nodeHours: Hours,
  gpuHours: Hours,
});

export const RungTime = v.object({
  rung: Rung,
  nodeHours: v.pipe(Hours, v.description("node-hours on this rung within the window")),
  gpuHours: Hours,
  stays: v.pipe(v.number(), v.description("stays on this rung that ended in the window")),
  meanStaySeconds: v.pipe(v.nullable(Seconds), v.description("their mean length; null when none ended")),
  ended: v.pipe(v.number(), v.description("outages that ended in the window with this rung as their last")),
  mttrSeconds: v.pipe(
    v.nullable(Seconds),
    v.description("their mean time from out of service to back in service (or gone): the mean time to repair on this rung"),
  ),
});

export const NodeLoss = v.object({
  node: v.string(),
  pool: v.nullable(v.string()),
  provider: v.nullable(v.string()),
  gpus: v.nullable(v.number()),
  episodes: v.number(),
  nodeHours: Hours,
  gpuHours: Hours,
  cause: v.pipe(v.string(), v.description("the cause it lost the most GPU-hours to")),
  open: v.pipe(v.boolean(), v.description("out of service at the window's end")),
});

export const Goodput = v.object({
  gpuHoursLost: v.pipe(Hours, v.description("GPU-hours of nodes out of service after they had served (an outage still open counts up to the window's end)")),
  nodeHoursUnavailable: Hours,
  gpuHoursInService: v.pipe(Hours, v.description("GPU-hours of nodes in service (ready or suspect), for the share lost")),
  episodes: v.pipe(v.number(), v.description("outages that overlap the window")),
  open: v.pipe(v.number(), v.description("outages still open at its end")),
  byCause: v.pipe(v.array(CauseLoss), v.description("most GPU-hours lost first")),
  byRung: v.pipe(v.array(RungTime), v.description("in the ladder's order")),
  worstNodes: v.pipe(v.array(NodeLoss), v.description(`the ${WORST_NODES} nodes that lost the most GPU-hours`)),
  series: v.pipe(
    v.object({
      stepMs: v.pipe(v.number(), v.description("the width of each interval: an hour up to a 2-day window, 6 hours up to 14 days, a day up to 62, else a week")),
      starts: v.pipe(v.array(Ms), v.description("each interval's start")),
      causes: v.array(v.object({ cause: v.string(), gpuHours: v.pipe(v.array(Hours), v.description("GPU-hours lost in each interval")) })),
    }),
    v.description("lost GPU-hours by cause over the window"),
  ),
});
export type Goodput = v.InferOutput<typeof Goodput>;

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
  goodput: v.pipe(
    Goodput,
    v.description("GPU time lost while nodes that had served were out of service (cordoned, draining, rebooting, replaced, held, lost)"),
  ),
});
export type Report = v.InferOutput<typeof Report>;

/** GET /v1/report query. */
export const ReportQuery = v.object({
  since: v.optional(
    v.pipe(v.string(), v.description("epoch milliseconds, an ISO-8601 time, or a span before now: 30m, 24h, 7d, 2w (default: seven days ago)")),
  ),
});

export async function buildReport(store: Store, from: number, to: number): Promise<Report> {
  const [pools, goodput] = await Promise.all([neverServed(store.db, from), goodputWindow(store.db, from, to)]);
  const sum = (pick: (r: NeverServedRow) => number) => pools.reduce((t, r) => t + pick(r), 0);
  return {
    from,
    to,
    neverServed: { pools, total: { machines: sum((r) => r.machines), machineHours: sum((r) => r.machineHours), gpuHours: sum((r) => r.gpuHours) } },
    goodput,
  };
}

export function registerReportRoutes(v1: Hono, opts: { store: Store; now: () => number }): void {
  v1.get("/report", async (c) => {
    const q = validatedQuery(c, ReportQuery);
    if (q instanceof Response) return q;
    const to = opts.now();
    const from = q.since === undefined ? to - REPORT_WINDOW_MS : parseSince(q.since, to);
    if (from === null)
      return c.json<ErrorBody>({ error: `since: expected epoch milliseconds, an ISO-8601 time or a span like 24h or 7d, got ${JSON.stringify(q.since)}` }, 400);
    return c.json<Report>(await buildReport(opts.store, from, to));
  });
}
