// The dashboard from the compiled binary, run from a directory with no source tree
// and no node_modules: its assets are embedded (the chart library's too, with its
// licence), the page signs in and renders in chromium (the Goodput page with the
// library loaded), /openapi.json and the new metrics are served.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { BrowserContext } from "playwright-core";
import { launchBrowser, screenshot } from "./browser/chromium.ts";
import { CompiledFleet } from "./compiled.ts";

let fleet: CompiledFleet;
let context: BrowserContext | undefined;

beforeAll(async () => {
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    "pools:\n  - name: embedded\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 2\n",
  );
  fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  await context?.close();
  fleet?.stop();
});

describe("compiled navarch serves the dashboard", () => {
  test("assets, the API description and the metrics come from the binary", async () => {
    const html = await fetch(`${fleet.url}/ui/`);
    expect(html.status).toBe(200);
    expect(html.headers.get("content-type")).toContain("text/html");
    expect(await html.text()).toContain('<script src="/ui/app.js" defer></script>');
    const js = await fetch(`${fleet.url}/ui/app.js`);
    expect(js.headers.get("content-type")).toContain("javascript");
    expect(await js.text()).toContain("/v1/watch");
    const css = await fetch(`${fleet.url}/ui/app.css`);
    expect(await css.text()).toContain(".tile");
    // The charts' library, from its npm package into the binary, with its licence.
    const uplot = await fetch(`${fleet.url}/ui/vendor/uPlot.iife.min.js`);
    expect(uplot.headers.get("content-type")).toContain("javascript");
    const uplotText = await uplot.text();
    expect(uplotText).toContain("The MIT License (MIT)");
    expect(uplotText).toContain("var uPlot=");
    expect(await (await fetch(`${fleet.url}/ui/vendor/uPlot.min.css`)).text()).toContain(".uplot");
    expect(await (await fetch(`${fleet.url}/ui/vendor/uPlot.LICENSE`)).text()).toContain("Permission is hereby granted");
    const etag = css.headers.get("etag")!;
    expect((await fetch(`${fleet.url}/ui/app.css`, { headers: { "If-None-Match": etag } })).status).toBe(304);
    expect((await fetch(`${fleet.url}/`, { redirect: "manual" })).headers.get("location")).toBe("/ui/");
    const doc = (await (await fetch(`${fleet.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toContain("/v1/nodes/{id}/cordon");
    const metrics = await (await fetch(`${fleet.url}/metrics`, { headers: { Authorization: `Bearer ${fleet.token}` } })).text();
    expect(metrics).toContain('navarch_nodes_total{pool="embedded"} 0');
    expect(metrics).toContain("navarch_reconcile_pass_duration_seconds_count");
    expect(metrics).toContain("# TYPE navarch_gpu_hours_lost_total counter");
  });

  test("the page signs in and renders in chromium", async () => {
    const browser = await launchBrowser();
    context = browser.context;
    const page = browser.page;
    await page.goto(`${fleet.url}/ui/`);
    await page.fill("#token", fleet.token);
    await page.click("#login button[type=submit]");
    await page.waitForSelector("main table td a:has-text('embedded')");
    await page.waitForSelector("#live[data-live=on]");
    await screenshot(page, "07-compiled-binary");
    // The Goodput page, with the chart library the binary embeds: nothing lost yet.
    await page.click("nav a[data-nav=goodput]");
    await page.waitForSelector("#goodput-cards [data-card=gpu-hours-lost]");
    expect(await page.evaluate("typeof uPlot")).toBe("function");
    await expect(page.locator("#chart-causes").textContent()).resolves.toContain("No GPU time was lost");
  }, 30_000);
});
