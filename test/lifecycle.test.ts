// The reconcile loop on virtual time, with a simulated cloud and simulated agents
// talking to a real libSQL file: the pool comes up, a fatal Xid takes a node
// through cordon, drain, terminate and replacement, and the replacement is Ready.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { incidents, nodes } from "../schema/db.ts";
import { parseConfig } from "../reconciler/config/load.ts";
import { defaultHealthPolicy } from "../reconciler/fleet/policy.ts";
import { Reconciler } from "../reconciler/fleet/reconciler.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { tempDir } from "./support.ts";

const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function config(extra = "", pool = "") {
  const parsed = parseConfig(
    `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n${extra}\npools:\n  - name: train\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 3\n      max_nodes: 6\n    health:\n      drain_timeout: 5m\n      registration_timeout: 10m\n${pool}`,
    "test",
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

async function fleet(extra = "", pool = "") {
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const store = await openStore({ url: `file:${tempDir()}/navarch.db` });
  stores.push(store);
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 30_000 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  const reconciler = new Reconciler({ store, config: config(extra, pool), providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now });
  const step = async (ms = 5000) => {
    clock += ms;
    await agents.tick();
    return reconciler.pass();
  };
  const all = () => store.db.select().from(nodes);
  const byState = async () => {
    const out: Record<string, number> = {};
    for (const n of await all()) out[n.state] = (out[n.state] ?? 0) + 1;
    return out;
  };
  return { store, cloud, agents, reconciler, step, all, byState, advance: (ms: number) => (clock += ms), now };
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

  test("an agent that never registers fails and its instance is cleaned up", async () => {
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
    await until(f.step, async () => (await f.byState()).ready === 3);
  });
});
