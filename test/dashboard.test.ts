// The dashboard in a real browser (Debian's chromium, headless) against a running
// reconciler whose store a simulated fleet on virtual time writes: sign-in, the
// fleet, pool and node pages render; a fault shows up live (no reload); a cordon
// and an uncordon from the node page take effect; a refusal by a safety rail is
// shown with its reason. Screenshots go to test/artifacts/dashboard/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { BrowserContext, Page } from "playwright-core";
import { launchBrowser, screenshot } from "./browser/chromium.ts";
import { nodes } from "../schema/db.ts";
import { TILE_LIMIT } from "../reconciler/api/views/node-tiles.ts";
import { seed } from "../bench/reconciler.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";
import { waitFor } from "./support.ts";

let fleet: SimFleet;
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

beforeAll(async () => {
  fleet = await simFleet(
    POOLS_YAML([
      { name: "train", min: 24, max: 40 },
      { name: "infer", min: 8, max: 12 },
    ]),
  );
  await fleet.until("32 ready nodes", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 32);
  ({ context, page } = await launchBrowser());
  page.on("console", (m) => {
    // The one 401 expected is the sign-in with a wrong token.
    if (m.type() === "error" && !m.text().includes("status of 401")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
}, 60_000);

afterAll(async () => {
  await context?.close();
  await fleet?.stop();
});

const readyNode = async (pool: string, not: string[] = []) => (await fleet.all()).find((n) => n.pool === pool && n.state === "ready" && !not.includes(n.id))!;
const tile = (id: string) => page.locator(`#fleet-grid [data-node="${id}"], #pool-grid [data-node="${id}"]`);

describe("dashboard in chromium", () => {
  test("no data without the token; a wrong token is refused; the right one opens the fleet", async () => {
    expect((await fetch(`${fleet.url}/v1/overview`)).status).toBe(401);
    expect((await fetch(`${fleet.url}/v1/watch`)).status).toBe(401);
    const res = await fetch(`${fleet.url}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(await res.text()).not.toContain(fleet.token);

    await page.goto(`${fleet.url}/`);
    await page.waitForSelector("#login");
    await page.fill("#token", "not-the-token");
    await page.click("#login button[type=submit]");
    await page.waitForSelector("#login-error:has-text('refused')");
    await page.fill("#token", fleet.token);
    await page.click("#login button[type=submit]");
    await page.waitForSelector("#fleet-grid .tile");
    expect(await page.locator("#fleet-grid .tile").count()).toBe(32);
    expect(await page.locator("#fleet-grid .tile[data-status=healthy]").count()).toBe(32);
    await expect(page.locator("[data-card=nodes] .n").textContent()).resolves.toBe("32");
    await page.waitForSelector("#live[data-live=on]");
    expect(await page.locator("main table").first().textContent()).toContain("train");
    await screenshot(page, "01-fleet");
  }, 30_000);

  test("the change stream stays open through a quiet spell longer than the server's 10 s idle timeout", async () => {
    const res = await fetch(`${fleet.url}/v1/watch`, { headers: { authorization: `Bearer ${fleet.token}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = "";
    const started = Date.now();
    // Nothing changes meanwhile: only pings keep it open.
    while (Date.now() - started < 12_000) {
      const { value, done } = await reader.read();
      expect(done, `the stream ended after ${Date.now() - started} ms`).toBe(false);
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    expect(text).toContain("event: hello");
    expect(text).toContain("event: ping");
  }, 20_000);

  test("a fault shows up live: the node's tile turns unhealthy without a reload", async () => {
    const victim = await readyNode("train");
    // A marker on the page's global object: still there later means no reload happened.
    await page.evaluate("globalThis.noReload = true");
    await fleet.agents.xid(victim.id, 79, 3);
    await fleet.step();
    await fleet.step();
    expect((await fleet.node(victim.id)).verdict).toBe("unhealthy");
    await page.waitForSelector(`#fleet-grid [data-node="${victim.id}"][data-status=unhealthy]`, { timeout: 10_000 });
    expect(await page.evaluate("globalThis.noReload")).toBe(true);
    // The open incident says what is wrong and what Navarch is doing about it.
    const incidents = page.locator("main .panel", { hasText: "Unhealthy nodes and what Navarch is doing" });
    await expect(incidents.textContent()).resolves.toContain(victim.id);
    await screenshot(page, "02-fleet-fault");

    // The node page: GPUs with readings, the Xid in its history, the incident timeline.
    await tile(victim.id).click();
    await page.waitForSelector("#node-state");
    const text = (await page.locator("main").textContent()) ?? "";
    expect(text).toContain("45 °C");
    expect(text).toContain("NVIDIA H100 80GB HBM3");
    const xids = page.locator("main .panel", { hasText: "Xid history" });
    await expect(xids.textContent()).resolves.toContain("79");
    await page.waitForSelector("#incidents .step:has-text('cordoned')");
    // Xid 79's remedy is a reboot: the node is rebooted and back while the page is open, and
    // the timeline completes live.
    await fleet.until(
      "rebooted and back",
      async () => (await fleet.rec.store.db.query.incidents.findFirst({ where: (i, { eq }) => eq(i.nodeId, victim.id) }))?.backAt != null,
      60,
    );
    await page.waitForSelector("#incidents .step:has-text('back, new boot')", { timeout: 10_000 });
    expect(await page.locator("#incidents").textContent()).toMatch(/reboot→back (\d+m )?\d+s/);
    await screenshot(page, "03-node-incident");
  }, 60_000);

  test("a dependency that does not answer is shown near the top with its error and what waits for it; back up, it moves down", async () => {
    // The reconciler's own registry (what GET /v1/status reads): its Kubernetes API down, a cordon waiting.
    const kubernetes = fleet.rec.dependencies.add("kubernetes", "the Kubernetes API", "https://10.0.0.1:6443");
    kubernetes.queuedBy(() => [{ action: "cordon", node: "train-0001", since: Date.now() - 42_000 }]);
    kubernetes.failed(new Error("GET /api/v1/nodes: cannot reach https://10.0.0.1:6443: connect ECONNREFUSED"));
    await page.goto(`${fleet.url}/#/`);
    await page.reload();
    const panel = page.locator("#dependencies");
    await panel.waitFor({ timeout: 15_000 });
    const text = (await panel.textContent()) ?? "";
    expect(text).toContain("1 not answering");
    expect(text).toContain("the Kubernetes API (https://10.0.0.1:6443)");
    expect(text).toContain("down");
    expect(text).toContain("connect ECONNREFUSED");
    expect(text).toContain("cordon train-0001");
    await expect(page.locator("[data-card=dependencies] .n").textContent()).resolves.toBe("1");
    // Above the pools while it is down.
    expect(await page.locator("main .panel").first().getAttribute("id")).toBe("dependencies");
    await screenshot(page, "03b-dependency-down");

    kubernetes.queuedBy(() => []);
    kubernetes.ok();
    // The fleet page looks at GET /v1/status again every 10 s (dependencies change no row).
    await waitFor("the card back to 0", async () => ((await page.locator("[data-card=dependencies] .n").textContent()) === "0" ? true : undefined), 20_000);
    expect(await page.locator("main .panel").first().getAttribute("id")).not.toBe("dependencies");
    await expect(page.locator("#dependencies").textContent()).resolves.toContain("up");
  }, 60_000);

  test("cordon and uncordon from the node page take effect", async () => {
    const node = await readyNode("infer");
    await page.goto(`${fleet.url}/ui/#/node/${node.id}`);
    await page.waitForSelector("#cordon:not([disabled])");
    await page.fill("#reason", "checking cables");
    await page.click("#cordon");
    await page.waitForSelector("#flash:has-text('cordon: done')");
    const cordoned = await fleet.api<{ node: { state: string; cordonedBy: string; stateReason: string } }>(`/v1/nodes/${node.id}`);
    expect(cordoned.node).toMatchObject({ state: "cordoned", cordonedBy: "human:dashboard" });
    expect(cordoned.node.stateReason).toContain("checking cables");
    await page.waitForSelector("#node-state .badge:has-text('cordoned')");
    await page.waitForSelector("#uncordon:not([disabled])");
    await screenshot(page, "04-node-cordoned");
    // The loop leaves a human's cordon alone.
    await fleet.step();
    expect((await fleet.node(node.id)).state).toBe("cordoned");
    await page.click("#uncordon");
    await page.waitForSelector("#node-state .badge:has-text('ready')");
    expect((await fleet.node(node.id)).state).toBe("ready");
  }, 30_000);

  test("the pool page: sizes, autoscaler decisions with reasons, and what a rail refused", async () => {
    await page.goto(`${fleet.url}/ui/#/pool/infer`);
    await page.waitForSelector("#pool-grid .tile");
    const text = (await page.locator("main").textContent()) ?? "";
    expect(text).toContain("min 8, max 12");
    const decisions = page.locator("main .panel", { hasText: "Autoscaler decisions" });
    await expect(decisions.textContent()).resolves.toMatch(/0 → 8/);
    // Pause the pool from the page, then break a node: the paused rail refuses the cordon, and says so.
    await page.click("#pool-toggle[data-action=pause]");
    await page.waitForSelector("#pool-toggle[data-action=resume]");
    const victim = await readyNode("infer");
    await fleet.agents.xid(victim.id, 79, 0);
    await fleet.step();
    await fleet.step();
    const rails = page.locator("main .panel", { hasText: "Safety rails" });
    await rails.locator(`a:has-text("${victim.id}")`).waitFor({ timeout: 10_000 });
    await expect(rails.textContent()).resolves.toContain("paused");
    expect((await fleet.node(victim.id)).state).toBe("ready");
    await screenshot(page, "05-pool-paused-refusal");
    await page.click("#pool-toggle[data-action=resume]");
    await page.waitForSelector("#pool-toggle[data-action=pause]");
  }, 30_000);

  test("the events page filters by severity; nothing logged an error in the browser", async () => {
    await page.goto(`${fleet.url}/ui/#/events`);
    await page.waitForSelector("#event-filters");
    await page.selectOption("#event-filters select[name=severity]", "unhealthy");
    await page.click("#event-filters button[type=submit]");
    await page.waitForSelector("main table td:has-text('Xid 79')");
    await screenshot(page, "06-events");
    expect(consoleErrors).toEqual([]);
  }, 30_000);

  test("hundreds of nodes at a glance; a node's bootstrap output", async () => {
    const at = fleet.now();
    const rows = Array.from({ length: 500 }, (_, i) => ({
      id: `bulk-${String(i).padStart(3, "0")}`,
      pool: "bulk",
      state: (i % 50 === 7 ? "cordoned" : "ready") as "ready" | "cordoned",
      verdict: (i % 50 === 7 ? "unhealthy" : i % 25 === 3 ? "degraded" : "healthy") as "healthy" | "degraded" | "unhealthy",
      stateChangedAt: at,
      lastHeartbeatAt: at,
      updatedAt: at,
    }));
    for (let i = 0; i < rows.length; i += 100) await fleet.rec.store.db.insert(nodes).values(rows.slice(i, i + 100));
    const started = performance.now();
    await page.goto(`${fleet.url}/ui/#/`);
    await page.waitForSelector('#fleet-grid [data-node="bulk-007"]');
    const ms = performance.now() - started;
    // More live nodes than a view draws (TILE_LIMIT): every one needing attention is drawn, and
    // the healthy Ready ones left out are counted.
    const live = ((await fleet.api("/v1/overview")) as { totals: { nodes: number } }).totals.nodes;
    expect(live).toBeGreaterThan(TILE_LIMIT);
    expect(await page.locator("#fleet-grid .tile").count()).toBe(TILE_LIMIT);
    expect(await page.locator('#fleet-grid .tile[data-node^="bulk-"][data-status=unhealthy]').count()).toBe(10);
    expect(await page.locator('#fleet-grid .tile[data-node^="bulk-"][data-status=degraded]').count()).toBe(20);
    await expect(page.locator("#tiles-omitted").textContent()).resolves.toContain(`${live - TILE_LIMIT} more healthy, Ready nodes are not drawn`);
    expect(ms).toBeLessThan(3000);
    await screenshot(page, "08-fleet-500-nodes");

    // SSH bootstrap output, where this reconciler records runs (bootstrap_runs).
    const table = await fleet.rec.store.client.execute("select count(*) as n from sqlite_master where type = 'table' and name = 'bootstrap_runs'");
    if (Number(table.rows[0]?.n ?? 0) === 0) return;
    const steps = [
      {
        command: "curl -fsSL http://reconciler/install.sh | sh",
        exitCode: 0,
        stdout: "navarch-node installed\n",
        stderr: "",
        durationMs: 2100,
        timedOut: false,
      },
    ];
    await fleet.rec.store.client.execute({
      sql: "insert into bootstrap_runs (node_id, address, user, state, started_at, finished_at, steps) values (?, ?, ?, ?, ?, ?, ?)",
      args: ["bulk-007", "10.0.0.7:22", "ubuntu", "succeeded", at - 60_000, at - 50_000, JSON.stringify(steps)],
    });
    await page.goto(`${fleet.url}/ui/#/node/bulk-007`);
    const boot = page.locator("main .panel", { hasText: "Bootstrap output" });
    await boot.locator(".bootstrap-run[data-state=succeeded]").waitFor();
    await expect(boot.textContent()).resolves.toContain("navarch-node installed");
    await expect(boot.textContent()).resolves.toContain("ubuntu@10.0.0.7:22");
  }, 30_000);

  test("100,000 nodes: the overview stays under 200 KB and the page renders in under a second", async () => {
    await seed(fleet.rec.store, 100_000, fleet.now());
    const res = await fetch(`${fleet.url}/v1/overview`, { headers: { Authorization: `Bearer ${fleet.token}` } });
    const bytes = (await res.arrayBuffer()).byteLength;
    expect(bytes).toBeLessThan(200_000);
    // Signed in on its own, so that it also runs alone (`npm run bench dashboard` runs only this test).
    await page.goto(`${fleet.url}/`);
    await page.waitForSelector("#login:visible, #fleet-grid .tile");
    if (await page.locator("#login").isVisible()) {
      await page.fill("#token", fleet.token);
      await page.click("#login button[type=submit]");
    }
    await page.waitForSelector("#fleet-grid .tile");
    const started = performance.now();
    await page.goto(`${fleet.url}/ui/#/`);
    await page.locator("#tiles-omitted").waitFor();
    const ms = performance.now() - started;
    console.log(`overview at 100,000+ nodes: ${(bytes / 1000).toFixed(0)} KB, rendered in ${ms.toFixed(0)} ms`);
    expect(await page.locator("#fleet-grid .tile").count()).toBe(TILE_LIMIT);
    expect(ms).toBeLessThan(1000);
  }, 120_000);
});
