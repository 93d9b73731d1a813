// The ingest worker (ingest/writer.ts) and the write lock it shares with the store
// (store/write-lock.ts): a group written in the worker answers as one written on the event
// loop's thread; the store's writes wait for a group in flight without blocking the event
// loop, and a group waits for a store transaction.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { gpuReadings, pools } from "../schema/db.ts";
import type { Heartbeat } from "../schema/wire.ts";
import { CHECKPOINT_EVERY_MS, WorkerWriter, clientWriter } from "../reconciler/ingest/writer.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { seed } from "../bench/reconciler.ts";
import { tempDir } from "./support.ts";

const open: { store: Store; writer?: WorkerWriter }[] = [];
const logged: string[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.writer?.close();
    o.store.close();
  }
});

async function setUp(
  nodes = 20,
  checkpointed?: (ms: { beside: number; between: number }) => void,
  checkpointEveryMs?: number,
): Promise<{ store: Store; writer: WorkerWriter; ids: string[]; url: string }> {
  const url = `file:${tempDir()}/ingest.db`;
  const store = await openStore({ url, healthProbeIntervalMs: 0 });
  const ids = await seed(store, nodes, Date.now(), { origin: "registered" });
  const writer = await WorkerWriter.start(url, {
    observe: (err) => store.observe(err),
    exclusive: (write) => store.exclusive(write),
    fallback: clientWriter(store.db.$client),
    log: (line) => logged.push(line),
    ...(checkpointed ? { checkpointed } : {}),
    ...(checkpointEveryMs !== undefined ? { checkpointEveryMs } : {}),
  });
  if (writer === undefined) throw new Error("no ingest worker");
  open.push({ store, writer });
  return { store, writer, ids, url };
}

const heartbeat = (nodeId: string, temperatureC = 50): Heartbeat => ({
  nodeId,
  bootId: "boot",
  sentAt: new Date().toISOString(),
  nvml: { available: true },
  health: { checked: true, worst: "healthy", openIncidents: 0 },
  gpus: [
    { index: 0, temperatureC, utilizationPct: 10 },
    { index: 1, temperatureC: temperatureC + 1, utilizationPct: 20 },
  ],
});

describe("the ingest worker", () => {
  test("a group written in the worker is answered and stored as on the event loop's thread", async () => {
    const { store, writer, ids } = await setUp();
    const results = await writer.write({ heartbeats: [heartbeat(ids[0]!, 61), heartbeat("nobody")], batches: [] }, Date.now());
    expect(results.heartbeats).toEqual([{ lastEventSeq: 0 }, undefined]);
    const [row] = await store.db.select().from(gpuReadings).where(eq(gpuReadings.nodeId, ids[0]!));
    expect((row?.readings as { temperatureC: number }[] | undefined)?.map((g) => g.temperatureC)).toEqual([61, 62]);
  });

  test("a store write waits for the group in flight, and the event loop keeps running meanwhile", async () => {
    const { store } = await setUp();
    let written = false;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      await store.exclusive(async () => {
        void store.db
          .insert(pools)
          .values({ name: "late", source: "config", spec: {}, createdAt: 0, updatedAt: 0 })
          .then(() => (written = true));
        await Bun.sleep(100);
        expect(written).toBe(false);
      });
      await Bun.sleep(20);
      expect(written).toBe(true);
      expect(ticks).toBeGreaterThan(5);
    } finally {
      clearInterval(timer);
    }
  });

  test("a group waits for a store transaction to end", async () => {
    const { store, writer, ids } = await setUp();
    let grouped = false;
    await store.db.transaction(async (tx) => {
      await tx.insert(pools).values({ name: "in-tx", source: "config", spec: {}, createdAt: 0, updatedAt: 0 });
      void writer.write({ heartbeats: [heartbeat(ids[1]!)], batches: [] }, Date.now()).then(() => (grouped = true));
      await Bun.sleep(100);
      expect(grouped).toBe(false);
    });
    await Bun.sleep(50);
    expect(grouped).toBe(true);
  });

  test("groups written back to back while the store writes: every write lands, and the event loop keeps running", async () => {
    // Groups of 3,000 heartbeats: each commit holds SQLite's write lock for tens of milliseconds.
    // How long the event loop may stall meanwhile is a benchmark (npm run bench writer: the
    // longest gap, goal < 45 ms), not a test: a loaded machine stretches it.
    const { store, writer, ids } = await setUp(3000);
    let stop = false;
    let n = 0;
    let groupsWritten = 0;
    const groups = (async () => {
      while (!stop) {
        await writer.write({ heartbeats: ids.map((id) => heartbeat(id, 40 + (n++ % 40))), batches: [] }, Date.now());
        groupsWritten++;
      }
    })();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    let groupsBeside = 0;
    try {
      for (let i = 0; i < 30; i++) {
        await store.db.update(pools).set({ updatedAt: i }).where(eq(pools.name, "bench"));
        await Bun.sleep(1);
      }
      groupsBeside = groupsWritten;
    } finally {
      stop = true;
      clearInterval(timer);
      await groups;
    }
    // Every store write landed, groups were written while they did, and timers still fired.
    const [pool] = await store.db.select().from(pools).where(eq(pools.name, "bench"));
    expect(pool?.updatedAt).toBe(29);
    expect(groupsBeside).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(0);
    // The last group is there in full.
    const [row] = await store.db
      .select()
      .from(gpuReadings)
      .where(eq(gpuReadings.nodeId, ids.at(-1)!));
    expect((row?.readings as { temperatureC: number }[] | undefined)?.[0]?.temperatureC).toBe(40 + ((n - 1) % 40));
  });

  test(`the WAL is copied back at most every ${CHECKPOINT_EVERY_MS} ms while groups flow`, async () => {
    const checkpoints: { beside: number; between: number }[] = [];
    const { store, writer, ids } = await setUp(2000, (ms) => checkpoints.push(ms));
    const started = performance.now();
    let n = 0;
    while (performance.now() - started < 1200) await writer.write({ heartbeats: ids.map((id) => heartbeat(id, 40 + (n++ % 40))), batches: [] }, Date.now());
    const elapsed = performance.now() - started;
    await store.exclusive(async () => undefined); // the last checkpoint asked for has run
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    expect(checkpoints.length).toBeLessThanOrEqual(Math.ceil(elapsed / CHECKPOINT_EVERY_MS) + 1);
    // What the last group wrote is there (the checkpoint copied it into the file, or it is still in the WAL).
    const [row] = await store.db.select().from(gpuReadings).where(eq(gpuReadings.nodeId, ids[1999]!));
    expect((row?.readings as { temperatureC: number }[] | undefined)?.[0]?.temperatureC).toBe(40 + ((n - 1) % 40));
  });

  test("a group is written while the WAL is copied back: it does not wait for the copy", async () => {
    // A WAL of several MB (10,000 nodes' rows rewritten twice), no checkpoint of its own.
    const { store, writer, ids } = await setUp(10_000, undefined, 3_600_000);
    for (const temperatureC of [60, 61]) await writer.write({ heartbeats: ids.map((id) => heartbeat(id, temperatureC)), batches: [] }, Date.now());
    const order: string[] = [];
    const copied = writer.checkpoint().then(() => order.push("checkpoint"));
    await Bun.sleep(1); // the copy has begun
    await writer.write({ heartbeats: [heartbeat(ids[5]!, 77)], batches: [] }, Date.now()).then(() => order.push("group"));
    await copied;
    // Copied under the write lock, the group waited for the whole copy and its fsyncs.
    expect(order).toEqual(["group", "checkpoint"]);
    const [row] = await store.db.select().from(gpuReadings).where(eq(gpuReadings.nodeId, ids[5]!));
    expect((row?.readings as { temperatureC: number }[] | undefined)?.[0]?.temperatureC).toBe(77);
    // What the group wrote during the copy was copied too (between groups), so the next write
    // started the WAL again from its beginning: it holds that write's few pages, not the MBs before.
    await writer.write({ heartbeats: [heartbeat(ids[6]!, 78)], batches: [] }, Date.now());
    const [wal] = (await store.client.execute("PRAGMA wal_checkpoint(PASSIVE)")).rows;
    expect(Number(wal?.[1])).toBeLessThan(20);
  });

  test("a WAL copier that dies: the ingest worker copies the whole WAL between groups, said once", async () => {
    const checkpoints: { beside: number; between: number }[] = [];
    const { store, writer, ids } = await setUp(2000, (ms) => checkpoints.push(ms), 3_600_000);
    logged.length = 0;
    (writer as unknown as { copier: { worker: Worker } }).copier.worker.terminate();
    await Bun.sleep(100);
    await writer.write({ heartbeats: ids.map((id) => heartbeat(id, 66)), batches: [] }, Date.now());
    await writer.checkpoint();
    await writer.write({ heartbeats: [heartbeat(ids[1]!, 67)], batches: [] }, Date.now());
    const [wal] = (await store.client.execute("PRAGMA wal_checkpoint(PASSIVE)")).rows;
    expect(Number(wal?.[1])).toBeLessThan(20);
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0]!.beside).toBeLessThan(1);
    expect(logged).toEqual(["the WAL copier's thread ended: the WAL is copied back between groups from now on"]);
  });

  test("a worker that dies: its groups go to the event loop's thread, said once", async () => {
    const { store, writer, ids } = await setUp();
    logged.length = 0;
    // The thread ends under it, as a crash of the worker would end it.
    (writer as unknown as { writer: { worker: Worker } }).writer.worker.terminate();
    await Bun.sleep(100);
    const results = await writer.write({ heartbeats: [heartbeat(ids[2]!, 70)], batches: [] }, Date.now());
    expect(results.heartbeats).toEqual([{ lastEventSeq: 0 }]);
    const [row] = await store.db.select().from(gpuReadings).where(eq(gpuReadings.nodeId, ids[2]!));
    expect((row?.readings as { temperatureC: number }[] | undefined)?.[0]?.temperatureC).toBe(70);
    await writer.write({ heartbeats: [heartbeat(ids[3]!)], batches: [] }, Date.now());
    expect(logged).toEqual(["the ingest worker's thread ended: heartbeats and events are written on the main thread from now on"]);
  });

  test("after close, a write is refused with the reason", async () => {
    const { writer, ids } = await setUp();
    await writer.close();
    expect(writer.write({ heartbeats: [heartbeat(ids[0]!)], batches: [] }, Date.now())).rejects.toThrow("stopped");
  });
});
