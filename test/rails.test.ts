// Each safety rail blocking an automatic action and saying why, on the node and
// its incident, while recovery (uncordon) stays possible.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { breakers, incidents } from "../schema/db.ts";
import { FAST_SERVER, closeFleets, fleet, pool } from "./fleet-harness.ts";

afterEach(closeFleets);

/** These tests are about the other rails: a breaker that would trip on their bursts is out of the way. */
const NO_BREAKER = "  breaker:\n    max_cordons: 100\n    percent: 100\n";

/** Brings the pools up, then reports a fatal Xid on each of `victims` nodes of `poolName`. */
async function breakNodes(f: Awaited<ReturnType<typeof fleet>>, poolName: string, ready: number, victims: number) {
  await f.until(async () => (await f.count("ready", poolName)) === ready);
  const targets = (await f.all()).filter((n) => n.pool === poolName && n.state === "ready").slice(0, victims);
  for (const n of targets) f.agents.setUtilization(n.id, 90); // busy: drains wait, so nodes stay out of service
  for (const n of targets) await f.agents.xid(n.id, 79);
  const report = await f.step(100);
  return { targets, report };
}

describe("safety rails", () => {
  test("unhealthy budget: max(floor, ceil(percent × size)) nodes drained or replaced at once; the others wait cordoned", async () => {
    const f = await fleet(
      `${FAST_SERVER}safety:\n  unhealthy_budget:\n    floor: 1\n    percent: 20\n  max_in_flight_per_pool: 10\n${NO_BREAKER}pools:\n${pool("p", 5, 5)}`,
    );
    const { targets, report } = await breakNodes(f, "p", 5, 3);
    // Quarantine is not remediation: every dead GPU leaves service in the same pass.
    expect(
      report.transitions
        .filter((t) => t.to === "cordoned")
        .map((t) => t.node)
        .sort(),
    ).toEqual(targets.map((t) => t.id).sort());
    const next = await f.step(100);
    expect(next.blocked.map((b) => b.rail)).toEqual(["unhealthy_budget", "unhealthy_budget"]);
    const waiting = await f.node(targets[2]!.id);
    expect(waiting.state).toBe("cordoned");
    expect(waiting.stateReason).toContain(
      "cordoned, waiting for a remediation slot; blocked by unhealthy_budget: 1 of 5 nodes of pool p already being drained or replaced; the budget is max(1, 20% of 5) = 1",
    );
    const [incident] = await f.store.db.select().from(incidents).where(eq(incidents.nodeId, targets[2]!.id));
    expect(incident?.status).toContain("blocked by unhealthy_budget");
    expect(incident?.cordonedAt).not.toBeNull();
  });

  test("in-flight cap per pool: the second waits cordoned", async () => {
    const f = await fleet(`${FAST_SERVER}safety:\n  unhealthy_budget:\n    percent: 100\n  max_in_flight_per_pool: 1\npools:\n${pool("p", 4, 4)}`);
    const { targets } = await breakNodes(f, "p", 4, 2);
    const report = await f.step(100);
    expect(report.blocked).toEqual([
      expect.objectContaining({ rail: "in_flight_pool", reason: "1 remediations in flight in pool p (safety.max_in_flight_per_pool 1)" }),
    ]);
    expect((await Promise.all(targets.map((t) => f.node(t.id)))).map((n) => n.state).sort()).toEqual(["cordoned", "draining"]);
  });

  test("in-flight cap fleet-wide", async () => {
    const f = await fleet(
      `${FAST_SERVER}safety:\n  unhealthy_budget:\n    percent: 100\n  max_in_flight_fleet: 1\npools:\n${pool("a", 2, 2)}${pool("b", 2, 2)}`,
    );
    await breakNodes(f, "a", 2, 1);
    await f.step(100);
    const { targets } = await breakNodes(f, "b", 2, 1);
    expect((await f.node(targets[0]!.id)).state).toBe("cordoned");
    const report = await f.step(100);
    expect(report.blocked).toEqual([
      expect.objectContaining({ rail: "in_flight_fleet", reason: "1 remediations in flight fleet-wide (safety.max_in_flight_fleet 1)" }),
    ]);
  });

  test("a dead GPU never waits for a replacement slot to leave service (three Xid 79 at once, one slot)", async () => {
    const f = await fleet(`${FAST_SERVER}safety:\n  max_in_flight_per_pool: 1\n${NO_BREAKER}pools:\n${pool("p", 6, 6)}`);
    const { targets, report } = await breakNodes(f, "p", 6, 3);
    expect(report.blocked).toEqual([]);
    for (const t of targets) expect((await f.node(t.id)).state).toBe("cordoned");
    const faults = await f.store.db.select().from(incidents);
    for (const i of faults) expect(i.cordonedAt! - i.faultAt).toBeLessThan(1000);
    // The remediations then go one at a time.
    await f.step(100);
    const states = (await Promise.all(targets.map((t) => f.node(t.id)))).map((n) => n.state).sort();
    expect(states).toEqual(["cordoned", "cordoned", "draining"]);
  });

  test("rate limit on new cordons", async () => {
    const f = await fleet(
      `${FAST_SERVER}safety:\n  unhealthy_budget:\n    percent: 100\n  max_in_flight_per_pool: 10\n  cordon_rate:\n    per_minute: 1\n    burst: 1\npools:\n${pool("p", 4, 4)}`,
    );
    const { report } = await breakNodes(f, "p", 4, 2);
    expect(report.blocked).toEqual([expect.objectContaining({ rail: "cordon_rate" })]);
    expect(report.blocked[0]!.reason).toBe("new cordons limited to 1/min (burst 1); waiting for the next token");
    // A minute later the bucket has a token again.
    f.advance(60_000);
    const later = await f.step(100);
    expect(later.transitions.some((t) => t.to === "cordoned")).toBe(true);
  });

  test("circuit breaker: a fault storm trips it; it blocks destructive actions only, until a human resets it", async () => {
    const f = await fleet(
      `${FAST_SERVER}safety:\n  unhealthy_budget:\n    percent: 100\n  max_in_flight_per_pool: 10\n  cordon_rate:\n    per_minute: 60\n    burst: 10\n  breaker:\n    max_cordons: 2\n    percent: 100\npools:\n${pool("p", 5, 5)}`,
    );
    const { targets } = await breakNodes(f, "p", 5, 2);
    await f.step(100);
    const [tripped] = await f.store.db.select().from(breakers);
    expect(tripped?.reason).toContain("2 nodes cordoned within 10 min (safety.breaker.max_cordons 2)");
    // A third fault is not acted on; the drained ones are not terminated.
    const third = (await f.all()).find((n) => n.state === "ready")!;
    await f.agents.xid(third.id, 79);
    for (const t of targets) f.agents.setUtilization(t.id, 0);
    const report = await f.step(100);
    expect(report.blocked.map((b) => b.rail)).toContain("breaker");
    expect((await f.node(third.id)).stateReason).toContain("blocked by breaker: fleet circuit breaker tripped");
    expect(report.terminated).toEqual([]);
    // Recovery is never blocked: a human can still uncordon.
    await f.operator.uncordon(targets[0]!.id, "alice");
    // After a reset, what was held back is judged against current health and goes ahead.
    for (const b of await f.store.db.select().from(breakers)) await f.operator.resetBreaker(b.scope, "alice");
    await f.until(async () => (await f.node(third.id)).state !== "ready");
  });

  test("the breaker's share of a pool trips only from safety.breaker.min_cordons cordons (3 by default; a setting)", async () => {
    const storm = (extra: string) =>
      fleet(
        `${FAST_SERVER}safety:\n  unhealthy_budget:\n    percent: 100\n  max_in_flight_per_pool: 10\n  breaker:\n    max_cordons: 100\n    percent: 50\n${extra}pools:\n${pool("p", 2, 2)}`,
      );
    // Both nodes of a 2-node pool cordoned: 100 % ≥ 50 %, but 2 < 3: no storm by default.
    const quiet = await storm("");
    await breakNodes(quiet, "p", 2, 2);
    expect(await quiet.store.db.select().from(breakers)).toEqual([]);
    const tripping = await storm("    min_cordons: 2\n");
    await breakNodes(tripping, "p", 2, 2);
    await tripping.step(100);
    const [tripped] = await tripping.store.db.select().from(breakers);
    expect(tripped?.reason).toContain("2 of 2 nodes cordoned within 10 min (≥ safety.breaker.percent 50%, at least safety.breaker.min_cordons 2)");
  });

  test("partition freeze: many nodes silent at once are not declared Lost", async () => {
    const f = await fleet(`${FAST_SERVER}safety:\n  partition:\n    percent: 50\n    min_nodes: 3\npools:\n${pool("p", 5, 5)}`);
    await f.until(async () => (await f.count("ready")) === 5);
    const silent = (await f.all()).slice(0, 3);
    for (const n of silent) f.agents.setSilent(n.id, true);
    for (let i = 0; i < 10; i++) await f.step();
    expect(await f.count("lost")).toBe(0);
    expect((await f.node(silent[0]!.id)).stateReason).toContain("blocked by partition_freeze: 3 of 5 nodes stopped heartbeating at once");
    // One silent node alone is Lost as usual.
    for (const n of silent.slice(1)) f.agents.setSilent(n.id, false);
    await f.until(async () => (await f.node(silent[0]!.id)).state !== "ready");
  });

  test("a restarted (or restored) reconciler counts silence from its start: stale heartbeat times fence nobody", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    await f.until(async () => (await f.count("ready")) === 2);
    const timeout = f.reconciler.config().server.heartbeat_timeout;
    const ids = (await f.all()).map((n) => n.id);
    // The reconciler is down while heartbeats go unheard: the stored ones grow older than the timeout.
    for (const id of ids) f.agents.setSilent(id, true);
    await f.step(timeout - 1000);
    f.restart();
    // Its first pass finds heartbeat times past the timeout; the agents have not had a chance to be heard.
    await f.step(2000);
    expect(await f.count("lost")).toBe(0);
    for (const id of ids) f.agents.setSilent(id, false);
    for (let i = 0; i < 5; i++) await f.step(1000);
    expect(await f.count("ready")).toBe(2);
    // The grace is one timeout from the start, not for ever: a node silent past it is Lost.
    f.agents.setSilent(ids[0]!, true);
    await f.until(async () => (await f.node(ids[0]!)).state === "lost", 50, 1000);
  });

  test("attempt cap: a slot that keeps failing is Held for a human", async () => {
    // The breaker would trip first on a 1-node pool failing twice; this test is about the cap.
    const f = await fleet(
      `${FAST_SERVER}safety:\n  max_attempts: 2\n  breaker:\n    max_cordons: 100\n    percent: 100\npools:\n${pool("p", 1, 1, "      remediation: replace\n")}`,
    );
    await f.until(async () => (await f.count("ready")) === 1);
    // Each new node fails as soon as it is Ready.
    for (let round = 0; round < 4; round++) {
      const ready = (await f.all()).find((n) => n.state === "ready");
      if (ready === undefined) break;
      await f.agents.xid(ready.id, 79);
      await f.until(async () => (await f.count("held")) === 1 || (await f.all()).some((n) => n.state === "ready" && n.id !== ready.id));
    }
    const held = (await f.all()).find((n) => n.state === "held");
    expect(held?.stateReason).toContain("replacements of this node's slot already (safety.max_attempts 2); a human must look");
  });

  test("a paused pool takes no automatic action and says so", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    await f.until(async () => (await f.count("ready")) === 2);
    await f.operator.pausePool("p", "bob", "maintenance window");
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79);
    const report = await f.step(100);
    expect(report.blocked).toEqual([expect.objectContaining({ rail: "paused", reason: "pool p is paused: by bob: maintenance window" })]);
    await f.operator.resumePool("p", "bob");
    await f.until(async () => (await f.node(victim.id)).state !== "ready");
  });

  test("dry run computes and records every decision and changes nothing", async () => {
    const f = await fleet(`${FAST_SERVER}safety:\n  dry_run: true\npools:\n${pool("p", 2, 2)}`);
    await f.step();
    await f.step();
    expect(f.cloud.calls.launch).toBe(0);
    expect(await f.all()).toEqual([]);
    const audit = await f.operator.auditTail(10);
    expect(audit.map((a) => [a.action, a.target, (a.details as { reason: string }).reason])).toEqual([
      ["dry_run", "pool:p", "no autoscaler; clamped to min_nodes 2: 0 → 2"],
    ]);
  });
});
