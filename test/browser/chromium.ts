// Debian's chromium driven by playwright-core for the dashboard tests: installed by
// ensure-chromium.sh when missing, launched headless with no sandbox and a fresh
// profile, screenshots saved under test/artifacts/ (git-ignored).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { REPO_ROOT, tempDir } from "../support.ts";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = join(REPO_ROOT, "test/artifacts/dashboard");

export function ensureChromium(): void {
  const r = Bun.spawnSync(["sh", join(REPO_ROOT, "test/browser/ensure-chromium.sh")], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`test/browser/ensure-chromium.sh failed (${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
}

export async function launchBrowser(): Promise<{ context: BrowserContext; page: Page }> {
  ensureChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
  const context = await chromium.launchPersistentContext(tempDir("navarch-chromium-"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1400, height: 1000 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
