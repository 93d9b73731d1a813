// One writer at a time among this process's connections to a database file: the store's own
// (the reconcile loop, the API) and the ingest worker's (ingest/writer.ts).
//
// Why not leave it to SQLite's lock: libSQL's embedded driver waits for a busy lock by
// sleeping on the calling thread (busy_timeout: 1, 2, 5, … 100 ms at a time). A write of
// the loop's that met a group's commit slept, and the event loop with it: 60 ms gaps with
// groups of 3,000 heartbeats (test/ingest-writer.test.ts), against 6 ms with this lock.
// Waiting here is asynchronous and first come, first served: HTTP goes on, and a write waits
// for the group in flight, never for a stream of them.
import type { Client, InStatement, Transaction, TransactionMode } from "@libsql/client";
import { Mutex, withTimeout, type MutexInterface } from "async-mutex";

export type WriteLock = MutexInterface;

/**
 * Longest a write waits for another: a group commit takes milliseconds. Past this something
 * holds the lock that never lets go (a write to the store from inside one of its own
 * transactions), and the write fails instead of waiting for ever.
 */
const WAIT_MS = 10_000;

export function newWriteLock(): WriteLock {
  return withTimeout(new Mutex(), WAIT_MS, new Error(`a database write waited ${WAIT_MS / 1000} s for another of this process's writes to finish`));
}

const isRead = (stmt: InStatement) => /^\s*select\b/i.test(typeof stmt === "string" ? stmt : stmt.sql);

/** The client with every write (anything but a SELECT, a write batch, a write transaction until it ends) under `lock`. */
export function serializeWrites(client: Client, lock: WriteLock): Client {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => Promise<unknown>;
      if (prop === "execute")
        return (stmt: InStatement, ...rest: unknown[]) =>
          isRead(stmt) ? fn.call(target, stmt, ...rest) : lock.runExclusive(() => fn.call(target, stmt, ...rest));
      if (prop === "batch")
        return (stmts: InStatement[], mode?: TransactionMode) =>
          mode === "read" ? fn.call(target, stmts, mode) : lock.runExclusive(() => fn.call(target, stmts, mode));
      if (prop === "executeMultiple" || prop === "migrate") return (...args: unknown[]) => lock.runExclusive(() => fn.apply(target, args));
      if (prop === "transaction") {
        return async (mode?: TransactionMode) => {
          if (mode === "read") return fn.call(target, mode);
          const release = await lock.acquire();
          try {
            return releasingOnEnd((await fn.call(target, mode)) as Transaction, release);
          } catch (err) {
            release();
            throw err;
          }
        };
      }
      return fn.bind(target);
    },
  });
}

/** The transaction, releasing the lock once it commits, rolls back or closes. */
function releasingOnEnd(tx: Transaction, release: () => void): Transaction {
  let released = false;
  const once = () => {
    if (!released) {
      released = true;
      release();
    }
  };
  return new Proxy(tx, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === "commit" || prop === "rollback")
        return async () => {
          try {
            return await (fn.call(target) as Promise<unknown>);
          } finally {
            once();
          }
        };
      if (prop === "close")
        return () => {
          try {
            return fn.call(target);
          } finally {
            once();
          }
        };
      return fn.bind(target);
    },
  });
}
