// Opens the reconciler's libSQL database (embedded file by default, or a remote
// sqld URL), applies the embedded migrations, and turns every way that can fail
// into a StoreError that names the database and says what to do. A file database is
// checked for corruption before anything writes to it, and the open store watches its
// own health (store/writable.ts) for /readyz and the reconcile loop.
import { createClient, type Client } from "@libsql/client";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import * as tables from "../../schema/db.ts";
import { StoreHealthMonitor, observeClient, type StoreHealth } from "./writable.ts";
import { MIGRATIONS } from "./migrations/index.ts";
import { quarantineUnreadableText, type QuarantinedValue } from "./quarantine.ts";
import { openFileClient } from "./connection.ts";
import { FILE_CONNECTION_PRAGMAS, SCRATCH_CONNECTION_PRAGMAS, SIDE_CONNECTION_PRAGMAS } from "./pragmas.ts";
import { newWriteLock, serializeWrites } from "./write-lock.ts";

export type { StoreHealth } from "./writable.ts";

/** drizzle over the store's client; `$client` is that client, for a batch of raw statements (ingest/group-commit.ts). */
export type Db = LibSQLDatabase<typeof tables> & { $client: Client };

export class StoreError extends Error {
  override readonly name = "StoreError";
}

export interface Store {
  readonly db: Db;
  readonly client: Client;
  /** Where the data lives, for messages: a file path or the remote URL without credentials. */
  readonly location: string;
  /** True once the schema is current; /readyz reports it. */
  readonly migrated: boolean;
  /** Values that were not UTF-8 when the store opened, repaired then (store/quarantine.ts). */
  readonly quarantined: readonly QuarantinedValue[];
  /** Cheap liveness probe of the database connection. */
  ping(): Promise<boolean>;
  /** The last known health, without I/O: for the reconcile loop to consult each pass. */
  health(): StoreHealth;
  /** Probes now (a real write and the file's checks; at most once a second, shared): for /readyz. */
  checkHealth(): Promise<StoreHealth>;
  /** An error a query met on another connection to this database (the ingest worker's), for the health monitor. */
  observe(err: unknown): void;
  /** Runs a write of another connection of this process (the ingest worker's) while none of the store's runs (store/write-lock.ts). */
  exclusive<T>(write: () => Promise<T>): Promise<T>;
  /**
   * A connection of its own to the same database, beside the store's pool and its write lock,
   * that never waits long: a file's with no busy wait (SQLITE_BUSY at once), a server's with a
   * deadline of `deadlineMs` per request. The leader lease's (safety/lease.ts). In memory (tests):
   * the store's own.
   */
  sideConnection(deadlineMs: number): { db: Db; close(): void };
  close(): void;
}

export interface StoreOptions {
  /** `file:PATH`, `libsql://…`, `http(s)://…`, or `:memory:`. */
  url: string;
  authToken?: string;
  /** Told when the store's readiness changes. */
  log?: (line: string) => void;
  /** Told the health each probe finds. */
  probed?: (health: StoreHealth) => void;
  /** Milliseconds between background health probes (default 5000; 0: only when asked). */
  healthProbeIntervalMs?: number;
  /** A file nothing needs after this process (the simulator's): never synced (SCRATCH_CONNECTION_PRAGMAS). */
  scratch?: boolean;
}

/**
 * The longest one request to a database server may take: a server that stopped answering (a
 * paused sqld, a dropped route) fails the statement instead of holding a pass, a stop or the
 * start-up for ever.
 */
const REQUEST_DEADLINE_MS = 30_000;

/** fetch with a deadline per request, for @libsql/client's HTTP transport. */
function fetchWithin(deadlineMs: number): typeof fetch {
  const timed = (input: string | URL | Request, init?: RequestInit) => {
    const signals = [AbortSignal.timeout(deadlineMs), ...(init?.signal ? [init.signal] : [])];
    return fetch(input, { ...init, signal: AbortSignal.any(signals) });
  };
  return timed as typeof fetch;
}

/** Databases up to this size get the full integrity_check at start; larger ones quick_check. */
const INTEGRITY_CHECK_MAX_BYTES = 256 * 2 ** 20;

/** The database URL used when the config names none: a file under the data directory. */
export function defaultDatabaseUrl(dataDir: string): string {
  return `file:${resolve(dataDir, "navarch.db")}`;
}

export async function openStore(options: StoreOptions): Promise<Store> {
  const { url } = options;
  const filePath = url.startsWith("file:") ? url.slice("file:".length) : undefined;
  const location = filePath ?? redactUrl(url);
  if (filePath !== undefined) prepareDatabaseFile(filePath);

  const connectionPragmas = options.scratch === true ? SCRATCH_CONNECTION_PRAGMAS : FILE_CONNECTION_PRAGMAS;
  let client: Client;
  let quarantined: QuarantinedValue[] = [];
  try {
    // A file's every connection gets its pragmas (store/connection.ts says why).
    client = isFileDatabase(filePath)
      ? openFileClient(url, connectionPragmas)
      : createClient({ url, ...(options.authToken ? { authToken: options.authToken } : {}), fetch: fetchWithin(REQUEST_DEADLINE_MS) });
  } catch (err) {
    throw new StoreError(describeOpenFailure(location, err));
  }
  try {
    // WAL lets readers (API) run beside the writer; it is the file's, kept once set.
    const pragmas = isFileDatabase(filePath)
      ? ["PRAGMA journal_mode = WAL"]
      : filePath !== undefined
        ? ["PRAGMA journal_mode = WAL", ...connectionPragmas]
        : ["PRAGMA foreign_keys = ON"];
    for (const pragma of pragmas) await client.execute(pragma);
    // Before anything writes to it: a corrupt file would otherwise start, answer ready,
    // and fail every reconcile pass.
    if (isFileDatabase(filePath)) await checkIntegrity(client, filePath);
    await migrate(client, location);
    // Before anything reads a table: a value libSQL cannot decode would abort the process.
    quarantined = await quarantineUnreadableText(client, Date.now());
  } catch (err) {
    client.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError(describeOpenFailure(location, err));
  }

  // File databases are probed on a connection of their own without a busy timeout: a
  // probe that meets a transaction's write lock must fail at once, not block the event
  // loop (libSQL's busy wait is synchronous) while that transaction waits to commit.
  let probeClient: Client | undefined;
  let monitor: StoreHealthMonitor;
  try {
    probeClient = isFileDatabase(filePath) ? openFileClient(url, ["PRAGMA synchronous = NORMAL"], 1) : undefined;
    const writer = probeClient ?? client;
    monitor = new StoreHealthMonitor({
      location,
      ...(isFileDatabase(filePath) ? { filePath } : {}),
      ...(options.log ? { log: options.log } : {}),
      ...(options.probed ? { probed: options.probed } : {}),
      probeWrite: async () => {
        await writer.execute({
          sql: "INSERT INTO store_probe (id, probed_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
          args: [Date.now()],
        });
      },
    });
  } catch (err) {
    probeClient?.close();
    client.close();
    throw new StoreError(describeOpenFailure(location, err));
  }
  monitor.start(options.healthProbeIntervalMs ?? 5000);
  if (quarantined.length > 0) {
    const where = quarantined.map((q) => `${q.column} row ${q.rowid}${q.storedAs === "deleted" ? " (row deleted)" : ""}`).join(", ");
    options.log?.(
      `store: quarantined ${quarantined.length} value${quarantined.length === 1 ? "" : "s"} that were not UTF-8 and could not be read (${where}); each now holds U+FFFD for what could not be decoded, and its original bytes are in the audit log (text_quarantined)`,
    );
  }

  const writeLock = newWriteLock();
  const observed = observeClient(serializeWrites(client, writeLock), (err) => monitor.observe(err));
  const db = drizzle(observed, { schema: tables });
  return {
    db,
    client: observed,
    location,
    migrated: true,
    quarantined,
    async ping() {
      try {
        await observed.execute("SELECT 1");
        return true;
      } catch {
        return false;
      }
    },
    health: () => monitor.current(),
    checkHealth: () => monitor.check(),
    observe: (err) => monitor.observe(err),
    exclusive: (write) => writeLock.runExclusive(write),
    sideConnection(deadlineMs) {
      if (filePath === ":memory:" || filePath === "" || url === "file::memory:") return { db, close: () => undefined };
      const side = isFileDatabase(filePath)
        ? openFileClient(url, SIDE_CONNECTION_PRAGMAS, 1)
        : createClient({ url, ...(options.authToken ? { authToken: options.authToken } : {}), fetch: fetchWithin(deadlineMs) });
      return { db: drizzle(side, { schema: tables }) as Db, close: () => side.close() };
    },
    close: () => {
      monitor.stop();
      probeClient?.close();
      client.close();
    },
  };
}

/** A database on disk (not `:memory:`), whose file can be checked. */
function isFileDatabase(filePath: string | undefined): filePath is string {
  return filePath !== undefined && filePath !== "" && !filePath.startsWith(":memory:");
}

/**
 * integrity_check (pages, and every index against its table) where the file is small
 * enough to read at start, quick_check (pages only) above that; both stop at the first
 * problem. About 120 ms and 50 ms for 10,000 nodes with 8 GPUs each (35 MB) in the page cache.
 */
async function checkIntegrity(client: Client, path: string): Promise<void> {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // not created yet: nothing to check
  }
  const pragma = size <= INTEGRITY_CHECK_MAX_BYTES ? "integrity_check" : "quick_check";
  const rs = await client.execute(`PRAGMA ${pragma}(1)`);
  const first = rs.rows[0]?.[0];
  if (rs.rows.length === 1 && first === "ok") return;
  const detail = rs.rows
    .map((r) => String(r[0]))
    .join("; ")
    .replace(/\*\*\* in database main \*\*\*\s*/g, "")
    .replace(/\s*\n\s*/g, "; ");
  throw new StoreError(`database ${path} is corrupt (${pragma}: ${detail}); restore it from a backup or move it aside to start empty`);
}

const MIGRATIONS_TABLE = "__navarch_migrations";

/**
 * Applies each embedded migration the database lacks, each in its own transaction,
 * and refuses a database that a newer navarch migrated (its tags are unknown here)
 * or whose applied migration differs from ours (edited after release).
 */
async function migrate(client: Client, location: string): Promise<void> {
  await client.execute(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (tag TEXT PRIMARY KEY, hash TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const applied = await client.execute(`SELECT tag, hash FROM ${MIGRATIONS_TABLE}`);
  const appliedHashes = new Map(applied.rows.map((r) => [String(r.tag), String(r.hash)]));
  const known = new Set(MIGRATIONS.map((m) => m.tag));
  for (const tag of appliedHashes.keys()) {
    if (!known.has(tag)) {
      throw new StoreError(
        `database ${location} was migrated by a newer navarch (migration ${tag} is unknown to this version); upgrade navarch or restore a backup`,
      );
    }
  }
  for (const migration of MIGRATIONS) {
    const hash = new Bun.CryptoHasher("sha256").update(migration.sql).digest("hex");
    const appliedHash = appliedHashes.get(migration.tag);
    if (appliedHash !== undefined) {
      if (appliedHash !== hash) {
        throw new StoreError(`database ${location}: migration ${migration.tag} differs from the one applied to it`);
      }
      continue;
    }
    const statements = migration.sql
      .split("--> statement-breakpoint")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    await client.batch(
      [...statements, { sql: `INSERT INTO ${MIGRATIONS_TABLE} (tag, hash, applied_at) VALUES (?, ?, ?)`, args: [migration.tag, hash, Date.now()] }],
      "write",
    );
  }
}

/** Creates the data directory and checks, before libSQL does, that the file can be written. */
function prepareDatabaseFile(path: string): void {
  if (path === ":memory:" || path === "") return;
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new StoreError(`cannot create data directory ${dir} for database ${path}: ${errorText(err)}`);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new StoreError(`database directory ${dir} is not writable by this user; fix its permissions or set server.data_dir`);
  }
  let isFile = false;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new StoreError(`database path ${path} exists but is not a regular file`);
    isFile = true;
  } catch (err) {
    if (err instanceof StoreError) throw err;
  }
  if (isFile) {
    try {
      accessSync(path, constants.R_OK | constants.W_OK);
    } catch {
      throw new StoreError(`database file ${path} is not readable and writable by this user; fix its permissions`);
    }
  }
}

function describeOpenFailure(location: string, err: unknown): string {
  const text = errorText(err);
  if (/not a database|malformed|SQLITE_NOTADB|SQLITE_CORRUPT/i.test(text)) {
    return `database ${location} is corrupt or not a libSQL/SQLite database (${text}); restore it from a backup or move it aside to start empty`;
  }
  if (/readonly|read-only|SQLITE_READONLY|SQLITE_CANTOPEN|permission/i.test(text)) {
    return `database ${location} cannot be written (${text}); check its permissions and the disk`;
  }
  if (/ECONNREFUSED|fetch failed|Unable to connect|ENOTFOUND/i.test(text)) {
    return `database server ${location} is unreachable (${text})`;
  }
  return `cannot open database ${location}: ${text}`;
}

/** A database URL without its credentials, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    u.username = "";
    u.search = "";
    return u.toString();
  } catch {
    return "(invalid database URL)";
  }
}

/** An error as one line (some SQLite messages carry newlines). */
export function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, "; ");
}
