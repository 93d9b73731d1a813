// The light view (reconciler/lifecycle/live-nodes.ts): every live node as a pass needs it, kept up
// to date from the change log the triggers on `nodes` write (migration 0010). What it must
// show is always what a full read of the table shows now, whoever wrote the rows: the loop's
// connection, another connection (the ingest worker's, a second reconciler's), or plain SQL.
import { afterEach, describe, expect, test } from "bun:test";
import { createClient } from "@libsql/client";
import { eq, sql } from "drizzle-orm";
import { nodeChanges, nodes } from "../schema/db.ts";
import { writeIngestGroup } from "../reconciler/ingest/write.ts";
import { LightView, PRUNE_EVERY, RESYNC_MS, silentNodes, type LightNode } from "../reconciler/lifecycle/live-nodes.ts";
import { poolCounts } from "../reconciler/lifecycle/scale.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { seed } from "../bench/reconciler.ts";
import { tempDir } from "./support.ts";

const T0 = Date.parse("2026-11-22T00:00:00Z");
const opened: Store[] = [];
afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});

async function setUp(count = 50): Promise<{ store: Store; ids: string[]; url: string }> {
  const url = `file:${tempDir()}/light.db`;
  const store = await openStore({ url, healthProbeIntervalMs: 0 });
  opened.push(store);
  const ids = await seed(store, count, T0);
  return { store, ids, url };
}

/** What a fresh view reads: the truth the kept view must equal. */
const truth = async (store: Store, at: number) => new LightView().read(store.db, at);
const changeCount = async (store: Store) => (await store.db.select({ n: sql<number>`count(*)` }).from(nodeChanges))[0]!.n;

describe("the light view", () => {
  test("follows every writer: the store's connection, another connection, plain SQL; new, changed, gone and deleted nodes, in table order", async () => {
    const { store, ids, url } = await setUp();
    const logged: string[] = [];
    const view = new LightView((l) => logged.push(l));
    let at = T0 + 1000;
    expect((await view.read(store.db, at)).map((n) => n.id)).toEqual(ids);

    // The store's own connection, through drizzle: a cordon, a finding.
    await store.db.update(nodes).set({ state: "cordoned", cordonedBy: "navarch" }).where(eq(nodes.id, ids[3]!));
    await store.db
      .update(nodes)
      .set({ findings: [{ check: "xid" }], verdict: "unhealthy" })
      .where(eq(nodes.id, ids[4]!));
    // Another connection to the same file (as the ingest worker and a second reconciler have).
    const other = createClient({ url });
    await other.execute({ sql: "UPDATE nodes SET state = 'terminated' WHERE id = ?", args: [ids[5]!] });
    await other.execute({ sql: "DELETE FROM nodes WHERE id = ?", args: [ids[6]!] });
    await other.execute({ sql: "UPDATE nodes SET removal = 'replace' WHERE id = ?", args: [ids[7]!] });
    other.close();
    // A node added: it comes last, as in the table.
    await addNode(store, ids[0]!, "added-0");
    at += 1000;
    const kept = await view.read(store.db, at);
    expect(kept).toEqual(await truth(store, at));
    expect(kept.find((n) => n.id === ids[3])).toMatchObject({ state: "cordoned", cordonedBy: "navarch", quiet: false });
    expect(kept.find((n) => n.id === ids[4])?.quiet).toBe(false);
    expect(kept.some((n) => n.id === ids[5] || n.id === ids[6])).toBe(false);
    expect(kept.at(-1)?.id).toBe("added-0");
    expect(logged).toEqual([]);
  });

  test("a heartbeat logs no change unless it brings a new boot; a registration does", async () => {
    const { store, ids } = await setUp(10);
    const view = new LightView();
    await view.read(store.db, T0);
    const before = await changeCount(store);
    const beat = (bootId: string) => ({
      nodeId: ids[1]!,
      bootId,
      sentAt: new Date(T0).toISOString(),
      nvml: { available: true },
      health: { checked: true, worst: "healthy" as const, openIncidents: 0 },
      gpus: [{ index: 0, temperatureC: 50, utilizationPct: 10 }],
    });
    await writeIngestGroup(store.client, { heartbeats: [beat("boot")], batches: [] }, T0 + 1);
    await store.client.execute({
      sql: `UPDATE nodes SET last_heartbeat_at = ? WHERE id IN (SELECT value FROM json_each(?))`,
      args: [T0 + 2, JSON.stringify(ids)],
    });
    expect(await changeCount(store)).toBe(before);
    await writeIngestGroup(store.client, { heartbeats: [beat("boot-2")], batches: [] }, T0 + 3);
    expect(await changeCount(store)).toBe(before + 1);
    expect((await view.read(store.db, T0 + 3)).find((n) => n.id === ids[1])?.bootId).toBe("boot-2");
    // Heard for the first time: a node launched but never heard, then registered.
    await store.client.execute({ sql: "UPDATE nodes SET last_heartbeat_at = NULL WHERE id = ?", args: [ids[2]!] });
    expect((await view.read(store.db, T0 + 4)).find((n) => n.id === ids[2])?.heard).toBe(false);
    await store.client.execute({ sql: "UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?", args: [T0 + 5, ids[2]!] });
    expect((await view.read(store.db, T0 + 5)).find((n) => n.id === ids[2])?.heard).toBe(true);
  });

  test("a gap in the log (another reconciler pruned past this view's cursor) makes it read everything again", async () => {
    const { store, ids } = await setUp(10);
    const view = new LightView();
    await view.read(store.db, T0);
    await store.client.execute({ sql: "UPDATE nodes SET state = 'cordoned' WHERE id = ?", args: [ids[0]!] });
    await store.client.execute({ sql: "UPDATE nodes SET state = 'draining' WHERE id = ?", args: [ids[1]!] });
    // The other reconciler read both changes and pruned them; a third change follows.
    await store.client.execute("DELETE FROM node_changes");
    await store.client.execute({ sql: "UPDATE nodes SET removal = 'replace' WHERE id = ?", args: [ids[2]!] });
    expect(await view.read(store.db, T0 + 1)).toEqual(await truth(store, T0 + 1));
    // Everything pruned and nothing since: still a gap.
    await store.client.execute({ sql: "UPDATE nodes SET state = 'cordoned' WHERE id = ?", args: [ids[3]!] });
    await store.client.execute("DELETE FROM node_changes");
    expect(await view.read(store.db, T0 + 2)).toEqual(await truth(store, T0 + 2));
  });

  test("the periodic full read says when a writer went around the log, and not for changes made while it read", async () => {
    const { store, ids } = await setUp(10);
    const logged: string[] = [];
    const view = new LightView((l) => logged.push(l));
    await view.read(store.db, T0);
    // Changes the log shows, made since the last read: not a finding of the check.
    await store.client.execute({ sql: "UPDATE nodes SET state = 'cordoned' WHERE id = ?", args: [ids[0]!] });
    expect(await view.read(store.db, T0 + RESYNC_MS)).toEqual(await truth(store, T0 + RESYNC_MS));
    expect(logged).toEqual([]);
    // A writer the triggers do not see (here: the trigger dropped).
    await store.client.execute("DROP TRIGGER nodes_changed_update");
    await store.client.execute({ sql: "UPDATE nodes SET state = 'draining' WHERE id = ?", args: [ids[1]!] });
    expect((await view.read(store.db, T0 + RESYNC_MS + 1)).find((n) => n.id === ids[1])?.state).toBe("ready"); // not yet seen
    expect((await view.read(store.db, T0 + 2 * RESYNC_MS)).find((n) => n.id === ids[1])?.state).toBe("draining");
    expect(logged).toEqual(["light view: the periodic full read found 1 node(s) changed that the change log did not show"]);
  });

  test("the log is pruned once 20,000 entries were read, keeping the last 10,000 for a view a little behind", async () => {
    const { store } = await setUp(12_000);
    const view = new LightView();
    const behind = new LightView();
    await view.read(store.db, T0);
    await behind.read(store.db, T0);
    expect(await changeCount(store)).toBe(12_000); // the seed's inserts
    await store.client.execute({ sql: "UPDATE nodes SET state = 'cordoned' WHERE rowid <= 9000" }); // 21,000 read: pruned to 11,000
    expect(await view.read(store.db, T0 + 1)).toEqual(await truth(store, T0 + 1));
    expect(await changeCount(store)).toBe(PRUNE_EVERY);
    // The other view, 9,000 entries behind, reads the changes it missed (no gap, no full read).
    await store.client.execute({ sql: "UPDATE nodes SET state = 'draining' WHERE rowid = 7" });
    expect(await behind.read(store.db, T0 + 2)).toEqual(await truth(store, T0 + 2));
  });
});

describe("pool counts from the view", () => {
  test("launched nodes in the pool by kind; scale-down victims, monitored and gone nodes not counted; a surge counted once", () => {
    const node = (id: string, state: LightNode["state"], extra: Partial<LightNode> = {}) => ({
      id,
      pool: "p",
      state,
      origin: "launched" as const,
      removal: null,
      replacementOf: null,
      ...extra,
    });
    const counts = poolCounts([
      node("a", "ready"),
      node("b", "suspect"),
      node("c", "provisioning"),
      node("d", "draining", { removal: "replace" }), // replaced by e, which is coming up: one slot
      node("e", "validating", { replacementOf: "d" }),
      node("f", "cordoned", { removal: "replace" }), // no replacement yet
      node("g", "ready", { removal: "scale_down" }),
      node("h", "ready", { origin: "registered" }),
      node("i", "terminating", { removal: "replace" }),
      node("j", "ready", { pool: "q" }),
    ]);
    expect(counts.get("p")).toEqual({ total: 6, ready: 2, comingUp: 2, replacing: 2, surging: 1 });
    expect(counts.get("q")).toEqual({ total: 1, ready: 1, comingUp: 0, replacing: 0, surging: 0 });
  });
});

describe("silent nodes", () => {
  test("past the timeout, counted from when the loop started at the earliest; never-heard nodes are not silent", async () => {
    const { store, ids } = await setUp(4);
    const timeout = 90_000;
    await store.client.execute({ sql: "UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?", args: [T0 - 200_000, ids[0]!] });
    await store.client.execute({ sql: "UPDATE nodes SET last_heartbeat_at = NULL WHERE id = ?", args: [ids[1]!] });
    await store.client.execute({ sql: "UPDATE nodes SET state = 'terminated', last_heartbeat_at = ? WHERE id = ?", args: [T0 - 200_000, ids[2]!] });
    // Heard at T0 (the seed), so silent from T0 + timeout + 1.
    expect([...(await silentNodes(store.db, T0 + 1000, timeout, T0 - 1_000_000)).keys()]).toEqual([ids[0]!]);
    expect([...(await silentNodes(store.db, T0 + timeout + 1, timeout, T0 - 1_000_000)).keys()].sort()).toEqual([ids[0]!, ids[3]!]);
    // A loop that started at T0 has heard nothing before it: nobody silent until T0 + timeout.
    expect((await silentNodes(store.db, T0 + timeout, timeout, T0)).size).toBe(0);
    expect((await silentNodes(store.db, T0 + timeout + 1, timeout, T0)).get(ids[0]!)).toBe(T0 - 200_000);
  });
});

/** A copy of `from`'s row under a new id (a new rowid, so it comes last). */
async function addNode(store: Store, from: string, id: string): Promise<void> {
  await store.client.batch(
    [
      { sql: "CREATE TEMP TABLE copy AS SELECT * FROM nodes WHERE id = ?", args: [from] },
      { sql: "UPDATE copy SET id = ?, instance_name = ?, hostname = ?", args: [id, id, id] },
      "INSERT INTO nodes SELECT * FROM copy",
      "DROP TABLE copy",
    ],
    "write",
  );
}
