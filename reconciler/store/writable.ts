// Whether the store can still be written, for /readyz and the reconcile loop. A
// process that opened a database keeps working on its open file whatever happens to
// the path, so "the connection answers SELECT 1" says little: this checks the path
// (deleted, replaced, made unwritable), the free space beside it, a real write, and
// every error any query of the store's client has seen (corruption, a full disk).
import type { Client, Transaction } from "@libsql/client";
import { accessSync, constants, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";

export type StoreProblem = "corrupt" | "replaced" | "deleted" | "unwritable" | "full" | "locked" | "unreachable";

export interface StoreHealth {
  readonly ready: boolean;
  /** "ok", or one line naming the database: what is wrong and what to do. */
  readonly reason: string;
  readonly problem?: StoreProblem;
  /** Only a restart clears it (corruption, a replaced file): the open file is not the one at the path. */
  readonly sticky: boolean;
}

const OK: StoreHealth = { ready: true, reason: "ok", sticky: false };

/** Below this much free space beside the database the store is "full" even before a write fails. */
export const MIN_FREE_BYTES = 1 << 20;
/** A full disk observed from a failed write clears once this much more is free than then. */
const FREED_BYTES = 1 << 20;
/** At most one write probe in this window; the path checks (a few syscalls) run on every check. */
const MIN_WRITE_INTERVAL_MS = 1000;
/** How long the probe may find the write lock taken before that counts as not ready. */
const LOCKED_LIMIT_MS = 30_000;

/**
 * How a libSQL error reads, by its SQLite code or SQLite's own wording. Only SQLite's
 * corruption messages count: "malformed JSON" from a json function is the caller's bug.
 */
export function classifyError(err: unknown): "corrupt" | "full" | "unwritable" | "busy" | "other" {
  const code = err instanceof Error && "code" in err ? String(err.code) : "";
  const text = `${code} ${err instanceof Error ? err.message : String(err)}`;
  if (/\bSQLITE_(CORRUPT|NOTADB)|database disk image is malformed|malformed database schema|file is not a database/.test(text)) return "corrupt";
  if (/\bSQLITE_FULL\b|database or disk is full/.test(text)) return "full";
  if (/\bSQLITE_(BUSY|LOCKED)|database is locked|database table is locked/.test(text)) return "busy";
  if (/\bSQLITE_(READONLY|IOERR|CANTOPEN|PERM)|attempt to write a readonly database|disk I\/O error/.test(text)) return "unwritable";
  return "other";
}

export interface HealthMonitorOptions {
  /** For messages: the file path or the redacted URL. */
  location: string;
  /** The database file, for file databases (not `:memory:`): its identity and free space are checked. */
  filePath?: string;
  /** One tiny real write; throws what the database threw. */
  probeWrite: () => Promise<void>;
  /** Told once per change of readiness (not per probe). */
  log?: (line: string) => void;
  /** Told the health each probe finds (the database's dependency: last success, last error). */
  probed?: (health: StoreHealth) => void;
  now?: () => number;
}

export class StoreHealthMonitor {
  private state: StoreHealth = OK;
  /** Any query met corruption, or the path now names another file: only a restart clears these. */
  private corruption: StoreHealth | undefined;
  private replaced: StoreHealth | undefined;
  /** A write failed with SQLITE_FULL; free bytes beside the file at the time (undefined when unknown). */
  private fullAt: { free: number | undefined; text: string } | undefined;
  /** A write failed as unwritable; cleared by the next good probe. */
  private unwritable: string | undefined;
  /** The probe's write failed otherwise (a remote server unreachable); cleared by the next good probe. */
  private writeFailure: StoreHealth | undefined;
  private busySince: number | undefined;
  private readonly identity: { dev: number; ino: number } | undefined;
  private lastWriteAt = -Infinity;
  private inFlight: Promise<StoreHealth> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: HealthMonitorOptions) {
    this.now = opts.now ?? Date.now;
    if (opts.filePath !== undefined) {
      const st = statSync(opts.filePath);
      this.identity = { dev: st.dev, ino: st.ino };
    }
  }

  /** The last known state: probes and every failed query update it. No I/O. */
  current(): StoreHealth {
    return this.state;
  }

  /**
   * Checks the path now, and writes unless a write probe ran within the last second
   * (concurrent callers share one): /readyz can be polled often and stays cheap.
   */
  check(): Promise<StoreHealth> {
    const fileProblem = this.checkFile();
    if (fileProblem !== undefined || (this.inFlight === undefined && this.now() - this.lastWriteAt < MIN_WRITE_INTERVAL_MS)) {
      this.set(this.verdict(fileProblem));
      return Promise.resolve(this.state);
    }
    this.inFlight ??= this.probeWrite().finally(() => {
      this.lastWriteAt = this.now();
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Background probes, so that the loop's view and the log stay current without /readyz polls. */
  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.timer !== undefined) return;
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Every failed query of the store's client comes here. */
  observe(err: unknown): void {
    const kind = classifyError(err);
    const text = oneLine(err);
    if (kind === "corrupt") {
      this.corruption ??= {
        ready: false,
        problem: "corrupt",
        sticky: true,
        reason: `database ${this.opts.location} is corrupt (${text}); restore it from a backup or move it aside, then restart navarch`,
      };
    } else if (kind === "full") {
      this.fullAt ??= { free: this.freeBytes(), text };
    } else if (kind === "unwritable") {
      this.unwritable = text;
    } else {
      return;
    }
    this.set(this.verdict(undefined));
  }

  private async probeWrite(): Promise<StoreHealth> {
    try {
      await this.opts.probeWrite();
      this.unwritable = undefined;
      this.writeFailure = undefined;
      this.busySince = undefined;
      // Without a filesystem to look at (remote, in memory), a good write is the only sign of space.
      if (this.fullAt !== undefined && this.freeBytes() === undefined) this.fullAt = undefined;
    } catch (err) {
      const kind = classifyError(err);
      if (kind === "busy") {
        // Someone else holds the write lock: that says nothing yet, unless it lasts.
        this.busySince ??= this.now();
      } else if (kind === "other") {
        this.writeFailure = {
          ready: false,
          problem: "unreachable",
          sticky: false,
          reason: `database ${this.opts.location} cannot be written (${oneLine(err)})`,
        };
      } else {
        this.observe(err);
      }
    }
    this.set(this.verdict(undefined));
    return this.state;
  }

  /** The worst problem known, sticky ones first. */
  private verdict(fileProblem: StoreHealth | undefined): StoreHealth {
    if (this.corruption) return this.corruption;
    if (this.replaced) return this.replaced;
    if (fileProblem) return fileProblem;
    const loc = this.opts.location;
    if (this.fullAt !== undefined) {
      const free = this.freeBytes();
      const freed = free !== undefined && (this.fullAt.free === undefined || free >= this.fullAt.free + FREED_BYTES);
      if (!freed) {
        return {
          ready: false,
          problem: "full",
          sticky: false,
          reason: `disk full: a write to database ${loc} failed (${this.fullAt.text}); free space on its filesystem`,
        };
      }
      this.fullAt = undefined;
    }
    if (this.writeFailure !== undefined) return this.writeFailure;
    if (this.unwritable !== undefined) {
      return {
        ready: false,
        problem: "unwritable",
        sticky: false,
        reason: `database ${loc} cannot be written (${this.unwritable}); check the disk and the file's permissions`,
      };
    }
    if (this.busySince !== undefined && this.now() - this.busySince >= LOCKED_LIMIT_MS) {
      const s = Math.round((this.now() - this.busySince) / 1000);
      return {
        ready: false,
        problem: "locked",
        sticky: false,
        reason: `database ${loc} has been locked by another connection for ${s} s; find the process holding it`,
      };
    }
    return OK;
  }

  /** Path checks without opening the file (closing any descriptor of it would drop SQLite's locks). */
  private checkFile(): StoreHealth | undefined {
    const path = this.opts.filePath;
    if (path === undefined || this.identity === undefined) return undefined;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch (err) {
      if (errno(err) === "ENOENT") {
        return {
          ready: false,
          problem: "deleted",
          sticky: false,
          reason: `database file ${path} was deleted while navarch had it open (writes go to the unlinked file and are lost at exit); put it back, or restore it from a backup and restart navarch`,
        };
      }
      return { ready: false, problem: "unwritable", sticky: false, reason: `database file ${path} cannot be checked (${oneLine(err)})` };
    }
    if (st.dev !== this.identity.dev || st.ino !== this.identity.ino) {
      this.replaced = {
        ready: false,
        problem: "replaced",
        sticky: true,
        reason: `database file ${path} was replaced while navarch had it open; restart navarch to use the file now at that path`,
      };
      return this.replaced;
    }
    for (const file of [path, `${path}-wal`]) {
      try {
        // access(2) answers EPERM for an immutable file and EROFS on a read-only mount, root or not.
        accessSync(file, constants.R_OK | constants.W_OK);
      } catch (err) {
        if (errno(err) === "ENOENT" && file !== path) continue;
        return {
          ready: false,
          problem: "unwritable",
          sticky: false,
          reason: `database file ${file} cannot be written (${oneLine(err)}); check the disk and the file's attributes and permissions`,
        };
      }
    }
    const free = this.freeBytes();
    if (free !== undefined && free < MIN_FREE_BYTES) {
      return {
        ready: false,
        problem: "full",
        sticky: false,
        reason: `disk full: ${Math.floor(free / 1024)} KiB free on the filesystem of database ${path} (under ${MIN_FREE_BYTES / 1024} KiB); free space there`,
      };
    }
    return undefined;
  }

  private freeBytes(): number | undefined {
    const path = this.opts.filePath;
    if (path === undefined) return undefined;
    try {
      const s = statfsSync(dirname(path));
      // root may use the blocks reserved for it; everyone else only the available ones.
      return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize;
    } catch {
      return undefined;
    }
  }

  private set(next: StoreHealth): void {
    const prev = this.state;
    this.state = next;
    this.opts.probed?.(next);
    if (prev.ready === next.ready && prev.problem === next.problem) return;
    if (next.ready) this.opts.log?.(`store: ready again (was: ${prev.reason})`);
    else this.opts.log?.(`store: not ready: ${next.reason}`);
  }
}

/**
 * The client with every call observed: drizzle and raw callers alike go through it, so a
 * corruption or full-disk error from any query reaches the health monitor.
 */
export function observeClient(client: Client, observe: (err: unknown) => void): Client {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === "transaction") {
        return async (...args: unknown[]) => observeTransaction(await watched(() => fn.apply(target, args) as Promise<Transaction>, observe), observe);
      }
      if (prop === "execute" || prop === "batch" || prop === "executeMultiple" || prop === "migrate") {
        return (...args: unknown[]) => watched(() => fn.apply(target, args) as Promise<unknown>, observe);
      }
      return fn.bind(target);
    },
  });
}

function observeTransaction(tx: Transaction, observe: (err: unknown) => void): Transaction {
  return new Proxy(tx, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === "execute" || prop === "batch" || prop === "executeMultiple" || prop === "commit") {
        return (...args: unknown[]) => watched(() => fn.apply(target, args) as Promise<unknown>, observe);
      }
      return fn.bind(target);
    },
  });
}

async function watched<T>(call: () => Promise<T>, observe: (err: unknown) => void): Promise<T> {
  try {
    return await call();
  } catch (err) {
    observe(err);
    throw err;
  }
}

function errno(err: unknown): string | undefined {
  return err instanceof Error && "code" in err ? String(err.code) : undefined;
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, "; ");
}
