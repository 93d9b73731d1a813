// The seed's Kubernetes manifests (test/fixtures/seed/kubernetes.yaml, word for word) run
// against a plain `navarch serve`, through the compiled binaries: the ConfigMap's config.yaml
// with the Deployment's args and the Secret's values, its liveness and readiness probes, the
// DaemonSet's args and env, and the ServiceMonitor's scrape through the Service's named port.
// Each runs in a network namespace of its own, so the seed's port 50051 is the seed's, and the
// Service's DNS name resolves there (ip netns exec binds /etc/netns/NS/hosts over /etc/hosts);
// the agent's default state directory (/var/lib/navarch-node) is a temp directory mounted in
// its own mount namespace. Only the config's path is moved: /etc/navarch is a temp directory.
// (The chart side of the same manifests is test/helm.test.ts: its Service carries the seed's
// label and port name, and the seed's ServiceMonitor, applied unchanged, selects it.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { parseObjects, type KubeObject } from "./kube/tools.ts";
import { REPO_ROOT, waitFor } from "./support.ts";

const IP = "/usr/sbin/ip";
const NS = `navarch-seed-${process.pid}`;
const POD_ADDR = `10.214.${process.pid % 250}.2`;

interface Container {
  args: string[];
  ports: { containerPort: number; name: string }[];
  env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }[];
  livenessProbe: { httpGet: { path: string; port: number } };
  readinessProbe: { httpGet: { path: string; port: number } };
}
const seed = parseObjects(readFileSync(join(REPO_ROOT, "test/fixtures/seed/kubernetes.yaml"), "utf8"));
const find = <T>(kind: string) => seed.find((o) => o.kind === kind) as unknown as T & KubeObject;
const secret = find<{ stringData: Record<string, string> }>("Secret").stringData;
const configYaml = find<{ data: Record<string, string> }>("ConfigMap").data["config.yaml"]!;
const containerOf = (kind: string) => find<{ spec: { template: { spec: { containers: Container[] } } } }>(kind).spec.template.spec.containers[0]!;
const control = containerOf("Deployment");
const agent = containerOf("DaemonSet");
const service = find<{ metadata: { name: string; namespace: string }; spec: { ports: { name: string; port: number; targetPort: string }[] } }>("Service");
const monitor = find<{ spec: { endpoints: { port: string; path: string }[] } }>("ServiceMonitor");

/** The env a container gets from the seed's Secret (and its fieldRefs, as the kubelet fills them). */
function envOf(c: Container, fields: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref !== undefined) out[e.name] = secret[ref.key]!;
    const field = e.valueFrom?.fieldRef;
    if (field !== undefined) out[e.name] = fields[field.fieldPath]!;
  }
  return out;
}

let fleet: CompiledFleet;
let dir = "";
const inNs = (cmd: string[]) => [IP, "netns", "exec", NS, ...cmd];
const sh = (cmd: string[]) => Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
/** GET over HTTP from inside the namespace, as the kubelet's probes and Prometheus would. */
const curl = async (url: string, token?: string) => {
  const r = await fleet.run(inNs(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", ...(token ? ["-H", `Authorization: Bearer ${token}`] : []), url]));
  const lines = r.stdout.trimEnd().split("\n");
  return { status: Number(lines.at(-1)), body: lines.slice(0, -1).join("\n") };
};

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("test/seed-manifests.test.ts needs root (ip netns add, mount namespaces); CI runs as root");
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  dir = fleet.dir;
  sh([IP, "netns", "del", NS]);
  for (const cmd of [[IP, "netns", "add", NS], inNs([IP, "link", "set", "lo", "up"]), inNs([IP, "addr", "add", `${POD_ADDR}/32`, "dev", "lo"])]) {
    const r = sh(cmd);
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()} (this test needs network namespaces; it does not skip)`);
  }
  // The cluster's DNS for the Service the DaemonSet names.
  mkdirSync(`/etc/netns/${NS}`, { recursive: true });
  writeFileSync(`/etc/netns/${NS}/hosts`, `127.0.0.1 localhost\n${POD_ADDR} ${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local\n`);
}, 240_000);

afterAll(() => {
  fleet?.stop();
  sh([IP, "netns", "del", NS]);
  rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
});

describe("the seed's manifests against a plain navarch serve", () => {
  test("the Deployment's args and probes, the DaemonSet's args, the ServiceMonitor's scrape: unchanged, they work", async () => {
    // The ConfigMap mounted at /etc/navarch (here a temp directory), the Deployment's args, the Secret's env.
    const etc = join(dir, "etc-navarch");
    mkdirSync(etc);
    writeFileSync(join(etc, "config.yaml"), configYaml);
    const args = control.args.map((a) => a.replace("/etc/navarch", etc));
    expect(args).toEqual([`--config=${etc}/config.yaml`]);
    const serve = fleet.start("serve", inNs([fleet.navarch, ...args]), envOf(control, {}));
    const port = control.ports.find((p) => p.name === "grpc")!.containerPort;
    expect(port).toBe(50051);

    // The kubelet's probes: httpGet on the pod's address and the container's port.
    for (const probe of [control.livenessProbe, control.readinessProbe]) {
      expect(probe.httpGet.port).toBe(port);
      await waitFor(
        `${probe.httpGet.path} answers 200`,
        async () => ((await curl(`http://${POD_ADDR}:${port}${probe.httpGet.path}`)).status === 200 ? true : undefined),
        20_000,
      );
    }
    // Plain HTTP on every interface, as the seed runs it: served, said once, loudly.
    const log = () => fleet.output.get("serve") ?? "";
    expect(log().match(/PLAIN HTTP OFF LOOPBACK: server\.address 0\.0\.0\.0:50051 \(every interface\)/g)).toHaveLength(1);

    // The DaemonSet's agent on a GPU node: its args with $(NODE_NAME) as the kubelet expands it,
    // the Secret's token; the driver's library where the node has it.
    const nodeName = "gpu-node-1";
    const state = join(dir, "host-var-lib");
    mkdirSync(state);
    const fields = { "spec.nodeName": nodeName };
    const env = envOf(agent, fields);
    const agentArgs = agent.args.map((a) => a.replace(/\$\((\w+)\)/g, (_, name: string) => env[name]!));
    expect(agentArgs).toEqual([`--server=${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local:50051`, `--node-id=${nodeName}`]);
    fleet.start("agent", inNs(["unshare", "-m", "sh", "-c", `mount --bind ${state} /var/lib && exec "$@"`, "sh", fleet.navarchNode, ...agentArgs]), {
      ...env,
      NAVARCH_NVML_LIBRARY: FAKE_NVML.full,
    });
    const token = secret["auth-token"]!;
    await waitFor(
      "the DaemonSet's node registered and heartbeating",
      async () => {
        const r = await curl(`http://${POD_ADDR}:${port}/v1/nodes/${nodeName}`, token);
        return r.status === 200 && (JSON.parse(r.body) as { node: { lastHeartbeatAt: number | null } }).node.lastHeartbeatAt ? true : undefined;
      },
      30_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\nagent: ${fleet.output.get("agent")}\nserve: ${log().slice(-2000)}`);
    });
    expect(existsSync(join(state, "navarch-node"))).toBe(true); // its default --state-dir, on the host's /var/lib

    // The ServiceMonitor: its endpoint's port is the Service's port of that name, whose target
    // is the container's port of that name; Prometheus scrapes it with no token.
    const endpoint = monitor.spec.endpoints[0]!;
    const servicePort = service.spec.ports.find((p) => p.name === endpoint.port)!;
    const target = control.ports.find((p) => p.name === servicePort.targetPort)!.containerPort;
    const scrape = await curl(`http://${POD_ADDR}:${target}${endpoint.path}`);
    expect(scrape.status).toBe(200);
    // The seed's key metrics.
    for (const name of ["navarch_nodes_total", "navarch_nodes_healthy", "navarch_nodes_unhealthy", "navarch_xid_errors_total", "navarch_server_plain_http 1"]) {
      expect(scrape.body).toContain(name);
    }
    serve.kill("SIGTERM");
    expect(await serve.exited).toBe(0);
  }, 120_000);
});
