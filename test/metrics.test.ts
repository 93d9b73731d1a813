// The reconciler's metrics on a seeded store: the seed's names exist with the right
// values, the incident histograms count each completed step exactly once (repeated
// scrapes, a restart), counters over the event and audit logs add only new rows,
// label values stay bounded however varied the data, and the reconcile loop's
// passes are observed through serve.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, inArray } from "drizzle-orm";
import { join } from "node:path";
import { auditLog, breakers, gpuReadings, gpus, healthEvents, incidents, nodes, operations, pools } from "../schema/db.ts";
import type { NodeState } from "../schema/lifecycle.ts";
import { observeLoop, type PassObservation } from "../reconciler/metrics/loop-metrics.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { startReconciler } from "../reconciler/app/serve.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { seed } from "../bench/reconciler.ts";
import { recordHeartbeat } from "../reconciler/nodes/agent-reports.ts";
import { testConfig } from "./fleet-harness.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

const T = Date.parse("2026-11-21T00:00:00Z");
let store: Store;
let seq = 0;

/** `name{a="x",b="y"} value` lines → samples. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}
const value = (s: ReturnType<typeof samples>, name: string, labels: Record<string, string> = {}) => {
  const hits = s.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0]!.value;
};
const scrape = async (m = createMetrics(store.db)) => samples(await m.render());

async function node(
  id: string,
  pool: string | null,
  state: NodeState,
  verdict: "healthy" | "degraded" | "unhealthy" | null,
  extra: Partial<typeof nodes.$inferInsert> = {},
) {
  await store.db.insert(nodes).values({ id, pool, state, verdict, stateChangedAt: T, updatedAt: T, provider: "local", ...extra });
}
async function event(nodeId: string, check: string, code: string | null) {
  await store.db
    .insert(healthEvents)
    .values({ nodeId, seq: ++seq, bootId: "b", time: T, receivedAt: T, check, code, severity: "unhealthy", action: "replace", message: "m" });
}
async function audit(action: string, target: string, details: unknown) {
  await store.db.insert(auditLog).values({ at: T, actor: "navarch", action, target, details });
}

beforeAll(async () => {
  store = await openStore({ url: `file:${tempDir()}/metrics.db` });
  const spec = (min: number, max: number) => ({ scaling: { min_nodes: min, max_nodes: max } });
  await store.db.insert(pools).values([
    { name: "train", source: "config", spec: spec(4, 10), createdAt: T, updatedAt: T },
    { name: "infer", source: "config", spec: spec(2, 4), paused: true, createdAt: T, updatedAt: T },
  ]);
  await node("t1", "train", "ready", "healthy", { lastHeartbeatAt: T, requestedAt: T, registeredAt: T });
  await node("t2", "train", "ready", "healthy", { lastHeartbeatAt: T - 5000, requestedAt: T, registeredAt: T });
  await node("t3", "train", "suspect", "degraded", { lastHeartbeatAt: T });
  await node("t4", "train", "cordoned", "unhealthy", { lastHeartbeatAt: T });
  await node("t5", "train", "lost", null, { lastHeartbeatAt: T - 600_000 });
  await node("t6", "train", "terminated", "unhealthy");
  await node("t7", "train", "failed", null, { requestedAt: T });
  // A DaemonSet's nodes in train: watched, never part of its size.
  await node("m1", "train", "ready", "healthy", { origin: "registered", registeredAt: T });
  await node("m2", "train", "cordoned", "unhealthy", { origin: "registered", registeredAt: T });
  await node("i1", "infer", "ready", "healthy", { lastHeartbeatAt: T, requestedAt: T, registeredAt: T });
  await node("i2", "infer", "provisioning", null, { requestedAt: T });
  for (const [id, temps] of [
    ["t1", [40, 71]],
    ["t4", [88, 50]],
    ["t6", [30, 30]],
  ] as const) {
    for (const i of temps.keys()) await store.db.insert(gpus).values({ nodeId: id, index: i, uuid: `${id}-${i}`, pciBusId: "p", name: "H100", updatedAt: T });
    const readings = temps.map((t, i) => ({ index: i, temperatureC: t, utilizationPct: 10 * (i + 1) }));
    await store.db.insert(gpuReadings).values({ nodeId: id, readings, updatedAt: T });
  }
  // What the last heartbeat of each summed up (ingest-write.ts writes these).
  for (const [id, max] of [
    ["t1", 71],
    ["t4", 88],
    ["t6", 30],
  ] as const) {
    await store.db.update(nodes).set({ gpuReadings: 2, gpuTemperatureMaxC: max, gpuUtilizationSum: 30, gpuUtilizationCount: 2 }).where(eq(nodes.id, id));
  }
  await event("t4", "xid", "79");
  await event("t4", "xid", "79");
  await event("t3", "xid", "48");
  await event("t3", "xid", "31337");
  await event("t3", "thermal", null);
  // Incidents: one replaced (every step), one drained, one only cordoned, one still open (no cordon).
  await store.db.insert(incidents).values([
    {
      nodeId: "t6",
      pool: "train",
      reason: "xid",
      faultAt: T,
      openedAt: T + 1000,
      cordonedAt: T + 3000,
      drainedAt: T + 63_000,
      terminatedAt: T + 70_000,
      replacementReadyAt: T + 400_000,
      status: "replaced",
      closedAt: T + 400_000,
      outcome: "replaced",
    },
    { nodeId: "t4", pool: "train", reason: "xid", faultAt: T, openedAt: T, cordonedAt: T + 20_000, drainedAt: T + 620_000, status: "draining" },
    { nodeId: "i1", pool: "infer", reason: "human", faultAt: T, openedAt: T, cordonedAt: T, status: "cordoned", closedAt: T + 5000, outcome: "cancelled" },
    { nodeId: "t3", pool: "train", reason: "xid", faultAt: T, openedAt: T, status: "blocked by breaker" },
  ]);
  await audit("blocked", "t3", { rail: "breaker", reason: "tripped" });
  await audit("blocked", "t3", { rail: "breaker", reason: "tripped again" });
  await audit("blocked", "t5", { rail: "partition_freeze", reason: "many silent" });
  await audit("breaker_tripped", "pool:train", { reason: "3 cordons" });
  await audit("transition", "t7", { from: "provisioning", to: "failed", reason: "agent did not register within 10 min" });
  await audit("transition", "t6", { from: "draining", to: "terminating", reason: "replaced" });
  await store.db.insert(breakers).values({ scope: "pool:train", trippedAt: T, reason: "3 cordons" });
  await store.db.insert(operations).values([
    { key: "launch:t1:local", kind: "launch", nodeId: "t1", pool: "train", state: "succeeded", attempts: 3, createdAt: T, updatedAt: T },
    { key: "launch:t7:local", kind: "launch", nodeId: "t7", pool: "train", state: "failed", attempts: 2, createdAt: T, updatedAt: T },
    { key: "terminate:t6", kind: "terminate", nodeId: "t6", pool: "train", state: "succeeded", attempts: 1, createdAt: T, updatedAt: T },
    { key: "reap:local:sim-9", kind: "reap", state: "failed", attempts: 1, createdAt: T, updatedAt: T },
  ]);
});
afterAll(() => store.close());

describe("metrics on a seeded store", () => {
  test("the seed's node and GPU metrics, per pool and per node/GPU", async () => {
    const s = await scrape();
    // train: t1..t5 make up the pool (terminated and failed do not, nor the monitored m1, m2);
    // t1, t2 healthy; t4 unhealthy, t5 lost, and the monitored m2 unhealthy too.
    expect(value(s, "navarch_nodes_total", { pool: "train" })).toBe(5);
    expect(value(s, "navarch_nodes_monitored", { pool: "train" })).toBe(2);
    expect(value(s, "navarch_nodes_healthy", { pool: "train" })).toBe(2);
    expect(value(s, "navarch_nodes_unhealthy", { pool: "train" })).toBe(3);
    expect(value(s, "navarch_nodes_monitored", { pool: "infer" })).toBe(0);
    expect(value(s, "navarch_nodes_total", { pool: "infer" })).toBe(2);
    expect(value(s, "navarch_nodes_healthy", { pool: "infer" })).toBe(1);
    expect(value(s, "navarch_nodes_unhealthy", { pool: "infer" })).toBe(0);
    expect(value(s, "navarch_nodes_by_state", { pool: "train", state: "terminated" })).toBe(1);
    // GPU readings of live nodes only (t6 is terminated).
    expect(value(s, "navarch_node_gpu_temperature_celsius", { node: "t4", gpu: "0" })).toBe(88);
    expect(value(s, "navarch_node_gpu_utilization_percent", { pool: "train", node: "t1", gpu: "1" })).toBe(20);
    expect(s.filter((x) => x.name === "navarch_node_gpu_temperature_celsius")).toHaveLength(4);
    expect(s.some((x) => x.labels.node === "t6")).toBe(false);
    // Heartbeats of watched nodes (not the lost one).
    expect(value(s, "navarch_node_last_heartbeat_timestamp_seconds", { node: "t2" })).toBe((T - 5000) / 1000);
    expect(s.some((x) => x.name === "navarch_node_last_heartbeat_timestamp_seconds" && x.labels.node === "t5")).toBe(false);
  });

  test("pool GPU aggregates are always there; per-GPU series follow server.metrics_per_gpu", async () => {
    // train's live GPUs: t1 (40, 71 °C; 10, 20 %) and t4 (88, 50 °C; 10, 20 %); t6 is terminated.
    for (const perGpu of ["auto", "on", "off"] as const) {
      const s = await scrape(createMetrics(store.db, { perGpu }));
      expect(value(s, "navarch_pool_gpus", { pool: "train" })).toBe(4);
      expect(value(s, "navarch_pool_gpu_temperature_max_celsius", { pool: "train" })).toBe(88);
      expect(value(s, "navarch_pool_gpu_utilization_mean_percent", { pool: "train" })).toBe(15);
      const series = s.filter((x) => x.name === "navarch_node_gpu_temperature_celsius").length;
      expect(series).toBe(perGpu === "off" ? 0 : 4);
      expect(value(s, "navarch_metrics_per_gpu_series", {})).toBe(perGpu === "off" ? 0 : 1);
    }
  });

  test("auto leaves per-GPU series out above 40,000 GPUs; the aggregates are each node's last heartbeat", async () => {
    const big = await openStore({ url: `file:${tempDir()}/metrics-big.db` });
    try {
      const at = Date.now();
      await seed(big, 5_001, at);
      // One node's heartbeat through the ingest path: GPU 0 hot and busy, the rest as seeded.
      const gpus = Array.from({ length: 8 }, (_, index) => ({ index, temperatureC: index === 0 ? 70 : 40, utilizationPct: index === 0 ? 100 : 50 }));
      const hb = {
        nodeId: "bench-000000",
        bootId: "boot",
        sentAt: new Date(at).toISOString(),
        nvml: { available: true },
        health: { checked: true, worst: "healthy" as const, openIncidents: 0 },
        gpus,
      };
      expect(await recordHeartbeat(big.db, hb, () => at)).toEqual({ lastEventSeq: 0 });
      const auto = await scrape(createMetrics(big.db));
      expect(value(auto, "navarch_metrics_per_gpu_series", {})).toBe(0);
      expect(auto.some((x) => x.name === "navarch_node_gpu_utilization_percent")).toBe(false);
      expect(value(auto, "navarch_pool_gpus", { pool: "bench" })).toBe(40_008);
      expect(value(auto, "navarch_pool_gpu_temperature_max_celsius", { pool: "bench" })).toBe(70);
      expect(value(auto, "navarch_pool_gpu_utilization_mean_percent", { pool: "bench" })).toBeCloseTo((5_001 * 400 + 50) / 40_008, 9);
      const on = await scrape(createMetrics(big.db, { perGpu: "on" }));
      expect(value(on, "navarch_metrics_per_gpu_series", {})).toBe(1);
      expect(on.filter((x) => x.name === "navarch_node_gpu_temperature_celsius")).toHaveLength(40_008);
    } finally {
      big.close();
    }
  }, 60_000);

  test("pools, breakers, rails, provider errors, bootstrap outcomes, open incidents", async () => {
    const s = await scrape();
    expect(value(s, "navarch_pool_min_nodes", { pool: "train" })).toBe(4);
    expect(value(s, "navarch_pool_max_nodes", { pool: "infer" })).toBe(4);
    expect(value(s, "navarch_pool_paused", { pool: "infer" })).toBe(1);
    expect(value(s, "navarch_breaker_tripped", { scope: "pool:train" })).toBe(1);
    expect(value(s, "navarch_breaker_tripped", { scope: "fleet" })).toBe(0);
    expect(value(s, "navarch_breaker_trips_total", { scope: "pool:train" })).toBe(1);
    expect(value(s, "navarch_rail_blocks_total", { rail: "breaker" })).toBe(2);
    expect(value(s, "navarch_rail_blocks_total", { rail: "partition_freeze" })).toBe(1);
    expect(value(s, "navarch_rail_blocks_total", { rail: "cordon_rate" })).toBe(0);
    // launch t1: 3 attempts, the last succeeded (2 errors); launch t7: 2 failed; reap: 1 failed.
    expect(value(s, "navarch_provider_errors_total", { provider: "local", operation: "launch" })).toBe(4);
    expect(value(s, "navarch_provider_errors_total", { provider: "local", operation: "reap" })).toBe(1);
    expect(s.some((x) => x.name === "navarch_provider_errors_total" && x.labels.operation === "terminate")).toBe(false);
    expect(value(s, "navarch_bootstrap_outcomes_total", { outcome: "registered" })).toBe(3);
    expect(value(s, "navarch_bootstrap_outcomes_total", { outcome: "registration_timeout" })).toBe(1);
    expect(value(s, "navarch_incidents_open", { pool: "train" })).toBe(2);
    expect(value(s, "navarch_xid_errors_total", { code: "79" })).toBe(2);
    expect(value(s, "navarch_xid_errors_total", { code: "48" })).toBe(1);
    expect(value(s, "navarch_xid_errors_total", { code: "other" })).toBe(1);
  });

  test("incident histograms: each completed step once, the same on every scrape and after a restart", async () => {
    const m = createMetrics(store.db);
    const first = await scrape(m);
    const count = (s: typeof first, name: string, pool: string) => value(s, `${name}_count`, { pool });
    expect(count(first, "navarch_incident_fault_to_cordon_seconds", "train")).toBe(2);
    expect(value(first, "navarch_incident_fault_to_cordon_seconds_sum", { pool: "train" })).toBe(23);
    expect(value(first, "navarch_incident_fault_to_cordon_seconds_bucket", { pool: "train", le: "5" })).toBe(1);
    expect(value(first, "navarch_incident_fault_to_cordon_seconds_bucket", { pool: "train", le: "30" })).toBe(2);
    expect(value(first, "navarch_incident_fault_to_cordon_seconds_bucket", { pool: "infer", le: "1" })).toBe(1);
    expect(count(first, "navarch_incident_cordon_to_drained_seconds", "train")).toBe(2);
    expect(value(first, "navarch_incident_cordon_to_drained_seconds_bucket", { pool: "train", le: "60" })).toBe(1);
    expect(value(first, "navarch_incident_cordon_to_drained_seconds_bucket", { pool: "train", le: "600" })).toBe(2);
    expect(count(first, "navarch_incident_fault_to_replacement_ready_seconds", "train")).toBe(1);
    expect(value(first, "navarch_incident_fault_to_replacement_ready_seconds_sum", { pool: "train" })).toBe(400);
    expect(value(first, "navarch_incident_fault_to_replacement_ready_seconds_bucket", { pool: "train", le: "300" })).toBe(0);
    expect(value(first, "navarch_incident_fault_to_replacement_ready_seconds_bucket", { pool: "train", le: "+Inf" })).toBe(1);
    // Scraping again counts nothing twice; a "restarted" reconciler (new registry) sees the same.
    const hist = (s: typeof first) => s.filter((x) => x.name.startsWith("navarch_incident_"));
    expect(hist(await scrape(m))).toEqual(hist(first));
    expect(hist(await scrape(createMetrics(store.db)))).toEqual(hist(first));
    // The open incident gets cordoned: exactly one more observation.
    await store.db
      .update(incidents)
      .set({ cordonedAt: T + 45_000 })
      .where(eq(incidents.id, 4));
    const after = await scrape(m);
    expect(count(after, "navarch_incident_fault_to_cordon_seconds", "train")).toBe(3);
    expect(value(after, "navarch_incident_fault_to_cordon_seconds_bucket", { pool: "train", le: "30" })).toBe(2);
    expect(value(after, "navarch_incident_fault_to_cordon_seconds_bucket", { pool: "train", le: "60" })).toBe(3);
  });

  test("log counters add only new rows, and equal the logs' totals after a restart", async () => {
    const m = createMetrics(store.db);
    const before = value(await scrape(m), "navarch_xid_errors_total", { code: "79" });
    await event("t4", "xid", "79");
    await audit("blocked", "t4", { rail: "cordon_rate", reason: "5/min" });
    const s = await scrape(m);
    expect(value(s, "navarch_xid_errors_total", { code: "79" })).toBe(before + 1);
    expect(value(s, "navarch_rail_blocks_total", { rail: "cordon_rate" })).toBe(1);
    const again = await scrape(m);
    expect(value(again, "navarch_xid_errors_total", { code: "79" })).toBe(before + 1);
    const restarted = await scrape(createMetrics(store.db));
    expect(value(restarted, "navarch_xid_errors_total", { code: "79" })).toBe(before + 1);
    expect(value(restarted, "navarch_rail_blocks_total", { rail: "cordon_rate" })).toBe(1);
  });

  test("label values stay bounded: odd codes and rails fold into `other`", async () => {
    const m = createMetrics(store.db);
    const series = async () => (await scrape(m)).filter((x) => x.name === "navarch_xid_errors_total" || x.name === "navarch_rail_blocks_total").length;
    const before = await series();
    for (let i = 0; i < 40; i++) await event("t3", "xid", String(20_000 + i));
    for (let i = 0; i < 10; i++) await event("t3", "xid", `weird-${i}`);
    for (let i = 0; i < 10; i++) await audit("blocked", "t3", { rail: `made_up_${i}`, reason: "?" });
    const s = await scrape(m);
    // One more series at most (rail "other"); xid "other" already existed.
    expect((await series()) - before).toBeLessThanOrEqual(1);
    expect(value(s, "navarch_rail_blocks_total", { rail: "other" })).toBe(10);
    const codes = new Set(s.filter((x) => x.name === "navarch_xid_errors_total").map((x) => x.labels.code));
    expect([...codes].sort()).toEqual(["48", "79", "other"]);
    // No per-event or per-incident label anywhere.
    const runtime = (name: string) => name.startsWith("navarch_process_") || name.startsWith("navarch_nodejs_");
    expect(s.some((x) => x.name === "navarch_process_cpu_user_seconds_total")).toBe(true);
    expect(s.filter((x) => x.name.includes("process_process"))).toEqual([]);
    const labelNames = new Set(s.filter((x) => !runtime(x.name)).flatMap((x) => Object.keys(x.labels)));
    for (const l of labelNames)
      expect(["check", "code", "gpu", "kind", "le", "node", "operation", "outcome", "pool", "provider", "rail", "scope", "severity", "state", "to"]).toContain(
        l,
      );
  });

  test("a monitored node's self-reported pool is never a label value unless the pool is configured", async () => {
    const m = createMetrics(store.db);
    const made = "made-up-by-its-agent";
    const at = { lastHeartbeatAt: T, registeredAt: T, origin: "registered" as const, gpuReadings: 1, gpuTemperatureMaxC: 50 };
    await node("q1", made, "ready", "healthy", at);
    await node("q2", "train", "ready", "healthy", at);
    await store.db.insert(gpuReadings).values({ nodeId: "q1", readings: [{ index: 0, temperatureC: 50 }], updatedAt: T });
    await store.db.insert(incidents).values({ nodeId: "q1", pool: made, reason: "Xid 79", status: "cordoned", faultAt: T, openedAt: T });
    const s = await scrape(m);
    expect(s.filter((x) => x.labels.pool === made).map((x) => x.name)).toEqual([]);
    // Counted, under no pool; the one that names a configured pool keeps it.
    expect(value(s, "navarch_node_last_heartbeat_timestamp_seconds", { node: "q1" })).toBe(T / 1000);
    expect(s.find((x) => x.name === "navarch_node_last_heartbeat_timestamp_seconds" && x.labels.node === "q1")?.labels.pool).toBe("");
    expect(s.find((x) => x.name === "navarch_node_last_heartbeat_timestamp_seconds" && x.labels.node === "q2")?.labels.pool).toBe("train");
    await store.db.delete(incidents).where(eq(incidents.nodeId, "q1"));
    await store.db.delete(gpuReadings).where(eq(gpuReadings.nodeId, "q1"));
    await store.db.delete(nodes).where(inArray(nodes.id, ["q1", "q2"]));
  });

  test("SSH bootstrap runs count as bootstrap outcomes (where the store records them)", async () => {
    const table = await store.client.execute("select count(*) as n from sqlite_master where type = 'table' and name = 'bootstrap_runs'");
    if (Number(table.rows[0]?.n ?? 0) === 0) return;
    for (const state of ["succeeded", "failed", "failed", "running"]) {
      await store.client.execute({
        sql: "insert into bootstrap_runs (node_id, address, user, state, started_at) values (?, ?, ?, ?, ?)",
        args: ["t1", "10.0.0.1:22", "ubuntu", state, T],
      });
    }
    const s = await scrape();
    expect(value(s, "navarch_bootstrap_outcomes_total", { outcome: "succeeded" })).toBe(1);
    expect(value(s, "navarch_bootstrap_outcomes_total", { outcome: "failed" })).toBe(2);
  });

  test("every metric the reconciler exports is in the operator's table (deploy/README.md)", async () => {
    const table = await Bun.file(join(REPO_ROOT, "deploy/README.md")).text();
    const names = (await createMetrics(store.db).registry.getMetricsAsJSON()).map((m) => m.name);
    // prom-client's process and runtime metrics (navarch_process_*, navarch_nodejs_*) are its own, documented by it.
    const ours = names.filter((n) => !/^navarch_(process|nodejs)_/.test(n));
    expect(ours.length).toBeGreaterThan(20);
    expect(ours.filter((n) => !table.includes(`\`${n}\``))).toEqual([]);
  });

  test("a pass is observed once however many callers awaited it", async () => {
    const m = createMetrics(store.db);
    const report: PassObservation = { durationMs: 12, transitions: [{ to: "ready" }, { to: "cordoned" }], blocked: [] };
    const loop = { pass: async () => report };
    observeLoop(loop, m);
    await Promise.all([loop.pass(), loop.pass()]);
    const s = await scrape(m);
    expect(value(s, "navarch_reconcile_pass_duration_seconds_count")).toBe(1);
    expect(value(s, "navarch_reconcile_pass_duration_seconds_bucket", { le: "0.025" })).toBe(1);
    expect(value(s, "navarch_node_transitions_total", { to: "cordoned" })).toBe(1);
  });
});

describe("metrics of a running reconciler", () => {
  test("serve.ts observes every reconcile pass of its loop", async () => {
    const dataDir = join(tempDir(), "data");
    process.env.NAVARCH_METRICS_TEST_TOKEN = "metrics-token";
    const rec = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir,
        databaseUrl: `file:${dataDir}/navarch.db`,
        authTokenEnv: "NAVARCH_METRICS_TEST_TOKEN",
        heartbeatIntervalSeconds: 10,
      },
      () => undefined,
      Date.now,
      { config: testConfig("pools: []\n"), providers: new Map(), intervalMs: 20 },
    );
    try {
      const passes = await waitFor("three observed passes", async () => {
        const s = samples(await (await fetch(`${rec.url}/metrics`, { headers: { Authorization: "Bearer metrics-token" } })).text());
        const n = value(s, "navarch_reconcile_pass_duration_seconds_count");
        return n >= 3 ? s : undefined;
      });
      expect(value(passes, "navarch_reconcile_last_pass_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
    } finally {
      await rec.stop();
    }
  });
});
