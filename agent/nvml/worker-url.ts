// The one place that names the NVML worker module.
//
// A `bun build --compile` binary only contains this worker when it is given to the bundler as an
// extra entrypoint next to the main one; for navarch-node:
//   entrypoints: ["agent/main.ts", "agent/nvml/worker.ts"]
// Without it the monitor reports status.available = false with a message saying so.
//
// In a compiled binary every entrypoint is embedded under /$bunfs/root/, relative to the
// directory common to all entrypoints, with a .js extension (agent/nvml/worker.ts becomes
// /$bunfs/root/nvml/worker.js when that directory is agent/), while import.meta.url is the
// binary's own /$bunfs/root/<name>. So a plain new URL("./worker.ts", import.meta.url) is only
// right when running from source; in a binary the embedded file is looked up instead.
import { existsSync } from "node:fs";

/** The entrypoint (relative to the repository root) a compiled build must include. */
export const NVML_WORKER_ENTRYPOINT = "agent/nvml/worker.ts";

const SOURCE_URL = new URL("./worker.ts", import.meta.url);

/** True inside a `bun build --compile` executable. */
export const IS_COMPILED = import.meta.url.includes("/$bunfs/");

function embeddedWorker(): URL | null {
  // Common entrypoint directory agent/ (navarch-node), the repository root, or agent/nvml/.
  for (const rel of ["./nvml/worker.js", "./agent/nvml/worker.js", "./worker.js"]) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(decodeURIComponent(url.pathname))) return url;
  }
  return null;
}

/** The worker module to start, or null in a compiled binary built without it. */
export const NVML_WORKER_URL_OR_NULL: URL | null = IS_COMPILED ? embeddedWorker() : SOURCE_URL;

/** The worker module (in a binary built without it: the would-be URL, which fails to load). */
export const NVML_WORKER_URL: URL = NVML_WORKER_URL_OR_NULL ?? SOURCE_URL;
