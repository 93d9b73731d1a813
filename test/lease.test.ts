// The leader lease on a real libSQL file: one leader, a standby that takes over only a
// lease nobody renews, fencing of everything a deposed leader would write, and the
// shortcuts (a released lease, a holder whose process is gone) that make a restart fast.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { hostname } from "node:os";
import { NodeWriter, FencedError } from "../reconciler/nodes/writer.ts";
import { LeaderLease, LeaseKeeper } from "../reconciler/safety/lease.ts";
import { runOperation } from "../reconciler/safety/operations.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { leases, nodes, operations } from "../schema/db.ts";
import { tempDir } from "./support.ts";

const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

const TIMING = { durationMs: 10_000, renewDeadlineMs: 7_000, retryMs: 2_000 };

async function setup() {
  const store = await openStore({ url: `file:${tempDir("navarch-lease-")}/navarch.db` });
  stores.push(store);
  let mono = 1_000_000;
  const clock = { mono: () => mono, advance: (ms: number) => (mono += ms) };
  const lease = (holder: string) =>
    new LeaderLease({ db: store.db, holder, now: () => 1_800_000_000_000 + mono, monotonic: clock.mono, timing: TIMING, address: `http://${holder}` });
  return { store, clock, lease };
}

describe("the lease keeper", () => {
  test("a leader whose start of leading is slow (a dependency that does not answer) keeps renewing: no change but the first", async () => {
    const store = await openStore({ url: `file:${tempDir("navarch-lease-")}/navarch.db` });
    stores.push(store);
    const lease = new LeaderLease({ db: store.db, holder: "slow", timing: { durationMs: 600, renewDeadlineMs: 400, retryMs: 100 } });
    const changes: string[] = [];
    let leadingDone = false;
    const keeper = new LeaseKeeper(
      lease,
      async (change) => {
        changes.push(change.leading ? `leading ${change.epoch}` : `standing by: ${change.reason}`);
        // Leading takes three renew deadlines (it waited on an API server, as the issue saw).
        if (change.leading) await Bun.sleep(1_200);
        leadingDone = true;
      },
      () => undefined,
    );
    const start = keeper.start();
    await Bun.sleep(900);
    // The start has not finished leading, and the lease is still renewed meanwhile.
    expect(leadingDone).toBe(false);
    expect(lease.leading).toBe(true);
    await start;
    await Bun.sleep(500);
    expect(lease.leading).toBe(true);
    expect(changes).toEqual(["leading 1"]);
    await keeper.stop();
    expect(await lease.current()).toBeUndefined(); // given back at the stop
  });
});

describe("leader lease", () => {
  test("one leads, the other stands by; the standby takes over a lease nobody renews, with a new epoch", async () => {
    const { clock, lease } = await setup();
    const a = lease("a");
    const b = lease("b");
    expect(await a.step()).toMatchObject({ leading: true, epoch: 1 });
    expect(await b.step()).toBeUndefined();
    expect([a.leading, b.leading]).toEqual([true, false]);
    expect(await b.current()).toMatchObject({ holder: "a", epoch: 1, address: "http://a" });
    // A renews every round: B never takes over.
    for (let i = 0; i < 10; i++) {
      clock.advance(2_000);
      await a.step();
      expect(await b.step()).toBeUndefined();
    }
    // A stops renewing (crashed, or paused): B waits the lease's duration, then takes over.
    for (let waited = 0; waited < 8_000; waited += 2_000) {
      clock.advance(2_000);
      expect(await b.step()).toBeUndefined();
    }
    expect(a.leading).toBe(false); // past its renew deadline: A no longer acts
    clock.advance(2_000);
    expect(await b.step()).toMatchObject({ leading: true, epoch: 2, from: { holder: "a", epoch: 1 } });
    // A wakes: it stands down before anything else.
    expect(await a.step()).toMatchObject({ leading: false });
    expect([a.leading, b.leading]).toEqual([false, true]);
  });

  test("never two leaders, whatever the order of rounds", async () => {
    const { clock, lease } = await setup();
    const holders = ["a", "b", "c"].map(lease);
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 400; i++) {
      clock.advance(Math.floor(rand() * 4_000));
      const h = holders[Math.floor(rand() * holders.length)]!;
      if (rand() < 0.8) await h.step();
      expect(holders.filter((x) => x.leading).length).toBeLessThanOrEqual(1);
    }
  });

  test("a released lease is taken at once; so is one whose holder's process on this machine is gone", async () => {
    const { store, lease } = await setup();
    const a = lease("a");
    const b = lease("b");
    await a.step();
    await a.release();
    expect(await b.step()).toMatchObject({ leading: true, epoch: 2 });
    // A holder on this host whose pid no longer runs (kill -9, then a restart).
    await store.db
      .update(leases)
      .set({ holder: `${hostname()}/999999/12345/abc` })
      .where(eq(leases.name, "leader"));
    const c = lease("c");
    expect(await c.step()).toMatchObject({ leading: true, epoch: 3 });
  });

  test("a deposed leader's writes change nothing, even past its own check", async () => {
    const { store, clock, lease } = await setup();
    const a = lease("a");
    const b = lease("b");
    await a.step();
    const at = 1000;
    await store.db.insert(nodes).values({ id: "n1", origin: "launched", pool: "p", state: "ready", stateChangedAt: at, updatedAt: at });
    const [row] = await store.db.select().from(nodes);
    const writer = new NodeWriter(store.db, { fence: a });
    // B takes over while A is paused.
    clock.advance(TIMING.durationMs + 1);
    await b.step();
    clock.advance(TIMING.durationMs + 1);
    expect((await b.step()) ?? { leading: b.leading }).toMatchObject({ leading: true });
    // A's own check refuses...
    await expect(writer.transition({ ...row! }, "cordoned", { at, actor: "navarch", reason: "x" })).rejects.toBeInstanceOf(FencedError);
    // ...and with the check out of the way (a pause between check and write), the write's guard does.
    const unchecked = new NodeWriter(store.db, { fence: { check: () => undefined, guard: () => a.guard() } });
    expect(await unchecked.transition({ ...row! }, "cordoned", { at, actor: "navarch", reason: "x" })).toBe(false);
    expect((await store.db.select().from(nodes))[0]!.state).toBe("ready");
    // No side effect either: the operation is never marked running, the effect never called.
    let called = false;
    const outcome = await runOperation(store.db, { key: "launch:n1:local", kind: "launch" }, at, async () => (called = true), undefined, {
      check: () => undefined,
      guard: () => a.guard(),
    });
    expect(outcome.ok).toBe(false);
    expect(called).toBe(false);
    expect((await store.db.select().from(operations))[0]!.state).toBe("pending");
  });
});

describe("operations", () => {
  test("a key that already succeeded is answered from its row, without a write: it does not wait for the write lock", async () => {
    const { store } = await setup();
    let calls = 0;
    const effect = async () => ++calls;
    expect(await runOperation(store.db, { key: "reboot:n1:1", kind: "reboot" }, 1, effect)).toEqual({ ok: true, result: 1, replayed: false });
    // A rebooting node's step asks again every pass; meanwhile the ingest worker's groups hold
    // the process's write lock. Hold it here until the replay has answered (or for 2 s).
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const holding = store.exclusive(() => Promise.race([held, Bun.sleep(2000)]));
    const t0 = performance.now();
    const replay = await runOperation(store.db, { key: "reboot:n1:1", kind: "reboot" }, 2, effect);
    const waited = performance.now() - t0;
    release();
    await holding;
    expect(replay).toEqual({ ok: true, result: 1, replayed: true });
    expect(calls).toBe(1);
    expect(waited).toBeLessThan(1000);
  });
});
