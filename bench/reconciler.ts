// Reconciler benchmarks on 2 cores, against a real libSQL file:
//   - one reconcile pass over N ready nodes (goal at 10,000: < 200 ms), and the same
//     pass over 100 nodes as the baseline in the same process;
//   - heartbeat ingest over HTTP for N registered nodes (goal: 2,000/s, p99 < 50 ms);
//   - resident memory per node;
//   - the event loop's longest gap while the ingest worker writes groups back to back beside the
//     store's own writes (goal: < 45 ms; test/ingest-writer.test.ts checks the same path lands
//     every write, untimed).
import { eq } from "drizzle-orm";
import { parseConfig } from "../reconciler/config/load.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { WorkerWriter, clientWriter } from "../reconciler/ingest/writer.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler } from "../reconciler/app/serve.ts";
import { pools } from "../schema/db.ts";
import type { Heartbeat } from "../schema/wire.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { tempDir } from "../test/support.ts";

const GPUS = 8;

function config(size: number) {
  const parsed = parseConfig(
    `server:\n  heartbeat_interval: 30s\npools:\n  - name: bench\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${size}\n      max_nodes: ${size}\n`,
    "bench",
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

/**
 * Writes `count` registered, healthy, Ready nodes with their GPUs and readings: launched into
 * the pool "bench", or `registered` (monitored: no pool of the config, no provider asked).
 */
export async function seed(store: Store, count: number, at: number, opts: { origin?: "launched" | "registered" } = {}): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `bench-${i.toString().padStart(6, "0")}`);
  // Straight SQL over json_each, 10,000 nodes a statement: building 100,000 rows through the
  // query builder took longer than the benchmark itself.
  for (let i = 0; i < ids.length; i += 10_000) {
    const batch = JSON.stringify(ids.slice(i, i + 10_000));
    await store.client.batch(
      [
        {
          sql: `INSERT INTO nodes (id, origin, pool, provider, instance_type, instance_name, state, state_changed_at, hostname, boot_id, agent_version,
                  nvml_available, agent_health, verdict, registered_at, last_heartbeat_at, spool_id, updated_at,
                  gpu_readings, gpu_temperature_max_c, gpu_utilization_sum, gpu_utilization_count)
                SELECT value, ?2, 'bench', 'local', 'local-8gpu', value, 'ready', ?1, value, 'boot', 'bench',
                  1, 'healthy', 'healthy', ?1, ?1, '00000000-0000-4000-8000-000000000000', ?1,
                  ${GPUS}, 40, ${50 * GPUS}, ${GPUS} FROM json_each(?3)`,
          args: [at, opts.origin ?? "launched", batch],
        },
        {
          sql: `INSERT INTO gpus (node_id, gpu_index, uuid, pci_bus_id, name, updated_at)
                SELECT n.value, g.value, 'GPU-' || n.value || '-' || g.value, printf('00000000:%X:00.0', 24 + g.value), 'NVIDIA H100 80GB HBM3', ?1
                FROM json_each(?2) AS n, json_each(?3) AS g`,
          args: [at, batch, JSON.stringify(Array.from({ length: GPUS }, (_, g) => g))],
        },
        {
          sql: `INSERT INTO gpu_readings (node_id, readings, updated_at)
                SELECT n.value, (SELECT json_group_array(json_object('index', g.value, 'temperatureC', 40, 'utilizationPct', 50)) FROM json_each(?3) AS g), ?1
                FROM json_each(?2) AS n`,
          args: [at, batch, JSON.stringify(Array.from({ length: GPUS }, (_, g) => g))],
        },
      ],
      "write",
    );
  }
  await store.db.insert(pools).values({ name: "bench", source: "config", spec: {}, createdAt: at, updatedAt: at }).onConflictDoNothing();
  return ids;
}

/**
 * Median of `passes` reconcile passes over `size` ready nodes (after one warm-up pass), and the
 * JavaScript heap in use after them with the loop alive (what the loop keeps and a pass builds).
 */
export async function benchPass(size: number, passes = 5): Promise<{ medianMs: number; maxMs: number; heapMiB: number }> {
  const dir = tempDir("navarch-bench-");
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const rec = await startReconciler(
    { host: "127.0.0.1", port: 0, dataDir: dir, databaseUrl: `file:${dir}/navarch.db`, authTokenEnv: "NAVARCH_BENCH_TOKEN", heartbeatIntervalSeconds: 30 },
    () => undefined,
    now,
  );
  try {
    await seed(rec.store, size, clock);
    const cloud = new SimulatedCloud({ name: "local", now });
    const loop = new Reconciler({ store: rec.store, config: config(size), providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now });
    await loop.pass(); // warm-up: the first pass also runs the inventory sweep and the first health tick
    const times: number[] = [];
    for (let i = 0; i < passes; i++) {
      clock += 1000;
      times.push((await loop.pass()).durationMs);
    }
    times.sort((a, b) => a - b);
    Bun.gc(true);
    const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
    return { medianMs: times[Math.floor(times.length / 2)]!, maxMs: times.at(-1)!, heapMiB };
  } finally {
    await rec.stop();
  }
}

export interface IngestResult {
  nodes: number;
  heartbeats: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Heartbeats over HTTP from `concurrency` parallel clients, for `size` registered nodes. */
export async function benchIngest(size: number, total: number, concurrency = 32): Promise<IngestResult> {
  const dir = tempDir("navarch-bench-");
  process.env.NAVARCH_BENCH_TOKEN = "bench-token";
  const rec = await startReconciler(
    { host: "127.0.0.1", port: 0, dataDir: dir, databaseUrl: `file:${dir}/navarch.db`, authTokenEnv: "NAVARCH_BENCH_TOKEN", heartbeatIntervalSeconds: 30 },
    () => undefined,
  );
  try {
    const ids = await seed(rec.store, size, Date.now());
    const bodies = ids.map((id) =>
      JSON.stringify({
        nodeId: id,
        bootId: "boot",
        sentAt: new Date().toISOString(),
        nvml: { available: true },
        health: { checked: true, worst: "healthy", openIncidents: 0 },
        gpus: Array.from({ length: GPUS }, (_, g) => ({ index: g, temperatureC: 41, powerW: 400, utilizationPct: 60, memoryUsedBytes: 1 << 30 })),
      } satisfies Heartbeat),
    );
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const body = bodies[next++ % bodies.length]!;
          const t0 = performance.now();
          const res = await fetch(`${rec.url}/v1/heartbeat`, {
            method: "POST",
            headers: { "Content-Type": "application/json", Authorization: "Bearer bench-token" },
            body,
          });
          await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`heartbeat answered ${res.status}`);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      nodes: size,
      heartbeats: latencies.length,
      perSecond: latencies.length / seconds,
      p50Ms: latencies[Math.floor(latencies.length * 0.5)]!,
      p99Ms: latencies[Math.floor(latencies.length * 0.99)]!,
    };
  } finally {
    await rec.stop();
  }
}

export interface LoopGapResult {
  /** The longest gap between two ticks of a 2 ms timer in each trial, in ms. */
  worstMs: number[];
  /** Groups the worker wrote during each trial's store writes. */
  groups: number[];
}

/**
 * The event loop's longest stall while the ingest worker writes groups of `nodes` heartbeats back
 * to back and the store writes beside them (`writes` updates, 1 ms apart), over `trials` runs
 * on a real libSQL file. Before the write lock the store shares with the worker, a store write
 * that met a group's commit waited in SQLite's busy handler, asleep on the event loop's thread:
 * 61 ms gaps were measured.
 */
export async function benchLoopGap(nodes = 3000, writes = 30, trials = 5): Promise<LoopGapResult> {
  const result: LoopGapResult = { worstMs: [], groups: [] };
  for (let trial = 0; trial < trials; trial++) {
    const url = `file:${tempDir("navarch-bench-")}/ingest.db`;
    const store = await openStore({ url, healthProbeIntervalMs: 0 });
    const ids = await seed(store, nodes, Date.now(), { origin: "registered" });
    const writer = await WorkerWriter.start(url, {
      observe: (err) => store.observe(err),
      exclusive: (write) => store.exclusive(write),
      fallback: clientWriter(store.db.$client),
      log: () => undefined,
    });
    if (writer === undefined) throw new Error("no ingest worker");
    try {
      let stop = false;
      let n = 0;
      let groups = 0;
      const heartbeats = () =>
        ids.map(
          (nodeId): Heartbeat => ({
            nodeId,
            bootId: "boot",
            sentAt: new Date().toISOString(),
            nvml: { available: true },
            health: { checked: true, worst: "healthy", openIncidents: 0 },
            gpus: [
              { index: 0, temperatureC: 40 + (n % 40), utilizationPct: 10 },
              { index: 1, temperatureC: 41 + (n++ % 40), utilizationPct: 20 },
            ],
          }),
        );
      const writing = (async () => {
        while (!stop) {
          await writer.write({ heartbeats: heartbeats(), batches: [] }, Date.now());
          groups++;
        }
      })();
      let last = performance.now();
      let worst = 0;
      const timer = setInterval(() => {
        const t = performance.now();
        worst = Math.max(worst, t - last);
        last = t;
      }, 2);
      try {
        for (let i = 0; i < writes; i++) {
          await store.db.update(pools).set({ updatedAt: i }).where(eq(pools.name, "bench"));
          await Bun.sleep(1);
        }
      } finally {
        stop = true;
        clearInterval(timer);
        await writing;
      }
      result.worstMs.push(worst);
      result.groups.push(groups);
    } finally {
      await writer.close();
      store.close();
    }
  }
  return result;
}
