// A lost database never costs a running machine. A reconciler launched three machines on
// (the fake) Lambda, and its data directory was lost before their agents registered: the
// next reconciler, on a fresh database, must adopt the three tagged instances as nodes of
// their pool (the same ids, no terminate call, no new launch), give their agents a
// registration deadline counted from its own start (never from their launch), and take
// them into service when the agents come back, however long after a heartbeat timeout.
// Once observed: the three were terminated about a minute after the restart.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { recordHeartbeat, registerNode } from "../reconciler/nodes/agent-reports.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import { createProviders } from "../reconciler/providers/index.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { auditLog, nodes } from "../schema/db.ts";
import { startLambdaFake, type LambdaFake } from "./fake-clouds/lambda.ts";
import { fakeEnv } from "./fake-clouds/support.ts";
import { testConfig } from "./fleet-harness.ts";
import { tempDir } from "./support.ts";

const KEY_ENV = "LAMBDA_API_KEY";
const config = (baseUrl: string, pool = "train", size = 3) =>
  testConfig(`server:
  heartbeat_interval: 10s
  heartbeat_timeout: 30s
  health_check_interval: 10s
providers:
  lambda:
    api_key_env: ${KEY_ENV}
    base_url: ${baseUrl}
    ssh_key_names: [ops]
pools:
  - name: ${pool}
    provider: lambda
    instance_type: gpu_8x_h100_sxm5
    region: us-west-2
    scaling: { min_nodes: ${size}, max_nodes: ${size} }
    health: { registration_timeout: 10m }
`);

let fake: LambdaFake;
const stores: Store[] = [];

beforeAll(() => {
  fake = startLambdaFake({
    bootMs: 0,
    sshKeys: [{ name: "ops", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsKeyForTheLostDatabaseTest0000000000000 ops" }],
  });
});
afterAll(async () => {
  for (const s of stores) s.close();
  await fake.stop();
});

/**
 * A pass at this moment of the test's clock, and again while it left provider calls under way
 * (they run beside the loop, to the fake over HTTP): what they answered is read at once.
 */
async function settledPass(r: Reconciler): Promise<void> {
  await r.pass();
  for (let i = 0; i < 10 && r.beside.underWay() > 0; i++) {
    await r.beside.settled();
    await r.pass();
  }
}

describe("a lost database never costs a running machine", () => {
  test("a fresh database beside three running tagged instances adopts all three, also when their agents take longer than a heartbeat timeout", async () => {
    let clock = Date.parse("2026-11-23T00:00:00Z");
    const now = () => clock;
    const CONFIG = config(fake.url);
    // The providers as `navarch serve` builds them from the config.
    const providers = createProviders(CONFIG, {
      dataDir: tempDir(),
      serverUrl: "http://127.0.0.1:1",
      authToken: "-",
      log: () => undefined,
      env: fakeEnv({ [KEY_ENV]: fake.apiKey }),
    });
    const open = async () => {
      const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
      stores.push(store);
      return store;
    };
    const lines: string[] = [];

    // The first reconciler asks for the pool and launches it; its agents have not registered yet.
    const first = new Reconciler({ store: await open(), config: CONFIG, providers, policy: defaultHealthPolicy(), now });
    await settledPass(first);
    clock += 1000;
    await settledPass(first);
    const launched = fake.live().map((i) => ({ id: i.id, name: i.name ?? "(no name)" }));
    expect(launched).toHaveLength(3);

    // Its data directory is lost: a new reconciler starts on an empty database, a while later.
    clock += 5 * 60_000;
    const store = await open();
    const restart = clock;
    const second = new Reconciler({ store, config: CONFIG, providers, policy: defaultHealthPolicy(), now, log: (l) => lines.push(l) });
    // Five heartbeat timeouts and more pass with no agent heard.
    for (let i = 0; i < 40; i++) {
      await settledPass(second);
      clock += 5000;
    }
    const rows = await store.db.select().from(nodes);
    const described = (list: { id: string | null; instance: string | null; origin: string; pool: string | null; state: string }[]) =>
      list.map((n) => JSON.stringify(n)).sort();
    expect(described(rows.map((n) => ({ id: n.id, instance: n.instanceName, origin: n.origin, pool: n.pool, state: n.state })))).toEqual(
      described(launched.map((i) => ({ id: i.name, instance: i.id, origin: "launched", pool: "train", state: "provisioning" }))),
    );
    // Their deadline counts from this reconciler's start, not from their launch.
    for (const n of rows) expect(n.nextActionAt).toBe(restart + 10 * 60_000);
    expect(fake.state.calls.filter((c) => c.call === "terminate")).toEqual([]);
    expect(fake.state.launches).toHaveLength(3);
    expect(lines.filter((l) => l.includes("adopted lambda instance"))).toHaveLength(3);
    const adoptions = await store.db.select().from(auditLog).where(eq(auditLog.action, "adopt"));
    expect(adoptions).toHaveLength(3);

    // The agents come back, 200 s after the restart: each registers into its node and serves.
    for (const i of launched) {
      const reg = {
        nodeId: i.name,
        hostname: i.name,
        bootId: `boot-${i.id}`,
        agentVersion: "test",
        spoolId: "00000000-0000-4000-8000-000000000001",
        nvml: { available: true },
        gpus: [{ index: 0, uuid: `GPU-${i.id}`, pciBusId: "00000000:18:00.0", name: "NVIDIA H100 80GB HBM3" }],
      };
      expect(await registerNode(store.db, reg, now)).toMatchObject({ ok: true, created: false, origin: "launched" });
    }
    for (let i = 0; i < 10; i++) {
      for (const l of launched) {
        await recordHeartbeat(
          store.db,
          {
            nodeId: l.name,
            bootId: `boot-${l.id}`,
            sentAt: new Date(clock).toISOString(),
            nvml: { available: true },
            health: { checked: true, worst: "healthy", openIncidents: 0 },
            gpus: [{ index: 0, temperatureC: 40, utilizationPct: 0, processCount: 0 }],
          },
          now,
        );
      }
      await settledPass(second);
      clock += 5000;
    }
    const after = await store.db.select().from(nodes);
    expect(after.map((n) => n.state)).toEqual(["ready", "ready", "ready"]);
    expect(fake.state.calls.filter((c) => c.call === "terminate")).toEqual([]);
    expect(fake.state.launches).toHaveLength(3);
    expect(
      fake
        .live()
        .map((i) => i.id)
        .sort(),
    ).toEqual(launched.map((i) => i.id).sort());
  });

  test("an adopted machine leaves only by the pool's scale-down or when its deadline from the adoption passes with no agent, and the log says which", async () => {
    let clock = Date.parse("2026-11-24T00:00:00Z");
    const now = () => clock;
    const providers = createProviders(config(fake.url, "infer", 2), {
      dataDir: tempDir(),
      serverUrl: "http://127.0.0.1:1",
      authToken: "-",
      log: () => undefined,
      env: fakeEnv({ [KEY_ENV]: fake.apiKey }),
    });
    const open = async () => {
      const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
      stores.push(store);
      return store;
    };
    const first = new Reconciler({ store: await open(), config: config(fake.url, "infer", 2), providers, policy: defaultHealthPolicy(), now });
    await settledPass(first);
    clock += 1000;
    await settledPass(first);
    const launched = fake.live().filter((i) => i.tags.some((t) => t.key === "navarch-pool" && t.value === "infer"));
    expect(launched).toHaveLength(2);
    // The database is lost, and the pool was shrunk to one meanwhile; no agent ever comes back.
    const store = await open();
    const lines: string[] = [];
    const second = new Reconciler({ store, config: config(fake.url, "infer", 1), providers, policy: defaultHealthPolicy(), now, log: (l) => lines.push(l) });
    await settledPass(second);
    clock += 1000;
    await settledPass(second);
    const rows = await store.db.select().from(nodes);
    expect(rows.map((n) => n.state).sort()).toEqual(["provisioning", "terminated"]);
    const shrunk = rows.find((n) => n.state === "terminated")!;
    expect(lines.some((l) => l.startsWith(`${shrunk.id}: provisioning → terminating: scale down:`))).toBe(true);
    // The other one's agent never registers: 10 minutes after the adoption it is failed and terminated.
    const waited = rows.find((n) => n.state === "provisioning")!;
    clock += 10 * 60_000;
    await settledPass(second);
    expect((await store.db.select().from(nodes).where(eq(nodes.id, waited.id)))[0]!.state).toBe("failed");
    expect(lines).toContain(
      `${waited.id}: provisioning → failed: agent did not register within 10m of its adoption (a tagged instance no node row knew, adopted by this reconciler)`,
    );
    // Both of the pool's instances were terminated (the first test's, of a pool this config lacks, are reaped as orphans).
    for (const i of launched) expect(["terminating", "terminated"]).toContain(fake.state.instances.get(i.id)?.status ?? "terminated");
    expect(fake.state.launches.filter((l) => JSON.stringify(l).includes('"infer"'))).toHaveLength(2);
  });
});
