// One writer: a lease row in the database decides which reconciler runs the loop.
// The holder renews it every couple of seconds; a standby that sees the row unchanged
// for the lease's duration (measured on its own monotonic clock, so the two machines'
// clocks need not agree) takes it over and bumps the epoch. The leader acts only while
// its last renewal is recent (a process paused past its lease finds out before it acts),
// and every write it makes re-checks holder and epoch inside the write (fencing): a
// deposed leader's writes change nothing.
//
// The lease is renewed on its own clock, on a connection of its own (Store.sideConnection: not
// the loop's pool, not the process's write lock, never a long wait), and never waits for what
// leading starts or stops: a leader whose loop or scheduler is slow keeps its lease, and a
// standby's takeover never blocks its event loop. A database file another process holds the
// write lock of (a reconciler stopped in the middle of a write) cannot be written by anyone
// until that process runs again or dies: two reconcilers on one file survive a crash, not a
// stopped process (sqld for that).
import { and, eq, sql, type SQL } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { leases } from "../../schema/db.ts";
import { FencedError, type Fence } from "../nodes/writer.ts";
import { procStat, processAlive } from "../system/processes.ts";
import type { Db } from "../store/store.ts";

const LEADER = "leader";

export interface LeaseTiming {
  /** A standby takes over after seeing no renewal for this long. */
  durationMs: number;
  /** The leader stops acting when its last successful renewal is older than this. */
  renewDeadlineMs: number;
  /** How often the leader renews and a standby looks. */
  retryMs: number;
}

/** client-go's ratios (15/10/2 s), shortened so a standby takes over within 15 s of a crash. */
export const DEFAULT_LEASE_TIMING: LeaseTiming = { durationMs: 10_000, renewDeadlineMs: 7_000, retryMs: 2_000 };

export interface LeaseHolderInfo {
  holder: string;
  epoch: number;
  address: string | null;
  acquiredAt: number;
  renewedAt: number;
}

export type LeaseChange = { leading: true; epoch: number; from?: LeaseHolderInfo } | { leading: false; leader?: LeaseHolderInfo; reason: string };

export interface LeaseOptions {
  /** The lease's own connection (Store.sideConnection), or the store's in tests. */
  db: Db;
  /** The URL this reconciler serves at, shown to whoever asks who leads. */
  address?: string;
  timing?: Partial<LeaseTiming>;
  /** Wall clock, for the stamps in the row (informational; takeover uses the monotonic clock). */
  now?: () => number;
  monotonic?: () => number;
  /** Overrides this process's identity (tests run several "processes" in one). */
  holder?: string;
}

export class LeaderLease implements Fence {
  readonly holder: string;
  readonly timing: LeaseTiming;
  private epoch: number | undefined;
  /** Monotonic time at which the last successful renewal was sent. */
  private renewedAtMono = Number.NEGATIVE_INFINITY;
  /** The row as last seen by a standby, and since when (monotonic) it has not changed. */
  private observed: { key: string; sinceMono: number } | undefined;
  private readonly now: () => number;
  private readonly monotonic: () => number;

  constructor(private readonly opts: LeaseOptions) {
    this.holder = opts.holder ?? processHolder();
    this.timing = { ...DEFAULT_LEASE_TIMING, ...opts.timing };
    this.now = opts.now ?? Date.now;
    this.monotonic = opts.monotonic ?? (() => performance.now());
  }

  /** Whether this process may act now: it holds the lease and renewed it recently enough. */
  get leading(): boolean {
    return this.epoch !== undefined && this.monotonic() - this.renewedAtMono < this.timing.renewDeadlineMs;
  }

  /** The epoch this process leads with, while it does. */
  get currentEpoch(): number | undefined {
    return this.leading ? this.epoch : undefined;
  }

  check(): void {
    if (!this.leading) throw new FencedError();
  }

  guard(): SQL {
    if (this.epoch === undefined) return sql`0`;
    return sql`exists (select 1 from ${leases} where ${leases.name} = ${LEADER} and ${leases.holder} = ${this.holder} and ${leases.epoch} = ${this.epoch})`;
  }

  /**
   * One round of the election: the leader renews, a standby watches and takes over a
   * lease nobody renewed for `durationMs`. Returns what changed, or undefined.
   */
  async step(): Promise<LeaseChange | undefined> {
    return whileBusy(() => this.stepOnce());
  }

  private async stepOnce(): Promise<LeaseChange | undefined> {
    if (this.epoch !== undefined && !this.leading) {
      // Paused, or the store unreachable, past the renew deadline: stand down before anything
      // else; a later round takes the lease again (with a new epoch) if nobody else did.
      this.epoch = undefined;
      const since = Math.round((this.monotonic() - this.renewedAtMono) / 1000);
      return { leading: false, reason: `the lease was not renewed for ${since} s (renew deadline ${this.timing.renewDeadlineMs / 1000} s)` };
    }
    if (this.epoch !== undefined) {
      const sent = this.monotonic();
      const renewed = await this.opts.db
        .update(leases)
        .set({ renewedAt: sql`max(${this.now()}, ${leases.renewedAt} + 1)`, address: this.opts.address ?? null })
        .where(and(eq(leases.name, LEADER), eq(leases.holder, this.holder), eq(leases.epoch, this.epoch!)))
        .returning({ epoch: leases.epoch });
      if (renewed.length > 0) {
        this.renewedAtMono = sent;
        return undefined;
      }
      this.epoch = undefined;
      const leader = await this.current();
      return { leading: false, reason: "the lease was taken over", ...(leader ? { leader } : {}) };
    }
    return this.tryAcquire();
  }

  /** Gives the lease up (a clean stop), so a standby takes over at once. */
  async release(): Promise<void> {
    if (this.epoch === undefined) return;
    const epoch = this.epoch;
    this.epoch = undefined;
    await whileBusy(() =>
      this.opts.db
        .update(leases)
        .set({ holder: "", renewedAt: this.now() })
        .where(and(eq(leases.name, LEADER), eq(leases.holder, this.holder), eq(leases.epoch, epoch))),
    );
  }

  /** Who holds the lease now, as the row says. */
  async current(): Promise<LeaseHolderInfo | undefined> {
    const [row] = await this.opts.db.select().from(leases).where(eq(leases.name, LEADER));
    if (row === undefined || row.holder === "") return undefined;
    return { holder: row.holder, epoch: row.epoch, address: row.address, acquiredAt: row.acquiredAt, renewedAt: row.renewedAt };
  }

  private async tryAcquire(): Promise<LeaseChange | undefined> {
    const db = this.opts.db;
    const at = this.now();
    const sent = this.monotonic();
    const [row] = await db.select().from(leases).where(eq(leases.name, LEADER));
    if (row === undefined) {
      const inserted = await db
        .insert(leases)
        .values({ name: LEADER, holder: this.holder, epoch: 1, address: this.opts.address ?? null, acquiredAt: at, renewedAt: at })
        .onConflictDoNothing()
        .returning({ epoch: leases.epoch });
      return inserted.length > 0 ? this.elected(inserted[0]!.epoch, sent) : undefined;
    }
    const previous: LeaseHolderInfo = { holder: row.holder, epoch: row.epoch, address: row.address, acquiredAt: row.acquiredAt, renewedAt: row.renewedAt };
    const free = row.holder === "" || row.holder === this.holder || holderIsGone(row.holder);
    if (!free) {
      const key = `${row.holder}|${row.epoch}|${row.renewedAt}`;
      if (this.observed?.key !== key) this.observed = { key, sinceMono: sent };
      if (sent - this.observed.sinceMono < this.timing.durationMs) return undefined;
    }
    const taken = await db
      .update(leases)
      .set({
        holder: this.holder,
        epoch: sql`${leases.epoch} + 1`,
        address: this.opts.address ?? null,
        acquiredAt: at,
        renewedAt: sql`max(${at}, ${leases.renewedAt} + 1)`,
      })
      .where(and(eq(leases.name, LEADER), eq(leases.holder, row.holder), eq(leases.epoch, row.epoch), eq(leases.renewedAt, row.renewedAt)))
      .returning({ epoch: leases.epoch });
    if (taken.length === 0) return undefined; // someone else moved first
    return this.elected(taken[0]!.epoch, sent, row.holder === "" ? undefined : previous);
  }

  private elected(epoch: number, sentMono: number, from?: LeaseHolderInfo): LeaseChange {
    this.epoch = epoch;
    this.renewedAtMono = sentMono;
    this.observed = undefined;
    return { leading: true, epoch, ...(from ? { from } : {}) };
  }
}

/** How long a lease write retries a database file's write lock held by another writer. */
const BUSY_BUDGET_MS = 1_000;

/**
 * Runs `write`, retrying while the database file is locked by another writer, for up to
 * BUSY_BUDGET_MS: the lease's connection has no busy timeout (libSQL's busy wait sleeps on the
 * event loop's thread), so the wait happens here, between turns of the event loop.
 */
async function whileBusy<T>(write: () => Promise<T>): Promise<T> {
  const started = performance.now();
  for (;;) {
    try {
      return await write();
    } catch (err) {
      if (!isBusy(err) || performance.now() - started > BUSY_BUDGET_MS) throw err;
      await Bun.sleep(20);
    }
  }
}

function isBusy(err: unknown): boolean {
  const text = `${err instanceof Error ? `${err.message} ${(err as { code?: unknown }).code ?? ""} ${String((err as { cause?: unknown }).cause ?? "")}` : String(err)}`;
  return /SQLITE_BUSY|database is locked/i.test(text);
}

/** Why a lease write failed, with its cause: what the log says. */
export function leaseErrorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const cause = err instanceof Error && err.cause !== undefined ? ` (cause: ${err.cause instanceof Error ? err.cause.message : String(err.cause)})` : "";
  const hint = isBusy(err)
    ? `: another process holds the database file's write lock for more than ${BUSY_BUDGET_MS / 1000} s (a reconciler stopped in the middle of a write keeps it until it runs again or dies; use sqld for failover that survives a stopped process)`
    : "";
  return `${message}${cause}${hint}`.replace(/\s*\n\s*/g, "; ");
}

/**
 * `host/pid/start/nonce`: start is the process's start time in clock ticks, so a reused pid
 * is told apart; the nonce tells two reconcilers of one process apart (tests).
 */
export function processHolder(): string {
  return `${hostname()}/${process.pid}/${procStat(process.pid)?.startTime ?? 0}/${randomBytes(3).toString("hex")}`;
}

/** A holder on this machine whose process is gone need not be waited for (a crash and restart). */
function holderIsGone(holder: string): boolean {
  const [host, pid, start] = holder.split("/");
  if (host !== hostname() || pid === undefined || start === undefined) return false;
  const p = Number(pid);
  const s = Number(start);
  if (!Number.isInteger(p) || !Number.isInteger(s) || s === 0) return false;
  return !processAlive(p, s);
}

/**
 * Runs the election every `retryMs` and reports changes until stopped. A round never waits
 * for what a change starts (leading, standing down): changes are handed on in order, one at
 * a time, while the rounds go on.
 */
export class LeaseKeeper {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private stepping: Promise<unknown> | undefined;
  /** The changes handed on so far, in order: each runs after the one before. */
  private changes: Promise<void> = Promise.resolve();
  /** The last error said, and when: a failure is said when it changes, and every 30 s while it lasts. */
  private lastError: { text: string; at: number } | undefined;

  constructor(
    readonly lease: LeaderLease,
    private readonly onChange: (change: LeaseChange) => void | Promise<void>,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Runs the first round now and resolves once its change is handed on and done, so a lone
   * reconciler leads at once; a failure to start leading is thrown (the start fails), not logged.
   */
  async start(): Promise<void> {
    this.stopped = false;
    const change = await this.round();
    if (change !== undefined) await this.hand(change, true);
  }

  /** Ends the rounds; waits for the change being handed on (a stand-down) and gives the lease up. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.stepping?.catch(() => undefined);
    await this.changes;
    await this.lease.release().catch((err: unknown) => this.log(`releasing the leader lease: ${leaseErrorText(err)}`));
  }

  /** One round; the next is scheduled before the change it found is handed on. */
  private async round(): Promise<LeaseChange | undefined> {
    if (this.stopped) return undefined;
    this.timer = undefined;
    let change: LeaseChange | undefined;
    const stepping = this.lease.step();
    this.stepping = stepping;
    try {
      change = await stepping;
      if (this.lastError !== undefined) this.log("leader lease: the database answers again");
      this.lastError = undefined;
    } catch (err) {
      // The store cannot be written: a leader stops acting once its renew deadline passes.
      const text = leaseErrorText(err);
      const now = performance.now();
      if (this.lastError?.text !== text || now - this.lastError.at >= 30_000) {
        this.log(`leader lease: ${text}`);
        this.lastError = { text, at: now };
      }
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.next(), this.lease.timing.retryMs);
    return this.stopped ? undefined : change;
  }

  private async next(): Promise<void> {
    const change = await this.round();
    if (change !== undefined) void this.hand(change, false);
  }

  /** Hands a change on after the ones before it. */
  private hand(change: LeaseChange, first: boolean): Promise<void> {
    const run = this.changes.then(async () => {
      if (this.stopped && change.leading) return;
      try {
        await this.onChange(change);
      } catch (err) {
        if (first) throw err;
        // Could not start leading (or stand down cleanly): give the lease back so that this
        // reconciler, or another, tries again.
        this.log(`leader lease: ${err instanceof Error ? err.message : String(err)}; giving the lease back`);
        await this.lease.release().catch(() => undefined);
      }
    });
    this.changes = run.catch(() => undefined);
    return run;
  }
}
