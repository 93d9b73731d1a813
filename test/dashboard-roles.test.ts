// The dashboard by role, in chromium: a viewer sees the fleet and no button it may not press;
// an operator gets cordon, uncordon and pause; a token that may not read the fleet is told so
// at sign-in. And what agents wrote (a host name, an NVML error) is shown with its control
// characters visible, never hidden or obeyed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { BrowserContext, Page } from "playwright-core";
import { launchBrowser, screenshot } from "./browser/chromium.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";

let fleet: SimFleet;
let context: BrowserContext;
let page: Page;
const tokens: Record<string, string> = {};
let nodeId = "";

beforeAll(async () => {
  fleet = await simFleet(POOLS_YAML([{ name: "train", min: 2, max: 3 }]), "dashboard-roles-token-0123456789");
  await fleet.until("2 ready", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 2);
  nodeId = (await fleet.all()).find((n) => n.state === "ready")!.id;
  for (const [role, extra] of [
    ["viewer", {}],
    ["operator", {}],
    ["enroll", { pool: "train" }],
  ] as const) {
    tokens[role] = (await fleet.api<{ token: string }>("/v1/tokens", { method: "POST", body: JSON.stringify({ role, name: `ui-${role}`, ...extra }) })).token;
  }
  await fleet.api("/v1/register", {
    method: "POST",
    body: JSON.stringify({
      nodeId: "evil-node",
      hostname: "host\x1b[2J\u202eevil",
      bootId: "b",
      agentVersion: "t",
      spoolId: crypto.randomUUID(),
      nvml: { available: false, error: "gone \x1b[31mRED" },
      gpus: [],
    }),
  });
  ({ context, page } = await launchBrowser());
}, 60_000);

afterAll(async () => {
  await context?.close();
  await fleet?.stop();
});

async function signIn(token: string): Promise<void> {
  await page.goto(`${fleet.url}/ui/#/`);
  await page.evaluate("sessionStorage.clear()");
  await page.reload();
  await page.waitForSelector("#login");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
}

describe("the dashboard shows each role what it may do", () => {
  test("a viewer reads everything and is offered no action", async () => {
    await signIn(tokens.viewer!);
    await page.waitForSelector("#role[data-role=viewer]");
    expect(await page.locator("#role").textContent()).toBe("ui-viewer (viewer)");
    await page.goto(`${fleet.url}/ui/#/node/${nodeId}`);
    await page.waitForSelector("#node-state");
    expect(await page.locator("#cordon, #uncordon, #reason").count()).toBe(0);
    await page.goto(`${fleet.url}/ui/#/pool/train`);
    await page.waitForSelector("main h1:has-text('Pool train')");
    expect(await page.locator("#pool-toggle").count()).toBe(0);
    await screenshot(page, "roles-viewer-pool");
  }, 30_000);

  test("an operator gets cordon, uncordon and pause", async () => {
    await signIn(tokens.operator!);
    await page.waitForSelector("#role[data-role=operator]");
    await page.goto(`${fleet.url}/ui/#/node/${nodeId}`);
    await page.waitForSelector("#cordon:not([disabled])");
    await page.goto(`${fleet.url}/ui/#/pool/train`);
    await page.waitForSelector("#pool-toggle");
  }, 30_000);

  test("a token that may not read the fleet is told so at sign-in", async () => {
    await signIn(tokens.enroll!);
    await page.waitForSelector("#login-error:has-text('may not read the fleet')");
  }, 30_000);

  test("an agent's control characters are shown, not obeyed", async () => {
    await signIn(tokens.viewer!);
    await page.waitForSelector("#role[data-role=viewer]");
    await page.goto(`${fleet.url}/ui/#/node/evil-node`);
    await page.waitForSelector("#node-state");
    const text = (await page.locator("main").textContent()) ?? "";
    expect(text).toContain("host\\x1b[2J\\u202eevil");
    expect(text).toContain("unavailable: gone \\x1b[31mRED");
    expect(/[\x1b\u202e]/.test(text)).toBe(false);
    await screenshot(page, "roles-escaped-hostname");
  }, 30_000);
});
