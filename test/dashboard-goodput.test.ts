// The dashboard's Goodput page in chromium, against a running reconciler whose store a simulated
// fleet on virtual time writes: an Xid 79 rebooted away (pcie), an Xid 64 replaced (memory), an
// operator's cordon still open (maintenance). The page's charts are drawn (uPlot, served from
// the binary's assets with its licence), and every number it shows is the API's (GET /v1/report)
// and agrees with /metrics. A screenshot goes to test/artifacts/dashboard/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { BrowserContext, Page } from "playwright-core";
import { launchBrowser, screenshot } from "./browser/chromium.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";
import type { Report } from "../reconciler/api/report.ts";

let fleet: SimFleet;
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

const state = async (id: string) => (await fleet.node(id)).state;

/** Quiet hours: the agents heartbeat at every step, nothing changes. */
async function quietHours(n: number): Promise<void> {
  for (let i = 0; i < n * 4; i++) await fleet.step(15 * 60_000);
}

beforeAll(async () => {
  fleet = await simFleet(POOLS_YAML([{ name: "train", min: 4, max: 6 }]), "dashboard-goodput-token-0123456789");
  await fleet.until("4 ready", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 4);
  const [rebooted, replaced, cordoned] = (await fleet.all()).filter((n) => n.state === "ready");
  await quietHours(1);
  // A GPU off the bus: cordoned, drained, rebooted, back (pcie).
  await fleet.agents.xid(rebooted!.id, 79, 1);
  await fleet.until(
    "rebooted and back",
    async () => (await fleet.rec.store.db.query.incidents.findFirst({ where: (i, { eq }) => eq(i.nodeId, rebooted!.id) }))?.backAt != null,
  );
  await fleet.until("back in service", async () => (await state(rebooted!.id)) === "ready");
  await quietHours(2);
  // Row remapping failed: cordoned, drained, replaced (memory).
  await fleet.agents.xid(replaced!.id, 64, 3);
  await fleet.until("replaced", async () => (await state(replaced!.id)) === "terminated");
  await fleet.until("the replacement serves", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 4);
  await quietHours(1);
  // An operator takes one out, three hours ago now; it is still out.
  await fleet.api(`/v1/nodes/${cordoned!.id}/cordon`, { method: "POST", body: JSON.stringify({ actor: "alice", reason: "cables" }) });
  await quietHours(3);
  ({ context, page } = await launchBrowser());
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
}, 120_000);

afterAll(async () => {
  await context?.close();
  await fleet?.stop();
});

const cells = async (selector: string) =>
  page.locator(`${selector} tbody tr`).evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll("td")].map((td) => (td.textContent ?? "").trim())));
/** The page's hours: 1234, 12.3, 0.27. */
const h = (x: number) => (x === 0 ? "0" : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toPrecision(2));

describe("the Goodput page", () => {
  test("draws lost GPU-hours by cause, by rung and by node, with the API's numbers", async () => {
    // The chart library comes from the binary's assets, its licence with it.
    const lib = await fetch(`${fleet.url}/ui/vendor/uPlot.iife.min.js`);
    expect(lib.status).toBe(200);
    expect(lib.headers.get("content-type")).toContain("javascript");
    const libText = await lib.text();
    expect(libText.startsWith("/*! uPlot, from the npm package uplot. The MIT License (MIT)")).toBe(true);
    expect(libText).toContain("var uPlot=");
    expect(await (await fetch(`${fleet.url}/ui/vendor/uPlot.LICENSE`)).text()).toContain("Permission is hereby granted");

    await page.goto(`${fleet.url}/ui/`);
    await page.fill("#token", fleet.token);
    await page.click("#login button[type=submit]");
    await page.waitForSelector("#fleet-grid .tile");
    await page.click("nav a[data-nav=goodput]");
    await page.waitForSelector("#goodput-cards");
    await page.click("#goodput-window a[data-window='24h']");
    await page.waitForSelector("#goodput-window a.active[data-window='24h']");
    await page.waitForSelector("#chart-causes canvas");
    await page.waitForSelector("#chart-rungs canvas");
    await page.waitForSelector("#chart-nodes canvas");

    const report = await fleet.api<Report>("/v1/report?since=24h");
    const g = report.goodput;
    expect(g.byCause.map((c) => c.cause).sort()).toEqual(["maintenance", "memory", "pcie"]);
    expect(g.open).toBe(1);

    // The cards.
    const card = (k: string) => page.locator(`[data-card=${k}] .n`).textContent();
    await expect(card("gpu-hours-lost")).resolves.toBe(h(g.gpuHoursLost));
    await expect(card("gpu-hours-in-service")).resolves.toBe(h(g.gpuHoursInService));
    await expect(card("node-hours")).resolves.toBe(h(g.nodeHoursUnavailable));
    await expect(card("outages")).resolves.toBe(String(g.episodes));
    await expect(card("open")).resolves.toBe("1");
    // The tables, row for row.
    expect(await cells("#goodput-causes")).toEqual(g.byCause.map((c) => [c.cause, String(c.episodes), h(c.nodeHours), h(c.gpuHours)]));
    const rungs = await cells("#goodput-rungs");
    expect(rungs.map((r) => [r[0], r[1], r[2], r[3], r[5]])).toEqual(
      g.byRung.map((r) => [r.rung, h(r.nodeHours), h(r.gpuHours), String(r.stays), String(r.ended)]),
    );
    expect(rungs.map((r) => r[0])).toEqual(expect.arrayContaining(["quarantine", "drain", "reboot", "replace"]));
    expect((await cells("#goodput-nodes")).map((r) => [r[0], r[6], r[7]])).toEqual(g.worstNodes.map((n) => [n.node, h(n.gpuHours), n.cause]));
    // The charts drew the same numbers: a bar per rung and per node, a stack per cause.
    expect(await page.locator("#chart-rungs").getAttribute("data-values")).toBe(g.byRung.map((r) => h(r.nodeHours)).join(","));
    expect(await page.locator("#chart-nodes").getAttribute("data-values")).toBe(g.worstNodes.map((n) => h(n.gpuHours)).join(","));
    expect((await page.locator("#chart-causes").getAttribute("data-causes"))?.split(",").sort()).toEqual(["maintenance", "memory", "pcie"]);
    expect(await page.locator("#chart-causes .u-legend").textContent()).toContain("pcie");
    // The series adds up to the totals.
    for (const c of g.series.causes) expect(c.gpuHours.reduce((t, x) => t + x, 0)).toBeCloseTo(g.byCause.find((b) => b.cause === c.cause)!.gpuHours, 9);

    // /metrics counts the same (all time: the fleet is younger than the window).
    const metrics = await (await fetch(`${fleet.url}/metrics`, { headers: { Authorization: `Bearer ${fleet.token}` } })).text();
    for (const c of g.byCause) {
      const line = metrics.split("\n").find((l) => l.startsWith(`navarch_gpu_hours_lost_total{cause="${c.cause}",pool="train",provider="local"} `));
      expect(Number(line?.split(" ")[1])).toBeCloseTo(c.gpuHours, 9);
    }
    await screenshot(page, "09-goodput");
    // Opened directly (goodput.js loads before app.js starts the page), it draws the same.
    await page.reload();
    await page.waitForSelector("#chart-causes canvas");
    expect(await page.locator("#chart-nodes").getAttribute("data-values")).toBe(g.worstNodes.map((n) => h(n.gpuHours)).join(","));
    expect(consoleErrors).toEqual([]);
  }, 60_000);
});
