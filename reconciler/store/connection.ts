// A client of a database file whose every connection is set up alike.
//
// Why: libSQL's client keeps a pool, and opens another connection whenever a transaction holds
// one and something else needs one. A PRAGMA run through the client sets only the connection
// that ran it; the others kept SQLite's defaults. A loaded reconciler had 11 connections, and
// all but the first waited for no lock (busy_timeout 0: SQLITE_BUSY at once beside another
// process's write) and synced the WAL on every commit (synchronous = FULL), stalling the event
// loop. The client has no hook for a new connection, so its pool is subclassed here (the
// classes are exported, though marked private; test/store.test.ts checks every connection).
import { ConnectionPool, Sqlite3Client } from "@libsql/client/sqlite3";
import type { Client } from "@libsql/client";

export type Connection = ReturnType<ConnectionPool["acquireSync"]>;

class ConfiguredPool extends ConnectionPool {
  readonly #configured = new WeakSet<Connection>();

  constructor(
    path: string,
    maxConnections: number,
    private readonly pragmas: readonly string[],
  ) {
    super(path, {}, maxConnections);
  }

  // Every other way to a connection (acquire, a waiter handed one on release) goes through
  // here or gets one that did.
  override acquireSync(forTransaction?: boolean): Connection {
    const db = super.acquireSync(forTransaction);
    if (!this.#configured.has(db)) {
      try {
        for (const pragma of this.pragmas) db.exec(pragma);
      } catch (err) {
        this.release(db);
        throw err;
      }
      this.#configured.add(db);
    }
    return db;
  }
}

/**
 * A client of the database file at `url` (`file:PATH`; not `:memory:`, whose connections are
 * each a database of their own) running `pragmas` on each connection it opens.
 * `concurrency`: most connections at once (libSQL's default, 20).
 */
export function openFileClient(url: string, pragmas: readonly string[], concurrency = 20): Client {
  const pool = new ConfiguredPool(url.slice("file:".length), concurrency, pragmas);
  try {
    // As createClient does: fail now if the file cannot be opened at all.
    const db = pool.acquireSync();
    try {
      db.prepare("SELECT 1").get();
    } finally {
      pool.release(db);
    }
  } catch (err) {
    pool.close();
    throw err;
  }
  return new Sqlite3Client(pool, "number");
}

/**
 * One connection to the database file at `url`, set up as the client's are: for a thread that
 * runs its statements itself (the ingest worker, store/prepared.ts). `close` closes it.
 */
export function openFileConnection(url: string, pragmas: readonly string[]): { db: Connection; close: () => void } {
  const pool = new ConfiguredPool(url.slice("file:".length), 1, pragmas);
  try {
    return { db: pool.acquireSync(), close: () => pool.close() };
  } catch (err) {
    pool.close();
    throw err;
  }
}
