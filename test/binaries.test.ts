// The compiled binaries, from a temp directory with no node_modules: the agent
// registers and heartbeats, the reconciler stores the node, and after a restart
// of the reconciler the node is still there.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet } from "./compiled.ts";
import { freePort } from "./support.ts";
import { REPO_ROOT, waitFor } from "./support.ts";

let fleet: CompiledFleet;

type NodeDetail = { node: Record<string, unknown>; gpus: unknown[] };
const getNode = (id: string) => fleet.api<NodeDetail>(`/v1/nodes/${id}`);

beforeAll(async () => {
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    "pools:\n  - name: smoke\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 2\n",
  );
}, 240_000);

afterAll(() => fleet.stop());

describe("compiled binaries from a directory with no node_modules", () => {
  test("--help and --version", async () => {
    const a = await fleet.run([fleet.navarch, "--help"]);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain("navarch serve");
    const b = await fleet.run([fleet.navarchNode, "--help"]);
    expect(b.code).toBe(0);
    expect(b.stdout).toContain("--server");
    expect(b.stdout).toContain("--node-id");
    const c = await fleet.run([fleet.navarchNode, "--version"]);
    expect(c.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("config check accepts the seed's complete example and rejects a bad file with its key path", async () => {
    copyFileSync(join(REPO_ROOT, "test/fixtures/config/valid/seed-complete.yaml"), join(fleet.dir, "complete.yaml"));
    const good = await fleet.run([fleet.navarch, "config", "check", "complete.yaml"]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain("inference");
    writeFileSync(
      join(fleet.dir, "bad.yaml"),
      "pools:\n  - name: a\n    provider: lambda\n    instance_type: x\n    region: r\n    scaling:\n      min_nodes: 4\n      max_nodes: 2\n",
    );
    const bad = await fleet.run([fleet.navarch, "config", "check", "bad.yaml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("pools[0].scaling.max_nodes");
  });

  test("the agent registers and heartbeats; the node survives a reconciler restart", async () => {
    const server = fleet.startServer();
    await fleet.waitReady();
    const agent = fleet.startAgent("smoke-1", ["--pool", "smoke", "--kmsg-path", "none"]);
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
    const restarted = fleet.startServer();
    await fleet.waitReady();
    const after = await waitFor("node smoke-1 after restart", () => getNode("smoke-1"));
    expect(after.node.id).toBe("smoke-1");
    expect(Number(after.node.registeredAt)).toBe(Number(first.node.registeredAt));
    // The agent keeps heartbeating to the restarted reconciler.
    const beforeBeat = Number(after.node.lastHeartbeatAt);
    await waitFor("a heartbeat to the restarted reconciler", async () => {
      const n = await getNode("smoke-1");
      return n && Number(n.node.lastHeartbeatAt) > beforeBeat ? true : undefined;
    });

    const env = { NAVARCH_AUTH_TOKEN: fleet.token };
    const cli = await fleet.run([fleet.navarch, "nodes", "list", "-o", "json", "-s", `127.0.0.1:${fleet.port}`], env);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).nodes.map((n: { id: string }) => n.id)).toEqual(["smoke-1"]);
    const table = await fleet.run([fleet.navarch, "nodes", "list", "-s", `127.0.0.1:${fleet.port}`], env);
    expect(table.stdout).toMatch(/smoke-1\s+smoke\s+monitored\s+validating\s+\S+\s+unavailable/);

    agent.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    restarted.kill("SIGTERM");
    expect(await restarted.exited).toBe(0);
  }, 60_000);

  test("the seed's ConfigMap config: config check, then serve on the same file, agree and it starts", async () => {
    // The Deployment's layout: the ConfigMap's config.yaml alone (no health-policy.yaml beside
    // it), the API key and the token from the Secret; here without the API key (no cloud is reached).
    const dir = join(fleet.dir, "configmap");
    mkdirSync(dir);
    const port = freePort();
    const seed = readFileSync(join(REPO_ROOT, "test/fixtures/config/valid/seed-configmap.yaml"), "utf8");
    writeFileSync(join(dir, "config.yaml"), seed.replace("address: 0.0.0.0:50051", `address: 0.0.0.0:${port}`));
    const env = { PATH: "/usr/bin:/bin", HOME: dir, TMPDIR: dir, NAVARCH_AUTH_TOKEN: fleet.token };
    const check = Bun.spawnSync([fleet.navarch, "config", "check", "config.yaml"], { cwd: dir, env });
    expect(check.exitCode).toBe(0);
    const warnings = check.stderr.toString().trimEnd().split("\n");
    expect(warnings).toContain("warning: config.yaml: providers.lambda.api_key_env: $LAMBDA_API_KEY is not set; launches in k8s-gpu-workers fail until it is");
    if (!existsSync("/etc/navarch/health-policy.yaml")) {
      expect(warnings[0]).toBe(
        "warning: config.yaml: server.health_policy_path: /etc/navarch/health-policy.yaml does not exist; serving with the default health policy (the Xid catalog's) until the file is there and navarch restarts",
      );
    }
    const serve = Bun.spawn([fleet.navarch, "serve", "--config", "config.yaml"], { cwd: dir, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    fleet.procs.push(serve);
    let log = "";
    void (async () => {
      for await (const chunk of serve.stderr) log += new TextDecoder().decode(chunk);
    })();
    await waitFor(
      "serve on the ConfigMap config /readyz",
      async () => ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
      20_000,
    );
    // Every warning check printed, serve printed at start, word for word (plain HTTP once, as it starts the listener).
    for (const line of warnings)
      expect(log).toContain(line.includes("PLAIN HTTP OFF LOOPBACK") ? line.replace("warning: config.yaml: ", "warning: ") : `${line}\n`);
    serve.kill("SIGTERM");
    expect(await serve.exited).toBe(0);
  }, 60_000);

  test("bad input to the binaries is one clear line and a non-zero exit", async () => {
    const noToken = await fleet.run([fleet.navarchNode, "--server", `127.0.0.1:${fleet.port}`]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("NAVARCH_AUTH_TOKEN");
    const badFlag = await fleet.run([fleet.navarch, "nodes", "list", "--bogus"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr.trim().split("\n")).toHaveLength(1);
    const unreachable = await fleet.run([fleet.navarch, "nodes", "list", "-s", "127.0.0.1:1"], { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("cannot reach the reconciler");
    writeFileSync(join(fleet.dir, "corrupt.db"), Buffer.alloc(8192, 0x41));
    writeFileSync(join(fleet.dir, "corrupt.yaml"), `server:\n  address: 127.0.0.1:${freePort()}\n  database_url: file:${fleet.dir}/corrupt.db\n`);
    const corrupt = await fleet.run([fleet.navarch, "serve", "--config", "corrupt.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toContain(`${fleet.dir}/corrupt.db`);
    expect(corrupt.stderr).not.toContain("    at ");
  });
});
