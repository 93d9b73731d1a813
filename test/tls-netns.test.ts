// End to end over TLS on a network address, not loopback: the compiled reconciler serves HTTPS
// on 10.213.x.2 inside a network namespace this test makes (a veth pair to this namespace, as
// root; CI runs as root), and from outside it
//   - the compiled agent registers and heartbeats, trusting the test CA and pinning the
//     certificate's SHA-256;
//   - the compiled CLI lists the fleet with NAVARCH_CA_FILE;
//   - a real OpenSSH bootstrap runs `curl … {{.ControlPlane}}/install.sh | sh` against the
//     reconciler's https:// URL, installs the agent, which registers with its bootstrap token;
//   - each of them refuses a certificate it should not trust (another CA, another pin), as do
//     curl and openssl s_client; and plain HTTP on that address warned about, or refused with require_tls.
// Where namespaces cannot be made the test fails saying why; it never skips.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderTemplate, shellEscape } from "../schema/template.ts";
import { runBootstrap } from "../bootstrap/ssh.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { freePort } from "./support.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { Sshd, ensureSshd, killPidFile, newKeyPair, type KeyPair } from "./ssh/sshd.ts";
import { waitFor } from "./support.ts";
import { TestCa, ensureTlsTools, type Issued } from "./tls/certs.ts";

const IP = "/usr/sbin/ip";
const id = process.pid % 200;
const NS = `navarch-tls-${process.pid}`;
const HOST_IF = `nvh${process.pid}`.slice(0, 15);
const NS_IF = `nvn${process.pid}`.slice(0, 15);
const HOST_ADDR = `10.213.${id}.1`;
const ADDR = `10.213.${id}.2`;

let fleet: CompiledFleet;
let ca: TestCa;
let stranger: TestCa;
let server: Issued;
let url = "";
let reconciler: Proc;
let sshd: Sshd;
let client: KeyPair;
let machine = "";

function sh(cmd: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

/** The namespace and its link to this one, or an error that says what this machine lacks. */
function makeNamespace(): void {
  if (process.getuid?.() !== 0) throw new Error("test/tls-netns.test.ts needs root to make a network namespace (ip netns add); CI runs as root");
  if (!existsSync(IP)) throw new Error(`${IP} is missing: install iproute2 (test/tls/ensure-tls-tools.sh does as root)`);
  for (const cmd of [
    [IP, "netns", "add", NS],
    [IP, "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF],
    [IP, "link", "set", NS_IF, "netns", NS],
    [IP, "addr", "add", `${HOST_ADDR}/30`, "dev", HOST_IF],
    [IP, "link", "set", HOST_IF, "up"],
    [IP, "netns", "exec", NS, IP, "addr", "add", `${ADDR}/30`, "dev", NS_IF],
    [IP, "netns", "exec", NS, IP, "link", "set", NS_IF, "up"],
    [IP, "netns", "exec", NS, IP, "link", "set", "lo", "up"],
  ]) {
    const r = sh(cmd);
    if (r.code !== 0)
      throw new Error(
        `cannot make the test's network namespace: ${cmd.join(" ")} failed (${r.code}): ${r.out.trim()} (this test needs root and network namespaces; it does not skip)`,
      );
  }
}

function removeNamespace(): void {
  sh([IP, "link", "del", HOST_IF]);
  sh([IP, "netns", "del", NS]);
}

async function run(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return fleet.run(cmd, env);
}

const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
  const res = await fetch(`${url}${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${fleet.token}`, "Content-Type": "application/json" },
    tls: { ca: readFileSync(ca.cert, "utf8") },
  });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};

const nodeOf = async (nodeId: string) =>
  (await api<{ nodes: { id: string; lastHeartbeatAt: number | null }[] }>("/v1/nodes")).nodes.find((n) => n.id === nodeId);

beforeAll(async () => {
  ensureTlsTools();
  ensureSshd();
  buildFakeNvml();
  removeNamespace();
  makeNamespace();
  fleet = await CompiledFleet.create();
  ca = new TestCa(fleet.dir);
  stranger = new TestCa(fleet.dir, "stranger-ca");
  server = ca.server("reconciler", { ips: [ADDR] });
  const port = freePort();
  url = `https://${ADDR}:${port}`;
  writeFileSync(
    join(fleet.dir, "navarch.yaml"),
    `server:\n  address: ${ADDR}:${port}\n  heartbeat_interval: 1s\n  data_dir: ${fleet.dir}/data\n  tls:\n    cert_file: ${server.cert}\n    key_file: ${server.key}\n`,
  );
  reconciler = fleet.start("navarch", [IP, "netns", "exec", NS, fleet.navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
  await waitFor(
    `the reconciler on ${url} (log: ${fleet.output.get("navarch") ?? ""})`,
    async () => {
      if (reconciler.exitCode !== null) throw new Error(`navarch serve exited ${reconciler.exitCode}: ${fleet.output.get("navarch")}`);
      const r = await run(["curl", "-fsS", "--max-time", "2", "--cacert", ca.cert, `${url}/readyz`]);
      return r.code === 0 ? true : undefined;
    },
    20_000,
  );
  client = newKeyPair(join(fleet.dir, "client_ed25519"));
  sshd = await Sshd.start({ dir: join(fleet.dir, "sshd"), authorizedKeys: [client.publicKey] });
  machine = join(fleet.dir, "machine");
}, 120_000);

afterAll(async () => {
  if (machine) killPidFile(join(machine, "run/navarch-node.pid"));
  fleet?.stop();
  await sshd?.stop();
  removeNamespace();
});

describe("TLS on a network address, from outside its namespace", () => {
  test("curl and openssl s_client see the certificate; without the CA they refuse it; no plain HTTP there", async () => {
    expect((await run(["curl", "-sS", "--cacert", ca.cert, `${url}/healthz`])).stdout).toBe("ok");
    expect((await run(["curl", "-sS", "--cacert", stranger.cert, `${url}/healthz`])).code).toBe(60);
    expect((await run(["curl", "-sS", `${url}/healthz`])).code).toBe(60);
    const plain = await run(["curl", "-sS", "--max-time", "5", `http://${ADDR}:${new URL(url).port}/healthz`]);
    expect(plain.code).not.toBe(0);
    const s = await run(["sh", "-c", `openssl s_client -connect ${ADDR}:${new URL(url).port} -CAfile ${ca.cert} </dev/null 2>/dev/null`]);
    expect(s.stdout).toContain("Verify return code: 0 (ok)");
    const pemText = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(s.stdout)?.[0] ?? "";
    expect(new X509Certificate(pemText).fingerprint256).toBe(server.fingerprint256);
  });

  test("the agent registers and heartbeats over TLS with --ca-file and --pin-sha256", async () => {
    fleet.start(
      "agent-tls",
      [
        fleet.navarchNode,
        "--server",
        url,
        "--ca-file",
        ca.cert,
        "--pin-sha256",
        server.fingerprint256,
        "--node-id",
        "tls-agent",
        "--state-dir",
        join(fleet.dir, "agents/tls-agent"),
        "--kmsg-path",
        "none",
        "--nvml-library",
        FAKE_NVML.full,
      ],
      { NAVARCH_AUTH_TOKEN: fleet.token, FAKE_NVML_CONTROL: join(fleet.dir, "agents/tls-agent.ctl") },
    );
    const first = await waitFor(
      `tls-agent registered (log: ${fleet.output.get("agent-tls") ?? ""})`,
      async () => (await nodeOf("tls-agent"))?.lastHeartbeatAt ?? undefined,
      20_000,
    );
    await waitFor("a later heartbeat", async () => (((await nodeOf("tls-agent"))?.lastHeartbeatAt ?? 0) > first ? true : undefined), 10_000);
  }, 40_000);

  test("the agent refuses a reconciler signed by another CA, or with another certificate than the pinned one", async () => {
    const other = ca.server("reconciler", { ips: [ADDR] }, "reconciler-other");
    fleet.start(
      "agent-stranger",
      [
        fleet.navarchNode,
        "--server",
        url,
        "--ca-file",
        stranger.cert,
        "--node-id",
        "stranger-ca-agent",
        "--state-dir",
        join(fleet.dir, "agents/s1"),
        "--kmsg-path",
        "none",
      ],
      { NAVARCH_AUTH_TOKEN: fleet.token },
    );
    fleet.start(
      "agent-pin",
      [
        fleet.navarchNode,
        "--server",
        url,
        "--ca-file",
        ca.cert,
        "--pin-sha256",
        other.fingerprint256,
        "--node-id",
        "wrong-pin-agent",
        "--state-dir",
        join(fleet.dir, "agents/s2"),
        "--kmsg-path",
        "none",
      ],
      { NAVARCH_AUTH_TOKEN: fleet.token },
    );
    fleet.start(
      "agent-system",
      [fleet.navarchNode, "--server", url, "--node-id", "system-ca-agent", "--state-dir", join(fleet.dir, "agents/s3"), "--kmsg-path", "none"],
      { NAVARCH_AUTH_TOKEN: fleet.token },
    );
    await waitFor(
      "each refusal in its agent's log",
      () => {
        const [a, b, c] = ["agent-stranger", "agent-pin", "agent-system"].map((l) => fleet.output.get(l) ?? "");
        return /certificate|verify/i.test(a!) && b!.includes("not the one pinned with --pin-sha256") && /certificate|verify/i.test(c!) ? true : undefined;
      },
      20_000,
    );
    for (const n of ["stranger-ca-agent", "wrong-pin-agent", "system-ca-agent"]) expect(await nodeOf(n)).toBeUndefined();
  }, 40_000);

  test("the CLI lists the fleet over TLS with NAVARCH_CA_FILE, and refuses another CA in one line", async () => {
    const env = { NAVARCH_SERVER: url, NAVARCH_AUTH_TOKEN: fleet.token };
    const ok = await run([fleet.navarch, "nodes", "list", "-o", "json"], { ...env, NAVARCH_CA_FILE: ca.cert });
    expect(ok.stderr).toBe("");
    expect(JSON.parse(ok.stdout).nodes.map((n: { id: string }) => n.id)).toContain("tls-agent");
    const refused = await run([fleet.navarch, "nodes", "list"], { ...env, NAVARCH_CA_FILE: stranger.cert });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^navarch: cannot reach the reconciler at ${url}: .*(certificate|verify)[^\\n]*\\n$`, "i"));
  });

  test("a real SSH bootstrap installs the agent from the https:// reconciler; it registers with its bootstrap token", async () => {
    const script = await run(["curl", "-fsS", "--cacert", ca.cert, `${url}/install.sh`]);
    // {{.ControlPlane}} and the installer's own server are the https:// URL.
    const controlPlane = /^DEFAULT_SERVER='(.*)'$/m.exec(script.stdout)?.[1];
    expect(controlPlane).toBe(url);
    const { token } = await api<{ token: string }>("/v1/bootstrap-tokens", {
      method: "POST",
      body: JSON.stringify({ nodeId: "ssh-tls-node", ttlSeconds: 600 }),
    });
    // Downloaded, then run: in `curl … | sh` a refused download would read as an empty script that succeeded.
    const setup = (caFile: string) =>
      `curl -fsSL --cacert ${caFile} {{.ControlPlane}}/install.sh -o ${machine}.install.sh && NAVARCH_BOOTSTRAP_TOKEN={{.BootstrapToken}} NAVARCH_PREFIX=${machine} sh ${machine}.install.sh \\
  --node-id {{.NodeID}} --ca-file ${caFile} --pin-sha256 ${server.fingerprint256} --start background \\
  --agent-args "--kmsg-path none" --env NAVARCH_NVML_LIBRARY=${FAKE_NVML.full} --env FAKE_NVML_CONTROL=${machine}/nvml-control`;
    const values = {
      ControlPlane: controlPlane!,
      NodeID: "ssh-tls-node",
      Pool: "ssh",
      Provider: "lambda",
      Region: "r",
      InstanceType: "t",
      BootstrapToken: token,
    };
    const bootstrap = (caFile: string) =>
      runBootstrap({
        host: "127.0.0.1",
        port: sshd.port,
        user: sshd.user,
        privateKey: client.privateKey,
        commands: [renderTemplate(setup(caFile), values, shellEscape)],
        mask: [token],
        timeouts: { reachableMs: 10_000, commandMs: 60_000 },
      });
    // A machine that does not trust the reconciler's CA installs nothing.
    const untrusted = await bootstrap(stranger.cert);
    expect(untrusted.ok).toBe(false);
    expect(untrusted.steps[0]!.stderr).toContain("SSL certificate problem");
    expect(existsSync(join(machine, "usr/local/bin/navarch-node"))).toBe(false);

    const trusted = await bootstrap(ca.cert);
    const agentLog = () => (existsSync(join(machine, "var/log/navarch-node.log")) ? readFileSync(join(machine, "var/log/navarch-node.log"), "utf8") : "");
    expect({ ok: trusted.ok, error: trusted.error, out: trusted.ok ? "" : trusted.steps[0]?.stderr }).toEqual({ ok: true, error: undefined, out: "" });
    expect(trusted.steps[0]!.stderr).toContain(`downloading navarch-node from ${url}`);
    expect(trusted.steps[0]!.stderr).toMatch(/navarch-node sha256 [0-9a-f]{64} checked/);
    const env = readFileSync(join(machine, "etc/navarch/node.env"), "utf8");
    expect(env).toContain(`NAVARCH_SERVER=${url}\n`);
    expect(env).toContain(`NAVARCH_CA_FILE=${machine}/etc/navarch/ca.pem\n`);
    expect(env).toContain(`NAVARCH_PIN_SHA256=${server.fingerprint256}\n`);
    await waitFor(
      `ssh-tls-node registered (agent log: ${agentLog()})`,
      async () => ((await nodeOf("ssh-tls-node"))?.lastHeartbeatAt ? true : undefined),
      30_000,
    );
    // The agent's stdout reaches its log file asynchronously: the line can land after the heartbeat.
    await waitFor(
      "the agent's log line about its credential",
      () => (agentLog().includes("received this node's own credential") ? true : undefined),
      5000,
    ).catch(() => undefined);
    expect(agentLog()).toContain("received this node's own credential");
    expect(agentLog()).not.toContain(token);
  }, 120_000);

  test("plain HTTP on that address serves with one loud warning; server.require_tls refuses it in one line naming the key", async () => {
    const port = freePort();
    writeFileSync(join(fleet.dir, "plain.yaml"), `server:\n  address: ${ADDR}:${port}\n  data_dir: ${fleet.dir}/plain-data\n`);
    const check = await run([IP, "netns", "exec", NS, fleet.navarch, "config", "check", "plain.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(check.code).toBe(0);
    expect(check.stderr).toContain(`warning: plain.yaml: PLAIN HTTP OFF LOOPBACK: server.address ${ADDR}:${port} serves plain HTTP (no server.tls)`);
    writeFileSync(join(fleet.dir, "strict.yaml"), `server:\n  address: ${ADDR}:${port}\n  require_tls: true\n  data_dir: ${fleet.dir}/plain-data\n`);
    const r = await run([IP, "netns", "exec", NS, fleet.navarch, "serve", "--config", "strict.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `strict.yaml: server.address: ${ADDR}:${port} is not a loopback address and server.tls is not set, so it would serve plain HTTP (tokens in the clear); server.require_tls is true: set server.tls (cert_file, key_file), or listen on 127.0.0.1`,
    );
  });
});
