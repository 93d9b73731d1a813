// What the autoscalers read, on the real reconcile loop over a real libSQL file (virtual
// time, simulated cloud and agents): idle time per node from GPU utilisation and GPU
// processes, kept in the database across restarts; scale-down longest idle first and never
// a busy node; the predictive history stored, bounded and read back after a restart; and a
// metrics source's inputs reaching the autoscaler, its failures recorded on the pool.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { parseConfig } from "../reconciler/config/load.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { recordHeartbeat } from "../reconciler/nodes/agent-reports.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import type { MetricsSource, SourcedMetrics } from "../reconciler/pools/metrics-source.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { auditLog, nodeIdle, nodes, poolSamples, pools } from "../schema/db.ts";
import { isIn } from "../schema/lifecycle.ts";
import { tempDir } from "./support.ts";

const SEC = 1000;
const MIN = 60 * SEC;
const SERVER = "server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n";

const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function config(yaml: string) {
  const parsed = parseConfig(yaml, "test");
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

function pool(scaling: string): string {
  return `pools:\n  - name: p\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n${scaling}    health:\n      drain_timeout: 5m\n`;
}

async function loop(yaml: string, source?: MetricsSource) {
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
  stores.push(store);
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 30_000 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  let current = config(yaml);
  const make = () =>
    new Reconciler({
      store,
      config: current,
      providers: new Map([["local", cloud]]),
      policy: defaultHealthPolicy(),
      now,
      ...(source ? { metricsSource: source } : {}),
    });
  let reconciler = make();
  const step = async (ms = 5 * SEC) => {
    clock += ms;
    await agents.tick();
    return reconciler.pass();
  };
  const launched = async () =>
    (await store.db.select().from(nodes))
      .filter((n) => n.origin === "launched" && isIn("inPool", n.state))
      .sort((a, b) => a.requestedAt! - b.requestedAt! || (a.id < b.id ? -1 : 1));
  const idle = async () => new Map((await store.db.select().from(nodeIdle)).map((r) => [r.nodeId, r.idleSince]));
  return {
    store,
    agents,
    cloud,
    now,
    step,
    launched,
    idle,
    /** One pass without the agents heartbeating first (their readings stay as written). */
    pass: async (ms = SEC) => {
      clock += ms;
      return reconciler.pass();
    },
    until: async (done: () => Promise<boolean>, steps = 100, ms = 5 * SEC) => {
      for (let i = 0; i < steps; i++) {
        if (await done()) return;
        await step(ms);
      }
      throw new Error(`not done after ${steps} steps`);
    },
    restart: (yamlNext?: string) => {
      if (yamlNext !== undefined) current = config(yamlNext);
      reconciler = make();
    },
    /** A heartbeat whose readings show GPU 0 running a compute process at 0 % utilisation. */
    processOnly: async (nodeId: string) => {
      const gpus = Array.from({ length: agents.gpuCount(nodeId) }, (_, index) => ({ index, utilizationPct: 0, processCount: index === 0 ? 1 : 0 }));
      const [row] = await store.db.select().from(nodes).where(eq(nodes.id, nodeId));
      await recordHeartbeat(
        store.db,
        {
          nodeId,
          bootId: row!.bootId!,
          sentAt: new Date(clock).toISOString(),
          nvml: { available: true },
          health: { checked: true, worst: "healthy", openIncidents: 0 },
          gpus,
        },
        now,
      );
    },
  };
}

const IDLE = (minNodes: number, minIdle: number, maxIdle: number, decay: string) =>
  pool(
    `      min_nodes: ${minNodes}\n      max_nodes: 6\n      cooldown_period: 0s\n      autoscaler: { type: idle, min_idle: ${minIdle}, max_idle: ${maxIdle}, idle_decay: ${decay} }\n`,
  );

describe("idle time per node", () => {
  test("is recorded from the readings, cleared by work (utilisation or a GPU process), and kept across a restart", async () => {
    const f = await loop(SERVER + IDLE(3, 0, 6, "1h"));
    await f.until(async () => (await f.launched()).filter((n) => n.state === "ready").length === 3);
    await f.step(30 * SEC);
    const [a, b, c] = (await f.launched()).map((n) => n.id);
    const first = await f.idle();
    expect([...first.keys()].sort()).toEqual([a!, b!, c!].sort());
    // Busy GPUs: no longer idle.
    f.agents.setBusyGpus(a!, 8);
    await f.step(30 * SEC);
    expect((await f.idle()).has(a!)).toBe(false);
    // A compute process at 0 % utilisation is work too (the heartbeat's processCount).
    await f.processOnly(b!);
    await f.pass(30 * SEC);
    const after = await f.idle();
    expect(after.has(b!)).toBe(false);
    expect(after.get(c!)).toBe(first.get(c!)!);
    const exported = (await createMetrics(f.store.db).render()).split("\n").find((l) => l.startsWith('navarch_pool_idle_nodes{pool="p"}'));
    expect(exported).toBe('navarch_pool_idle_nodes{pool="p"} 1');
    // A new process keeps what the database holds: c has been idle since before the restart.
    f.restart();
    await f.step(30 * SEC);
    expect((await f.idle()).get(c!)).toBe(first.get(c!)!);
    // Work done: idle again, from the readings that showed it.
    f.agents.setBusyGpus(a!, 0);
    await f.step(30 * SEC);
    expect((await f.idle()).get(a!)).toBe(f.now());
  });
});

describe("scale-down", () => {
  test("takes the longest idle nodes first and never a busy one, whether busy by utilisation or by a process", async () => {
    const f = await loop(SERVER + IDLE(4, 1, 1, "30m"));
    await f.until(async () => (await f.launched()).filter((n) => n.state === "ready").length === 4);
    const ids = (await f.launched()).map((n) => n.id);
    for (const id of ids) f.agents.setBusyGpus(id, 8);
    await f.step(30 * SEC);
    expect((await f.idle()).size).toBe(0);
    // Work ends on n2 first, then n0, then n3; n1 keeps working. (While all four are busy the
    // pool launches a spare for min_idle 1, and releases it before it serves once n2 is idle.)
    for (const id of [ids[2]!, ids[0]!, ids[3]!]) {
      f.agents.setBusyGpus(id, 0);
      await f.step(60 * SEC);
    }
    const idle = await f.idle();
    expect(idle.get(ids[2]!)!).toBeLessThan(idle.get(ids[0]!)!);
    expect(idle.get(ids[0]!)!).toBeLessThan(idle.get(ids[3]!)!);
    // min_nodes lowered: 3 idle > max_idle 1, two go at once. n1's work is now a process at 0 %.
    f.restart(SERVER + IDLE(0, 1, 1, "30m"));
    await f.processOnly(ids[1]!);
    await f.pass();
    const leaving = (await f.store.db.select().from(nodes)).filter((n) => n.removal === "scale_down" && ids.includes(n.id)).map((n) => n.id);
    expect(leaving.sort()).toEqual([ids[2]!, ids[0]!].sort());
    const [decision] = (await f.store.db.select().from(auditLog).where(eq(auditLog.action, "scale"))).slice(-1);
    expect((decision!.details as { reason: string }).reason).toContain("3 idle > max_idle 1: release 2 over max_idle at once");
  });
});

describe("the predictive history", () => {
  const PREDICTIVE = (autoscaler: string) => pool(`      min_nodes: 1\n      max_nodes: 5\n      cooldown_period: 0s\n      autoscaler: ${autoscaler}\n`);

  test("is stored per tick, bounded by lookback_window, read back after a restart, and dropped with the predictive autoscaler", async () => {
    const f = await loop(SERVER + PREDICTIVE("{ type: predictive, lookback_window: 10m }"));
    await f.until(async () => (await f.launched()).some((n) => n.state === "ready"));
    for (let i = 0; i < 40; i++) await f.step(30 * SEC);
    const samples = async () => f.store.db.select().from(poolSamples).where(eq(poolSamples.pool, "p"));
    const stored = await samples();
    // One sample per 30 s tick over the last 10 minutes.
    expect(stored.length).toBeGreaterThanOrEqual(20);
    expect(stored.length).toBeLessThanOrEqual(21);
    expect(Math.min(...stored.map((s) => s.at))).toBeGreaterThanOrEqual(f.now() - 10 * MIN);
    expect(stored.every((s) => s.ready === 1 && s.utilization === 0 && s.queueDepth === null)).toBe(true);
    // A restart reads them back: the first tick adds one and keeps the rest.
    f.restart();
    await f.step(30 * SEC);
    const again = await samples();
    expect(again.map((s) => s.at)).toEqual(expect.arrayContaining(stored.filter((s) => s.at >= f.now() - 10 * MIN).map((s) => s.at)));
    expect(again.at(-1)!.at).toBe(f.now());
    // Without a predictive autoscaler the pool keeps no history.
    f.restart(SERVER + PREDICTIVE("{ type: reactive }"));
    await f.step(30 * SEC);
    expect(await samples()).toEqual([]);
  });
});

describe("a metrics source", () => {
  test("feeds the autoscaler; a source that fails is recorded on the pool and exported, and the pool holds", async () => {
    let answer: SourcedMetrics = { queue: { pending: 3, running: 0 } };
    const source: MetricsSource = { name: "fake", poolMetrics: async () => answer };
    const f = await loop(
      SERVER + pool("      min_nodes: 1\n      max_nodes: 4\n      cooldown_period: 0s\n      autoscaler: { type: queue, jobs_per_node: 1 }\n"),
      source,
    );
    await f.until(async () => (await f.launched()).length === 3);
    const failing = async () =>
      (await createMetrics(f.store.db).render()).split("\n").find((l) => l.startsWith('navarch_pool_metrics_source_failing{pool="p"}'));
    expect(await failing()).toBe('navarch_pool_metrics_source_failing{pool="p"} 0');
    answer = { problems: ["prometheus: queue_pending (sum(jobs)): no answer within 5s"] };
    for (let i = 0; i < 10; i++) await f.step(30 * SEC);
    expect((await f.store.db.select().from(pools).where(eq(pools.name, "p")))[0]!.metricsError).toBe(
      "prometheus: queue_pending (sum(jobs)): no answer within 5s",
    );
    expect(await failing()).toBe('navarch_pool_metrics_source_failing{pool="p"} 1');
    expect((await f.launched()).length).toBe(3);
    answer = { queue: { pending: 0, running: 1 } };
    await f.until(async () => (await f.launched()).length === 1);
    expect((await f.store.db.select().from(pools).where(eq(pools.name, "p")))[0]!.metricsError).toBeNull();
  });
});

describe("between autoscale ticks", () => {
  test("only the bounds apply, and the log and audit say so (not 'no autoscaler')", async () => {
    const f = await loop(
      SERVER +
        pool(
          "      min_nodes: 2\n      max_nodes: 6\n      cooldown_period: 0s\n      autoscaler: { type: reactive, scale_up_threshold: 80, scale_down_threshold: 20 }\n",
        ),
    );
    await f.until(async () => (await f.launched()).filter((n) => n.state === "ready").length === 2);
    // Right after a tick, a node leaves the pool (a launch that failed, a machine removed by hand):
    // min_nodes is restored before the next tick, by the bounds alone.
    await f.step(30 * SEC);
    const [gone] = await f.launched();
    await f.store.db.update(nodes).set({ state: "failed", stateReason: "removed by hand" }).where(eq(nodes.id, gone!.id));
    await f.pass(SEC);
    const reasons = (await f.store.db.select().from(auditLog))
      .filter((a) => a.action === "scale")
      .map((a) => String((a.details as { reason?: string }).reason));
    expect(reasons.some((r) => r.startsWith("between reactive autoscaler ticks (every 30s), bounds only; clamped to min_nodes 2"))).toBe(true);
    expect(reasons.filter((r) => r.startsWith("no autoscaler"))).toEqual([]);
  });
});
