// Done-when for SSH bootstrap: a pool on the fake Lambda cloud whose "instances" are real
// OpenSSH servers on loopback (one sshd per instance, each on its own port with its own
// host key and its own file-system root) goes from zero to Ready nodes through the real
// bootstrap: the reconciler runs the pool's setup_commands over SSH, they fetch the
// reconciler's installer and its compiled agent, the agent registers with its one-time
// token and, with the fake libnvidia-ml named in its environment file, becomes Ready.
// An injected Xid 79 then gets one node replaced the same way. A pool whose setup
// command fails ends with the node Failed, the command's output kept, the instance gone.
//
// The reconciler runs in this process (its SSH runner is the same code the compiled
// binary runs; test/ssh-install.test.ts covers the compiled `navarch serve`), because
// the harness must tell it each instance's SSH port: Lambda's API has none, and every
// fake instance is 127.0.0.1, so the provider below adds the port of the instance's sshd
// to its address (`127.0.0.1:PORT`, a form the reconciler accepts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../reconciler/config/load.ts";
import { LambdaProvider } from "../reconciler/providers/lambda.ts";
import type { Instance, LaunchRequest, Provider } from "../reconciler/providers/provider.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { startLambdaFake, type LambdaFake } from "./fake-clouds/lambda.ts";
import { ensureBinaries } from "./prerequisites.ts";
import { Sshd, ensureSshd, killPidFile, newKeyPair, type KeyPair } from "./ssh/sshd.ts";
import { tempDir, waitFor } from "./support.ts";

interface Node {
  id: string;
  state: string;
  stateReason: string | null;
  instanceName: string | null;
  replacementOf: string | null;
  nvmlAvailable: boolean;
}
interface Run {
  state: string;
  address: string;
  error: string | null;
  hostKeyFingerprint: string | null;
  steps: { command: string; exitCode: number | null; stdout: string; stderr: string; timedOut: boolean }[];
}
interface BootstrapInfo {
  runs: Run[];
  hostKeys: { fingerprint: string; source: string; address: string }[];
}

/** One "machine": an sshd with its own host key and its own root (NAVARCH_PREFIX in every session). */
interface Host {
  sshd: Sshd;
  root: string;
}

/**
 * Lambda, with each instance's address carrying its sshd's port (see the comment at the top),
 * and the key each launch names installed on its machine, as Lambda does.
 */
class LoopbackLambda implements Provider {
  readonly name = "lambda";
  constructor(
    private readonly inner: LambdaProvider,
    private readonly fake: LambdaFake,
    private readonly hosts: Host[],
  ) {}
  private withPort = (i: Instance): Instance => {
    const port = this.fake.state.instances.get(i.id)?.sshPort;
    return port !== undefined && i.address !== undefined ? { ...i, address: `${i.address}:${port}` } : i;
  };
  launch = async (req: LaunchRequest) => {
    const launched = await this.inner.launch(req);
    const instance = this.fake.state.instances.get(launched.id);
    const host = this.hosts.find((h) => h.sshd.port === instance?.sshPort);
    for (const name of instance?.sshKeyNames ?? []) host?.sshd.authorize(this.fake.state.sshKeys.get(name)!.public_key);
    return this.withPort(launched);
  };
  sshPrivateKey = () => this.inner.sshPrivateKey();
  terminate = (id: string) => this.inner.terminate(id);
  get = async (id: string) => {
    const i = await this.inner.get(id);
    return i === undefined ? undefined : this.withPort(i);
  };
  list = async (tags: Record<string, string>) => (await this.inner.list(tags)).map(this.withPort);
  instanceTypes = () => this.inner.instanceTypes();
}

let dir: string;
let client: KeyPair;
let agentBinary: string;
const running: { rec: Reconciler; fake: LambdaFake; hosts: Host[]; watcher: ReturnType<typeof setInterval> }[] = [];

const SETUP = (extra = "") => `
    setup_commands:
      - |
        curl -fsSL {{.ControlPlane}}/install.sh | NAVARCH_BOOTSTRAP_TOKEN={{.BootstrapToken}} sh -s -- \\
          --node-id {{.NodeID}} --start background \\
          --agent-args "--kmsg-path none --poll-interval 1" \\
          --env NAVARCH_NVML_LIBRARY=${FAKE_NVML.full} --env FAKE_NVML_CONTROL="$NAVARCH_PREFIX/nvml-control"
${extra}`;

/**
 * A fake Lambda whose n-th instance is host n (the last host for any beyond), and a
 * reconciler in this process managing one pool on it. With `powerOff`, a host is powered
 * off (agent killed, sshd stopped) once the fake no longer lists its instance.
 */
async function fleet(name: string, hostCount: number, poolYaml: string, powerOff = true, keyPath: string | null = client.privateKeyPath) {
  const hosts: Host[] = [];
  for (let i = 0; i < hostCount; i++) {
    const root = join(dir, name, `host-${i + 1}`, "root");
    hosts.push({ root, sshd: await Sshd.start({ dir: join(dir, name, `host-${i + 1}`), authorizedKeys: [client.publicKey], env: { NAVARCH_PREFIX: root } }) });
  }
  const fake = startLambdaFake({ bootMs: 300, endpoint: (n) => ({ address: "127.0.0.1", sshPort: hosts[Math.min(n, hosts.length) - 1]!.sshd.port }) });
  const keyRes = await fetch(`${fake.url}/api/v1/ssh-keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${fake.apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "navarch-e2e", public_key: client.publicKey }),
  });
  expect(keyRes.status).toBe(200);
  const data = join(dir, name, "reconciler");
  const parsed = parseConfig(
    `server:\n  heartbeat_interval: 1s\n  health_check_interval: 1s\n  autoscale_interval: 1s\n  data_dir: ${data}\n` +
      `providers:\n  lambda:\n    api_key_env: LAMBDA_E2E_KEY\n    base_url: ${fake.url}\n` +
      `pools:\n  - name: ${name}\n    provider: lambda\n    instance_type: gpu_8x_h100_sxm5\n    region: us-west-2\n` +
      `    ssh_user: ${hosts[0]!.sshd.user}\n${keyPath === null ? "" : `    ssh_private_key_path: ${keyPath}\n`}${poolYaml}`,
    name,
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const lambda = new LambdaProvider(parsed.config.providers.lambda!, (v) => (v === "LAMBDA_E2E_KEY" ? fake.apiKey : undefined), { dataDir: data });
  process.env.NAVARCH_E2E_TOKEN = "e2e-admin-token-0123456789";
  const logs: string[] = [];
  const rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir: data,
      databaseUrl: `file:${data}/navarch.db`,
      authTokenEnv: "NAVARCH_E2E_TOKEN",
      heartbeatIntervalSeconds: 1,
      agentBinary,
    },
    (line) => logs.push(line),
    Date.now,
    { config: parsed.config, providers: new Map([["lambda", new LoopbackLambda(lambda, fake, hosts)]]), intervalMs: 250 },
  );
  // A machine whose instance the cloud no longer lists is powered off (agent killed, sshd stopped).
  const seen = new Set<number>();
  const off = new Set<Host>();
  const watcher = setInterval(() => {
    if (!powerOff) return;
    const live = new Set<number>();
    for (const i of fake.live()) {
      if (i.sshPort === undefined) continue;
      live.add(i.sshPort);
      seen.add(i.sshPort);
    }
    for (const host of hosts) {
      if (!seen.has(host.sshd.port) || live.has(host.sshd.port) || off.has(host)) continue;
      off.add(host);
      killPidFile(join(host.root, "run/navarch-node.pid"));
      void host.sshd.stop();
    }
  }, 200);
  running.push({ rec, fake, hosts, watcher });
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${rec.url}${path}`, { headers: { Authorization: "Bearer e2e-admin-token-0123456789" } });
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const nodes = async () => (await api<{ nodes: Node[] }>("/v1/nodes")).nodes;
  const hostOf = (node: Node) => hosts.find((h) => h.sshd.port === fake.state.instances.get(node.instanceName ?? "")?.sshPort);
  const explain = async () =>
    `nodes: ${JSON.stringify(await nodes().catch(() => []))}\nlog:\n${logs.slice(-30).join("\n")}\n` +
    hosts
      .map(
        (h, i) =>
          `host ${i + 1} agent log: ${existsSync(join(h.root, "var/log/navarch-node.log")) ? readFileSync(join(h.root, "var/log/navarch-node.log"), "utf8").slice(-1500) : "-"}`,
      )
      .join("\n");
  return { rec, fake, hosts, api, nodes, hostOf, explain, logs };
}

beforeAll(async () => {
  ensureSshd();
  buildFakeNvml();
  agentBinary = (await ensureBinaries()).navarchNode;
  dir = tempDir("navarch-ssh-fleet-");
  client = newKeyPair(join(dir, "client_ed25519"));
}, 240_000);

afterAll(async () => {
  for (const { rec, fake, hosts, watcher } of running) {
    clearInterval(watcher);
    await rec.stop();
    for (const h of hosts) {
      killPidFile(join(h.root, "run/navarch-node.pid"));
      await h.sshd.stop();
    }
    await fake.stop();
  }
});

describe("a pool on a fake cloud, bootstrapped over real SSH", () => {
  test("goes from zero to Ready nodes through the installer; an injected Xid 79 replaces one the same way", async () => {
    const f = await fleet(
      "ssh",
      3,
      `    scaling:\n      min_nodes: 2\n      max_nodes: 3\n    health:\n      drain_timeout: 10s\n      registration_timeout: 2m\n${SETUP()}`,
    );
    const ready = await waitFor(
      "two Ready nodes",
      async () => {
        const r = (await f.nodes()).filter((n) => n.state === "ready");
        return r.length === 2 ? r : undefined;
      },
      45_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${await f.explain()}`);
    });
    for (const node of ready) {
      expect(node.nvmlAvailable).toBe(true);
      // The agent can register (and the node be Ready) a moment before the SSH session that
      // started it is recorded as finished.
      const info = await waitFor(`${node.id}: its bootstrap run finished`, async () => {
        const i = await f.api<BootstrapInfo>(`/v1/nodes/${node.id}/bootstrap`);
        return i?.runs[0]?.state === "running" ? undefined : i;
      });
      const host = f.hostOf(node)!;
      expect(info.runs).toHaveLength(1);
      expect(info.runs[0]).toMatchObject({
        state: "succeeded",
        address: `127.0.0.1:${host.sshd.port}`,
        error: null,
        hostKeyFingerprint: host.sshd.hostKey.fingerprint,
      });
      expect(info.runs[0]!.steps[0]).toMatchObject({ exitCode: 0, timedOut: false });
      expect(info.runs[0]!.steps[0]!.command).toContain("NAVARCH_BOOTSTRAP_TOKEN=***");
      expect(info.runs[0]!.steps[0]!.stderr).toContain(`started navarch-node in the background`);
      // Pinned on first contact.
      expect(info.hostKeys).toEqual([expect.objectContaining({ fingerprint: host.sshd.hostKey.fingerprint, source: "first_contact" })]);
      // Each agent keeps its own credential on its machine.
      expect(existsSync(join(host.root, "var/lib/navarch-node/node-token"))).toBe(true);
    }

    // Break GPU 0 of one node through its machine's fake libnvidia-ml.
    const victim = ready[0]!;
    const victimHost = f.hostOf(victim)!;
    appendFileSync(join(victimHost.root, "nvml-control"), "xid 0 79\n");
    const replacement = await waitFor(
      "a Ready replacement",
      async () => (await f.nodes()).find((n) => n.replacementOf === victim.id && n.state === "ready"),
      45_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${await f.explain()}`);
    });
    const replacementHost = f.hostOf(replacement)!;
    expect(replacementHost).not.toBe(victimHost);
    const info = await waitFor(`${replacement.id}: its bootstrap run finished`, async () => {
      const i = await f.api<BootstrapInfo>(`/v1/nodes/${replacement.id}/bootstrap`);
      return i?.runs[0]?.state === "running" ? undefined : i;
    });
    expect(info.runs[0]).toMatchObject({ state: "succeeded", address: `127.0.0.1:${replacementHost.sshd.port}` });
    await waitFor("the victim terminated", async () => ((await f.nodes()).find((n) => n.id === victim.id)?.state === "terminated" ? true : undefined), 15_000);
    // The cloud has exactly the two Ready nodes' instances.
    const liveIds = f.fake
      .live()
      .map((i) => i.id)
      .sort();
    const readyNow = (await f.nodes()).filter((n) => n.state === "ready");
    expect(readyNow).toHaveLength(2);
    expect(readyNow.map((n) => n.instanceName).sort()).toEqual(liveIds);
  }, 100_000);

  test("with no ssh_private_key_path, Navarch logs in with the key it created in the Lambda account", async () => {
    const f = await fleet(
      "ownkey",
      1,
      `    scaling:\n      min_nodes: 1\n      max_nodes: 1\n    health:\n      registration_timeout: 2m\n${SETUP()}`,
      false,
      null,
    );
    const ready = await waitFor("a Ready node", async () => (await f.nodes()).find((n) => n.state === "ready"), 45_000).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${await f.explain()}`);
    });
    const data = join(dir, "ownkey", "reconciler");
    const name = readFileSync(join(data, "lambda-ssh-key.name"), "utf8").trim();
    // The account had one key (navarch-e2e, whose private half Navarch lacks): it created its own and launched with it.
    expect(f.fake.state.instances.get(ready.instanceName!)!.sshKeyNames).toEqual([name]);
    expect(statSync(join(data, "lambda-ssh-key")).mode & 0o777).toBe(0o600);
    // The agent the last setup command starts may register before the SSH session that ran it ends.
    const run = await waitFor(
      "the bootstrap run recorded as finished",
      async () => (await f.api<BootstrapInfo>(`/v1/nodes/${ready.id}/bootstrap`)).runs.find((r) => r.state !== "running"),
      15_000,
    );
    expect(run).toMatchObject({ state: "succeeded", error: null });
  }, 60_000);

  test("a setup command that fails fails the node with its output kept, and the instance is cleaned up", async () => {
    const failing = `        echo "checking the driver"; echo "nvidia-smi: command not found" >&2; exit 127\n`;
    const f = await fleet(
      "broken",
      1,
      `    scaling:\n      min_nodes: 1\n      max_nodes: 1\n    health:\n      registration_timeout: 2m\n    setup_commands:\n      - |\n${failing}`,
      false, // every instance is this one host
    );
    const failed = await waitFor("a Failed node", async () => (await f.nodes()).find((n) => n.state === "failed"), 30_000).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${await f.explain()}`);
    });
    expect(failed.stateReason).toContain("bootstrap failed: step 1/1 exited 127: nvidia-smi: command not found");
    const info = await f.api<BootstrapInfo>(`/v1/nodes/${failed.id}/bootstrap`);
    expect(info.runs[0]).toMatchObject({ state: "failed" });
    expect(info.runs[0]!.steps).toEqual([
      expect.objectContaining({ exitCode: 127, stdout: "checking the driver\n", stderr: "nvidia-smi: command not found\n", timedOut: false }),
    ]);
    // Cleaned up at the provider.
    await waitFor("its instance terminated", () => (f.fake.live().some((i) => i.id === failed.instanceName) ? undefined : true), 10_000);
  }, 60_000);
});
