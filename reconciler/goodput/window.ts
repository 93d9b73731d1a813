// Goodput over a window, for `navarch report` and the dashboard's Goodput page (GET /v1/report):
// GPU-hours lost by cause, node-hours out of service by rung with the mean stay on each and the
// mean time to repair of the outages that ended on it, the ten nodes that lost the most, the
// GPU-hours in service beside them, and the lost GPU-hours by cause over time. The whole log is
// folded (outages.ts) up to the window's end; what lies in the window is counted, clipped at its
// edges, so an outage that began before it counts from its start and one still open up to its end.
import type { Db } from "../store/store.ts";
import { OutageFold, RUNGS, type NodeFacts, type Outage, type Rung } from "./outages.ts";
import { foldLog } from "./store-facts.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The worst nodes listed. */
export const WORST_NODES = 10;

export interface CauseLoss {
  cause: string;
  /** Outages of this cause that overlap the window. */
  episodes: number;
  nodeHours: number;
  gpuHours: number;
}

export interface RungTime {
  rung: Rung;
  nodeHours: number;
  gpuHours: number;
  /** Stays on the rung that ended in the window, and their mean length (seconds; null: none ended). */
  stays: number;
  meanStaySeconds: number | null;
  /** Outages that ended in the window on this rung (their last), and their mean length from out of service to back, or gone. */
  ended: number;
  mttrSeconds: number | null;
}

export interface NodeLoss {
  node: string;
  pool: string | null;
  provider: string | null;
  gpus: number | null;
  episodes: number;
  nodeHours: number;
  gpuHours: number;
  /** The cause it lost most to. */
  cause: string;
  /** Out of service at the window's end. */
  open: boolean;
}

export interface GoodputWindow {
  gpuHoursLost: number;
  nodeHoursUnavailable: number;
  gpuHoursInService: number;
  /** Outages that overlap the window, and those still open at its end. */
  episodes: number;
  open: number;
  byCause: CauseLoss[];
  byRung: RungTime[];
  worstNodes: NodeLoss[];
  series: { stepMs: number; starts: number[]; causes: { cause: string; gpuHours: number[] }[] };
}

/** Most points in the series, whatever the window (a report since 1970 has weeks of years). */
const MAX_POINTS = 400;

/** The step of the series: a few dozen points for the usual windows, never more than MAX_POINTS. */
export function seriesStep(windowMs: number): number {
  if (windowMs <= 2 * DAY_MS) return HOUR_MS;
  if (windowMs <= 14 * DAY_MS) return 6 * HOUR_MS;
  if (windowMs <= 62 * DAY_MS) return DAY_MS;
  return Math.max(7, Math.ceil(windowMs / MAX_POINTS / DAY_MS)) * DAY_MS;
}

export async function goodputWindow(db: Db, from: number, to: number): Promise<GoodputWindow> {
  const w = new WindowSums(from, to);
  const fold = new OutageFold(
    {
      stay: (o, rung, start, end) => w.stay(o, rung, start, end),
      ended: (o) => w.ended(o),
      served: (node, start, end) => w.served(node, start, end),
    },
    true,
  );
  await foldLog(db, 0, (t, facts) => fold.apply(t, facts), { upTo: to, allNodes: true });
  for (const open of fold.openAt(to)) {
    w.stay(open.outage, open.rung, open.start, open.end, false);
    w.episode(open.outage, true);
  }
  for (const { node, since } of fold.inService.values()) w.served(node, since, to);
  return w.result();
}

class WindowSums {
  private readonly step: number;
  private readonly starts: number[] = [];
  private readonly causes = new Map<string, CauseLoss & { series: number[] }>();
  private readonly rungs = new Map<Rung, RungTime & { stayMs: number; endedMs: number }>();
  private readonly nodes = new Map<string, NodeLoss & { byCause: Map<string, number> }>();
  private inServiceGpuMs = 0;
  private episodes = 0;
  private open = 0;

  constructor(
    private readonly from: number,
    private readonly to: number,
  ) {
    this.step = seriesStep(to - from);
    for (let at = Math.floor(from / this.step) * this.step; at < to; at += this.step) this.starts.push(at);
  }

  /** A stay on a rung: its part in the window counts; a stay that ended in it, whole, for the mean. */
  stay(o: Outage, rung: Rung, start: number, end: number, ended = true): void {
    const r = this.rung(rung);
    if (ended && end > this.from && end <= this.to && end > start) {
      r.stays += 1;
      r.stayMs += end - start;
    }
    const ms = this.overlap(start, end);
    if (ms <= 0) return;
    const gpus = o.node.gpus ?? 0;
    r.nodeHours += ms / HOUR_MS;
    r.gpuHours += (ms * gpus) / HOUR_MS;
    const c = this.cause(o.cause);
    c.nodeHours += ms / HOUR_MS;
    c.gpuHours += (ms * gpus) / HOUR_MS;
    const n = this.node(o.node);
    n.nodeHours += ms / HOUR_MS;
    n.gpuHours += (ms * gpus) / HOUR_MS;
    n.byCause.set(o.cause, (n.byCause.get(o.cause) ?? 0) + ms * gpus);
    // Over time: each bucket its part.
    const lo = Math.max(start, this.from);
    const hi = Math.min(end, this.to);
    for (let i = Math.max(0, Math.floor((lo - this.starts[0]!) / this.step)); i < this.starts.length && this.starts[i]! < hi; i++) {
      const part = Math.min(hi, this.starts[i]! + this.step) - Math.max(lo, this.starts[i]!);
      if (part > 0) c.series[i]! += (part * gpus) / HOUR_MS;
    }
  }

  ended(o: Outage): void {
    const end = o.end ?? o.start;
    if (end > this.from && end <= this.to) {
      const r = this.rung(o.rung);
      r.ended += 1;
      r.endedMs += end - o.start;
    }
    if (end > this.from && o.start < this.to) this.episode(o, false);
  }

  episode(o: Outage, open: boolean): void {
    this.episodes += 1;
    if (open) this.open += 1;
    this.cause(o.cause).episodes += 1;
    const n = this.node(o.node);
    n.episodes += 1;
    if (open) n.open = true;
  }

  served(node: NodeFacts, start: number, end: number): void {
    this.inServiceGpuMs += this.overlap(start, end) * (node.gpus ?? 0);
  }

  result(): GoodputWindow {
    const byCause = [...this.causes.values()]
      .filter((c) => c.episodes > 0 || c.nodeHours > 0)
      .sort((a, b) => b.gpuHours - a.gpuHours || b.nodeHours - a.nodeHours || a.cause.localeCompare(b.cause));
    const byRung = RUNGS.flatMap((rung) => {
      const r = this.rungs.get(rung);
      if (r === undefined || (r.nodeHours === 0 && r.stays === 0 && r.ended === 0)) return [];
      const { stayMs, endedMs, ...out } = r;
      return [{ ...out, meanStaySeconds: r.stays > 0 ? stayMs / r.stays / 1000 : null, mttrSeconds: r.ended > 0 ? endedMs / r.ended / 1000 : null }];
    });
    const worstNodes = [...this.nodes.values()]
      .filter((n) => n.nodeHours > 0)
      .sort((a, b) => b.gpuHours - a.gpuHours || b.nodeHours - a.nodeHours || a.node.localeCompare(b.node))
      .slice(0, WORST_NODES)
      .map(({ byCause, ...n }) => ({ ...n, cause: [...byCause].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0] ?? "other" }));
    return {
      gpuHoursLost: byCause.reduce((t, c) => t + c.gpuHours, 0),
      nodeHoursUnavailable: byCause.reduce((t, c) => t + c.nodeHours, 0),
      gpuHoursInService: this.inServiceGpuMs / HOUR_MS,
      episodes: this.episodes,
      open: this.open,
      byCause: byCause.map(({ series: _series, ...c }) => c),
      byRung,
      worstNodes,
      series: { stepMs: this.step, starts: this.starts, causes: byCause.map((c) => ({ cause: c.cause, gpuHours: c.series })) },
    };
  }

  private overlap(start: number, end: number): number {
    return Math.max(0, Math.min(end, this.to) - Math.max(start, this.from));
  }

  private rung(rung: Rung) {
    let r = this.rungs.get(rung);
    if (r === undefined) {
      r = { rung, nodeHours: 0, gpuHours: 0, stays: 0, meanStaySeconds: null, ended: 0, mttrSeconds: null, stayMs: 0, endedMs: 0 };
      this.rungs.set(rung, r);
    }
    return r;
  }

  private cause(cause: string) {
    let c = this.causes.get(cause);
    if (c === undefined) {
      c = { cause, episodes: 0, nodeHours: 0, gpuHours: 0, series: this.starts.map(() => 0) };
      this.causes.set(cause, c);
    }
    return c;
  }

  private node(facts: NodeFacts) {
    let n = this.nodes.get(facts.id);
    if (n === undefined) {
      n = {
        node: facts.id,
        pool: facts.pool,
        provider: facts.provider,
        gpus: facts.gpus,
        episodes: 0,
        nodeHours: 0,
        gpuHours: 0,
        cause: "other",
        open: false,
        byCause: new Map(),
      };
      this.nodes.set(facts.id, n);
    }
    return n;
  }
}
