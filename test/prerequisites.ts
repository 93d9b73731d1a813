// Things some tests need built first: the compiled binaries (dist/) and the fake
// libnvidia-ml. Each is built at most once per test run, and only when a source
// is newer than its output, so `bun test FILE` works on its own.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { BUN, REPO_ROOT } from "./support.ts";

const SOURCE_DIRS = ["agent", "reconciler", "schema", "bootstrap"];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function mtimeOr0(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

let binaries: Promise<{ navarch: string; navarchNode: string }> | undefined;

/** Builds dist/navarch and dist/navarch-node when missing or older than the sources. */
export function ensureBinaries(): Promise<{ navarch: string; navarchNode: string }> {
  binaries ??= (async () => {
    const navarch = join(REPO_ROOT, "dist/navarch");
    const navarchNode = join(REPO_ROOT, "dist/navarch-node");
    const sources = Math.max(...SOURCE_DIRS.map((d) => newestMtime(join(REPO_ROOT, d))), mtimeOr0(join(REPO_ROOT, "bun.lock")));
    if (Math.min(mtimeOr0(navarch), mtimeOr0(navarchNode)) < sources) {
      const proc = Bun.spawn([BUN, "run", "scripts/build.ts"], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      if (code !== 0) throw new Error(`bun run scripts/build.ts failed (${code}):\n${out}${err}`);
    }
    return { navarch, navarchNode };
  })();
  return binaries;
}
