// The compiled binaries, copied into a temp directory with no node_modules anywhere
// above it: the agent registers and heartbeats, the reconciler stores the node, and
// after a restart of the reconciler the node is still there.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ensureBinaries } from "./prerequisites.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

const TOKEN = "smoke-token-0123456789";
let dir: string;
let port: number;
let navarch: string;
let navarchNode: string;
const running: Subprocess[] = [];

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = probe.port;
  probe.stop(true);
  return p;
}

function start(cmd: string[], env: Record<string, string> = {}): Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(cmd, {
    cwd: dir,
    // A clean environment: nothing from the repo (no NODE_PATH, no bun) leaks in.
    env: { PATH: "/usr/bin:/bin", HOME: dir, TMPDIR: dir, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.push(proc);
  return proc;
}

async function run(cmd: string[], env: Record<string, string> = {}) {
  const proc = start(cmd, env);
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

async function getNode(id: string): Promise<{ node: Record<string, unknown>; gpus: unknown[] } | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/nodes/${id}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  if (res.status !== 200) return undefined;
  return (await res.json()) as { node: Record<string, unknown>; gpus: unknown[] };
}

function startServer() {
  return start([navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: TOKEN });
}

async function waitReady() {
  await waitFor("reconciler /readyz", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    return res?.status === 200 ? true : undefined;
  });
}

beforeAll(async () => {
  const built = await ensureBinaries();
  dir = tempDir("navarch-smoke-");
  expect(existsSync(join(dir, "node_modules"))).toBe(false);
  expect(dir.startsWith(REPO_ROOT)).toBe(false);
  navarch = join(dir, "navarch");
  navarchNode = join(dir, "navarch-node");
  copyFileSync(built.navarch, navarch);
  copyFileSync(built.navarchNode, navarchNode);
  Bun.spawnSync(["chmod", "+x", navarch, navarchNode]);
  port = freePort();
  writeFileSync(
    join(dir, "navarch.yaml"),
    `server:\n  address: 127.0.0.1:${port}\n  heartbeat_interval: 1s\n  data_dir: ${dir}/data\npools:\n  - name: smoke\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 2\n`,
  );
}, 240_000);

afterAll(() => {
  for (const proc of running) proc.kill("SIGKILL");
});

describe("compiled binaries from a directory with no node_modules", () => {
  test("--help and --version", async () => {
    const a = await run([navarch, "--help"]);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain("navarch serve");
    const b = await run([navarchNode, "--help"]);
    expect(b.code).toBe(0);
    expect(b.stdout).toContain("--server");
    expect(b.stdout).toContain("--node-id");
    const c = await run([navarchNode, "--version"]);
    expect(c.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("config check accepts the seed's complete example and rejects a bad file with its key path", async () => {
    copyFileSync(join(REPO_ROOT, "test/fixtures/config/valid/seed-complete.yaml"), join(dir, "complete.yaml"));
    const good = await run([navarch, "config", "check", "complete.yaml"]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain("inference");
    writeFileSync(join(dir, "bad.yaml"), "pools:\n  - name: a\n    provider: lambda\n    instance_type: x\n    region: r\n    scaling:\n      min_nodes: 4\n      max_nodes: 2\n");
    const bad = await run([navarch, "config", "check", "bad.yaml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("pools[0].scaling.max_nodes");
  });

  test("the agent registers and heartbeats; the node survives a reconciler restart", async () => {
    const server = startServer();
    await waitReady();
    const agent = start([navarchNode, "--server", `127.0.0.1:${port}`, "--node-id", "smoke-1", "--pool", "smoke", "--state-dir", join(dir, "agent")], {
      NAVARCH_AUTH_TOKEN: TOKEN,
    });
    const first = await waitFor("node smoke-1 registered", () => getNode("smoke-1"));
    expect(first.node.pool).toBe("smoke");
    // No GPU driver on a test machine: the agent says so plainly, with the paths it tried.
    expect(first.node.nvmlAvailable).toBe(false);
    expect(String(first.node.nvmlError)).toContain("libnvidia-ml.so.1");
    expect(first.gpus).toEqual([]);
    const firstBeat = Number(first.node.lastHeartbeatAt);
    await waitFor("a heartbeat after registration", async () => {
      const n = await getNode("smoke-1");
      return n && Number(n.node.lastHeartbeatAt) > firstBeat ? true : undefined;
    });

    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    const restarted = startServer();
    await waitReady();
    const after = await waitFor("node smoke-1 after restart", () => getNode("smoke-1"));
    expect(after.node.id).toBe("smoke-1");
    expect(Number(after.node.registeredAt)).toBe(Number(first.node.registeredAt));
    // The agent keeps heartbeating to the restarted reconciler.
    const beforeBeat = Number(after.node.lastHeartbeatAt);
    await waitFor("a heartbeat to the restarted reconciler", async () => {
      const n = await getNode("smoke-1");
      return n && Number(n.node.lastHeartbeatAt) > beforeBeat ? true : undefined;
    });

    const cli = await run([navarch, "nodes", "list", "-o", "json", "-s", `127.0.0.1:${port}`], { NAVARCH_AUTH_TOKEN: TOKEN });
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).nodes.map((n: { id: string }) => n.id)).toEqual(["smoke-1"]);
    const table = await run([navarch, "nodes", "list", "-s", `127.0.0.1:${port}`], { NAVARCH_AUTH_TOKEN: TOKEN });
    expect(table.stdout).toMatch(/smoke-1\s+smoke\s+validating\s+unavailable/);

    agent.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    restarted.kill("SIGTERM");
    expect(await restarted.exited).toBe(0);
  }, 60_000);

  test("bad input to the binaries is one clear line and a non-zero exit", async () => {
    const noToken = await run([navarchNode, "--server", `127.0.0.1:${port}`]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("NAVARCH_AUTH_TOKEN");
    const badFlag = await run([navarch, "nodes", "list", "--bogus"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr.trim().split("\n")).toHaveLength(1);
    const unreachable = await run([navarch, "nodes", "list", "-s", "127.0.0.1:1"], { NAVARCH_AUTH_TOKEN: TOKEN });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("cannot reach the reconciler");
    writeFileSync(join(dir, "corrupt.db"), Buffer.alloc(8192, 0x41));
    writeFileSync(join(dir, "corrupt.yaml"), `server:\n  address: 127.0.0.1:${freePort()}\n  database_url: file:${dir}/corrupt.db\n`);
    const corrupt = await run([navarch, "serve", "--config", "corrupt.yaml"], { NAVARCH_AUTH_TOKEN: TOKEN });
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toContain(`${dir}/corrupt.db`);
    expect(corrupt.stderr).not.toContain("    at ");
  });
});
