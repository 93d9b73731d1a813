// Registration deadlines learned from the pool, the hold of a pool whose machines do not
// register, and the late agent, on the real loop over a real libSQL file with a simulated
// cloud. Agents here register and heartbeat by hand (through the registry, as the API
// does), so that a test decides when, or whether, a machine's agent comes up.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { recordHeartbeat, registerNode } from "../reconciler/nodes/agent-reports.ts";
import { buildReport } from "../reconciler/api/report.ts";
import { reportText } from "../reconciler/cli/report.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { DEADLINE_MARGIN, REGISTRATION_SAMPLES, deadlineFrom, recordRegistration } from "../reconciler/nodes/registration-deadlines.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { nodes, pools, registrations } from "../schema/db.ts";
import { testConfig } from "./fleet-harness.ts";
import { tempDir } from "./support.ts";

const MIN = 60_000;
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function yaml(nodesWanted: number, health = "registration_timeout: 10m") {
  return `server:
  heartbeat_interval: 10s
  health_check_interval: 10s
pools:
  - name: p
    provider: local
    instance_type: local-8gpu
    region: local
    scaling: { min_nodes: ${nodesWanted}, max_nodes: ${nodesWanted} }
    health: { ${health} }
`;
}

async function fleet(config: string, cloudOptions: { launchLatencyMs?: number } = {}) {
  let clock = Date.parse("2026-11-23T00:00:00Z");
  const now = () => clock;
  const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
  stores.push(store);
  const cloud = new SimulatedCloud({
    name: "local",
    now,
    launchLatencyMs: cloudOptions.launchLatencyMs ?? MIN,
    instanceTypes: [{ name: "local-8gpu", gpus: 8 }],
  });
  const lines: string[] = [];
  let reconciler: Reconciler;
  const make = (text: string) =>
    new Reconciler({ store, config: testConfig(text), providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now, log: (l) => lines.push(l) });
  reconciler = make(config);
  const all = () => store.db.select().from(nodes);
  const node = async (id: string) => (await store.db.select().from(nodes).where(eq(nodes.id, id)))[0]!;
  const pool = async () => (await store.db.select().from(pools).where(eq(pools.name, "p")))[0]!;
  /** The agent of node `id` comes up: it registers, then heartbeats healthy. */
  const register = (id: string) =>
    registerNode(
      store.db,
      {
        nodeId: id,
        hostname: id,
        bootId: `boot-${id}`,
        agentVersion: "test",
        spoolId: "00000000-0000-4000-8000-000000000001",
        nvml: { available: true },
        gpus: Array.from({ length: 8 }, (_, i) => ({ index: i, uuid: `GPU-${id}-${i}`, pciBusId: `00000000:${18 + i}:00.0`, name: "NVIDIA H100 80GB HBM3" })),
      },
      now,
    );
  const heartbeat = async (id: string) =>
    recordHeartbeat(
      store.db,
      {
        nodeId: id,
        bootId: `boot-${id}`,
        sentAt: new Date(clock).toISOString(),
        nvml: { available: true },
        health: { checked: true, worst: "healthy", openIncidents: 0 },
        gpus: Array.from({ length: 8 }, (_, i) => ({ index: i, temperatureC: 40, utilizationPct: 0, processCount: 0 })),
      },
      now,
    );
  /** Advances the clock by `ms`, heartbeats the registered agents, runs a pass. */
  const step = async (ms = 5000, beating: readonly string[] = []) => {
    clock += ms;
    for (const id of beating) await heartbeat(id);
    return reconciler.pass();
  };
  return {
    store,
    cloud,
    lines,
    all,
    node,
    pool,
    register,
    step,
    now,
    advance: (ms: number) => {
      clock += ms;
    },
    restart: (text: string) => {
      reconciler = make(text);
    },
  };
}

describe("the deadline a pool learns", () => {
  const health = { registration_timeout: 15 * MIN, registration_timeout_max: 120 * MIN };

  test("the configured timeout until something registered; then the larger of it and 1.5 × the recent p99, never past the ceiling", () => {
    expect(deadlineFrom(health, [])).toEqual({ ms: 15 * MIN, configured: 15 * MIN, samples: 0 });
    // Machines that register in 8 minutes teach nothing shorter than what the operator set.
    expect(deadlineFrom(health, [8 * MIN, 7 * MIN]).ms).toBe(15 * MIN);
    // 25 minutes, four times: 37.5 minutes.
    expect(deadlineFrom(health, [25 * MIN, 24 * MIN, 25 * MIN, 23 * MIN])).toMatchObject({ ms: 37.5 * MIN, p99: 25 * MIN, slowest: 25 * MIN, samples: 4 });
    // The p99 of 200 registrations leaves the slowest one out.
    const many = [...Array.from({ length: 199 }, () => 20 * MIN), 100 * MIN];
    expect(deadlineFrom(health, many).p99).toBe(20 * MIN);
    expect(DEADLINE_MARGIN).toBe(1.5);
    // A cloud that once took 3 hours is bounded by registration_timeout_max.
    expect(deadlineFrom(health, [180 * MIN]).ms).toBe(120 * MIN);
    // A timeout set above the ceiling is the operator's word.
    expect(deadlineFrom({ registration_timeout: 180 * MIN, registration_timeout_max: 120 * MIN }, [10 * MIN]).ms).toBe(180 * MIN);
  });

  test("only the latest registrations of each pool, provider and instance type are kept", async () => {
    const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
    stores.push(store);
    for (let i = 0; i < REGISTRATION_SAMPLES + 10; i++) {
      await recordRegistration(store.db, { pool: "p", provider: "aws", instanceType: "t", nodeId: `n${i}`, launchedAt: 0, registeredAt: i, late: false });
    }
    await recordRegistration(store.db, { pool: "p", provider: "gcp", instanceType: "t", nodeId: "g", launchedAt: 0, registeredAt: 1, late: false });
    const rows = await store.db.select().from(registrations);
    expect(rows.filter((r) => r.provider === "aws")).toHaveLength(REGISTRATION_SAMPLES);
    expect(Math.min(...rows.filter((r) => r.provider === "aws").map((r) => r.registeredAt))).toBe(10);
    expect(rows.filter((r) => r.provider === "gcp")).toHaveLength(1);
  });

  test("past its deadline a machine the provider still boots is asked about again; its registration after 20 minutes gives the next machines 30, and the log says so once", async () => {
    // The provider reports each machine as booting for 18 minutes; the first agent registers at 20.
    const f = await fleet(yaml(1, "registration_timeout: 15m"), { launchLatencyMs: 18 * MIN });
    await f.step(0);
    await f.step(1000);
    const [first] = await f.all();
    await f.step(16 * MIN);
    expect((await f.node(first!.id)).state).toBe("provisioning");
    expect((await f.node(first!.id)).stateReason).toBe("still booting at local 16m after its launch (deadline 15m); asking again");
    expect(f.lines).toContain(`${first!.id}: past its registration deadline (15m), but still booting at local: waiting, at most 2h after its launch`);
    await f.step(4 * MIN);
    expect((await f.register(first!.id)).ok).toBe(true);
    await f.step(5000, [first!.id]);
    await f.step(5000, [first!.id]);
    expect((await f.node(first!.id)).state).toBe("ready");
    const [sample] = await f.store.db.select().from(registrations);
    expect(sample).toMatchObject({ pool: "p", provider: "local", instanceType: "local-8gpu", nodeId: first!.id, late: false });
    expect(sample!.registeredAt - sample!.launchedAt).toBe(20 * MIN);

    // The pool grows by two: they get 1.5 × 20 minutes, said once.
    f.restart(yaml(3, "registration_timeout: 15m"));
    await f.step(1000, [first!.id]);
    await f.step(1000, [first!.id]);
    const grown = (await f.all()).filter((n) => n.id !== first!.id);
    expect(grown.map((n) => n.state)).toEqual(["provisioning", "provisioning"]);
    for (const n of grown) {
      expect(n.nextActionAt! - n.launchedAt!).toBe(30 * MIN);
      expect(n.stateReason).toMatch(/^launched sim-\d+ on local; its agent has 30m to register$/);
    }
    expect(f.lines.filter((l) => l.includes("to register, longer than"))).toEqual([
      "pool p: machines on local local-8gpu get 30m to register, longer than health.registration_timeout (15m): the p99 of the last 1 registration(s) is 20m (deadline 1.5× that, at most health.registration_timeout_max)",
    ]);
    // They run after 18 minutes and never register: failed at 30, not at 15.
    await f.step(29 * MIN, [first!.id]);
    expect((await f.node(grown[0]!.id)).state).toBe("provisioning");
    await f.step(MIN + 1000, [first!.id]);
    expect((await f.node(grown[0]!.id)).state).toBe("failed");
    expect((await f.node(grown[0]!.id)).stateReason).toBe("agent did not register within 30m");
  });
});

describe("a late agent is welcome", () => {
  test("given up while its terminate failed, the machine's agent registers: adopted back, it teaches the deadline, lifts the hold, and the spare replacement goes", async () => {
    const f = await fleet(yaml(1, "registration_timeout: 10m, max_registration_failures: 1"));
    await f.step(0);
    await f.step(1000);
    const [slow] = await f.all();
    // At its deadline the provider says it runs (no agent yet): given up. Its terminate call fails.
    f.cloud.inject({ on: "terminate", kind: "transient", times: 1 });
    await f.step(10 * MIN + 1000);
    expect((await f.node(slow!.id)).state).toBe("failed");
    expect(f.cloud.peek(slow!.instanceName!)?.state).toBe("running");
    // One failure of one allowed: the pool is held, its replacement waits.
    expect((await f.pool()).registrationHold).toStartWith("the last machine did not register within 10m");
    await f.step(5000);
    const [waiting] = (await f.all()).filter((n) => n.state === "requested");
    expect(waiting!.stateReason).toStartWith("waiting to launch: pool p is held:");
    // Its agent registers 12 minutes after the launch, while the instance is still there.
    const answer = await f.register(slow!.id);
    expect(answer).toMatchObject({ ok: true, origin: "launched" });
    const back = await f.node(slow!.id);
    expect(back.state).toBe("validating");
    expect(back.stateReason).toStartWith("registered 10m after its launch, after it was given up; adopted back into pool p");
    const [sample] = await f.store.db.select().from(registrations);
    expect(sample).toMatchObject({ nodeId: slow!.id, late: true });
    // The next pass lifts the hold; the node serves; the replacement nobody needs any more is removed.
    for (let i = 0; i < 6; i++) await f.step(5000, [slow!.id]);
    expect((await f.node(slow!.id)).state).toBe("ready");
    expect(await f.pool()).toMatchObject({ registrationHold: null, registrationFailures: 0 });
    expect(f.lines.some((l) => l.startsWith(`pool p: no longer held; launching again: ${slow!.id} registered after it was given up`))).toBe(true);
    // The pass that lifted the hold launched the waiting node before the pool was sized; sizing removed it at once.
    const spare = await f.node(waiting!.id);
    expect(spare.state).toBe("terminated");
    expect(f.cloud.peek(spare.instanceName!)?.state).toBe("terminated");
    expect(f.cloud.peek(slow!.instanceName!)?.state).toBe("running");
  });

  test("a machine whose terminate was accepted stays gone: its agent is refused", async () => {
    const f = await fleet(yaml(1, "registration_timeout: 10m"));
    await f.step(0);
    await f.step(1000);
    const [slow] = await f.all();
    await f.step(10 * MIN + 1000);
    expect((await f.node(slow!.id)).state).toBe("failed");
    expect(await f.register(slow!.id)).toEqual({ ok: false, state: "failed" });
    expect(await f.store.db.select().from(registrations)).toEqual([]);
  });
});

describe("a pool that stops paying", () => {
  test("accepted launches do not reset the back-off of machines that did not register; a config change lifts the hold", async () => {
    const f = await fleet(yaml(1, "registration_timeout: 10m, max_registration_failures: 3"));
    await f.step(0);
    // Three machines that run and never register: launched 1 min, then 2 min after each failure.
    const launchedAt: number[] = [];
    for (let i = 0; i < 200 && launchedAt.length < 4; i++) {
      const before = f.cloud.calls.launch;
      const report = await f.step(30_000);
      if (f.cloud.calls.launch > before) launchedAt.push(report.at);
    }
    expect(launchedAt).toHaveLength(3);
    // Each ran (1 min), missed its 10, and the next waited 1 min, then 2: not reset by the accepted launch between.
    expect(launchedAt[1]! - launchedAt[0]!).toBeGreaterThanOrEqual(11 * MIN);
    expect(launchedAt[2]! - launchedAt[1]!).toBeGreaterThanOrEqual(12 * MIN);
    const held = await f.pool();
    expect(held.registrationHold).toBe(
      "the last 3 machines did not register within 10m; no machine of this pool has registered yet; raise health.registration_timeout or check the bootstrap",
    );
    // What they cost: three machines that never served, 8 GPUs each (the provider's instance type), from launch to terminate.
    const failed = (await f.all()).filter((n) => n.state === "failed");
    const hours = failed.reduce((t, n) => t + (n.stateChangedAt - n.launchedAt!) / 3_600_000, 0);
    expect(failed.map((n) => n.gpuCount)).toEqual([8, 8, 8]);
    expect(hours).toBeCloseTo((3 * 10.5) / 60, 2); // each ran 30 s past its 10 minutes (the passes here are 30 s apart)
    const scraped = (await createMetrics(f.store.db).render()).split("\n");
    const sample = (series: string) => Number(scraped.find((l) => l.startsWith(`${series} `))?.split(" ")[1]);
    expect(sample('navarch_machines_never_served_total{pool="p",provider="local"}')).toBe(3);
    expect(sample('navarch_machines_never_served_gpu_hours_total{pool="p",provider="local"}')).toBeCloseTo(hours * 8, 9);
    expect(sample('navarch_pool_registration_held{pool="p"}')).toBe(1);
    expect(sample('navarch_pool_registration_failures{pool="p"}')).toBe(3);
    const report = await buildReport(f.store, 0, f.now());
    expect(report.neverServed.pools).toMatchObject([{ pool: "p", provider: "local", machines: 3, gpusUnknown: 0 }]);
    expect(report.neverServed.total.machineHours).toBeCloseTo(hours, 9);
    expect(report.neverServed.total.gpuHours).toBeCloseTo(hours * 8, 9);
    expect(reportText(report).split("\n").slice(2)).toEqual([
      "Machines that never served (launched and terminated without entering service):",
      "POOL   PROVIDER  MACHINES  MACHINE-HOURS  GPU-HOURS",
      "p      local     3         0.5            4.2",
      "total            3         0.5            4.2",
      "",
      // They never served: no GPU time was lost to an outage.
      "Goodput (GPU time lost while nodes that had served were out of service):",
      "  none lost; 0.0 GPU-hours in service",
    ]);
    // A window that starts after they ended counts none of them.
    expect((await buildReport(f.store, f.now(), f.now())).neverServed.total.machines).toBe(0);
    // Held: nothing launches for an hour.
    for (let i = 0; i < 60; i++) await f.step(MIN);
    expect(f.cloud.calls.launch).toBe(3);
    // The operator raises the timeout: the pool launches again.
    f.restart(yaml(1, "registration_timeout: 30m, max_registration_failures: 3"));
    await f.step(1000);
    await f.step(1000);
    expect(f.cloud.calls.launch).toBe(4);
    expect(await f.pool()).toMatchObject({ registrationHold: null, registrationFailures: 0 });
    expect(f.lines).toContain("pool p: no longer held; launching again: its configuration changed");
  });
});
