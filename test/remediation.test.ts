// The remediation ladder on the real loop (virtual time, simulated cloud and agents): a
// fault whose remedy is a reboot is cordoned, drained, rebooted through the provider and
// back in service with no new machine; it is replaced when the fault survives the reboot,
// when the reboot does not come back in time, when the node was rebooted within the
// window, when the provider cannot reboot, or when the pool replaces.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { incidentTimeline } from "../reconciler/api/views/incident-timeline.ts";
import { auditLog, incidents, operations } from "../schema/db.ts";
import { FAST_SERVER, closeFleets, fleet as makeFleet, pool } from "./fleet-harness.ts";

afterEach(closeFleets);

async function fleet(extra = "", safety = "") {
  const f = await makeFleet(`${FAST_SERVER}${safety}pools:\n${pool("p", 3, 3, extra)}`);
  await f.until(async () => (await f.count("ready")) === 3);
  return f;
}

const incidentOf = async (f: Awaited<ReturnType<typeof fleet>>, nodeId: string) =>
  (await f.store.db.select().from(incidents).where(eq(incidents.nodeId, nodeId))).at(-1)!;
const path = async (f: Awaited<ReturnType<typeof fleet>>, nodeId: string) =>
  (await f.store.db.select().from(auditLog).where(eq(auditLog.target, nodeId)))
    .filter((a) => a.action === "transition")
    .map((a) => (a.details as { to: string }).to);

describe("the remediation ladder", () => {
  test("a fault a reboot clears: cordon → drain → reboot → new boot → health check → back in service, no new machine", async () => {
    const f = await fleet();
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 2);
    await f.until(async () => (await f.node(victim.id)).state === "rebooting");
    await f.until(async () => (await f.node(victim.id)).state === "ready");
    const back = await f.node(victim.id);
    expect(back).toMatchObject({ incidentId: null, cordonedBy: null, removal: null, verdict: "healthy" });
    expect(back.bootId).not.toBe(victim.bootId);
    expect(await path(f, victim.id)).toEqual(["provisioning", "ready", "cordoned", "draining", "rebooting", "validating", "ready"]);
    expect(f.cloud.calls.reboot).toBe(1);
    expect(f.cloud.calls.launch).toBe(3);
    const incident = await incidentOf(f, victim.id);
    expect(incident).toMatchObject({ outcome: "rebooted", remedy: "reboot" });
    const steps = incidentTimeline(incident).steps.map((s) => s.step);
    expect(steps).toEqual(["fault", "opened", "cordoned", "drained", "rebooted", "back", "closed"]);
    // One reboot operation, recorded.
    expect((await f.store.db.select().from(operations)).filter((o) => o.kind === "reboot")).toEqual([expect.objectContaining({ state: "succeeded" })]);
  });

  test("a fault that survives the reboot is replaced", async () => {
    const f = await fleet();
    const victim = (await f.all())[0]!;
    f.agents.rebootFixes = () => false;
    await f.agents.xid(victim.id, 79, 2);
    await f.until(async () => (await f.node(victim.id)).state === "terminated");
    await f.until(async () => (await f.count("ready")) === 3);
    const incident = await incidentOf(f, victim.id);
    expect(incident).toMatchObject({ outcome: "replaced", remedy: "replace" });
    expect(incident.rebootedAt).not.toBeNull();
    expect(incident.backAt).not.toBeNull();
    expect(await path(f, victim.id)).toEqual(["provisioning", "ready", "cordoned", "draining", "rebooting", "validating", "terminating", "terminated"]);
    expect(f.cloud.calls.reboot).toBe(1);
  });

  test("a node rebooted for its health within the window is replaced the next time", async () => {
    const f = await fleet();
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 2);
    await f.until(async () => (await f.node(victim.id)).state === "rebooting");
    await f.until(async () => (await f.node(victim.id)).state === "ready");
    f.advance(2 * 24 * 3_600_000); // two days later, well inside the 7-day window
    await f.agents.xid(victim.id, 79, 5);
    await f.until(async () => (await f.node(victim.id)).state === "terminated");
    await f.until(async () => (await f.count("ready")) === 3);
    const second = await incidentOf(f, victim.id);
    expect(second).toMatchObject({ outcome: "replaced", rebootedAt: null, remedy: "replace" });
    const why = (await f.store.db.select().from(auditLog).where(eq(auditLog.target, victim.id))).find(
      (a) => (a.details as { to?: string }).to === "terminating",
    );
    expect((why?.details as { reason: string } | undefined)?.reason).toContain("replaced, not rebooted: it was rebooted for its health");
    expect(f.cloud.calls.reboot).toBe(1);
  });

  test("a reboot that does not come back within reboot_timeout is replaced", async () => {
    const f = await fleet("      reboot_timeout: 1m\n");
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 2);
    await f.until(async () => (await f.node(victim.id)).state === "rebooting");
    // The machine never comes back from its reboot (here the provider loses it).
    f.cloud.vanish(victim.instanceName!);
    await f.until(async () => (await f.node(victim.id)).state === "terminated");
    const incident = await incidentOf(f, victim.id);
    expect(incident.status).toMatch(/not back with a new boot within 1 min|replac/);
    await f.until(async () => (await f.count("ready")) === 3);
  });

  test("the provider refuses the reboot: replaced at once", async () => {
    const f = await fleet();
    const victim = (await f.all())[0]!;
    f.cloud.inject({ on: "reboot", kind: "invalid", times: 10 });
    await f.agents.xid(victim.id, 79, 2);
    await f.until(async () => (await f.node(victim.id)).state === "terminated");
    const why = (await f.store.db.select().from(auditLog).where(eq(auditLog.target, victim.id))).find(
      (a) => (a.details as { to?: string }).to === "terminating",
    );
    expect((why?.details as { reason: string } | undefined)?.reason).toContain("the provider refused the reboot");
  });

  test("a pool that replaces, and a fault whose remedy is not a reboot, are replaced without a reboot", async () => {
    const a = await fleet("      remediation: replace\n");
    const v1 = (await a.all())[0]!;
    await a.agents.xid(v1.id, 79, 2);
    await a.until(async () => (await a.node(v1.id)).state === "terminated");
    expect(a.cloud.calls.reboot).toBe(0);
    const b = await fleet();
    const v2 = (await b.all())[0]!;
    await b.agents.xid(v2.id, 64, 2); // row remapping failed: hardware, not a reboot
    await b.until(async () => (await b.node(v2.id)).state === "terminated");
    expect(b.cloud.calls.reboot).toBe(0);
    expect((await incidentOf(b, v2.id)).remedy).toBe("replace");
  });

  test("a reboot holds a remediation slot: with one slot per pool, the second waits cordoned", async () => {
    const f = await fleet("", "safety:\n  max_in_flight_per_pool: 1\n  breaker:\n    max_cordons: 100\n    percent: 100\n");
    const [a, b] = await f.all();
    await f.agents.xid(a!.id, 79, 1);
    await f.agents.xid(b!.id, 79, 1);
    await f.until(async () => [(await f.node(a!.id)).state, (await f.node(b!.id)).state].includes("rebooting"));
    const waiting = [await f.node(a!.id), await f.node(b!.id)].find((n) => n.state === "cordoned")!;
    expect(waiting.stateReason).toMatch(/waiting for a remediation slot; blocked by (in_flight_pool|unhealthy_budget)/);
    await f.until(async () => (await f.node(a!.id)).state === "ready" && (await f.node(b!.id)).state === "ready");
    expect(f.cloud.calls.reboot).toBe(2);
  });

  test("navarch reboot: a human's reboot of a healthy node, back in service after", async () => {
    const f = await fleet();
    const node = (await f.all())[1]!;
    await f.operator.reboot(node.id, "alice", "driver update");
    await f.until(async () => (await f.node(node.id)).state === "rebooting");
    await f.until(async () => (await f.node(node.id)).state === "ready");
    expect(f.cloud.calls.reboot).toBe(1);
    expect(await incidentOf(f, node.id)).toMatchObject({ outcome: "rebooted", remedy: "reboot" });
    // Nothing to reboot: not while rebooting, and not a machine Navarch did not launch.
    await f.operator.reboot(node.id, "alice", "again");
    await f.until(async () => (await f.node(node.id)).state === "rebooting");
    await expect(f.operator.reboot(node.id, "alice", "twice")).rejects.toThrow("is rebooting already");
    await expect(f.operator.uncordon(node.id, "alice")).rejects.toThrow("is rebooting");
  });
});
