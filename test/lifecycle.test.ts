// The reconcile loop on virtual time, with a simulated cloud and simulated agents
// talking to a real libSQL file: the pool comes up, a fatal Xid takes a node
// through cordon, drain, terminate and replacement, and the replacement is Ready.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { incidents, nodes, pools } from "../schema/db.ts";
import { registerNode } from "../reconciler/nodes/agent-reports.ts";
import { FAST_SERVER, closeFleets, fleet as makeFleet, pool } from "./fleet-harness.ts";
import { isIn } from "../schema/lifecycle.ts";

afterEach(closeFleets);

/** A pool that replaces every unhealthy node (the remediation ladder has its own tests). */
const REPLACE = "      remediation: replace\n";

async function fleet() {
  const f = await makeFleet(`${FAST_SERVER}pools:\n${pool("train", 3, 6, REPLACE)}`);
  const byState = async () => {
    const out: Record<string, number> = {};
    for (const n of await f.all()) out[n.state] = (out[n.state] ?? 0) + 1;
    return out;
  };
  return { ...f, byState };
}

async function until(step: () => Promise<unknown>, done: () => Promise<boolean>, maxSteps = 200): Promise<number> {
  for (let i = 0; i < maxSteps; i++) {
    if (await done()) return i;
    await step();
  }
  throw new Error(`not done after ${maxSteps} steps`);
}

describe("reconcile loop", () => {
  test("min_nodes is enforced with no autoscaler: the pool comes up to Ready", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    expect(f.cloud.running()).toHaveLength(3);
    expect(f.cloud.calls.launch).toBe(3);
  });

  test("a launch answered after its machine's agent registered (the call ran beside the loop): the instance is on the node anyway", async () => {
    const f = await makeFleet(`${FAST_SERVER}pools:\n${pool("train", 1, 1, REPLACE)}`);
    const launch = f.cloud.launch.bind(f.cloud);
    let answer: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    // The machine is made at once; the API's answer comes only later.
    f.cloud.launch = async (req) => {
      const instance = await launch(req);
      await answered;
      return instance;
    };
    await f.step(); // requested (scale-up)
    await f.step(); // its launch asked for, beside the loop
    const [requested] = await f.all();
    expect(requested).toMatchObject({ state: "requested", instanceName: null });
    expect(requested!.stateReason).toContain("launch call to local under way");
    // Its agent registers first (the local provider's agent starts inside the launch call).
    const registered = await registerNode(
      f.store.db,
      {
        nodeId: requested!.id,
        hostname: requested!.id,
        bootId: "boot-1",
        agentVersion: "test",
        spoolId: "00000000-0000-4000-8000-000000000001",
        nvml: { available: true },
        gpus: [],
      },
      f.now,
    );
    expect(registered.ok).toBe(true);
    expect((await f.node(requested!.id)).state).toBe("validating");
    answer();
    await Bun.sleep(10);
    const node = await f.node(requested!.id);
    expect(node).toMatchObject({ state: "validating", provider: "local", instanceType: "local-8gpu" });
    expect(node.instanceName).toBe(f.cloud.running()[0]!.id);
    await f.step();
    expect((await f.node(requested!.id)).instanceName).toBe(f.cloud.running()[0]!.id);
    expect(f.cloud.calls.launch).toBe(1);
  });

  test("a fatal Xid: cordon → drain → terminate → replacement Ready; the incident records each step", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 3);
    const report = await f.step(100);
    expect(report.transitions.find((t) => t.node === victim.id)?.to).toBe("cordoned");
    await until(f.step, async () => {
      const s = await f.byState();
      return s.ready === 3 && s.terminated === 1;
    });
    const [old] = await f.store.db.select().from(nodes).where(eq(nodes.id, victim.id));
    expect(old?.state).toBe("terminated");
    expect(f.cloud.peek(victim.instanceName!)?.state).toBe("terminated");
    const [incident] = await f.store.db.select().from(incidents).where(eq(incidents.nodeId, victim.id));
    expect(incident).toMatchObject({ outcome: "replaced" });
    expect(incident!.cordonedAt).not.toBeNull();
    expect(incident!.drainedAt).not.toBeNull();
    expect(incident!.terminatedAt).not.toBeNull();
    expect(incident!.replacementReadyAt).not.toBeNull();
    const [replacement] = await f.store.db.select().from(nodes).where(eq(nodes.id, incident!.replacementNodeId!));
    expect(replacement).toMatchObject({ state: "ready", replacementOf: victim.id });
    expect(f.cloud.running()).toHaveLength(3);
  });

  test("drain waits for busy GPUs until they go idle", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    const victim = (await f.all())[0]!;
    f.agents.setUtilization(victim.id, 90);
    await f.agents.xid(victim.id, 79);
    await until(f.step, async () => (await f.byState()).draining === 1);
    for (let i = 0; i < 5; i++) await f.step();
    const [draining] = await f.store.db.select().from(nodes).where(eq(nodes.id, victim.id));
    expect(draining?.state).toBe("draining");
    expect(draining?.stateReason).toContain("GPUs still busy");
    f.agents.setUtilization(victim.id, 0);
    await until(f.step, async () => (await f.store.db.select().from(nodes).where(eq(nodes.id, victim.id)))[0]?.state === "terminated");
  });

  test("a human's uncordon cancels the reconciler's incident, and the loop leaves the node in service", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    const victim = (await f.all())[0]!;
    f.agents.setUtilization(victim.id, 90); // busy: the drain waits
    await f.agents.xid(victim.id, 79);
    await until(f.step, async () => (await f.node(victim.id)).state === "draining");
    const incidentId = (await f.node(victim.id)).incidentId!;
    await f.operator.uncordon(victim.id, "alice");
    for (let i = 0; i < 5; i++) await f.step();
    expect(await f.node(victim.id)).toMatchObject({ state: "ready", cordonedBy: null, incidentId: null });
    const [incident] = await f.store.db.select().from(incidents).where(eq(incidents.id, incidentId));
    expect(incident).toMatchObject({ outcome: "cancelled", status: "cancelled: uncordoned by alice" });
  });

  test("an app-caused Xid once is degraded (suspect), not cordoned, and recovers", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    const n = (await f.all())[0]!;
    await f.agents.xid(n.id, 13);
    await f.step(100);
    expect((await f.store.db.select().from(nodes).where(eq(nodes.id, n.id)))[0]?.state).toBe("suspect");
    // No repeat for longer than the healthy delay: the finding closes.
    f.advance(11 * 60_000);
    await until(f.step, async () => (await f.store.db.select().from(nodes).where(eq(nodes.id, n.id)))[0]?.state === "ready");
  });

  test("a silent node is Lost and replaced once the provider confirms its instance is gone", async () => {
    const f = await fleet();
    await until(f.step, async () => (await f.byState()).ready === 3);
    const n = (await f.all())[0]!;
    f.agents.setSilent(n.id, true);
    await until(f.step, async () => (await f.store.db.select().from(nodes).where(eq(nodes.id, n.id)))[0]?.state !== "ready");
    await until(f.step, async () => (await f.store.db.select().from(nodes).where(eq(nodes.id, n.id)))[0]?.state === "terminated");
    expect(f.cloud.peek(n.instanceName!)?.state).toBe("terminated");
    await until(f.step, async () => (await f.byState()).ready === 3);
  });

  test("an agent that never registers fails and its instance is cleaned up; after three the pool is held until resumed", async () => {
    const f = await fleet();
    // Let the launches happen (the first pass requests, the second launches), then keep the
    // instances from ever running: their agents never come up.
    await f.step(0);
    await f.step(0);
    const launched = f.cloud.running().map((i) => i.id);
    for (const id of launched) f.cloud.vanish(id);
    f.advance(11 * 60_000);
    await f.step(0);
    const failed = (await f.all()).filter((n) => n.state === "failed");
    expect(failed).toHaveLength(3);
    for (const n of failed) expect(f.cloud.peek(n.instanceName!)?.state).toBe("terminated");
    // Three in a row did not register: the pool stops launching and its waiting nodes say why.
    for (let i = 0; i < 60; i++) await f.step(60_000);
    expect(f.cloud.calls.launch).toBe(3);
    const [held] = await f.store.db.select().from(pools).where(eq(pools.name, "train"));
    expect(held!.registrationHold).toBe(
      "the last 3 machines did not register within 10m; no machine of this pool has registered yet; raise health.registration_timeout or check the bootstrap",
    );
    const waiting = (await f.all()).filter((n) => n.state === "requested");
    expect(waiting).toHaveLength(3);
    for (const n of waiting) expect(n.stateReason).toStartWith("waiting to launch: pool train is held: the last 3 machines did not register within 10m");
    // An operator resumes it (`navarch pools resume train`): it launches again and comes up.
    await f.operator.resumePool("train", "human:test");
    await until(f.step, async () => (await f.byState()).ready === 3);
    expect(f.cloud.calls.launch).toBe(6);
  });

  test("surge: the replacement is launched when the drain starts; the node is retired once it is Ready", async () => {
    const f = await makeFleet(`${FAST_SERVER}pools:\n${pool("train", 3, 4, `      replacement: surge\n${REPLACE}`)}`);
    await f.until(async () => (await f.count("ready")) === 3);
    const victim = (await f.all())[0]!;
    f.agents.setUtilization(victim.id, 90); // work still running: the drain waits
    await f.agents.xid(victim.id, 79);
    await f.step(100);
    expect((await f.node(victim.id)).state).toBe("cordoned");
    await f.step(100);
    const surge = (await f.all()).find((n) => n.replacementOf === victim.id);
    expect(surge?.state).toBe("requested");
    expect((await f.node(victim.id)).state).toBe("draining");
    f.agents.setUtilization(victim.id, 0);
    let maxSize = 0;
    await f.until(async () => {
      const rows = await f.all();
      maxSize = Math.max(maxSize, rows.filter((n) => isIn("inPool", n.state)).length);
      return (await f.node(victim.id)).state === "terminated";
    });
    const waited = (await f.store.db.select().from(incidents).where(eq(incidents.nodeId, victim.id)))[0]!;
    // The old node went only after its replacement was Ready.
    expect(waited.replacementReadyAt).not.toBeNull();
    expect(waited.terminatedAt!).toBeGreaterThanOrEqual(waited.replacementReadyAt!);
    expect(maxSize).toBeLessThanOrEqual(4);
    await f.until(async () => (await f.count("ready")) === 3);
    for (let i = 0; i < 10; i++) await f.step();
    expect(await f.count("ready")).toBe(3); // no scale-down or extra node afterwards
  });
});
