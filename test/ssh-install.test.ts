// The installer path end to end with compiled binaries: a real OpenSSH server on loopback
// runs the seed's SSH bootstrap commands pointed at the reconciler's own installer
// (`curl -fsSL {{.ControlPlane}}/install.sh | sh`); it downloads the compiled agent from
// the compiled `navarch serve`, installs it (under a staging root, not /usr/local), and
// the agent registers with its one-time bootstrap token and keeps its own credential.
// Then the credential rules: a bootstrap token works once, and a node cannot report for
// another node.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { renderTemplate, shellEscape } from "../schema/template.ts";
import { runBootstrap, type BootstrapResult } from "../bootstrap/ssh.ts";
import { startReconciler } from "../reconciler/app/serve.ts";
import { NAVARCH_VERSION } from "../schema/version.ts";
import type { RegisterRequest } from "../schema/wire.ts";
import { CompiledFleet } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { Sshd, ensureSshd, killPidFile, newKeyPair, type KeyPair } from "./ssh/sshd.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

let fleet: CompiledFleet;
let sshd: Sshd;
let client: KeyPair;
let dir: string;
/** The bootstrapped "machine": the installer's staging root (NAVARCH_PREFIX). */
let root: string;
const NODE = "ssh-node-1";
let bootstrapToken = "";
let install: BootstrapResult;

// The seed's three setup commands (download, unit, systemctl) become the installer; the
// second command checks what it installed. Staging root and fake GPUs are explicit here.
const SETUP_COMMANDS = () => [
  `curl -fsSL {{.ControlPlane}}/install.sh | NAVARCH_BOOTSTRAP_TOKEN={{.BootstrapToken}} NAVARCH_PREFIX=${root} sh -s -- \\
  --node-id {{.NodeID}} --start background --agent-args "--kmsg-path none --poll-interval 1" \\
  --env NAVARCH_NVML_LIBRARY=${FAKE_NVML.full} --env FAKE_NVML_CONTROL=${root}/nvml-control`,
  `${root}/usr/local/bin/navarch-node --version`,
];

function api(path: string, token: string, body?: unknown): Promise<Response> {
  return fetch(`${fleet.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const registration = (nodeId: string): RegisterRequest => ({
  nodeId,
  hostname: nodeId,
  bootId: "boot-1",
  agentVersion: NAVARCH_VERSION,
  spoolId: crypto.randomUUID(),
  nvml: { available: false, error: "test" },
  gpus: [],
});

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
const agentLog = () => (existsSync(join(root, "var/log/navarch-node.log")) ? readFileSync(join(root, "var/log/navarch-node.log"), "utf8") : "(no agent log)");

beforeAll(async () => {
  ensureSshd();
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig();
  fleet.startServer();
  dir = tempDir("navarch-install-");
  root = join(dir, "machine");
  client = newKeyPair(join(dir, "client_ed25519"));
  sshd = await Sshd.start({ dir: join(dir, "sshd"), authorizedKeys: [client.publicKey] });
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  killPidFile(join(root, "run/navarch-node.pid"));
  fleet?.stop();
  await sshd?.stop();
});

describe("the reconciler's installer over a real SSH bootstrap", () => {
  test("serves install.sh with its URL and the agent's checksum, and its own agent binary", async () => {
    const script = await (await fetch(`${fleet.url}/install.sh`)).text();
    expect(script).toStartWith("#!/bin/sh");
    expect(script).toContain(`DEFAULT_SERVER='${fleet.url}'`);
    expect(script).toContain(`AGENT_SHA256='${sha256(fleet.navarchNode)}'`);
    expect(script).not.toContain("@@");
    const download = await fetch(`${fleet.url}/download/navarch-node`);
    expect(download.status).toBe(200);
    expect(Number(download.headers.get("content-length"))).toBe(statSync(fleet.navarchNode).size);
    await download.body?.cancel();
  }, 30_000);

  test("the seed's bootstrap commands, pointed at the installer, install the compiled agent, which registers with its bootstrap token", async () => {
    const minted = await api("/v1/bootstrap-tokens", fleet.token, { nodeId: NODE, ttlSeconds: 600, actor: "test" });
    expect(minted.status).toBe(200);
    bootstrapToken = ((await minted.json()) as { token: string }).token;
    const values = {
      ControlPlane: fleet.url,
      NodeID: NODE,
      Pool: "ssh",
      Provider: "lambda",
      Region: "us-west-2",
      InstanceType: "gpu_1x_a10",
      BootstrapToken: bootstrapToken,
    };
    const commands = SETUP_COMMANDS().map((t) => renderTemplate(t, values, shellEscape));
    install = await runBootstrap({
      host: "127.0.0.1",
      port: sshd.port,
      user: sshd.user,
      privateKey: client.privateKey,
      commands,
      mask: [bootstrapToken],
      timeouts: { reachableMs: 10_000, commandMs: 60_000 },
    });
    expect({ ok: install.ok, error: install.error, log: install.ok ? "" : agentLog() }).toEqual({ ok: true, error: undefined, log: "" });
    const out = install.steps[0]!.stderr;
    expect(out).toContain(`downloading navarch-node from ${fleet.url}`);
    expect(out).toContain(`wrote ${root}/etc/navarch/node.env (mode 0600)`);
    expect(out).toContain("started navarch-node in the background");
    expect(install.steps[1]!.stdout.trim()).toBe(NAVARCH_VERSION);
    // The token is masked in what the run kept.
    expect(install.steps[0]!.command).toContain("NAVARCH_BOOTSTRAP_TOKEN=***");
    expect(JSON.stringify(install)).not.toContain(bootstrapToken);

    // What it installed, where, with which modes.
    const bin = join(root, "usr/local/bin/navarch-node");
    expect(sha256(bin)).toBe(sha256(fleet.navarchNode));
    expect(mode(bin)).toBe("755");
    const envFile = join(root, "etc/navarch/node.env");
    expect(mode(envFile)).toBe("600");
    const env = readFileSync(envFile, "utf8");
    expect(env).toContain(`NAVARCH_SERVER=${fleet.url}\n`);
    expect(env).toContain(`NAVARCH_NODE_ID=${NODE}\n`);
    expect(env).toContain(`NAVARCH_BOOTSTRAP_TOKEN=${bootstrapToken}\n`);
    expect(env).toContain(`NAVARCH_NVML_LIBRARY=${FAKE_NVML.full}\n`);
    expect(env).toContain(`NAVARCH_NODE_ARGS='--kmsg-path none --poll-interval 1'\n`);
    expect(readFileSync(join(root, "etc/systemd/system/navarch-node.service"), "utf8")).toBe(
      readFileSync(join(REPO_ROOT, "systemd/navarch-node.service"), "utf8"),
    );

    // The agent registered, with its GPUs (the fake library, named explicitly), and keeps its own credential.
    const node = await waitFor(
      `${NODE} registered with GPUs (agent log: ${agentLog()})`,
      async () => {
        const d = (await (await api(`/v1/nodes/${NODE}`, fleet.token)).json()) as {
          node?: { nvmlAvailable: boolean; agentHealth: string | null };
          gpus?: unknown[];
        };
        return d.node?.nvmlAvailable && d.node.agentHealth !== null ? d : undefined;
      },
      20_000,
    );
    expect(node.gpus).toHaveLength(4);
    const credential = join(root, "var/lib/navarch-node/node-token");
    expect(existsSync(credential)).toBe(true);
    expect(mode(credential)).toBe("600");
    expect(agentLog()).toContain("received this node's own credential");
    // Never logged: not the bootstrap token, not the node's credential.
    const nodeToken = readFileSync(credential, "utf8").trim();
    expect(fleet.output.get("navarch") ?? "").not.toContain(bootstrapToken);
    expect(fleet.output.get("navarch") ?? "").not.toContain(nodeToken);
    expect(agentLog()).not.toContain(bootstrapToken);
    expect(agentLog()).not.toContain(nodeToken);
  }, 60_000);

  test("a bootstrap token works once; a node's credential reports for its own node only", async () => {
    const nodeToken = readFileSync(join(root, "var/lib/navarch-node/node-token"), "utf8").trim();
    // Spent: the installed agent used it.
    const again = await api("/v1/register", bootstrapToken, registration(NODE));
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: string }).error).toContain("already used");

    // Another node, registered by an operator with the admin token.
    expect((await api("/v1/register", fleet.token, registration("other-node"))).status).toBe(200);
    const event = (nodeId: string) => ({
      nodeId,
      events: [
        { seq: 1, time: new Date().toISOString(), bootId: "boot-1", check: "xid", code: "79", severity: "unhealthy", action: "replace", message: "spoofed" },
      ],
    });
    const spoof = await api("/v1/events", nodeToken, event("other-node"));
    expect(spoof.status).toBe(403);
    expect(((await spoof.json()) as { error: string }).error).toContain(`belongs to node ${NODE}; it cannot report for node other-node`);
    const spoofedBeat = await api("/v1/heartbeat", nodeToken, {
      nodeId: "other-node",
      bootId: "b",
      sentAt: new Date().toISOString(),
      nvml: { available: false },
      health: { checked: false, worst: "healthy", openIncidents: 0 },
      gpus: [],
    });
    expect(spoofedBeat.status).toBe(403);
    // Nor read the fleet or act as an operator.
    expect((await api("/v1/nodes", nodeToken)).status).toBe(403);
    expect((await api(`/v1/nodes/other-node/cordon`, nodeToken, {})).status).toBe(403);
    // Its own node: fine.
    const own = await api("/v1/heartbeat", nodeToken, {
      nodeId: NODE,
      bootId: "b",
      sentAt: new Date().toISOString(),
      nvml: { available: true },
      health: { checked: true, worst: "healthy", openIncidents: 0 },
      gpus: [],
    });
    expect(own.status).toBe(200);
    // The admin token still works for everything.
    expect((await api("/v1/events", fleet.token, event("other-node"))).status).toBe(200);
    expect((await api("/v1/register", "not-a-token-at-all-0123456789", registration(NODE))).status).toBe(401);

    // A fresh bootstrap token registers its own node only, and once.
    const minted = (await (await api("/v1/bootstrap-tokens", fleet.token, { nodeId: "tok-node" })).json()) as { token: string };
    expect((await api("/v1/register", minted.token, registration("someone-else"))).status).toBe(403);
    expect((await api("/v1/heartbeat", minted.token, { nodeId: "tok-node" })).status).toBe(403);
    const first = await api("/v1/register", minted.token, registration("tok-node"));
    expect(first.status).toBe(200);
    const issued = ((await first.json()) as { nodeToken?: string }).nodeToken;
    expect(issued).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await api("/v1/register", minted.token, registration("tok-node"))).status).toBe(401);
    expect((await api("/v1/register", issued!, registration("tok-node"))).status).toBe(200);
  }, 30_000);

  test("a restarted agent keeps using its own credential (its bootstrap token is spent)", async () => {
    killPidFile(join(root, "run/navarch-node.pid"));
    const before = ((await (await api(`/v1/nodes/${NODE}`, fleet.token)).json()) as { node: { lastHeartbeatAt: number } }).node.lastHeartbeatAt;
    // The same environment file systemd would read; the bootstrap token in it no longer works.
    const proc = fleet.start("restarted-agent", [
      "sh",
      "-c",
      `set -a; . ${root}/etc/navarch/node.env; set +a; exec ${root}/usr/local/bin/navarch-node --server "$NAVARCH_SERVER" --node-id "$NAVARCH_NODE_ID" --state-dir ${root}/var/lib/navarch-node $NAVARCH_NODE_ARGS`,
    ]);
    await waitFor(
      "a heartbeat from the restarted agent",
      async () => {
        const d = (await (await api(`/v1/nodes/${NODE}`, fleet.token)).json()) as { node: { lastHeartbeatAt: number } };
        return d.node.lastHeartbeatAt > before + 500 ? true : undefined;
      },
      15_000,
    );
    expect(fleet.output.get("restarted-agent") ?? "").toContain(`registered as ${NODE}`);
    // Every refusal the agent logs reads "HTTP 401: …" (a bare "401" also matched the port in its server URL).
    expect(fleet.output.get("restarted-agent") ?? "").not.toContain("HTTP 401");
    proc.kill("SIGTERM");
    await proc.exited;
  }, 30_000);
});

describe("install.sh on its own", () => {
  const runInstaller = async (script: string, env: Record<string, string>, args: string[] = []) => {
    const proc = Bun.spawn(["sh", "-s", "--", ...args], {
      stdin: new Blob([script]),
      env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", ...env },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code, out: out + err };
  };

  test("leaves systemd alone under a staging root, and refuses what it cannot do", async () => {
    const script = await (await fetch(`${fleet.url}/install.sh`)).text();
    const staging = join(dir, "staging");
    const ok = await runInstaller(script, { NAVARCH_PREFIX: staging, NAVARCH_BOOTSTRAP_TOKEN: "a-token-of-sorts-0123456789abcdef" }, ["--node-id", "staged-1"]);
    expect(ok.out).toContain(`installed under ${staging}: not touching this machine's systemd`);
    expect(ok.code).toBe(0);
    expect(existsSync(join(staging, "usr/local/bin/navarch-node"))).toBe(true);
    expect(existsSync(join(staging, "run/navarch-node.pid"))).toBe(false); // not started

    const noToken = await runInstaller(script, { NAVARCH_PREFIX: join(dir, "no-token") });
    expect(noToken.code).toBe(1);
    expect(noToken.out).toContain("no token: set NAVARCH_BOOTSTRAP_TOKEN");
    const badStart = await runInstaller(script, { NAVARCH_PREFIX: join(dir, "bad"), NAVARCH_BOOTSTRAP_TOKEN: "t" }, ["--start", "sometimes"]);
    expect(badStart.code).toBe(1);
    expect(badStart.out).toContain("--start: expected auto, systemd, background or none");
    const badId = await runInstaller(script, { NAVARCH_PREFIX: join(dir, "bad"), NAVARCH_BOOTSTRAP_TOKEN: "t" }, ["--node-id", "-oops"]);
    expect(badId.code).toBe(1);
    expect(badId.out).toContain("node id '-oops' must be letters");
  }, 60_000);

  test("a reconciler without an agent binary says so, and its installer stops with that reason", async () => {
    const data = join(dir, "no-agent");
    process.env.NAVARCH_INSTALL_TEST_TOKEN = "install-test-token";
    const rec = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir: data,
        databaseUrl: `file:${data}/navarch.db`,
        authTokenEnv: "NAVARCH_INSTALL_TEST_TOKEN",
        heartbeatIntervalSeconds: 5,
        agentBinary: join(data, "nowhere/navarch-node"),
      },
      () => undefined,
    );
    try {
      const download = await fetch(`${rec.url}/download/navarch-node`);
      expect(download.status).toBe(404);
      expect(((await download.json()) as { error: string }).error).toContain(`${join(data, "nowhere/navarch-node")} does not exist`);
      const script = await (await fetch(`${rec.url}/install.sh`)).text();
      const run = await runInstaller(script, { NAVARCH_PREFIX: join(dir, "never"), NAVARCH_BOOTSTRAP_TOKEN: "t" });
      expect(run.code).toBe(1);
      expect(run.out).toContain("this reconciler has no agent binary to serve");
      expect(existsSync(join(dir, "never"))).toBe(false);
    } finally {
      await rec.stop();
    }
  }, 30_000);
});
