// Shared test helpers: temp directories that clean themselves up, and the repo root.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const REPO_ROOT = new URL("..", import.meta.url).pathname;
export const BUN = process.execPath;

/** A fresh temp directory, removed after the test file's run (test/preload.ts). */
const created: string[] = [];
export function tempDir(prefix = "navarch-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Removes every temp directory made so far (after each test file; child processes call it themselves). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Polls `probe` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await Bun.sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ""}`);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/**
 * Daemons a harness started (etcd, slurmctld…): killed when the test process exits or is
 * interrupted, so a failed or cancelled run never leaves a cluster running. A harness adds
 * each child and deletes it once it has stopped it itself.
 */
export const harnessChildren = new Set<Subprocess>();
const killHarnessChildren = () => {
  for (const child of harnessChildren) child.kill("SIGKILL");
};
process.on("exit", killHarnessChildren);
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
] as const) {
  process.once(signal, () => {
    killHarnessChildren();
    process.exit(code);
  });
}
