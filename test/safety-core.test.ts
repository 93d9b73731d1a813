// The safety core, on the real reconcile loop over a real libSQL file (virtual time,
// simulated cloud and agents): each case is something an adversarial run made the
// reconciler do, and must never do again.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { join } from "node:path";
import { recordHeartbeat, registerNode } from "../reconciler/nodes/agent-reports.ts";
import { auditLog, incidents, nodes, operations, pools } from "../schema/db.ts";
import { isIn } from "../schema/lifecycle.ts";
import { FAST_SERVER, closeFleets, fleet, pool } from "./fleet-harness.ts";
import { tempDir } from "./support.ts";

afterEach(closeFleets);

const inPool = async (f: Awaited<ReturnType<typeof fleet>>, name = "p") =>
  (await f.all()).filter((n) => n.pool === name && n.origin === "launched" && isIn("inPool", n.state));

describe("a config edit never wipes a pool", () => {
  test("shrinking 3/3 to 2/2 removes exactly one node, through a drain, and launches nothing", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 3, 3)}`);
    await f.until(async () => (await f.count("ready")) === 3);
    const launchesBefore = f.cloud.calls.launch;
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    for (let i = 0; i < 60; i++) {
      await f.step();
      // Never below the new minimum by Navarch's own hand.
      expect((await f.all()).filter((n) => n.pool === "p" && isIn("inService", n.state)).length).toBeGreaterThanOrEqual(2);
    }
    const rows = await f.all();
    expect(rows.filter((n) => n.state === "ready")).toHaveLength(2);
    expect(rows.filter((n) => n.state === "terminated")).toHaveLength(1);
    expect(f.cloud.calls.launch).toBe(launchesBefore);
    // The one removal was drained first and said why, once.
    const removed = rows.find((n) => n.state === "terminated")!;
    const path = (await f.store.db.select().from(auditLog).where(eq(auditLog.target, removed.id)))
      .filter((a) => a.action === "transition" || a.action === "register")
      .map((a) => (a.details as { to: string }).to);
    expect(path).toEqual(["provisioning", "validating", "ready", "cordoned", "draining", "terminating", "terminated"]);
    expect((await f.store.db.select().from(auditLog)).filter((a) => a.action === "scale" && (a.details as { to: number }).to === 2)).toHaveLength(1);
  });

  test("shrinking to 0/0 and growing back: every step one decision, counted once", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 4, 4)}`);
    await f.until(async () => (await f.count("ready")) === 4);
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 1, 1)}`);
    await f.until(async () => (await f.count("terminated")) === 3);
    for (let i = 0; i < 20; i++) await f.step();
    expect(await f.count("ready")).toBe(1);
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 3, 5)}`);
    await f.until(async () => (await f.count("ready")) === 3);
    for (let i = 0; i < 20; i++) await f.step();
    expect((await inPool(f)).length).toBe(3);
  });

  test("removing a pool from the config leaves its nodes running, watched, never removed", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}${pool("q", 1, 1)}`);
    await f.until(async () => (await f.count("ready")) === 3);
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    for (let i = 0; i < 30; i++) await f.step();
    const q = (await f.all()).filter((n) => n.pool === "q");
    expect(q.map((n) => n.state)).toEqual(["ready"]);
    // Still watched: a fault takes it out of service.
    await f.agents.xid(q[0]!.id, 79);
    await f.step(100);
    expect((await f.node(q[0]!.id)).state).toBe("cordoned");
  });
});

describe("who a node belongs to", () => {
  test("a machine nobody launched that registers into a full pool is monitored: not counted, nothing removed for it", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    await f.until(async () => (await f.count("ready")) === 2);
    const result = await registerNode(
      f.store.db,
      {
        nodeId: "rogue-1",
        hostname: "rogue-1",
        bootId: "b1",
        agentVersion: "x",
        spoolId: "00000000-0000-4000-8000-000000000009",
        nvml: { available: true },
        gpus: [],
        pool: "p",
        provider: "local",
        instanceType: "local-8gpu",
      },
      f.now,
    );
    expect(result).toMatchObject({ ok: true, origin: "registered" });
    for (let i = 0; i < 30; i++) await f.step();
    const rows = await f.all();
    expect(rows.filter((n) => n.state === "terminated" || n.removal !== null)).toEqual([]);
    expect((await inPool(f)).length).toBe(2);
    expect(rows.find((n) => n.id === "rogue-1")).toMatchObject({ origin: "registered", pool: "p", instanceName: null });
  });

  test("a node's own agent cannot move it to another pool, provider or instance type", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}${pool("q", 1, 1)}`);
    await f.until(async () => (await f.count("ready")) === 3);
    const victim = (await f.all()).find((n) => n.pool === "p")!;
    await registerNode(
      f.store.db,
      {
        nodeId: victim.id,
        hostname: "h",
        bootId: victim.bootId!,
        agentVersion: "x",
        spoolId: "00000000-0000-4000-8000-000000000000",
        nvml: { available: true },
        gpus: [],
        pool: "q",
        provider: "aws",
        instanceType: "p5.48xlarge",
      },
      f.now,
    );
    for (let i = 0; i < 10; i++) await f.step();
    expect(await f.node(victim.id)).toMatchObject({ pool: "p", provider: "local", instanceType: "local-8gpu", origin: "launched", state: "ready" });
    expect((await f.all()).filter((n) => n.state === "terminated")).toEqual([]);
  });

  test("an agent without NVML checks no GPU: its health is unknown, never healthy, and it never enters service", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 1, 1)}`);
    await f.until(async () => (await f.count("ready")) === 1);
    const spoolId = "00000000-0000-4000-8000-00000000000b";
    const blind = {
      nodeId: "no-driver-1",
      hostname: "no-driver-1",
      bootId: "b1",
      agentVersion: "x",
      spoolId,
      nvml: { available: false, error: "libnvidia-ml.so.1: cannot open shared object file" },
      gpus: [],
      pool: "p",
    };
    expect(await registerNode(f.store.db, blind, f.now)).toMatchObject({ ok: true, origin: "registered" });
    for (let i = 0; i < 10; i++) {
      await recordHeartbeat(
        f.store.db,
        {
          nodeId: "no-driver-1",
          bootId: "b1",
          sentAt: new Date(f.now()).toISOString(),
          nvml: blind.nvml,
          health: { checked: true, worst: "healthy", openIncidents: 0 },
          gpus: [],
        },
        f.now,
      );
      await f.step();
    }
    const row = await f.node("no-driver-1");
    expect(row).toMatchObject({ state: "validating", verdict: null, nvmlAvailable: false });
    expect(row.stateReason).toContain("libnvidia-ml.so.1");
  });
});

describe("findings survive a lost database", () => {
  test("restored from a copy taken before the fault, a node whose GPU fell off never comes back into service", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 3, 3, "      auto_replace: false\n      remediation: replace\n")}`);
    await f.until(async () => (await f.count("ready")) === 3);
    const copy = join(tempDir(), "before-the-fault.db");
    await f.backup(copy);
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 3);
    await f.until(async () => (await f.node(victim.id)).state === "held");
    await f.restore(copy);
    expect((await f.node(victim.id)).state).toBe("ready"); // what the old copy says
    for (let i = 0; i < 40; i++) {
      await f.step();
      const n = await f.node(victim.id);
      expect({
        step: i,
        state: n.state,
        serving: isIn("inService", n.state) && n.verdict === "unhealthy" && !/blocked by/.test(n.stateReason ?? ""),
      }).toMatchObject({ serving: false });
    }
    // The agent re-sent its open finding; the node is out of service again and nothing healthy was replaced.
    expect((await f.node(victim.id)).state).toBe("held");
    expect((await f.all()).filter((n) => n.id !== victim.id).map((n) => n.state)).toEqual(["ready", "ready"]);
    expect(f.cloud.calls.launch).toBe(3);
  });

  test("with an empty database, the agents re-register and a broken node is quarantined at once", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2, "      auto_replace: false\n      remediation: replace\n")}`);
    const empty = join(tempDir(), "empty.db");
    await f.backup(empty);
    await f.until(async () => (await f.count("ready")) === 2);
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 1);
    await f.until(async () => (await f.node(victim.id)).state === "held");
    await f.restore(empty);
    await f.step();
    await f.step();
    // Re-registered as machines Navarch launched (the provider's tags say so), the broken one never Ready.
    await f.until(async () => (await f.all()).length === 2 && (await f.all()).every((n) => n.origin === "launched"), 40);
    expect((await f.node(victim.id)).verdict).toBe("unhealthy");
    expect(isIn("inService", (await f.node(victim.id)).state)).toBe(false);
  });
});

describe("launch failures back off", () => {
  test("a launch the provider refuses as a bad request: one failing pool, backing off, no failed rows", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 1, 1)}`);
    f.cloud.inject({ on: "launch", kind: "invalid", times: 1000 });
    for (let i = 0; i < 80; i++) await f.step(1000); // 80 s at one pass a second
    const rows = await f.all();
    expect(rows.filter((n) => n.state === "failed")).toEqual([]);
    expect(rows).toHaveLength(1);
    const launches = (await f.store.db.select().from(operations)).filter((o) => o.kind === "launch");
    expect(launches).toHaveLength(1);
    expect(f.cloud.calls.launch).toBeLessThanOrEqual(3); // at 0 s, 60 s (then 120 s…)
    const [p] = await f.store.db.select().from(pools);
    expect(p).toMatchObject({ launchErrorKind: "permanent", launchError: expect.stringContaining("injected invalid") });
    expect(rows[0]!.stateReason).toMatch(/^(launch refused: .*injected invalid|waiting to launch: pool p: launches refused)/);
    // Once the provider accepts, the pool recovers and says so.
    f.cloud.clearFaults();
    await f.until(async () => (await f.count("ready")) === 1, 200, 5000);
    const [after] = await f.store.db.select().from(pools);
    expect(after).toMatchObject({ launchFailures: 0, launchError: null });
  });

  test("transient failures retry sooner than permanent ones, up to minutes", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 1, 1)}`);
    f.cloud.inject({ on: "launch", kind: "transient", times: 1000 });
    for (let i = 0; i < 600; i++) await f.step(1000); // ten minutes
    // 5 s, 10 s, 20 s, … capped at 5 min: a handful of calls, not six hundred.
    expect(f.cloud.calls.launch).toBeGreaterThanOrEqual(5);
    expect(f.cloud.calls.launch).toBeLessThanOrEqual(9);
  });
});

describe("scale-down never evicts running work while idle nodes can go", () => {
  test("busy nodes are kept; idle ones are removed", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 4, 4)}`);
    await f.until(async () => (await f.count("ready")) === 4);
    const [busyA, busyB] = await f.all();
    f.agents.setUtilization(busyA!.id, 100);
    f.agents.setUtilization(busyB!.id, 60);
    await f.step();
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 1, 2)}`);
    await f.until(async () => (await f.count("terminated")) === 2);
    expect((await f.node(busyA!.id)).state).toBe("ready");
    expect((await f.node(busyB!.id)).state).toBe("ready");
  });

  test("when only busy nodes are left, the pool stays larger and says why", async () => {
    const lines: string[] = [];
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    await f.until(async () => (await f.count("ready")) === 2);
    for (const n of await f.all()) f.agents.setUtilization(n.id, 100);
    await f.step();
    f.restart(`${FAST_SERVER}pools:\n${pool("p", 1, 1)}`);
    for (let i = 0; i < 20; i++) await f.step();
    expect(await f.count("ready")).toBe(2);
    expect((await f.all()).filter((n) => n.removal !== null)).toEqual([]);
    void lines;
  });
});

describe("incidents tell the story", () => {
  test("a quarantined node waiting for a slot says so on the node and the incident", async () => {
    const f = await fleet(`${FAST_SERVER}safety:\n  max_in_flight_per_pool: 1\npools:\n${pool("p", 4, 4)}`);
    await f.until(async () => (await f.count("ready")) === 4);
    const [a, b] = await f.all();
    f.agents.setUtilization(a!.id, 100);
    f.agents.setUtilization(b!.id, 100);
    await f.agents.xid(a!.id, 79);
    await f.agents.xid(b!.id, 79);
    await f.step(100);
    await f.step(100);
    const waiting = [await f.node(a!.id), await f.node(b!.id)].find((n) => n.state === "cordoned")!;
    expect(waiting.stateReason).toMatch(/^cordoned, waiting for a remediation slot; blocked by (in_flight_pool|unhealthy_budget): /);
    const [incident] = await f.store.db.select().from(incidents).where(eq(incidents.nodeId, waiting.id));
    expect(incident?.cordonedAt).not.toBeNull();
    expect(incident?.status).toContain("waiting for a remediation slot");
    void nodes;
  });
});
