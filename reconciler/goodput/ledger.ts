// Goodput's running totals for /metrics: GPU-hours lost per cause, pool and provider, and seconds
// nodes were out of service per rung and pool, since the audit log began. Folded from the log
// (outages.ts) incrementally: the first scrape of a process reads it all, each later one only
// the rows written since (an id cursor), so a restart, or a standby taking over, exposes the same
// totals. Outages still open count up to the scrape's time; a total never goes down between two
// scrapes (a change committed a moment after a scrape may end a stay a moment before it).
import type { Db } from "../store/store.ts";
import { OutageFold, type Outage, type Rung } from "./outages.ts";
import { foldLog } from "./store-facts.ts";

const HOUR_MS = 3_600_000;

export interface LostGpuHours {
  cause: string;
  pool: string;
  provider: string;
  gpuHours: number;
}

export interface UnavailableSeconds {
  rung: Rung;
  pool: string;
  seconds: number;
}

export interface GoodputTotals {
  lost: LostGpuHours[];
  unavailable: UnavailableSeconds[];
}

export class GoodputLedger {
  private cursor = 0;
  /** GPU-milliseconds of ended stays, by cause, pool and provider. */
  private readonly lostMs = new Map<string, LostSum>();
  /** Milliseconds of ended stays, by rung and pool. */
  private readonly rungMs = new Map<string, RungSum>();
  /** The last value each series was exported with: none goes down. */
  private readonly exported = new Map<string, number>();
  private readonly fold = new OutageFold({ stay: (o, rung, start, end) => add(this.lostMs, this.rungMs, o, rung, end - start) });
  private advancing: Promise<void> = Promise.resolve();

  constructor(private readonly db: Db) {}

  /** Folds in the transitions written since the last call (one at a time). */
  advance(): Promise<void> {
    this.advancing = this.advancing.then(async () => {
      this.cursor = await foldLog(this.db, this.cursor, (t, facts) => this.fold.apply(t, facts));
    });
    return this.advancing;
  }

  /** The totals, with the outages still open counted up to `now`; in hours and seconds. */
  totals(now: number): GoodputTotals {
    const lost = new Map([...this.lostMs].map(([k, r]) => [k, { ...r }]));
    const rungs = new Map([...this.rungMs].map(([k, r]) => [k, { ...r }]));
    for (const open of this.fold.openAt(now)) add(lost, rungs, open.outage, open.rung, open.end - open.start);
    return {
      lost: [...lost].map(([k, r]) => ({ cause: r.cause, pool: r.pool, provider: r.provider, gpuHours: this.monotonic(`lost/${k}`, r.gpuMs / HOUR_MS) })),
      unavailable: [...rungs].map(([k, r]) => ({ rung: r.rung, pool: r.pool, seconds: this.monotonic(`rung/${k}`, r.ms / 1000) })),
    };
  }

  private monotonic(key: string, value: number): number {
    const out = Math.max(this.exported.get(key) ?? 0, value);
    this.exported.set(key, out);
    return out;
  }
}

interface LostSum {
  cause: string;
  pool: string;
  provider: string;
  gpuMs: number;
}

interface RungSum {
  rung: Rung;
  pool: string;
  ms: number;
}

/** Adds a stay of `ms` to both sums. */
function add(lost: Map<string, LostSum>, rungs: Map<string, RungSum>, o: Outage, rung: Rung, ms: number): void {
  if (ms <= 0) return;
  const pool = o.node.pool ?? "";
  const provider = o.node.provider ?? "";
  const lk = `${o.cause}/${pool}/${provider}`;
  const l = lost.get(lk) ?? { cause: o.cause, pool, provider, gpuMs: 0 };
  l.gpuMs += ms * (o.node.gpus ?? 0);
  lost.set(lk, l);
  const rk = `${rung}/${pool}`;
  const r = rungs.get(rk) ?? { rung, pool, ms: 0 };
  r.ms += ms;
  rungs.set(rk, r);
}
