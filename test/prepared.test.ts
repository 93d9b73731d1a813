// The ingest worker's connection (store/prepared.ts): a batch is one transaction whose
// statements are prepared once and kept; a failing statement rolls the whole batch back and
// throws SQLite's code, and the connection goes on working.
import { afterEach, expect, test } from "bun:test";
import { PreparedConnection } from "../reconciler/store/prepared.ts";
import { classifyError } from "../reconciler/store/writable.ts";
import { FILE_CONNECTION_PRAGMAS } from "../reconciler/store/pragmas.ts";
import { tempDir } from "./support.ts";

const open: PreparedConnection[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

function connect(): PreparedConnection {
  const c = PreparedConnection.open(`file:${tempDir()}/prepared.db`, FILE_CONNECTION_PRAGMAS);
  open.push(c);
  return c;
}

const INSERT = "INSERT INTO t (id, v) SELECT value->>0, value->>1 FROM json_each(?1) RETURNING id, v";
const COUNT = "SELECT count(*) AS n, coalesce(sum(v), 0) AS total FROM t";

test("a batch commits its statements together and answers each one's rows by column name", async () => {
  const c = connect();
  await c.batch([{ sql: "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL)", args: [] }], "write");
  const results = await c.batch(
    [
      {
        sql: INSERT,
        args: [
          JSON.stringify([
            ["a", 1],
            ["b", 2],
          ]),
        ],
      },
      { sql: "UPDATE t SET v = v * 10 WHERE id = ?1", args: ["a"] },
      { sql: COUNT, args: [] },
    ],
    "write",
  );
  expect(results.map((r) => r.rows)).toEqual([
    [
      { id: "a", v: 1 },
      { id: "b", v: 2 },
    ],
    [],
    [{ n: 2, total: 12 }],
  ]);
  // The journal mode is the file's; the connection's own pragmas were applied.
  expect((await c.execute("PRAGMA busy_timeout")).rows).toEqual([{ timeout: 5000 }]);
});

test("a failing statement rolls the whole batch back, throws SQLite's code, and the connection goes on", async () => {
  const c = connect();
  await c.batch([{ sql: "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL)", args: [] }], "write");
  await c.batch([{ sql: INSERT, args: [JSON.stringify([["a", 1]])] }], "write");
  const failed = c.batch(
    [
      { sql: INSERT, args: [JSON.stringify([["b", 2]])] },
      { sql: INSERT, args: [JSON.stringify([["a", 3]])] }, // the same id again
    ],
    "write",
  );
  const err = await failed.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  expect(String((err as { code?: unknown }).code)).toStartWith("SQLITE_CONSTRAINT");
  expect(classifyError(err)).toBe("other"); // one request's fault: ingest.ts retries the group one by one
  // Nothing of the failed batch stayed, and the next batch runs on the same statements.
  expect((await c.batch([{ sql: COUNT, args: [] }], "write"))[0]!.rows).toEqual([{ n: 1, total: 1 }]);
  await c.batch([{ sql: INSERT, args: [JSON.stringify([["b", 2]])] }], "write");
  expect((await c.batch([{ sql: COUNT, args: [] }], "write"))[0]!.rows).toEqual([{ n: 2, total: 3 }]);
});

test("each statement is prepared once, however many batches run it", async () => {
  const c = connect();
  await c.batch([{ sql: "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL)", args: [] }], "write");
  for (let i = 0; i < 200; i++) await c.batch([{ sql: INSERT, args: [JSON.stringify([[`n${i}`, i]])] }], "write");
  const prepared = (c as unknown as { statements: Map<string, unknown> }).statements;
  expect([...prepared.keys()].sort()).toEqual(["BEGIN IMMEDIATE", "COMMIT", "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL)", INSERT].sort());
  expect((await c.batch([{ sql: COUNT, args: [] }], "write"))[0]!.rows).toEqual([{ n: 200, total: 19900 }]);
});
