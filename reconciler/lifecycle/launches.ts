// Launch health per pool. A provider that refuses launches (a bad request, wrong
// credentials, no quota) or keeps failing them (outages, no capacity) makes the pool
// back off exponentially, up to minutes, instead of failing a node and requesting the
// next one a second later. The requested node stays requested and says what it waits
// for; `pools list`, the dashboard and a metric show the pool failing; the log says so
// once per change, not once per pass. A success clears it.
import { eq } from "drizzle-orm";
import { pools } from "../../schema/db.ts";
import { ProviderError } from "../providers/provider.ts";
import type { NodeWriter } from "./transition.ts";
import type { Db } from "../store/store.ts";

export type LaunchErrorKind = "permanent" | "transient";

/** Retrying cannot help until someone changes something: the request, credentials or quota. */
export function launchErrorKind(err: unknown): LaunchErrorKind {
  if (!(err instanceof ProviderError)) return "transient";
  return err.kind === "invalid" || err.kind === "auth" || err.kind === "quota" || err.kind === "not_found" ? "permanent" : "transient";
}

const BACKOFF = {
  transient: { first: 5_000, max: 5 * 60_000 },
  permanent: { first: 60_000, max: 10 * 60_000 },
} as const;

/** The wait after the `failures`-th failure in a row. */
export function launchBackoff(kind: LaunchErrorKind, failures: number, retryAfterMs = 0): number {
  const { first, max } = BACKOFF[kind];
  return Math.max(retryAfterMs, Math.min(max, first * 2 ** Math.min(Math.max(failures - 1, 0), 16)));
}

interface LaunchState {
  failures: number;
  retryAt: number | null;
  error: string | null;
  kind: LaunchErrorKind | null;
  since: number | null;
}

export type LaunchGate = { ok: true } | { ok: false; retryAt: number; reason: string };

export class PoolLaunches {
  private readonly state = new Map<string, LaunchState>();

  constructor(
    private readonly db: Db,
    private readonly writer: NodeWriter,
    private readonly log: (line: string) => void,
  ) {}

  /** Reads every pool's launch state (once per pass). */
  async load(): Promise<void> {
    this.state.clear();
    for (const p of await this.db.select().from(pools)) {
      this.state.set(p.name, {
        failures: p.launchFailures,
        retryAt: p.launchRetryAt,
        error: p.launchError,
        kind: p.launchErrorKind,
        since: p.launchFailingSince,
      });
    }
  }

  /** May the pool launch now? */
  gate(pool: string, at: number): LaunchGate {
    const s = this.state.get(pool);
    if (s === undefined || s.failures === 0 || s.retryAt === null || s.retryAt <= at) return { ok: true };
    const what = s.kind === "permanent" ? "launches refused" : "launches failing";
    return {
      ok: false,
      retryAt: s.retryAt,
      reason: `pool ${pool}: ${what} (${s.failures} in a row: ${s.error ?? "unknown error"}); next try at ${new Date(s.retryAt).toISOString()}`,
    };
  }

  /** Records a failure; returns when the pool may try again. */
  async failed(pool: string, at: number, message: string, kind: LaunchErrorKind, retryAfterMs = 0): Promise<number> {
    const s = this.state.get(pool) ?? { failures: 0, retryAt: null, error: null, kind: null, since: null };
    const failures = s.failures + 1;
    const retryAt = at + launchBackoff(kind, failures, retryAfterMs);
    const next: LaunchState = { failures, retryAt, error: message, kind, since: s.since ?? at };
    await this.write(pool, next, at);
    if (s.failures === 0 || s.error !== message || s.kind !== kind) {
      this.log(
        `pool ${pool}: launch ${kind === "permanent" ? "refused" : "failed"}: ${message}; backing off (retry in ${Math.round((retryAt - at) / 1000)} s, up to ${BACKOFF[kind].max / 60_000} min)`,
      );
      await this.writer.audit(at, "navarch", "launch_failing", `pool:${pool}`, { kind, error: message, failures });
    }
    return retryAt;
  }

  async succeeded(pool: string, at: number): Promise<void> {
    const s = this.state.get(pool);
    if (s === undefined || s.failures === 0) return;
    await this.write(pool, { failures: 0, retryAt: null, error: null, kind: null, since: null }, at);
    this.log(`pool ${pool}: launches succeed again after ${s.failures} failures since ${new Date(s.since ?? at).toISOString()}`);
    await this.writer.audit(at, "navarch", "launch_recovered", `pool:${pool}`, { failures: s.failures });
  }

  private async write(pool: string, s: LaunchState, at: number): Promise<void> {
    this.state.set(pool, s);
    await this.db
      .update(pools)
      .set({ launchFailures: s.failures, launchRetryAt: s.retryAt, launchError: s.error, launchErrorKind: s.kind, launchFailingSince: s.since, updatedAt: at })
      .where(eq(pools.name, pool));
  }
}
