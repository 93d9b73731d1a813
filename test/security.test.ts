// The small holes an adversarial run found, each closed: files holding secrets are created
// private and a shared one is said at start; a data directory that is a file, or an auth-token
// that is a directory, is one line; credentials in a --server URL never reach a message; agents'
// terminal escape sequences are shown, not obeyed, by the CLI; impossible dates are refused
// wherever a date goes in (the CLI's --since, the API's since, the agents' event times).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderInstaller } from "../bootstrap/installer.ts";
import { parseSince } from "../reconciler/cli/events.ts";
import { printable } from "../schema/text.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { parseIsoTime } from "../schema/time.ts";
import type { RegisterRequest } from "../schema/wire.ts";
import { BUN, REPO_ROOT, tempDir } from "./support.ts";

const TOKEN = "security-test-admin-token-0123456789";
const ESC = "\x1b";
let rec: Reconciler;

async function run(cmd: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    ...(cwd ? { cwd } : {}),
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}
const navarch = (args: string[], env: Record<string, string> = {}, cwd?: string) => run([BUN, join(REPO_ROOT, "reconciler/main.ts"), ...args], env, cwd);
const mode = (path: string) => statSync(path).mode & 0o777;

const hostile: RegisterRequest = {
  nodeId: "evil-node",
  hostname: `host${ESC}[2J${ESC}]0;pwned\x07\u009b31m\u202eevil`,
  bootId: "boot-1",
  agentVersion: "test",
  spoolId: crypto.randomUUID(),
  driverVersion: `570${ESC}[8m`,
  nvml: { available: false, error: `NVML gone ${ESC}[31mRED${ESC}[0m` },
  gpus: [],
};

beforeAll(async () => {
  process.env.NAVARCH_SECURITY_TEST_TOKEN = TOKEN;
  const dataDir = join(tempDir("navarch-security-"), "data");
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_SECURITY_TEST_TOKEN",
      heartbeatIntervalSeconds: 10,
    },
    () => undefined,
  );
  const res = await fetch(`${rec.url}/v1/register`, {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify(hostile),
  });
  expect(res.status).toBe(200);
});
afterAll(() => rec.stop());

describe("files that hold secrets", () => {
  test("a generated token, its directory and the database are created private", async () => {
    const dataDir = join(tempDir("navarch-perms-"), "data");
    const lines: string[] = [];
    delete process.env.NAVARCH_SECURITY_UNSET;
    const r = await startReconciler(
      { host: "127.0.0.1", port: 0, dataDir, databaseUrl: `file:${dataDir}/navarch.db`, authTokenEnv: "NAVARCH_SECURITY_UNSET", heartbeatIntervalSeconds: 10 },
      (l) => lines.push(l),
    );
    await r.stop();
    expect({ dir: mode(dataDir), token: mode(join(dataDir, "auth-token")), db: mode(join(dataDir, "navarch.db")) }).toEqual({
      dir: 0o700,
      token: 0o600,
      db: 0o600,
    });
    expect(lines.filter((l) => l.startsWith("warning:"))).toEqual([]);
  });

  test("a token file or database others can read is warned about at start", async () => {
    const dataDir = join(tempDir("navarch-perms-"), "data");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "auth-token"), "shared-token-0123456789\n");
    chmodSync(join(dataDir, "auth-token"), 0o644);
    writeFileSync(join(dataDir, "navarch.db"), "");
    chmodSync(join(dataDir, "navarch.db"), 0o644);
    const lines: string[] = [];
    const r = await startReconciler(
      { host: "127.0.0.1", port: 0, dataDir, databaseUrl: `file:${dataDir}/navarch.db`, authTokenEnv: "NAVARCH_SECURITY_UNSET", heartbeatIntervalSeconds: 10 },
      (l) => lines.push(l),
    );
    await r.stop();
    expect(lines.filter((l) => l.startsWith("warning:"))).toEqual([
      `warning: ${dataDir}/auth-token is mode 0644, readable by other users; it holds the admin token: chmod 600 ${dataDir}/auth-token`,
      `warning: ${dataDir}/navarch.db is mode 0644, readable by every user; it holds the fleet's state and token hashes: chmod 600 ${dataDir}/navarch.db`,
    ]);
  });

  test("a data directory that is a file, an auth-token that is a directory: one line, no stack trace", async () => {
    const dir = tempDir("navarch-badpaths-");
    const file = join(dir, "not-a-dir");
    writeFileSync(file, "x");
    const asFile = await navarch(["serve", "--data-dir", file], {}, dir);
    expect({ code: asFile.code, stderr: asFile.stderr.trim() }).toEqual({
      code: 1,
      stderr: `navarch: server.data_dir: ${file} is a file, not a directory; point server.data_dir (or --data-dir) at a directory`,
    });
    const dataDir = join(dir, "data");
    mkdirSync(join(dataDir, "auth-token"), { recursive: true });
    const asDir = await navarch(["serve", "--data-dir", dataDir], {}, dir);
    expect({ code: asDir.code, stderr: asDir.stderr.trim() }).toEqual({
      code: 1,
      stderr: `navarch: ${dataDir}/auth-token is not a file (it should hold the API token); move it aside, or set $NAVARCH_AUTH_TOKEN`,
    });
    // The CLI, finding ./data/auth-token a directory.
    const cli = await navarch(["nodes", "list"], {}, dir);
    expect({ code: cli.code, stderr: cli.stderr.trim() }).toEqual({
      code: 1,
      stderr: "navarch: data/auth-token is not a file (it should hold the token serve generated); set NAVARCH_AUTH_TOKEN",
    });
  }, 30_000);
});

describe("credentials in a --server URL are never shown", () => {
  test("the CLI's messages name the server without them", async () => {
    const r = await navarch(["nodes", "list", "-s", "http://alice:hunter2-secret@127.0.0.1:9"], { NAVARCH_AUTH_TOKEN: TOKEN });
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("navarch: cannot reach the reconciler at http://127.0.0.1:9");
    expect(r.stderr).not.toContain("hunter2");
  });

  test("the installer's messages name the server without them", async () => {
    const dir = tempDir("navarch-installer-");
    const script = join(dir, "install.sh");
    writeFileSync(script, renderInstaller({ serverUrl: "http://127.0.0.1:9", agentSha256: "" }));
    const r = await run([
      "sh",
      script,
      "--server",
      "http://alice:hunter2-secret@127.0.0.1:9",
      "--token",
      "t",
      "--node-id",
      "n1",
      "--prefix",
      join(dir, "root"),
      "--start",
      "none",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("downloading navarch-node from http://127.0.0.1:9");
    expect(r.stderr).not.toContain("hunter2");
  });

  test("the installer refuses a download it cannot check, and a pinned hash the download does not have", async () => {
    const dir = tempDir("navarch-installer-");
    const script = join(dir, "install.sh");
    writeFileSync(script, renderInstaller({ serverUrl: rec.url, agentSha256: "0".repeat(64) }));
    const r = await run(["sh", script, "--token", "t", "--node-id", "n1", "--prefix", join(dir, "root"), "--start", "none", "--agent-sha256", "ab".repeat(32)]);
    expect(r.code).toBe(1);
    // This reconciler has no agent binary beside it: the download fails before any hash is compared.
    expect(r.stderr).toContain(`could not download ${rec.url}/download/navarch-node`);
    const bad = await run(["sh", script, "--token", "t", "--node-id", "n1", "--prefix", join(dir, "root"), "--agent-sha256", "xyz"]);
    expect(bad.stderr).toContain("--agent-sha256: expected 64 hex digits, got 'xyz'");
    const httpsOnly = await run(["sh", script, "--token", "t", "--node-id", "n1", "--prefix", join(dir, "root"), "--ca-file", script]);
    expect(httpsOnly.stderr).toContain(`--ca-file, --pin-sha256 and --client-cert apply to an https:// reconciler; --server is ${rec.url}`);
  });
});

describe("terminal escape sequences from agents", () => {
  test("the CLI's tables and texts show them escaped; JSON and YAML carry them as escapes", async () => {
    const env = { NAVARCH_SERVER: rec.url, NAVARCH_AUTH_TOKEN: TOKEN };
    for (const args of [
      ["nodes", "list"],
      ["nodes", "get", "evil-node"],
      ["nodes", "list", "-o", "json"],
      ["nodes", "get", "evil-node", "-o", "yaml"],
    ]) {
      const r = await navarch(args, env);
      expect({ args, stderr: r.stderr }).toEqual({ args, stderr: "" });
      expect({ args, raw: /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/.test(r.stdout) }).toEqual({ args, raw: false });
    }
    const detail = await navarch(["nodes", "get", "evil-node"], env);
    expect(detail.stdout).toContain("Hostname:    host\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil");
    expect(detail.stdout).toContain("NVML:        unavailable: NVML gone \\x1b[31mRED\\x1b[0m");
    expect(printable("a\tb\nc\x1b")).toBe("a\tb\nc\\x1b");
  }, 30_000);
});

describe("impossible dates are refused, not rolled over", () => {
  test("the parser: real days only, leap years included", () => {
    expect(Date.parse("2026-02-31")).not.toBeNaN(); // what the refused input used to become
    for (const bad of [
      "2026-02-31",
      "2023-02-29",
      "2026-04-31",
      "2026-13-01",
      "2026-00-10",
      "2026-01-01T24:00:00Z",
      "2026-01-01T10:60:00Z",
      "2026-01-01T10:00:00+24:00",
      "yesterday",
    ]) {
      expect({ bad, parsed: parseIsoTime(bad) }).toEqual({ bad, parsed: undefined });
    }
    expect(parseIsoTime("2024-02-29")).toBe(Date.UTC(2024, 1, 29));
    expect(parseIsoTime("2026-02-28T23:59:59.5Z")).toBe(Date.UTC(2026, 1, 28, 23, 59, 59, 500));
    expect(parseIsoTime("2026-03-01T01:00:00+02:00")).toBe(Date.UTC(2026, 1, 28, 23, 0, 0));
  });

  test("the CLI's --since, the API's since, and an agent's event time", async () => {
    expect(() => parseSince("2026-02-31", Date.now())).toThrow(
      '--since: expected a duration like 10m, 2h, 3d or an ISO-8601 time of a real date, got "2026-02-31"',
    );
    const cli = await navarch(["events", "--since", "2026-02-31"], { NAVARCH_SERVER: rec.url, NAVARCH_AUTH_TOKEN: TOKEN });
    expect(cli.code).toBe(2);
    const api = await fetch(`${rec.url}/v1/events?since=2026-02-31`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(api.status).toBe(400);
    expect(await api.json()).toEqual({ error: 'since: expected epoch milliseconds or an ISO-8601 time, got "2026-02-31"' });
    expect((await fetch(`${rec.url}/v1/events?since=2026-02-28`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    const event = {
      seq: 1,
      time: "2026-02-31T00:00:00Z",
      bootId: "boot-1",
      check: "xid",
      code: "13",
      severity: "degraded",
      action: "restart_app",
      message: "x",
    };
    const pushed = await fetch(`${rec.url}/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ nodeId: "evil-node", events: [event] }),
    });
    expect(pushed.status).toBe(400);
    expect(((await pushed.json()) as { issues: { path: string }[] }).issues.map((i) => i.path)).toContain("events[0].time");
  }, 30_000);
});
