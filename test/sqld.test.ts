// The reconciler's store on a real libSQL server (sqld, test/sqld/harness.ts), as two
// reconcilers sharing one fleet through server.database_url will use it: migrations,
// visibility between clients, interactive transactions, compare-and-set (what the
// leader lease relies on), how two concurrent write transactions behave, and the round
// trip of one small write.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient, type Client } from "@libsql/client";
import { eq } from "drizzle-orm";
import { MIGRATIONS } from "../reconciler/store/migrations/index.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { nodes } from "../schema/db.ts";
import { ensureSqld, startSqld, type Sqld } from "./sqld/harness.ts";
import { tempDir } from "./support.ts";

// A lease-shaped table of the test's own (the real one's schema is not this test's subject).
const LEASE_TABLE = "CREATE TABLE IF NOT EXISTS sqld_test_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL)";

/** Compare-and-set: take the lease only if it is still at `epoch`; rows affected says who won. */
async function cas(c: Pick<Client, "execute">, holder: string, epoch: number): Promise<number> {
  const r = await c.execute({ sql: "UPDATE sqld_test_lease SET holder = ?, epoch = epoch + 1 WHERE name = 'leader' AND epoch = ?", args: [holder, epoch] });
  return r.rowsAffected;
}

async function lease(c: Client): Promise<{ holder: string; epoch: number }> {
  const r = await c.execute("SELECT holder, epoch FROM sqld_test_lease WHERE name = 'leader'");
  return { holder: String(r.rows[0]?.holder), epoch: Number(r.rows[0]?.epoch) };
}

async function resetLease(c: Client): Promise<void> {
  await c.batch([LEASE_TABLE, "DELETE FROM sqld_test_lease", "INSERT INTO sqld_test_lease VALUES ('leader', '', 0)"], "write");
}

/** Settles to the outcome and how long it took, never rejects. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: { code?: string; message: string } }> {
  const start = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - start, value };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { ms: performance.now() - start, error: { ...(e.code !== undefined ? { code: e.code } : {}), message: String(e.message ?? err) } };
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

let sqld: Sqld;
// Two reconcilers' stores (openStore: migrations, drizzle) …
let a: Store;
let b: Store;
// … and two plain clients for the transaction and lease checks, so that nothing else
// (a store's own background work) writes through them.
let c1: Client;
let c2: Client;

beforeAll(async () => {
  const t0 = performance.now();
  await ensureSqld();
  const t1 = performance.now();
  sqld = await startSqld();
  console.log(`sqld: ensure-sqld.sh ${Math.round(t1 - t0)} ms, start until SELECT 1 answers ${Math.round(performance.now() - t1)} ms (${sqld.url})`);
  a = await openStore({ url: sqld.url });
  b = await openStore({ url: sqld.url });
  c1 = createClient({ url: sqld.url });
  c2 = createClient({ url: sqld.url });
}, 120_000);

afterAll(async () => {
  a?.close();
  b?.close();
  c1?.close();
  c2?.close();
  await sqld?.stop();
});

/** On failure, what sqld printed helps more than the assertion alone. */
async function withLog(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    console.error(`sqld output:\n${sqld.output().slice(-4000)}`);
    throw err;
  }
}

describe("store on sqld", () => {
  test("openStore migrates it: the same tables as a file store, every migration recorded, reopening is a no-op", () =>
    withLog(async () => {
      const tables = async (c: Client) =>
        (
          await c.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_litestream%' ORDER BY name")
        ).rows
          .map((r) => String(r.name))
          .filter((n) => n !== "sqld_test_lease");
      const file = await openStore({ url: `file:${tempDir("navarch-sqld-file-")}/navarch.db` });
      const expected = await tables(file.client);
      file.close();
      expect(expected).toContain("nodes");
      expect(await tables(a.client)).toEqual(expected);
      const applied = await b.client.execute("SELECT tag FROM __navarch_migrations ORDER BY tag");
      expect(applied.rows.map((r) => String(r.tag))).toEqual(MIGRATIONS.map((m) => m.tag));
      // Opening once more (a second reconciler starting) applies nothing twice.
      const again = await openStore({ url: sqld.url });
      expect((await again.client.execute("SELECT count(*) AS n FROM __navarch_migrations")).rows[0]?.n).toBe(MIGRATIONS.length);
      expect(await again.ping()).toBe(true);
      again.close();
    }));

  test("a write through one store (raw and drizzle transaction) is seen at once by a second store", () =>
    withLog(async () => {
      // Only columns of the first migration, so this holds whatever later ones add.
      await a.client.execute({
        sql: "INSERT INTO nodes (id, state, state_changed_at, updated_at, hostname) VALUES (?, 'ready', 1000, 1000, ?)",
        args: ["gpu-node-1", "gpu-node-1"],
      });
      const host = async (s: Store) => (await s.db.select({ hostname: nodes.hostname }).from(nodes).where(eq(nodes.id, "gpu-node-1")))[0]?.hostname;
      expect(await host(b)).toBe("gpu-node-1");
      await b.db.transaction(async (tx) => {
        await tx.update(nodes).set({ hostname: "renamed" }).where(eq(nodes.id, "gpu-node-1"));
      });
      expect(await host(a)).toBe("renamed");
    }));

  test("interactive transaction: uncommitted writes are invisible to others, commit publishes, rollback discards", () =>
    withLog(async () => {
      await resetLease(c1);
      const tx = await c1.transaction("write");
      await tx.execute("UPDATE sqld_test_lease SET holder = 'a' WHERE name = 'leader'");
      expect((await tx.execute("SELECT holder FROM sqld_test_lease")).rows[0]?.holder).toBe("a");
      // A reader on another client is not blocked and sees the last committed state.
      const read = await timed(lease(c2));
      expect(read.value?.holder).toBe("");
      expect(read.ms).toBeLessThan(1000);
      await tx.commit();
      expect((await lease(c2)).holder).toBe("a");

      const tx2 = await c1.transaction("write");
      await tx2.execute("UPDATE sqld_test_lease SET holder = 'discarded' WHERE name = 'leader'");
      await tx2.rollback();
      expect((await lease(c2)).holder).toBe("a");
    }));

  test("compare-and-set (UPDATE … WHERE epoch = ?) counts rows affected as on a file, alone and racing", () =>
    withLog(async () => {
      // Two clients on one file, as two processes would have, each with a busy timeout.
      const path = `${tempDir("navarch-sqld-cas-")}/cas.db`;
      const file = createClient({ url: `file:${path}`, timeout: 5000 });
      await file.execute("PRAGMA journal_mode = WAL");
      const fileB = createClient({ url: `file:${path}`, timeout: 5000 });
      const run = async (c1: Client, c2: Client) => {
        await resetLease(c1);
        const out: number[] = [];
        out.push(await cas(c1, "a", 0)); // 1: took it
        out.push(await cas(c2, "b", 0)); // 0: stale epoch
        const tx = await c2.transaction("write");
        out.push(await cas(tx, "b", 1)); // 1 inside a transaction
        await tx.commit();
        out.push(await cas(c1, "a", 1)); // 0: b moved it on
        // Two contenders with the same expected epoch at once: exactly one wins.
        const raced = await Promise.all([cas(c1, "a", 2), cas(c2, "b", 2)]);
        out.push(raced[0]! + raced[1]!);
        // Either contender may win the race; the epoch says exactly one did.
        return { out, epoch: (await lease(c1)).epoch };
      };
      const onFile = await run(file, fileB);
      file.close();
      fileB.close();
      const onSqld = await run(c1, c2);
      expect(onSqld).toEqual(onFile);
      expect(onSqld.out).toEqual([1, 0, 1, 0, 1]);
      expect(onSqld.epoch).toBe(3);
    }));

  test("round trip of one small write", () =>
    withLog(async () => {
      await resetLease(c1);
      const samples = async (n: number, op: (i: number) => Promise<unknown>) => {
        for (let i = 0; i < 5; i++) await op(i); // connection warm-up
        const ms: number[] = [];
        for (let i = 0; i < n; i++) {
          const t = performance.now();
          await op(i);
          ms.push(performance.now() - t);
        }
        return ms.sort((x, y) => x - y);
      };
      const single = await samples(100, (i) => c1.execute({ sql: "UPDATE sqld_test_lease SET holder = ? WHERE name = 'leader'", args: [`w${i}`] }));
      const casTx = await samples(50, async (i) => {
        const tx = await c1.transaction("write");
        await cas(tx, `t${i}`, (await tx.execute("SELECT epoch FROM sqld_test_lease WHERE name = 'leader'")).rows[0]?.epoch as number);
        await tx.commit();
      });
      const fmt = (ms: number[]) => `median ${percentile(ms, 0.5).toFixed(2)} ms, p95 ${percentile(ms, 0.95).toFixed(2)} ms, max ${ms.at(-1)!.toFixed(2)} ms`;
      console.log(`sqld round trip, one UPDATE (autocommit, n=${single.length}): ${fmt(single)}`);
      console.log(`sqld round trip, write transaction SELECT + CAS UPDATE + COMMIT (n=${casTx.length}): ${fmt(casTx)}`);
      expect(percentile(single, 0.5)).toBeLessThan(250);
    }));

  test("two concurrent write transactions: the second waits for the first to commit (serialized, no SQLITE_BUSY)", () =>
    withLog(async () => {
      await resetLease(c1);
      const first = await c1.transaction("write");
      // BEGIN IMMEDIATE travels with the first statement, so the lock is taken here.
      expect(await cas(first, "a", 0)).toBe(1);
      const second = (async () => {
        const tx = await c2.transaction("write");
        const won = await cas(tx, "b", 0); // evaluated only once it holds the lock
        const seen = await tx.execute("SELECT holder, epoch FROM sqld_test_lease");
        await tx.commit();
        return { won, seen: { holder: String(seen.rows[0]?.holder), epoch: Number(seen.rows[0]?.epoch) } };
      })();
      const waiting = timed(second);
      await Bun.sleep(500);
      let settled = false;
      void waiting.then(() => (settled = true));
      await Bun.sleep(0);
      expect(settled).toBe(false); // still blocked behind `first`
      await first.commit();
      const outcome = await waiting;
      expect(outcome.error).toBeUndefined();
      // It ran after the first committed: its CAS on epoch 0 found epoch 1 and changed nothing.
      expect(outcome.value).toEqual({ won: 0, seen: { holder: "a", epoch: 1 } });
      expect(outcome.ms).toBeGreaterThanOrEqual(450);
      console.log(`second write transaction waited ${Math.round(outcome.ms)} ms, until the first committed`);
    }));

  test(
    "a write transaction that holds the lock 5 s while another waits is rolled back (TRANSACTION_TIMEOUT), and the waiter proceeds",
    () =>
      withLog(async () => {
        await resetLease(c1);
        const started = performance.now();
        const holder = await c1.transaction("write");
        expect(await cas(holder, "a", 0)).toBe(1);
        await Bun.sleep(2000);
        const waiter = timed(cas(c2, "b", 0));
        const w = await waiter;
        const sinceHolderBegan = performance.now() - started;
        expect(w.error).toBeUndefined();
        expect(w.value).toBe(1); // the holder's write was rolled back, so epoch 0 was still current
        expect(sinceHolderBegan).toBeGreaterThan(4500);
        expect(sinceHolderBegan).toBeLessThan(8000);
        const late = await timed(holder.commit());
        expect(late.error?.code).toBe("TRANSACTION_TIMEOUT");
        holder.close();
        expect(await lease(c1)).toEqual({ holder: "b", epoch: 1 });
        console.log(
          `waiter got the lock ${Math.round(w.ms)} ms after asking, ${Math.round(sinceHolderBegan)} ms after the holder's BEGIN; holder's commit: ${late.error?.code}`,
        );
      }),
    20_000,
  );

  test("a deferred transaction whose snapshot went stale fails its first write with SQLITE_BUSY at once (as on a file)", () =>
    withLog(async () => {
      await resetLease(c1);
      const tx = await c2.transaction("deferred");
      expect((await tx.execute("SELECT epoch FROM sqld_test_lease")).rows[0]?.epoch).toBe(0);
      expect(await cas(c1, "a", 0)).toBe(1);
      const upgrade = await timed(cas(tx, "b", 0));
      expect(upgrade.error?.code).toBe("SQLITE_BUSY");
      expect(upgrade.ms).toBeLessThan(1000);
      tx.close();
      expect(await lease(c1)).toEqual({ holder: "a", epoch: 1 });
    }));

  test("data survives sqld being killed and restarted on the same directory", () =>
    withLog(async () => {
      await resetLease(c1);
      expect(await cas(c1, "before-crash", 0)).toBe(1);
      const dir = sqld.dir;
      a.close();
      b.close();
      c1.close();
      c2.close();
      sqld.kill();
      await sqld.exited;
      sqld = await startSqld({ dir });
      a = await openStore({ url: sqld.url });
      b = await openStore({ url: sqld.url });
      c1 = createClient({ url: sqld.url });
      c2 = createClient({ url: sqld.url });
      expect(await lease(c2)).toEqual({ holder: "before-crash", epoch: 1 });
      const [row] = await a.db.select({ hostname: nodes.hostname }).from(nodes).where(eq(nodes.id, "gpu-node-1"));
      expect(row?.hostname).toBe("renamed");
    }));
});
