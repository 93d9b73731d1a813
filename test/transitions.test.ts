// The lifecycle's transition table, walked: every legal from → to goes through the one
// writer (compare-and-set, audit row, incident update in one transaction); every other
// pair is refused with an error and changes nothing.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { IllegalTransition, NodeWriter } from "../reconciler/nodes/writer.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { auditLog, incidents, nodes } from "../schema/db.ts";
import { NODE_STATES, STATES, TRANSITIONS, isIn, isLegalTransition, type NodeState } from "../schema/lifecycle.ts";
import { tempDir } from "./support.ts";

const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

async function withNode(state: NodeState) {
  const store = await openStore({ url: `file:${tempDir("navarch-transitions-")}/navarch.db` });
  stores.push(store);
  const [incident] = await store.db
    .insert(incidents)
    .values({ nodeId: "n", pool: "p", reason: "r", faultAt: 1, openedAt: 1, status: "opened" })
    .returning({ id: incidents.id });
  await store.db.insert(nodes).values({ id: "n", origin: "launched", pool: "p", state, stateChangedAt: 1, updatedAt: 1, incidentId: incident!.id });
  const [row] = await store.db.select().from(nodes);
  return { store, row: row!, writer: new NodeWriter(store.db) };
}

describe("the transition table", () => {
  test("names every state, and a terminal state leads nowhere but a late agent's registration", () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...NODE_STATES].sort());
    // A machine given up whose agent registers while its instance is still there is adopted back (registry.ts).
    for (const s of STATES.terminal) expect(TRANSITIONS[s]).toEqual(s === "failed" ? ["validating"] : []);
    for (const [from, tos] of Object.entries(TRANSITIONS))
      for (const to of tos) expect({ from, to, known: (NODE_STATES as readonly string[]).includes(to) }).toMatchObject({ known: true });
  });

  test("every live state can leave, and every state but requested can be reached", () => {
    for (const s of STATES.live) expect({ s, exits: TRANSITIONS[s].length > 0 }).toEqual({ s, exits: true });
    const reached = new Set(Object.values(TRANSITIONS).flat());
    for (const s of NODE_STATES) if (s !== "requested") expect({ s, reached: reached.has(s) }).toEqual({ s, reached: true });
  });

  test("the groups partition as their names say", () => {
    for (const s of NODE_STATES) {
      expect(isIn("inPool", s)).toBe(!isIn("outOfPool", s));
      expect(isIn("live", s)).toBe(!isIn("terminal", s));
      if (isIn("inService", s)) expect(isIn("watched", s)).toBe(true);
    }
  });

  // All 13 × 13 pairs through the real writer.
  for (const from of NODE_STATES) {
    test(`from ${from}`, async () => {
      for (const to of NODE_STATES) {
        if (to === from) continue;
        const { store, row, writer } = await withNode(from);
        if (isLegalTransition(from, to)) {
          expect(await writer.transition(row, to, { at: 5, actor: "test", reason: `${from} to ${to}`, incident: { status: `now ${to}` } })).toBe(true);
          const [after] = await store.db.select().from(nodes);
          expect(after).toMatchObject({ state: to, version: 1, stateChangedAt: 5, stateReason: `${from} to ${to}` });
          const [audit] = await store.db.select().from(auditLog);
          expect(audit).toMatchObject({ actor: "test", action: "transition", target: "n", details: { from, to, reason: `${from} to ${to}` } });
          expect((await store.db.select().from(incidents).where(eq(incidents.id, row.incidentId!)))[0]?.status).toBe(`now ${to}`);
          // The same read again: its version is stale, so the compare-and-set changes nothing.
          const stale = { ...row, state: from, version: 0 };
          if (isLegalTransition(from, to)) expect(await writer.transition(stale, to, { at: 6, actor: "test", reason: "again" })).toBe(false);
        } else {
          await expect(writer.transition(row, to, { at: 5, actor: "test", reason: "no" })).rejects.toBeInstanceOf(IllegalTransition);
          const [after] = await store.db.select().from(nodes);
          expect(after).toMatchObject({ state: from, version: 0 });
          expect(await store.db.select().from(auditLog)).toEqual([]);
        }
        store.close();
        stores.splice(stores.indexOf(store), 1);
      }
    }, 60_000);
  }
});
