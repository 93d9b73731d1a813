// Slurm integration against a real Slurm 22.05 (test/slurm/harness.ts: munged, slurmctld,
// one slurmd per node slot, slurmrestd with JWT auth, from Debian's packages), driven by the
// real reconcile loop: a fault drains the Slurm node with Navarch's reason, the drain waits
// for the node's jobs (or requeues them at the deadline, or holds), the replacement on the
// same Slurm node is resumed, a human's `scontrol update state=resume` cancels the
// incident, a human's own drain is never resumed, and pending jobs scale the pool.
//
// The packages are installed on first use (test/slurm/ensure-slurm.sh, as root).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { join } from "node:path";
import * as v from "valibot";
import { auditLog, nodes } from "../schema/db.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler } from "../reconciler/app/serve.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { dialectFor } from "../reconciler/schedulers/slurm/client.ts";
import { testConfig } from "./fleet-harness.ts";
import { tempDir, waitFor } from "./support.ts";
import { slurmFleet, stopSlurmFleets, type SlurmFleet } from "./slurm/fleet.ts";
import { ensureSlurm, startSlurmHarness, type SlurmHarness } from "./slurm/harness.ts";

let slurm: SlurmHarness;
const startedAt = Date.now();
const log = (line: string) => {
  if (process.env.NAVARCH_TEST_VERBOSE) console.log(`[${((Date.now() - startedAt) / 1000).toFixed(2)} s] ${line}`);
};

beforeAll(async () => {
  const { installedInMs } = ensureSlurm();
  if (installedInMs !== undefined) console.log(`slurm packages installed in ${(installedInMs / 1000).toFixed(1)} s`);
  slurm = await startSlurmHarness({ slots: 6, partitions: { train: ["slot1", "slot2", "slot3", "slot4"], queued: ["slot5", "slot6"] }, log });
  console.log(`slurm harness (munged, slurmctld, slurmrestd) started in ${slurm.startMs} ms`);
}, 10 * 60_000);

afterAll(async () => {
  await stopSlurmFleets();
  await slurm?.stop();
}, 60_000);

afterEach(async () => {
  await stopSlurmFleets();
  await slurm.reset();
}, 60_000);

const POOL = (name: string, min: number, max: number, health = "      drain_timeout: 2h\n") =>
  `  - name: ${name}\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${min}\n      max_nodes: ${max}\n    health:\n      unhealthy_threshold: 1\n      remediation: replace\n${health}`;
const HOT = { check: "temperature", code: "thermal", severity: "unhealthy" as const, action: "reset_gpu" as const, message: "GPU 2: 98°C" };
const COOL = { check: "temperature", code: "thermal", severity: "healthy" as const, action: "none" as const, message: "recovered: GPU 2: 98°C" };

async function jobState(id: number): Promise<string | undefined> {
  return (await slurm.job(id))?.state;
}

async function running(id: number): Promise<void> {
  await waitFor(`job ${id} running`, async () => ((await jobState(id)) === "RUNNING" ? true : undefined), 30_000);
}

/** How the drain ended, as the loop recorded it when it replaced (or terminated) the node. */
async function drainOutcome(f: SlurmFleet, id: string): Promise<string> {
  const rows = await f.store.db.select().from(auditLog).where(eq(auditLog.target, id));
  const replace = rows.find((r) => r.action === "replace");
  return String((replace?.details as { how?: unknown } | null)?.how ?? "");
}

describe("cordon and drain", () => {
  test("a GPU fault drains the Slurm node with Navarch's reason within a second; the job finishes before the node goes; the replacement is resumed", async () => {
    const f = await slurmFleet(slurm, POOL("train", 1, 1), { slots: ["slot1"], log });
    const [a] = await f.ready("train", 1);
    const slot = f.slotOf(a!)!;
    await f.until("the mapping recorded", async () => (await f.node(a!)).k8sNodeName === slot, { stepMs: 1000, sleepMs: 100 });
    const job = await slurm.sbatch(["-p", "train", "-w", slot, "--wrap", "sleep 6"]);
    await running(job);

    // The fault, then the pass an arriving event wakes.
    const faultAt = performance.now();
    await f.agents.xid(a!, 79, 3);
    await f.step(1000);
    const drained = await waitFor(
      "DRAIN with Navarch's reason in slurmctld",
      async () => {
        const n = await slurm.node(slot);
        return n.state.includes("DRAIN") && n.reason.startsWith("navarch: ") ? n : undefined;
      },
      5_000,
    );
    const latencyMs = performance.now() - faultAt;
    console.log(`fault → Slurm DRAIN on the real slurmctld: ${latencyMs.toFixed(0)} ms`);
    expect(latencyMs).toBeLessThan(1000);
    const row = await f.node(a!);
    expect(row.state).toBe("cordoned");
    expect(drained.reason).toContain("Xid 79");
    expect(drained.reason).toContain(`(incident ${row.incidentId})`);
    expect(drained.state).toMatch(/^(MIXED|ALLOCATED)\+DRAIN/); // draining: the job runs on
    expect(drained.comment).toContain(`[navarch-cordon node=${a} incident=${row.incidentId} `);

    // Draining: the job is waited for, and named.
    await f.until("draining, waiting for the job", async () => (await f.node(a!)).stateReason?.includes(`1 job(s) running on ${slot} (${job})`) === true, {
      stepMs: 1000,
      sleepMs: 100,
    });
    let goneWhileRunning = false;
    await f.until(
      "terminated",
      async () => {
        const now = await f.node(a!);
        if (["terminating", "terminated"].includes(now.state) && (await jobState(job)) === "RUNNING") goneWhileRunning = true;
        return now.state === "terminated";
      },
      { stepMs: 1000, sleepMs: 200, timeoutMs: 60_000 },
    );
    expect(goneWhileRunning).toBe(false);
    expect(await jobState(job)).toBe("COMPLETED");
    expect(await drainOutcome(f, a!)).toContain(`no jobs left on ${slot}`);

    // The replacement comes up on the same Slurm node, still drained by Navarch for its
    // predecessor; once it is in service, Navarch resumes the node.
    const [b] = (await f.all()).filter((n) => n.replacementOf === a).map((n) => n.id);
    expect(b).toBeDefined();
    await f.until(
      "the replacement in service and its Slurm node resumed",
      async () => (await f.node(b!)).state === "ready" && f.slotOf(b!) === slot && !(await slurm.node(slot)).state.includes("DRAIN"),
      { stepMs: 1000, sleepMs: 200, timeoutMs: 60_000 },
    );
    const resumed = await slurm.node(slot);
    expect(resumed.hostname).toBe(b!);
    expect(resumed.comment).toBe("");
    expect(resumed.reason).toBe("");
    expect((await f.node(b!)).k8sNodeName).toBe(slot);
    // Jobs land there again.
    const next = await slurm.sbatch(["-p", "train", "-w", slot, "--wrap", "sleep 1"]);
    await waitFor(
      "the next job placed on the resumed node",
      async () => (["RUNNING", "COMPLETED", "COMPLETING"].includes((await jobState(next)) ?? "") ? true : undefined),
      30_000,
    );
  }, 120_000);

  test("at the drain deadline the node's jobs are requeued before it goes (on_deadline: requeue), or the node is held (hold)", async () => {
    const f = await slurmFleet(slurm, POOL("requeue", 1, 1, "      drain_timeout: 1m\n"), { slots: ["slot1"], log });
    const [a] = await f.ready("requeue", 1);
    const slotA = f.slotOf(a!)!;
    const long = await slurm.sbatch(["-p", "train", "-w", slotA, "--wrap", "sleep 600"]);
    await running(long);
    await f.agents.xid(a!, 79, 0);
    await f.until("draining", async () => (await f.node(a!)).stateReason?.includes(`job(s) running on ${slotA}`) === true, { stepMs: 1000, sleepMs: 100 });
    let goneWhileRunning = false;
    await f.until(
      "past the deadline and terminated",
      async () => {
        const now = await f.node(a!);
        if (["terminating", "terminated"].includes(now.state) && (await jobState(long)) === "RUNNING") goneWhileRunning = true;
        return now.state === "terminated";
      },
      { stepMs: 10_000, sleepMs: 200, timeoutMs: 60_000 },
    );
    expect(goneWhileRunning).toBe(false);
    expect(await drainOutcome(f, a!)).toContain(`requeued at the deadline: ${long}`);
    // Requeued: back to pending (Slurm holds a requeued job back briefly), not killed.
    expect(await jobState(long)).toBe("PENDING");

    const g = await slurmFleet(slurm, POOL("hold", 1, 1, "      drain_timeout: 1m\n"), { slots: ["slot2"], slurm: "  drain:\n    on_deadline: hold\n", log });
    const [h] = await g.ready("hold", 1);
    const slotH = g.slotOf(h!)!;
    const kept = await slurm.sbatch(["-p", "train", "-w", slotH, "--wrap", "sleep 600"]);
    await running(kept);
    await g.agents.xid(h!, 79, 0);
    await g.until("held", async () => (await g.node(h!)).state === "held", { stepMs: 10_000, sleepMs: 200 });
    const held = await g.node(h!);
    expect(held.stateReason).toContain(`1 job(s) running on ${slotH} (${kept})`);
    expect(held.stateReason).toContain("held (slurm.drain.on_deadline: hold)");
    for (let i = 0; i < 3; i++) await g.step();
    expect((await g.node(h!)).state).toBe("held");
    expect(await jobState(kept)).toBe("RUNNING"); // nothing requeued
    expect(g.cloud.running()).toHaveLength(1); // nor terminated
    expect((await slurm.node(slotH)).state).toContain("DRAIN");
  }, 120_000);

  test("a drain asked through Navarch's API drains in Slurm first; Navarch's own uncordon resumes it", async () => {
    const f = await slurmFleet(slurm, POOL("asked", 1, 1), { slots: ["slot3"], log });
    const [k] = await f.ready("asked", 1);
    const slot = f.slotOf(k!)!;
    const job = await slurm.sbatch(["-p", "train", "-w", slot, "--wrap", "sleep 2"]);
    await running(job);
    await f.operator.drain(k!, "alice", "firmware update", 3_600_000);
    await f.until("drained and held for alice", async () => (await f.node(k!)).state === "held", { stepMs: 1000, sleepMs: 200 });
    const drained = await slurm.node(slot);
    expect(drained.state).toMatch(/^IDLE\+DRAIN/);
    expect(drained.reason).toContain("navarch: drain requested by alice: firmware update");
    expect(await jobState(job)).toBe("COMPLETED"); // it finished; nothing was requeued

    // Alice uncordons through Navarch (not scontrol): the sweep sees the node in service and resumes it.
    await f.operator.uncordon(k!, "alice");
    f.mirror.staleCordonMs = 0;
    await f.until("resumed in Slurm", async () => !(await slurm.node(slot)).state.includes("DRAIN"), { stepMs: 1000, sleepMs: 200 });
    expect((await slurm.node(slot)).comment).toBe("");
    expect((await f.node(k!)).state).toBe("ready");
  }, 60_000);

  test("a node a human drained keeps the human's drain: Navarch marks it, and its recovery never resumes it", async () => {
    const f = await slurmFleet(slurm, POOL("theirs", 1, 1), { slots: ["slot4"], log });
    const [m] = await f.ready("theirs", 1);
    const slot = f.slotOf(m!)!;
    const job = await slurm.sbatch(["-p", "train", "-w", slot, "--wrap", "sleep 600"]);
    await running(job);
    await slurm.run("scontrol", ["update", `NodeName=${slot}`, "State=DRAIN", "Reason=maintenance: bios update"]);
    await f.agents.event(m!, HOT, 2);
    await f.until("draining", async () => (await f.node(m!)).state === "draining", { stepMs: 1000, sleepMs: 100 });
    await f.mirror.settle();
    const marked = await slurm.node(slot);
    expect(marked.reason).toBe("maintenance: bios update"); // theirs, not overwritten
    expect(marked.comment).toContain(`[navarch-cordon node=${m} `);

    // It recovers before it is replaced: Navarch takes its marker off and leaves the drain alone.
    await f.agents.event(m!, COOL, 2);
    await f.until("back in service", async () => (await f.node(m!)).state === "ready", { stepMs: 60_000, sleepMs: 0 });
    await f.mirror.settle();
    await waitFor("the marker removed", async () => ((await slurm.node(slot)).comment === "" ? true : undefined));
    const after = await slurm.node(slot);
    expect(after.state).toContain("DRAIN");
    expect(after.reason).toBe("maintenance: bios update");
    expect(await jobState(job)).toBe("RUNNING");
  }, 60_000);
});

describe("a human's resume", () => {
  test("scontrol update state=resume of our drain cancels the incident", async () => {
    const f = await slurmFleet(slurm, POOL("human", 1, 1), { slots: ["slot2"], log });
    const [c] = await f.ready("human", 1);
    const slot = f.slotOf(c!)!;
    const job = await slurm.sbatch(["-p", "train", "-w", slot, "--wrap", "sleep 600"]);
    await running(job);
    await f.agents.xid(c!, 79, 1);
    await f.until("draining", async () => (await f.node(c!)).stateReason?.includes(`job(s) running on ${slot}`) === true, { stepMs: 1000, sleepMs: 100 });
    const incidentId = (await f.node(c!)).incidentId;
    expect(incidentId).not.toBeNull();

    await slurm.run("scontrol", ["update", `NodeName=${slot}`, "State=RESUME"]);
    const resumedAt = performance.now();
    await waitFor("the incident cancelled", async () => ((await f.incident(incidentId))?.outcome === "cancelled" ? true : undefined), 10_000);
    console.log(`scontrol resume → incident cancelled: ${(performance.now() - resumedAt).toFixed(0)} ms (poll every 250 ms)`);
    expect((await f.incident(incidentId))?.status).toContain(`uncordoned by slurm (scontrol update state=resume of node ${slot})`);
    expect(await f.node(c!)).toMatchObject({ state: "ready", cordonedBy: null, incidentId: null });
    const audit = await f.store.db.select().from(auditLog).where(eq(auditLog.target, c!));
    expect(audit.some((e) => e.action === "uncordon" && e.actor.startsWith("slurm"))).toBe(true);
    await waitFor("our marker removed", async () => ((await slurm.node(slot)).comment === "" ? true : undefined));
    // The loop leaves it in service, the node stays resumed, the job runs on.
    for (let i = 0; i < 3; i++) await f.step();
    expect((await f.node(c!)).state).toBe("ready");
    expect((await slurm.node(slot)).state).not.toContain("DRAIN");
    expect(await jobState(job)).toBe("RUNNING");
  }, 60_000);
});

describe("queue metrics", () => {
  test("pending and running jobs of the pool's partition drive the queue autoscaler", async () => {
    const poolYaml = `  - name: queued\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 1\n      max_nodes: 6\n      cooldown_period: 0s\n      autoscaler:\n        type: queue\n        jobs_per_node: 2\n`;
    const f = await slurmFleet(slurm, poolYaml, { slots: ["slot5", "slot6"], log });
    const [first] = await f.ready("queued", 1);
    const slot = f.slotOf(first!)!;
    // One running (a slot has one CPU), five waiting for capacity, one held (not waiting for capacity).
    const jobs: number[] = [];
    for (let i = 0; i < 6; i++) jobs.push(await slurm.sbatch(["-p", "queued", "--wrap", "sleep 600"]));
    await slurm.sbatch(["-p", "queued", "--hold", "--wrap", "sleep 600"]);
    await slurm.sbatch(["-p", "train", "--wrap", "sleep 600"]); // another partition's
    await running(jobs[0]!);
    expect((await slurm.job(jobs[0]!))?.nodes).toBe(slot);
    await waitFor("depth 5 + 1", async () => {
      const depth = await f.integration.queue!.depth("queued");
      return depth?.pending === 5 && depth.running === 1 ? depth : undefined;
    });
    await f.until("scaled up to ceil(6 / 2) = 3", async () => (await f.all()).filter((n) => n.pool === "queued" && n.state !== "terminated").length === 3, {
      stepMs: 10_000,
      sleepMs: 0,
    });
    const scale = (await f.store.db.select().from(auditLog).where(eq(auditLog.action, "scale"))).at(-1);
    expect(JSON.stringify(scale?.details)).toContain("queue depth 6 (5 pending + 1 running)");
    // A pool whose partition does not exist has no depth (the autoscaler holds it).
    expect(await f.integration.queue!.depth("no-such-pool")).toBeUndefined();
  }, 90_000);
});

describe("the client", () => {
  test("22.05 serves v0.0.38: reads over REST, node updates through scontrol; a v0.0.39 server gets REST updates", async () => {
    const f = await slurmFleet(slurm, POOL("dialect", 0, 0), { log });
    const dialect = await f.integration.client.connect();
    expect(dialect).toMatchObject({ release: "22.05.8", reads: "v0.0.38", nodeUpdates: { via: "scontrol" } });
    // The OpenAPI document this slurmrestd serves, and one with v0.0.39's node update added
    // (the path and method of Slurm 23.02's published reference).
    const token = (await slurm.run("scontrol", ["token", `username=${slurm.user}`, "lifespan=60"])).trim().replace(/^SLURM_JWT=/, "");
    const doc = (await (
      await fetch(`${slurm.restUrl}/openapi/v3`, { headers: { "X-SLURM-USER-NAME": slurm.user, "X-SLURM-USER-TOKEN": token } })
    ).json()) as unknown;
    const paths = v.parse(v.object({ paths: v.record(v.string(), v.record(v.string(), v.unknown())) }), doc).paths;
    expect(dialectFor(paths).nodeUpdates.via).toBe("scontrol");
    const v39 = {
      ...paths,
      "/slurm/v0.0.39/nodes": { get: {} },
      "/slurm/v0.0.39/jobs": { get: {} },
      "/slurm/v0.0.39/node/{node_name}": { get: {}, post: {}, delete: {} },
    };
    expect(dialectFor(v39)).toEqual({ reads: "v0.0.39", nodeUpdates: { via: "rest", version: "v0.0.39" } });
    expect(() => dialectFor({ "/slurm/v0.0.40/nodes": { get: {} } })).toThrow("slurmrestd serves v0.0.40; Navarch speaks v0.0.39 and v0.0.38");
  }, 30_000);
});

describe("serve", () => {
  test("navarch serve with a slurm section: the integration drives the loop and the Slurm node shows in the node's details", async () => {
    const dir = tempDir("navarch-serve-slurm-");
    const config = testConfig(
      `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\nslurm:\n  rest_url: ${slurm.restUrl}\n  user: ${slurm.user}\n  jwt_key_file: ${slurm.jwtKeyPath}\n  slurm_conf: ${slurm.confPath}\n  node_mapping: feature\n  poll_interval: 250ms\npools:\n  - name: served\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 1\n`,
    );
    const cloud = new SimulatedCloud({ name: "local", now: Date.now, launchLatencyMs: 0 });
    process.env.NAVARCH_SLURM_TEST_TOKEN = "slurm-serve-token";
    const rec = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir: dir,
        databaseUrl: `file:${join(dir, "navarch.db")}`,
        authTokenEnv: "NAVARCH_SLURM_TEST_TOKEN",
        heartbeatIntervalSeconds: 10,
      },
      log,
      Date.now,
      { config, providers: new Map([["local", cloud]]), intervalMs: 100 },
    );
    try {
      const agents = new SimulatedAgents(rec.store.db, cloud, Date.now);
      const id = await waitFor(
        "a node of the pool registered",
        async () => {
          await agents.tick();
          const [row] = await rec.store.db.select().from(nodes).where(eq(nodes.pool, "served"));
          return row?.bootId ? row.id : undefined;
        },
        30_000,
      );
      // The machine labels its Slurm node with its node id (slurm.node_mapping: feature).
      await slurm.run("scontrol", ["update", "NodeName=slot6", `AvailableFeatures=navarch-node=${id}`, `ActiveFeatures=navarch-node=${id}`]);
      await slurm.bootMachine("slot6", "slot6");
      const api = (path: string) =>
        fetch(`${rec.url}/v1${path}`, { headers: { Authorization: "Bearer slurm-serve-token" } }).then(
          (r) => r.json() as Promise<{ node: { k8sNodeName: string | null } }>,
        );
      await waitFor("the mapping in the node's details", async () => ((await api(`/nodes/${id}`)).node.k8sNodeName === "slot6" ? true : undefined), 20_000);
    } finally {
      await rec.stop();
      delete process.env.NAVARCH_SLURM_TEST_TOKEN;
      await slurm.run("scontrol", ["update", "NodeName=slot6", "AvailableFeatures=", "ActiveFeatures="]).catch(() => undefined);
    }
  }, 60_000);
});
