// Goodput's accounting: hand-computable outages folded from transitions (a reboot of an 8-GPU
// node over 30 minutes is 4 GPU-hours under its fault class, with the seconds of each rung; an
// outage still open counts up to now; a replacement's time counts once, through a chain of
// replacements and with a surge), then the same through the store and the one writer (the
// ledger behind /metrics, the report's window, the CLI's text: all agree, across a restart),
// and last through the real loop on virtual time (an Xid 79 rebooted away).
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { buildReport } from "../reconciler/api/report.ts";
import { reportText } from "../reconciler/cli/report.ts";
import { GoodputLedger } from "../reconciler/goodput/ledger.ts";
import { OutageFold, type Facts, type IncidentFacts, type NodeFacts, type Outage, type Rung, type Transition } from "../reconciler/goodput/outages.ts";
import { goodputWindow, seriesStep } from "../reconciler/goodput/window.ts";
import { parseSince } from "../reconciler/api/views/time.ts";
import { Incidents } from "../reconciler/lifecycle/incidents.ts";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { NodeWriter, type NodeRow } from "../reconciler/nodes/writer.ts";
import { Operator } from "../reconciler/nodes/operator-actions.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { FAULT_CAUSES, faultCause } from "../schema/fault-causes.ts";
import { auditLog, incidents, nodes, pools } from "../schema/db.ts";
import type { NodeState } from "../schema/lifecycle.ts";
import { FAST_SERVER, closeFleets, fleet, pool } from "./fleet-harness.ts";
import { tempDir } from "./support.ts";

const T = Date.parse("2026-11-21T00:00:00Z");
const MIN = 60_000;
const HOUR = 60 * MIN;

afterEach(closeFleets);

// ───────────────────────────── the fold, by hand ─────────────────────────────

const facts = (list: Partial<NodeFacts & { incidents: IncidentFacts[] }>[]): Facts => {
  const byId = new Map(
    list.map((n) => [
      n.id!,
      {
        id: n.id!,
        pool: n.pool ?? "train",
        provider: n.provider ?? "local",
        gpus: n.gpus ?? 8,
        replacementOf: n.replacementOf ?? null,
        hasSuccessor: n.hasSuccessor ?? false,
      },
    ]),
  );
  return { node: (id) => byId.get(id), incidents: (id) => list.find((n) => n.id === id)?.incidents ?? [] };
};

interface Run {
  stays: { node: string; cause: string; rung: Rung; seconds: number }[];
  ended: Outage[];
  fold: OutageFold;
}

/** Folds `[node, minutes after T, from, to, action?]` in order. */
function run(f: Facts, steps: [string, number, NodeState, NodeState, string?][]): Run {
  const out: Run = { stays: [], ended: [], fold: undefined as unknown as OutageFold };
  out.fold = new OutageFold({
    stay: (o, rung, start, end) => out.stays.push({ node: o.node.id, cause: o.cause, rung, seconds: (end - start) / 1000 }),
    ended: (o) => out.ended.push({ ...o }),
  });
  steps.forEach(([node, minutes, from, to, action], i) => {
    const t: Transition = { id: i + 1, at: T + minutes * MIN, node, from, to, action: action ?? "transition" };
    out.fold.apply(t, f);
  });
  return out;
}

const gpuHours = (r: Run) => r.ended.reduce((t, o) => t + (((o.end ?? o.start) - o.start) / HOUR) * (o.node.gpus ?? 0), 0);

describe("outages, by hand", () => {
  test("8 GPUs quarantined at t, rebooted, back at t+30 min: 4 GPU-hours under its fault class, each rung's seconds", () => {
    const pcie = { openedAt: T, closedAt: T + 30 * MIN, cause: faultCause("xid", "79") };
    expect(pcie.cause).toBe("pcie");
    const r = run(facts([{ id: "n1", incidents: [pcie] }]), [
      ["n1", 0, "ready", "cordoned"],
      ["n1", 5, "cordoned", "draining"],
      ["n1", 15, "draining", "rebooting"],
      ["n1", 27, "rebooting", "validating"],
      ["n1", 30, "validating", "ready"],
    ]);
    expect(r.stays).toEqual([
      { node: "n1", cause: "pcie", rung: "quarantine", seconds: 300 },
      { node: "n1", cause: "pcie", rung: "drain", seconds: 600 },
      // Rebooting, then back with a new boot and checked: the reboot rung, 12 + 3 minutes.
      { node: "n1", cause: "pcie", rung: "reboot", seconds: 900 },
    ]);
    expect(r.ended).toHaveLength(1);
    expect(r.ended[0]).toMatchObject({ cause: "pcie", start: T, end: T + 30 * MIN, rung: "reboot" });
    expect(gpuHours(r)).toBe(4);
    expect(r.fold.open.size).toBe(0);
  });

  test("an outage still open counts up to now", () => {
    const r = run(facts([{ id: "n1", incidents: [{ openedAt: T, closedAt: null, cause: "memory" }] }]), [
      ["n1", 0, "ready", "cordoned"],
      ["n1", 10, "cordoned", "draining"],
    ]);
    expect(r.ended).toEqual([]);
    const open = r.fold.openAt(T + 25 * MIN);
    expect(open.map((o) => ({ rung: o.rung, minutes: (o.end - o.start) / MIN, cause: o.outage.cause }))).toEqual([
      { rung: "drain", minutes: 15, cause: "memory" },
    ]);
    expect(r.stays).toEqual([{ node: "n1", cause: "memory", rung: "quarantine", seconds: 600 }]);
  });

  test("a replacement's time counts once: on the node it replaces, until the replacement serves", () => {
    const f = facts([
      { id: "a", hasSuccessor: true, incidents: [{ openedAt: T, closedAt: T + 60 * MIN, cause: "memory" }] },
      { id: "b", replacementOf: "a" },
    ]);
    const r = run(f, [
      ["a", 0, "ready", "cordoned"],
      ["a", 5, "cordoned", "draining"],
      ["a", 15, "draining", "terminating"],
      ["b", 15.5, "requested", "provisioning"],
      ["a", 20, "terminating", "terminated"],
      ["b", 40, "provisioning", "validating"],
      ["b", 60, "validating", "ready"],
    ]);
    expect(r.stays.map((s) => [s.node, s.rung, s.seconds / 60])).toEqual([
      ["a", "quarantine", 5],
      ["a", "drain", 10],
      // Terminating, terminated, and the replacement coming up: one stay, counted once.
      ["a", "replace", 45],
    ]);
    expect(gpuHours(r)).toBe(8);
    expect(r.ended.map((o) => o.node.id)).toEqual(["a"]);
  });

  test("a replacement that fails its validation: the slot is back when its own replacement serves", () => {
    const f = facts([
      { id: "a", hasSuccessor: true, incidents: [{ openedAt: T, closedAt: null, cause: "memory" }] },
      { id: "b", replacementOf: "a", hasSuccessor: true, incidents: [{ openedAt: T + 30 * MIN, closedAt: T + 90 * MIN, cause: "ecc" }] },
      { id: "c", replacementOf: "b" },
    ]);
    const r = run(f, [
      ["a", 0, "ready", "cordoned"],
      ["a", 10, "cordoned", "draining"],
      ["a", 20, "draining", "terminating"],
      ["a", 25, "terminating", "terminated"],
      ["b", 30, "validating", "terminating"],
      ["b", 35, "terminating", "terminated"],
      ["c", 90, "validating", "ready"],
    ]);
    // b never served: its failure is no outage of its own; a's lasts until c serves.
    expect(r.ended.map((o) => [o.node.id, o.cause, (o.end! - o.start) / MIN])).toEqual([["a", "memory", 90]]);
    expect(r.stays.filter((s) => s.node === "a").map((s) => s.rung)).toEqual(["quarantine", "drain", "replace"]);
  });

  test("surge: the replacement serves while the node still drains; the rest of its drain is no loss", () => {
    const f = facts([
      { id: "a", hasSuccessor: true, incidents: [{ openedAt: T, closedAt: null, cause: "nvlink" }] },
      { id: "b", replacementOf: "a" },
    ]);
    const r = run(f, [
      ["a", 0, "ready", "cordoned"],
      ["a", 1, "cordoned", "draining"],
      ["b", 20, "validating", "ready"],
      ["a", 30, "draining", "terminating"],
      ["a", 31, "terminating", "terminated"],
    ]);
    expect(r.ended.map((o) => [o.node.id, (o.end! - o.start) / MIN, o.rung])).toEqual([["a", 20, "drain"]]);
    expect(r.fold.open.size).toBe(0);
  });

  test("a replacement cancelled before it served: the outage ends when the node is gone", () => {
    const f = facts([
      { id: "a", hasSuccessor: true, incidents: [{ openedAt: T, closedAt: null, cause: "memory" }] },
      { id: "b", replacementOf: "a" },
    ]);
    const r = run(f, [
      ["a", 0, "ready", "cordoned"],
      ["a", 5, "cordoned", "terminating"],
      ["a", 10, "terminating", "terminated"],
      ["b", 12, "requested", "terminating"],
      ["b", 14, "terminating", "terminated"],
    ]);
    expect(r.ended.map((o) => [o.node.id, (o.end! - o.start) / MIN])).toEqual([["a", 14]]);
  });

  test("without an incident: an operator's cordon is maintenance, silence no_heartbeat, the loop's scale-down scale_down", () => {
    const r = run(facts([{ id: "h" }, { id: "l" }, { id: "s" }]), [
      ["h", 0, "ready", "cordoned", "cordon"],
      ["h", 20, "cordoned", "ready", "uncordon"],
      ["l", 0, "suspect", "lost"],
      ["l", 3, "lost", "validating"],
      ["l", 4, "validating", "ready"],
      ["s", 0, "ready", "cordoned"],
      ["s", 2, "cordoned", "draining"],
      ["s", 7, "draining", "terminating"],
      ["s", 8, "terminating", "terminated"],
    ]);
    expect(r.ended.map((o) => [o.node.id, o.cause, (o.end! - o.start) / MIN])).toEqual([
      ["h", "maintenance", 20],
      ["l", "no_heartbeat", 4],
      ["s", "scale_down", 8],
    ]);
    expect(r.stays.filter((s) => s.node === "l").map((s) => [s.rung, s.seconds])).toEqual([["lost", 240]]);
    expect(r.stays.filter((s) => s.node === "s").map((s) => s.rung)).toEqual(["quarantine", "drain", "terminate"]);
  });

  test("a node that never served has no outage; ready ⇄ suspect is service", () => {
    const r = run(facts([{ id: "n" }]), [
      ["n", 0, "validating", "cordoned", "cordon"],
      ["n", 5, "cordoned", "ready", "uncordon"],
      ["n", 6, "ready", "suspect"],
      ["n", 7, "suspect", "ready"],
    ]);
    expect(r.ended).toEqual([]);
    expect(r.stays).toEqual([]);
  });

  test("causes are bounded: the catalog's classes, the checks, the lifecycle's", () => {
    expect(faultCause("xid", "48")).toBe("memory");
    expect(faultCause("gpu_lost", "lost")).toBe("pcie");
    expect(faultCause("ecc", "dbe")).toBe("memory");
    expect(faultCause("ecc", "sbe_rate")).toBe("ecc");
    expect(faultCause("infiniband", "port_down")).toBe("infiniband");
    expect(faultCause("xid", "9999")).toBe("unknown");
    expect(faultCause("made-up-check")).toBe("other");
    expect(new Set(FAULT_CAUSES).size).toBe(FAULT_CAUSES.length);
    for (const c of ["maintenance", "scale_down", "no_heartbeat", "memory", "pcie", "infiniband", "other"]) expect(FAULT_CAUSES).toContain(c);
  });

  test("the series' step keeps a window to a few dozen points", () => {
    expect(seriesStep(24 * HOUR)).toBe(HOUR);
    expect(seriesStep(7 * 24 * HOUR)).toBe(6 * HOUR);
    expect(seriesStep(30 * 24 * HOUR)).toBe(24 * HOUR);
    expect(seriesStep(90 * 24 * HOUR)).toBe(7 * 24 * HOUR);
    // Since 1970: a few hundred points, not thousands.
    expect(T / seriesStep(T)).toBeLessThanOrEqual(400);
  });

  test("a report's window starts at a time, or a span before the server's now (the dashboard's clock is not the server's)", () => {
    expect(parseSince("24h", T)).toBe(T - 24 * HOUR);
    expect(parseSince("7d", T)).toBe(T - 7 * 24 * HOUR);
    expect(parseSince("2w", T)).toBe(T - 14 * 24 * HOUR);
    expect(parseSince("30m", T)).toBe(T - 30 * MIN);
    expect(parseSince(String(T - HOUR), T)).toBe(T - HOUR);
    expect(parseSince("2026-11-20T00:00:00Z", T)).toBe(T - 24 * HOUR);
    expect(parseSince("7 days", T)).toBeNull();
    expect(parseSince("99999d", T)).toBeNull();
  });
});

// ───────────────────────────── through the store ─────────────────────────────

async function seededStore(path = `${tempDir()}/goodput.db`): Promise<{ store: Store; writer: NodeWriter; path: string }> {
  const store = await openStore({ url: `file:${path}` });
  await store.db.insert(pools).values({ name: "train", source: "config", spec: { scaling: { min_nodes: 0, max_nodes: 4 } }, createdAt: T, updatedAt: T });
  return { store, writer: new NodeWriter(store.db), path };
}

/** A node of pool train with 8 GPUs, validating, then (unless `extra` says otherwise) in service from T-1h through the one writer. */
async function addNode(store: Store, id: string, extra: Partial<NodeRow> = {}): Promise<NodeRow> {
  const row = {
    id,
    pool: "train",
    provider: "local",
    instanceType: "local-8gpu",
    state: "validating" as const,
    gpuCount: 8,
    stateChangedAt: T - HOUR,
    updatedAt: T - HOUR,
    ...extra,
  };
  await store.db.insert(nodes).values(row);
  const node = (await store.db.select().from(nodes).where(eq(nodes.id, id)))[0]!;
  if (extra.state === undefined) await new NodeWriter(store.db).transition(node, "ready", { at: T - HOUR, actor: "navarch", reason: "checked" });
  return node;
}

const scraped = async (store: Store, now: number) => {
  const text = await createMetrics(store.db, { now: () => now }).render();
  return (series: string) =>
    Number(
      text
        .split("\n")
        .find((l) => l.startsWith(`${series} `))
        ?.split(" ")[1] ?? Number.NaN,
    );
};

describe("goodput through the store", () => {
  test("the one writer's transitions: metrics, report and text agree; an open outage grows with now; a restart counts the same", async () => {
    const { store, writer, path } = await seededStore();
    const incidents_ = new Incidents(writer, "navarch");
    const move = async (n: NodeRow, to: NodeState, minutes: number) =>
      expect(await writer.transition(n, to, { at: T + minutes * MIN, actor: "navarch", reason: `to ${to}` })).toBe(true);

    // n1: an Xid 79, quarantined at T, rebooted, back at T+30m.
    const n1 = await addNode(store, "n1");
    expect(await incidents_.open(n1, T, "Xid 79", T, "reboot", faultCause("xid", "79"))).toBe(true);
    await move(n1, "cordoned", 0);
    await move(n1, "draining", 5);
    await move(n1, "rebooting", 15);
    await move(n1, "validating", 27);
    await move(n1, "ready", 30);
    // n2: cordoned by an operator at T+40m, still out.
    await addNode(store, "n2");
    let at = T + 40 * MIN;
    await new Operator(store.db, () => at).cordon("n2", "alice", "cables");
    // n3: a row-remap failure at T+10m, replaced by r3, which serves at T+70m.
    const n3 = await addNode(store, "n3");
    expect(await incidents_.open(n3, T + 10 * MIN, "row remap failed", T + 10 * MIN, "replace", faultCause("row_remap", "failed"))).toBe(true);
    await move(n3, "cordoned", 10);
    await move(n3, "draining", 15);
    const r3 = await addNode(store, "r3", { state: "requested", replacementOf: "n3", gpuCount: null, stateChangedAt: T + 25 * MIN });
    await move(n3, "terminating", 25);
    await move(n3, "terminated", 30);
    await move(r3, "provisioning", 26);
    await move(r3, "validating", 50);
    await move(r3, "ready", 70);

    const now = T + 100 * MIN;
    const ledger = new GoodputLedger(store.db);
    await ledger.advance();
    const totals = ledger.totals(now);
    const lost = (cause: string) => totals.lost.filter((l) => l.cause === cause).reduce((t, l) => t + l.gpuHours, 0);
    expect(lost("pcie")).toBeCloseTo(4, 9); // 30 min × 8 GPUs
    expect(lost("memory")).toBeCloseTo(8, 9); // T+10m → T+70m × 8
    expect(lost("maintenance")).toBeCloseTo((60 / 60) * 8, 9); // T+40m → now (T+100m), still open
    const rung = (r: string) => totals.unavailable.filter((u) => u.rung === r).reduce((t, u) => t + u.seconds, 0);
    expect(rung("quarantine")).toBe(5 * 60 + 5 * 60 + 60 * 60); // n1 5m, n3 5m, n2 60m (open)
    expect(rung("drain")).toBe(10 * 60 + 10 * 60);
    expect(rung("reboot")).toBe(15 * 60);
    expect(rung("replace")).toBe(45 * 60); // n3: T+25m → r3 ready at T+70m, once

    // /metrics says the same.
    const m = await scraped(store, now);
    expect(m('navarch_gpu_hours_lost_total{cause="pcie",pool="train",provider="local"}')).toBeCloseTo(4, 9);
    expect(m('navarch_gpu_hours_lost_total{cause="memory",pool="train",provider="local"}')).toBeCloseTo(8, 9);
    expect(m('navarch_gpu_hours_lost_total{cause="maintenance",pool="train",provider="local"}')).toBeCloseTo(8, 9);
    expect(m('navarch_node_unavailable_seconds_total{rung="quarantine",pool="train"}')).toBe(4200);
    expect(m('navarch_node_unavailable_seconds_total{rung="replace",pool="train"}')).toBe(2700);
    // An open outage grows with now.
    expect((await scraped(store, now + HOUR))('navarch_gpu_hours_lost_total{cause="maintenance",pool="train",provider="local"}')).toBeCloseTo(16, 9);

    // The report over the same time: the same numbers, MTTR per rung, the worst nodes.
    const report = await buildReport(store, T - HOUR, now);
    const g = report.goodput;
    expect(g.gpuHoursLost).toBeCloseTo(20, 9);
    expect(g.byCause.map((c) => [c.cause, c.episodes, Number(c.gpuHours.toFixed(6))])).toEqual([
      ["maintenance", 1, 8],
      ["memory", 1, 8],
      ["pcie", 1, 4],
    ]);
    const byRung = Object.fromEntries(g.byRung.map((r) => [r.rung, r]));
    expect(byRung.reboot).toMatchObject({ stays: 1, meanStaySeconds: 900, ended: 1, mttrSeconds: 1800 });
    expect(byRung.replace).toMatchObject({ stays: 1, meanStaySeconds: 2700, ended: 1, mttrSeconds: 3600 });
    expect(byRung.quarantine).toMatchObject({ stays: 2, meanStaySeconds: 300, ended: 0, mttrSeconds: null });
    expect(byRung.quarantine!.nodeHours).toBeCloseTo(70 / 60, 9);
    expect(g.open).toBe(1);
    expect(g.worstNodes.map((n) => [n.node, Number(n.gpuHours.toFixed(6)), n.cause, n.open])).toEqual([
      ["n2", 8, "maintenance", true],
      ["n3", 8, "memory", false],
      ["n1", 4, "pcie", false],
    ]);
    // In service meanwhile: n1 (T-1h → T, T+30m → now), n2 (→ T+40m), n3 (→ T+10m), r3 (T+70m → now), 8 GPUs each.
    expect(g.gpuHoursInService).toBeCloseTo((8 * (60 + 70 + 100 + 70 + 30)) / 60, 9);
    // Over time: the series adds up to the totals, cause by cause.
    for (const c of g.series.causes) expect(c.gpuHours.reduce((t, x) => t + x, 0)).toBeCloseTo(g.byCause.find((b) => b.cause === c.cause)!.gpuHours, 9);
    expect(g.series.stepMs).toBe(HOUR);

    const text = reportText(report);
    expect(text).toContain("20.0 GPU-hours lost (31.25 % of 64.0), 2.5 node-hours; 3 outages, 1 still out of service");
    const lines = text.split("\n");
    const from = lines.indexOf("Lost GPU-hours by cause:");
    expect(lines.slice(from, from + 5)).toEqual([
      "Lost GPU-hours by cause:",
      "CAUSE        OUTAGES  NODE-HOURS  GPU-HOURS",
      "maintenance  1        1.0         8.0",
      "memory       1        1.0         8.0",
      "pcie         1        0.5         4.0",
    ]);
    expect(lines).toContain("reboot      0.3         2.0        1      15m 0s     1      30m 0s");
    expect(lines).toContain("n2    train  local     8     1        1.0         8.0        maintenance  yes");

    // A restart: a new ledger (and a new registry) over the reopened store count the same.
    store.close();
    const again = await openStore({ url: `file:${path}` });
    try {
      const m2 = await scraped(again, now);
      expect(m2('navarch_gpu_hours_lost_total{cause="pcie",pool="train",provider="local"}')).toBeCloseTo(4, 9);
      expect(m2('navarch_node_unavailable_seconds_total{rung="quarantine",pool="train"}')).toBe(4200);
      expect((await goodputWindow(again.db, T - HOUR, now)).gpuHoursLost).toBeCloseTo(20, 9);
      // The operator uncordons n2 at T+110m: it closes at that time, counted once, and no counter goes down.
      at = T + 110 * MIN;
      await new Operator(again.db, () => at).uncordon("n2", "alice");
      const m3 = await scraped(again, T + 200 * MIN);
      expect(m3('navarch_gpu_hours_lost_total{cause="maintenance",pool="train",provider="local"}')).toBeCloseTo((70 / 60) * 8, 9);
    } finally {
      again.close();
    }
  });

  test("a ledger advanced between scrapes adds only the new transitions, and never goes down", async () => {
    const { store, writer } = await seededStore();
    const n = await addNode(store, "n");
    const ledger = new GoodputLedger(store.db);
    await writer.transition(n, "cordoned", { at: T, actor: "navarch", reason: "scale down" });
    await ledger.advance();
    expect(ledger.totals(T + 10 * MIN).unavailable).toEqual([{ rung: "quarantine", pool: "train", seconds: 600 }]);
    // A change committed just after that scrape, stamped a moment before it.
    await writer.transition(n, "draining", { at: T + 9 * MIN, actor: "navarch", reason: "drain" });
    await ledger.advance();
    const later = ledger.totals(T + 10 * MIN);
    expect(later.unavailable.find((u) => u.rung === "quarantine")?.seconds).toBe(600);
    expect(later.unavailable.find((u) => u.rung === "drain")?.seconds).toBe(60);
    expect(later.lost).toEqual([{ cause: "scale_down", pool: "train", provider: "local", gpuHours: (10 / 60) * 8 }]);
    store.close();
  });

  test("the audit rows it reads are the one writer's: every transition says from and to", async () => {
    const { store, writer } = await seededStore();
    const n = await addNode(store, "n");
    await writer.transition(n, "suspect", { at: T, actor: "navarch", reason: "degraded" });
    const row = (await store.db.select().from(auditLog)).at(-1);
    expect(row?.details).toMatchObject({ from: "ready", to: "suspect" });
    store.close();
  });
});

// ───────────────────────────── the real loop ─────────────────────────────

describe("goodput on the real loop", () => {
  test("an Xid 79 rebooted away: counted under pcie from its cordon to its return, the same in metrics and report", async () => {
    const f = await fleet(`${FAST_SERVER}pools:\n${pool("p", 2, 2)}`);
    await f.until(async () => (await f.count("ready")) === 2);
    const victim = (await f.all())[0]!;
    await f.agents.xid(victim.id, 79, 1);
    await f.until(async () => (await f.node(victim.id)).state === "rebooting");
    await f.until(async () => (await f.node(victim.id)).state === "ready");
    const [incident] = await f.store.db.select().from(incidents).where(eq(incidents.nodeId, victim.id));
    expect(incident).toMatchObject({ cause: "pcie", outcome: "rebooted" });
    const path = (await f.store.db.select().from(auditLog).where(eq(auditLog.target, victim.id))).filter((a) => a.action === "transition");
    const outAt = path.find((a) => (a.details as { to: string }).to === "cordoned")!.at;
    const backAt = path.findLast((a) => (a.details as { to: string }).to === "ready")!.at;
    const expected = ((backAt - outAt) / HOUR) * 8;
    expect(expected).toBeGreaterThan(0);

    const m = await scraped(f.store, f.now());
    expect(m('navarch_gpu_hours_lost_total{cause="pcie",pool="p",provider="local"}')).toBeCloseTo(expected, 9);
    const rungs = ["quarantine", "drain", "reboot"].map((r) => m(`navarch_node_unavailable_seconds_total{rung="${r}",pool="p"}`));
    expect(rungs.every((s) => s >= 0)).toBe(true);
    expect(rungs.reduce((t, s) => t + s, 0)).toBeCloseTo((backAt - outAt) / 1000, 6);
    const report = await buildReport(f.store, f.now() - 24 * HOUR, f.now());
    expect(report.goodput.byCause.map((c) => [c.cause, c.episodes])).toEqual([["pcie", 1]]);
    expect(report.goodput.byCause[0]!.gpuHours).toBeCloseTo(expected, 9);
    expect(report.goodput.byCause[0]!.nodeHours).toBeCloseTo((backAt - outAt) / HOUR, 9);
    expect(report.goodput.byRung.find((r) => r.rung === "reboot")).toMatchObject({ ended: 1, mttrSeconds: (backAt - outAt) / 1000 });
    expect(report.goodput.worstNodes.map((n) => n.node)).toEqual([victim.id]);
  });
});
