// Launch health per pool. A provider that refuses launches (a bad request, wrong
// credentials, no quota) or keeps failing them (outages, no capacity) makes the pool
// back off exponentially, up to minutes, instead of failing a node and requesting the
// next one a second later. The requested node stays requested and says what it waits
// for; `pools list`, the dashboard and a metric show the pool failing; the log says so
// once per change, not once per pass. A success clears it.
//
// A machine the provider accepted but whose agent never registered (its deadline passed,
// its bootstrap failed) counts the same way, and a launch the provider accepts does not
// clear it: only a registration does. After health.max_registration_failures of them in a
// row the pool is held: nothing more is launched for it until its configuration changes,
// an operator resumes it (`navarch pools resume`), or one of its machines registers after all.
import { eq } from "drizzle-orm";
import type { PoolConfig } from "../../schema/config.ts";
import { pools } from "../../schema/db.ts";
import { ProviderError } from "../providers/provider.ts";
import { minutes, type RegistrationDeadlines } from "../nodes/registration-deadlines.ts";
import type { Executor, NodeWriter } from "../nodes/writer.ts";
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
  /** Launch calls that failed in a row (a call the provider accepts resets it). */
  failures: number;
  retryAt: number | null;
  error: string | null;
  kind: LaunchErrorKind | null;
  since: number | null;
  /** Machines that did not register, in a row (only a registration resets it). */
  registrationFailures: number;
  registrationFailedAt: number | null;
  /** Why the pool launches nothing, while it is held. */
  hold: string | null;
  heldAt: number | null;
}

const CLEAR: LaunchState = {
  failures: 0,
  retryAt: null,
  error: null,
  kind: null,
  since: null,
  registrationFailures: 0,
  registrationFailedAt: null,
  hold: null,
  heldAt: null,
};

/** retryAt undefined: held until something outside the loop changes (resume, config, a registration). */
export type LaunchGate = { ok: true } | { ok: false; retryAt: number | undefined; reason: string };

/** A machine that did not register, as the pool's hold would describe the pattern. */
export interface RegistrationFailure {
  nodeId: string;
  /** What the machine did, also as "the last 3 machines …": `did not register within 15 min`, `failed the SSH bootstrap`. */
  pattern: string;
  /** What an operator should change. */
  hint: string;
}

export class PoolLaunches {
  private readonly state = new Map<string, LaunchState>();

  constructor(
    private readonly db: Db,
    private readonly writer: NodeWriter,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Reads every pool's launch state (once per pass). A pool whose machines stopped registering
   * counts from scratch once one registers (`deadlines` has the latest registration): a held
   * pool launches again.
   */
  async load(deadlines: RegistrationDeadlines, at: number): Promise<void> {
    const wasHeld = new Set([...this.state].filter(([, s]) => s.hold !== null).map(([name]) => name));
    this.state.clear();
    for (const p of await this.db.select().from(pools)) {
      const s: LaunchState = {
        failures: p.launchFailures,
        retryAt: p.launchRetryAt,
        error: p.launchError,
        kind: p.launchErrorKind,
        since: p.launchFailingSince,
        registrationFailures: p.registrationFailures,
        registrationFailedAt: p.registrationFailedAt,
        hold: p.registrationHold,
        heldAt: p.registrationHeldAt,
      };
      this.state.set(p.name, s);
      const latest = deadlines.latestOf(p.name);
      if (s.registrationFailures > 0 && latest !== undefined && latest.at > (s.registrationFailedAt ?? 0)) {
        const how = `${latest.nodeId} registered${latest.late ? " after it was given up" : ""}, ${minutes(latest.tookMs)} after its launch`;
        await this.lift(p.name, at, how);
      } else if (s.hold === null && wasHeld.has(p.name)) {
        this.log(`pool ${p.name}: no longer held (resumed by an operator); launching again`);
      }
    }
  }

  /** May the pool launch now? */
  gate(pool: string, at: number): LaunchGate {
    const s = this.state.get(pool);
    if (s === undefined) return { ok: true };
    if (s.hold !== null) {
      return {
        ok: false,
        retryAt: undefined,
        reason: `pool ${pool} is held: ${s.hold}. It launches again after \`navarch pools resume ${pool}\`, a change to its configuration, or a registration of one of its machines`,
      };
    }
    if ((s.failures === 0 && s.registrationFailures === 0) || s.retryAt === null || s.retryAt <= at) return { ok: true };
    const what =
      s.failures === 0
        ? `machines not registering (${s.registrationFailures} in a row)`
        : `${s.kind === "permanent" ? "launches refused" : "launches failing"} (${s.failures} in a row: ${s.error ?? "unknown error"})`;
    return { ok: false, retryAt: s.retryAt, reason: `pool ${pool}: ${what}; next try at ${new Date(s.retryAt).toISOString()}` };
  }

  /**
   * A machine of the pool did not register: the pool backs off as for a refused launch, and
   * is held once health.max_registration_failures did so in a row. In `tx`: with the node's
   * move to failed, so that a crash never loses the count.
   */
  async registrationFailed(pool: PoolConfig, at: number, failure: RegistrationFailure, deadlines: RegistrationDeadlines, tx: Executor): Promise<void> {
    const s = this.state.get(pool.name) ?? { ...CLEAR };
    const n = s.registrationFailures + 1;
    const retryAt = Math.max(s.retryAt ?? 0, at + launchBackoff("permanent", n));
    const limit = pool.health.max_registration_failures;
    const machines = n === 1 ? "machine" : `${n} machines`;
    const hold = n >= limit ? `the last ${machines} ${failure.pattern}; ${deadlines.slowestSaid(pool.name)}; ${failure.hint}` : null;
    await this.write(
      pool.name,
      { ...s, retryAt, registrationFailures: n, registrationFailedAt: at, hold, heldAt: s.heldAt ?? (hold === null ? null : at) },
      at,
      tx,
    );
    if (hold !== null && s.hold === null) {
      this.log(`pool ${pool.name} held, launching nothing more: ${hold}`);
      await this.writer.audit(at, "navarch", "pool_held", `pool:${pool.name}`, { reason: hold, failures: n, node: failure.nodeId }, tx);
    } else if (hold === null) {
      this.log(
        `pool ${pool.name}: ${failure.nodeId} ${failure.pattern} (${n} in a row; the pool is held at ${limit}); next launch not before ${new Date(retryAt).toISOString()}`,
      );
    }
  }

  /** Launches again: the pool's machines register, an operator resumed it, or its config changed. */
  async lift(pool: string, at: number, why: string): Promise<void> {
    const s = this.state.get(pool);
    if (s === undefined || (s.registrationFailures === 0 && s.hold === null)) return;
    await this.write(
      pool,
      { ...s, registrationFailures: 0, registrationFailedAt: null, hold: null, heldAt: null, retryAt: s.failures > 0 ? s.retryAt : null },
      at,
    );
    this.log(`pool ${pool}: ${s.hold !== null ? "no longer held; " : ""}launching again: ${why}`);
    if (s.hold !== null) await this.writer.audit(at, "navarch", "pool_resumed", `pool:${pool}`, { why, failures: s.registrationFailures });
  }

  /** Records a failure; returns when the pool may try again. */
  async failed(pool: string, at: number, message: string, kind: LaunchErrorKind, retryAfterMs = 0): Promise<number> {
    const s = this.state.get(pool) ?? { ...CLEAR };
    const failures = s.failures + 1;
    const retryAt = at + launchBackoff(kind, failures, retryAfterMs);
    const next: LaunchState = { ...s, failures, retryAt, error: message, kind, since: s.since ?? at };
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
    // Machines that did not register keep their back-off: an accepted launch is no registration.
    const retryAt = s.registrationFailures > 0 ? s.retryAt : null;
    await this.write(pool, { ...s, failures: 0, retryAt, error: null, kind: null, since: null }, at);
    this.log(`pool ${pool}: launches succeed again after ${s.failures} failures since ${new Date(s.since ?? at).toISOString()}`);
    await this.writer.audit(at, "navarch", "launch_recovered", `pool:${pool}`, { failures: s.failures });
  }

  private async write(pool: string, s: LaunchState, at: number, tx?: Executor): Promise<void> {
    this.state.set(pool, s);
    await (tx ?? this.db)
      .update(pools)
      .set({
        launchFailures: s.failures,
        launchRetryAt: s.retryAt,
        launchError: s.error,
        launchErrorKind: s.kind,
        launchFailingSince: s.since,
        registrationFailures: s.registrationFailures,
        registrationFailedAt: s.registrationFailedAt,
        registrationHold: s.hold,
        registrationHeldAt: s.heldAt,
        updatedAt: at,
      })
      .where(eq(pools.name, pool));
  }
}
