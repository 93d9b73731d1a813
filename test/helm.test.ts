// The Helm chart (deploy/helm/navarch) with the real tools: helm lint and helm template
// (Helm built from its Go module), its values.schema.json refusing what it should, what
// the rendered objects say (the seed's DaemonSet without the admin token, a Service the
// ServiceMonitor selects, the embedded database on a volume or replicas on sqld, the
// monitoring files of deploy/ read as they are), every rendered config accepted by
// `navarch config check`, every object of every variant applied with server-side dry-run
// to a real kube-apiserver (with the real Prometheus Operator CRDs), and the plain
// manifests in deploy/manifests being what the chart renders today.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import pkg from "../package.json" with { type: "json" };
import { ensureBinaries } from "./prerequisites.ts";
import { REPO_ROOT, tempDir } from "./support.ts";
import { ensureKubeBinaries, startKubeHarness, type KubeHarness } from "./kube/harness.ts";
import {
  CHART,
  ensureHelm,
  ensureKubectl,
  helmCrds,
  helmErrors,
  helmTemplate,
  kubectl,
  parseObjects,
  prometheusOperatorCrds,
  runTool,
  type KubeObject,
} from "./kube/tools.ts";

let kube: KubeHarness;
let helm: string;

beforeAll(async () => {
  // Cold: helm and kubectl build from their Go modules (about 3 minutes each), the control plane's binaries longer.
  const started = performance.now();
  helm = await ensureHelm();
  await ensureKubectl();
  const { bin } = await ensureKubeBinaries((line) => console.log(line));
  console.log(`helm, kubectl and the Kubernetes binaries ready in ${Math.round((performance.now() - started) / 1000)} s`);
  kube = await startKubeHarness({ bin, controllerManager: false, kwok: false });
}, 45 * 60_000);

afterAll(async () => {
  await kube?.stop();
}, 30_000);

/** The variants the chart is rendered and checked in. */
const VARIANTS: Record<string, string[]> = {
  default: [],
  ha: ["--set", "controlPlane.replicas=3", "--set", "sqld.enabled=true", "--set", "database.authTokenKey="],
  external: ["--set", "controlPlane.replicas=2", "--set", "database.url=libsql://db.example:8080", "--set", "database.authTokenKey=db-token"],
  tls: ["--set", "tls.secretName=navarch-tls"],
  monitoring: [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
  ],
  unprivileged: ["--set", "agent.privileged=false", "--set", "agent.runtimeClassName=nvidia"],
  hostDriver: [
    "--set",
    "agent.driverRoot=/",
    "--set",
    "kubernetes.coreweaveNodePools=true",
    "--set-file",
    `healthPolicy=${join(REPO_ROOT, "test/fixtures/policy/valid.yaml")}`,
  ],
  noKube: ["--set", "kubernetes.enabled=false", "--set", "agent.enabled=false"],
};

const rendered = new Map<string, KubeObject[]>();
async function render(variant: string): Promise<KubeObject[]> {
  if (!rendered.has(variant)) rendered.set(variant, parseObjects(await helmTemplate(VARIANTS[variant]!)));
  return rendered.get(variant)!;
}
const find = (objects: KubeObject[], kind: string, name?: string) => objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const must = (objects: KubeObject[], kind: string, name?: string) => {
  const o = find(objects, kind, name);
  if (o === undefined)
    throw new Error(`no ${kind}${name ? ` ${name}` : ""} in the rendered chart (${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(", ")})`);
  return o;
};
// Loose views of what the tests read.
type Container = {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  resources?: unknown;
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
};
type PodSpec = {
  containers: Container[];
  volumes?: {
    name: string;
    hostPath?: { path: string };
    persistentVolumeClaim?: { claimName: string };
    emptyDir?: unknown;
    secret?: { secretName: string; items?: { key: string; path?: string }[] };
  }[];
  nodeSelector?: Record<string, string>;
  tolerations?: unknown[];
  hostPID?: boolean;
  hostNetwork?: boolean;
  hostIPC?: boolean;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
};
const podSpec = (o: KubeObject) => (o as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const configOf = (objects: KubeObject[]) =>
  YAML.parse((must(objects, "ConfigMap", "navarch-control-plane") as unknown as { data: Record<string, string> }).data["config.yaml"]!) as Record<
    string,
    Record<string, unknown>
  >;

describe("helm", () => {
  test("helm lint passes for the defaults and for high availability; the chart's version is the programs'", async () => {
    for (const args of [[], VARIANTS.ha!]) {
      const r = await runTool([helm, "lint", CHART, "--strict", ...args]);
      expect(r.code, `${r.stdout}${helmErrors(r.stderr)}`).toBe(0);
      expect(r.stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
    }
    const chart = YAML.parse(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as { version: string; appVersion: string };
    expect(chart.appVersion).toBe(pkg.version);
    expect(chart.version).toBe(pkg.version);
  }, 60_000);

  test("values.schema.json refuses what would break a deployment, with the field named", async () => {
    const refused = async (args: string[], says: string) => {
      const r = await runTool([helm, "template", "navarch", CHART, ...args]);
      expect(r.code, `helm template ${args.join(" ")} was accepted`).not.toBe(0);
      expect(helmErrors(r.stderr)).toContain(says);
    };
    // Two writers on one embedded file: refused by the schema before any template runs.
    await refused(["--set", "controlPlane.replicas=2"], "at '/sqld/enabled': value must be true");
    await refused(["--set", "controlPlane.replica=2"], "additional properties 'replica' not allowed");
    await refused(["--set", "agent.pool=Not_A_Pool"], "/agent/pool'");
    await refused(["--set", "agent.driverRoot=relative/path"], "/agent/driverRoot'");
    await refused(["--set", "database.url=postgres://x"], "/database/url'");
    await refused(["--set", "agent.enrollTokenSecret.name="], "/agent/enrollTokenSecret/name'");
    // The template's own check says why in words.
    const words = await runTool([helm, "template", "navarch", CHART, "--set", "controlPlane.replicas=2", "--skip-schema-validation"]);
    expect(helmErrors(words.stderr)).toContain("needs a shared libSQL server: set sqld.enabled=true or database.url");
  }, 60_000);
});

describe("rendered objects", () => {
  test("the agent DaemonSet: the seed's selector, toleration and resources, an enroll token and never the admin token, no host namespaces", async () => {
    const objects = await render("default");
    const ds = must(objects, "DaemonSet", "navarch-node-agent");
    const spec = podSpec(ds);
    const [agent] = spec.containers;
    expect(spec.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(spec.tolerations).toEqual([{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    expect(agent!.resources).toEqual({ requests: { cpu: "50m", memory: "64Mi" }, limits: { cpu: "200m", memory: "128Mi" } });
    expect(agent!.image).toBe(`navarch/node:${pkg.version}`);
    expect(agent!.args).toEqual([
      "--server=http://navarch-control-plane.navarch.svc:50051",
      "--node-id=$(NODE_NAME)",
      // No pool configured: none named (the enroll token's pool, else the Node's navarch.dev/pool label).
      "--state-dir=/var/lib/navarch-node",
    ]);
    // With pools: the first one, and the agent tolerates every pool's taints.
    const pooled = podSpec(
      must(
        parseObjects(
          await helmTemplate([
            "--set-json",
            'config.pools=[{"name":"k8s-gpu-workers","provider":"lambda","instance_type":"gpu_8x_h100_sxm5","region":"us-west-2","taints":[{"key":"node-type","value":"gpu-optimized","effect":"NoSchedule"}]},{"name":"other","provider":"local","instance_type":"local-8gpu","region":"local"}]',
          ]),
        ),
        "DaemonSet",
      ),
    );
    expect(pooled.containers[0]!.args).toContain("--pool=k8s-gpu-workers");
    expect(pooled.tolerations).toEqual([
      { key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" },
      { key: "node-type", operator: "Exists", effect: "NoSchedule" },
    ]);
    // The seed's hostPID and /host/proc are gone: nothing reads the host's processes.
    expect(spec.hostPID ?? false).toBe(false);
    expect(spec.hostNetwork ?? false).toBe(false);
    expect(spec.hostIPC ?? false).toBe(false);
    expect(spec.automountServiceAccountToken).toBe(false);
    // Credentials: the enroll Secret only. No reference to the credentials Secret anywhere in it.
    const secrets = (agent!.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : []));
    expect(secrets).toEqual([{ name: "navarch-enroll", key: "token" }]);
    expect(JSON.stringify(ds)).not.toContain("navarch-credentials");
    expect(JSON.stringify(ds)).not.toContain("NAVARCH_AUTH_TOKEN");
    // The driver where the GPU Operator lays it out, /dev read-only, state on the host.
    const mounts = Object.fromEntries((agent!.volumeMounts ?? []).map((m) => [m.name, m]));
    const volumes = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]));
    expect(volumes.driver?.hostPath?.path).toBe("/run/nvidia/driver");
    expect(mounts.driver).toMatchObject({ mountPath: "/host-driver", readOnly: true });
    expect(agent!.env).toContainEqual({ name: "NAVARCH_NVIDIA_DRIVER_ROOT", value: "/host-driver" });
    expect(volumes.dev?.hostPath?.path).toBe("/dev");
    expect(mounts.dev).toMatchObject({ mountPath: "/dev", readOnly: true });
    expect(volumes.state?.hostPath?.path).toBe("/var/lib/navarch-node");
    expect(agent!.securityContext).toMatchObject({ privileged: true, readOnlyRootFilesystem: true });

    // Without privilege: no /dev, every capability dropped, no kernel log, the NVIDIA runtime's GPUs.
    const bare = podSpec(must(await render("unprivileged"), "DaemonSet"));
    expect(bare.containers[0]!.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect((bare as unknown as { runtimeClassName: string }).runtimeClassName).toBe("nvidia");
    expect(bare.containers[0]!.args).toContain("--kmsg-path=none");
    expect(bare.volumes?.map((v) => v.name)).not.toContain("dev");
    // A driver installed on the host: only its library directory.
    const host = podSpec(must(await render("hostDriver"), "DaemonSet"));
    expect(host.volumes?.find((v) => v.name === "driver")?.hostPath?.path).toBe("/usr/lib/x86_64-linux-gnu");
    expect(host.containers[0]!.volumeMounts?.find((m) => m.name === "driver")?.mountPath).toBe("/host-driver/usr/lib/x86_64-linux-gnu");
    // TLS: the agents get the CA certificate, never the key.
    const tls = podSpec(must(await render("tls"), "DaemonSet"));
    expect(tls.volumes?.find((v) => v.name === "tls-ca")?.secret).toEqual({ secretName: "navarch-tls", items: [{ key: "ca.crt", path: "ca.crt" }] });
    expect(tls.containers[0]!.args?.[0]).toBe("--server=https://navarch-control-plane.navarch.svc:50051");
    expect(configOf(await render("tls")).server).toMatchObject({ require_tls: true, tls: { cert_file: "/etc/navarch-tls/tls.crt" } });
  });

  test("the control plane: the seed's args, non-root, the embedded database on a volume with Recreate; replicas on sqld roll", async () => {
    const one = await render("default");
    const deploy = must(one, "Deployment", "navarch-control-plane") as unknown as { spec: { replicas: number; strategy: { type: string } } } & KubeObject;
    const spec = podSpec(deploy);
    const [cp] = spec.containers;
    expect(cp!.args).toEqual(["--config=/etc/navarch/config.yaml"]);
    expect(cp!.image).toBe(`navarch/control-plane:${pkg.version}`);
    expect(deploy.spec.replicas).toBe(1);
    expect(deploy.spec.strategy.type).toBe("Recreate");
    expect((spec as unknown as { securityContext: Record<string, unknown> }).securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      fsGroup: 65532,
    });
    expect(cp!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(spec.volumes?.find((v) => v.name === "data")?.persistentVolumeClaim?.claimName).toBe("navarch-control-plane-data");
    expect(must(one, "PersistentVolumeClaim", "navarch-control-plane-data")).toBeDefined();
    expect(cp!.env?.find((e) => e.name === "NAVARCH_AUTH_TOKEN")?.valueFrom?.secretKeyRef).toEqual({ name: "navarch-credentials", key: "auth-token" });
    const config = configOf(one);
    expect(config.server).toMatchObject({
      address: "0.0.0.0:50051",
      data_dir: "/var/lib/navarch",
      public_url: "http://navarch-control-plane.navarch.svc:50051",
    });
    expect(config.server!.allow_plain_http).toBeUndefined();
    expect(config.server!.require_tls).toBeUndefined();
    expect(config.server!.database_url).toBeUndefined();
    expect(config.kubernetes).toEqual({ in_cluster: true, pools_crd: { enabled: true, namespace: "navarch" } });

    const ha = await render("ha");
    const haDeploy = must(ha, "Deployment") as unknown as { spec: { replicas: number; strategy: { type: string } } } & KubeObject;
    expect(haDeploy.spec.replicas).toBe(3);
    expect(haDeploy.spec.strategy.type).toBe("RollingUpdate");
    expect(find(ha, "PersistentVolumeClaim")).toBeUndefined();
    expect(podSpec(haDeploy).volumes?.find((v) => v.name === "data")?.emptyDir).toEqual({});
    expect(configOf(ha).server!.database_url).toBe("http://navarch-sqld.navarch.svc:8080");
    const sqld = must(ha, "StatefulSet", "navarch-sqld") as unknown as { spec: { replicas: number } } & KubeObject;
    expect(sqld.spec.replicas).toBe(1);
    expect(must(ha, "Service", "navarch-sqld")).toBeDefined();
    expect(must(ha, "NetworkPolicy", "navarch-sqld")).toBeDefined();
    const ext = await render("external");
    expect(configOf(ext).server!.database_url).toBe("libsql://db.example:8080");
    expect(podSpec(must(ext, "Deployment")).containers[0]!.env?.find((e) => e.name === "NAVARCH_DATABASE_AUTH_TOKEN")?.valueFrom?.secretKeyRef).toEqual({
      name: "navarch-credentials",
      key: "db-token",
    });
    expect(find(ext, "StatefulSet")).toBeUndefined();
  });

  test("the ServiceMonitor selects the Service by its labels and names its port; the rules, dashboard and CRD are deploy/'s files", async () => {
    const objects = await render("monitoring");
    const svc = must(objects, "Service", "navarch-control-plane") as unknown as { spec: { ports: { name: string }[] } } & KubeObject;
    const sm = must(objects, "ServiceMonitor") as unknown as {
      spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; path: string }[] };
    } & KubeObject;
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels?.[k], `Service label ${k}`).toBe(v);
    expect(sm.spec.namespaceSelector.matchNames).toEqual([svc.metadata.namespace!]);
    expect(svc.spec.ports.map((p) => p.name)).toContain(sm.spec.endpoints[0]!.port);
    expect(sm.spec.endpoints[0]!.path).toBe("/metrics");
    // The seed's label too: deploy/kubernetes/servicemonitor.yaml selects it.
    expect(svc.metadata.labels?.app).toBe("navarch-control-plane");
    // The PrometheusRule carries deploy/prometheus/navarch-rules.yaml as it is.
    const rules = YAML.parse(readFileSync(join(REPO_ROOT, "deploy/prometheus/navarch-rules.yaml"), "utf8"));
    expect((must(objects, "PrometheusRule") as unknown as { spec: unknown }).spec).toEqual(rules);
    const dashboard = must(objects, "ConfigMap", "navarch-dashboard") as unknown as { data: Record<string, string> };
    expect(JSON.parse(dashboard.data["navarch-dashboard.json"]!)).toEqual(
      JSON.parse(readFileSync(join(REPO_ROOT, "deploy/grafana/navarch-dashboard.json"), "utf8")),
    );
    expect(parseObjects(await helmCrds())).toEqual(parseObjects(readFileSync(join(REPO_ROOT, "deploy/crds/gpupool.yaml"), "utf8")));
  });

  test("every rendered config is one navarch config check accepts", async () => {
    const { navarch } = await ensureBinaries();
    for (const variant of Object.keys(VARIANTS)) {
      const config = configOf(await render(variant));
      const dir = tempDir("navarch-helm-config-");
      // In a pod, in_cluster reads the service account; here the harness's kubeconfig stands in for it.
      if (config.kubernetes) {
        delete config.kubernetes.in_cluster;
        config.kubernetes.kubeconfig = kube.kubeconfigPath;
      }
      if (config.server!.tls) {
        const cert = [
          "openssl",
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=navarch",
          "-keyout",
          join(dir, "tls.key"),
          "-out",
          join(dir, "tls.crt"),
        ];
        expect((await runTool(cert)).code).toBe(0);
        config.server!.tls = { cert_file: join(dir, "tls.crt"), key_file: join(dir, "tls.key") };
      }
      if (config.server!.health_policy_path) {
        const policy = (must(await render(variant), "ConfigMap", "navarch-control-plane") as unknown as { data: Record<string, string> }).data[
          "health-policy.yaml"
        ]!;
        writeFileSync(join(dir, "health-policy.yaml"), policy);
        config.server!.health_policy_path = join(dir, "health-policy.yaml");
      }
      writeFileSync(join(dir, "config.yaml"), YAML.stringify(config));
      const r = await runTool([navarch, "config", "check", join(dir, "config.yaml")], { env: { NAVARCH_AUTH_TOKEN: "t", NAVARCH_DATABASE_AUTH_TOKEN: "t" } });
      expect(r.code, `${variant}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 60_000);
});

describe("against the API server", () => {
  test("every object of every variant passes a server-side dry-run apply", async () => {
    // What must exist for the dry-run: the namespaces and the CRDs (applied for real: the
    // chart's own from crds/, and the Prometheus Operator's).
    const admin = kube.kubeconfigPath;
    const crdDir = await prometheusOperatorCrds();
    for (const file of ["monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"]) {
      const r = await kubectl(admin, ["apply", "--server-side", "-f", join(crdDir, file)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const crd = await kubectl(admin, ["apply", "--server-side", "-f", "-"], await helmCrds());
    expect(crd.code, crd.stderr).toBe(0);
    expect(
      (
        await kubectl(admin, [
          "wait",
          "--for=condition=Established",
          "--timeout=30s",
          "crd/gpupools.navarch.dev",
          "crd/servicemonitors.monitoring.coreos.com",
          "crd/prometheusrules.monitoring.coreos.com",
        ])
      ).code,
    ).toBe(0);
    expect((await kubectl(admin, ["create", "namespace", "navarch"])).code).toBe(0);

    let checked = 0;
    for (const variant of Object.keys(VARIANTS)) {
      const yaml = await helmTemplate(VARIANTS[variant]!);
      const r = await kubectl(admin, ["apply", "--server-side", "--dry-run=server", "-f", "-"], yaml);
      expect(r.code, `${variant}: ${r.stderr}`).toBe(0);
      const objects = parseObjects(yaml);
      // kubectl names every object it sent: all of them were accepted.
      for (const o of objects)
        expect(r.stdout, `${variant}: ${o.kind}/${o.metadata.name}`).toContain(`/${o.metadata.name} serverside-applied (server dry run)`);
      checked += objects.length;
    }
    expect(checked).toBeGreaterThan(60);
    // Something the API server refuses is refused here too (the dry-run is not a formality).
    const broken = (await helmTemplate()).replace("memory: 128Mi", "memory: 128Megs");
    const refused = await kubectl(admin, ["apply", "--server-side", "--dry-run=server", "-f", "-"], broken);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("quantities must match the regular expression");
  }, 120_000);
});

describe("the seed's own manifests beside the chart", () => {
  test("its ServiceMonitor, applied unchanged, selects the chart's Service and names a port it has; its Service finds the chart's pods", async () => {
    const admin = kube.kubeconfigPath;
    const crdDir = await prometheusOperatorCrds();
    const crd = await kubectl(admin, ["apply", "--server-side", "-f", join(crdDir, "monitoring.coreos.com_servicemonitors.yaml")]);
    expect(crd.code, crd.stderr).toBe(0);
    expect((await kubectl(admin, ["wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com"])).code).toBe(0);
    const seed = parseObjects(readFileSync(join(REPO_ROOT, "test/fixtures/seed/kubernetes.yaml"), "utf8"));
    const namespace = must(seed, "Namespace", "navarch");
    expect((await kubectl(admin, ["apply", "--server-side", "-f", "-"], YAML.stringify(namespace))).code).toBe(0);
    // The chart's Service and Deployment, stored for real (nothing runs them here).
    const chart = await render("default");
    const objects = [must(chart, "Service", "navarch-control-plane"), must(chart, "Deployment", "navarch-control-plane")];
    const applied = await kubectl(admin, ["apply", "--server-side", "-f", "-"], objects.map((o) => YAML.stringify(o)).join("---\n"));
    expect(applied.code, applied.stderr).toBe(0);
    const monitor = must(seed, "ServiceMonitor", "navarch-control-plane");
    const created = await kubectl(admin, ["apply", "--server-side", "-f", "-"], YAML.stringify(monitor));
    expect(created.code, created.stderr).toBe(0);

    // What the Prometheus Operator does with it: the Services its selector matches in its namespace, and the named port.
    const stored = JSON.parse((await kubectl(admin, ["-n", "navarch", "get", "servicemonitor", "navarch-control-plane", "-o", "json"])).stdout) as {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
    };
    const selector = Object.entries(stored.spec.selector.matchLabels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    const services = JSON.parse((await kubectl(admin, ["-n", "navarch", "get", "services", "-l", selector, "-o", "json"])).stdout) as {
      items: { metadata: { name: string }; spec: { ports: { name: string; port: number; targetPort: string | number }[] } }[];
    };
    expect(services.items.map((s) => s.metadata.name)).toEqual(["navarch-control-plane"]);
    const endpoint = stored.spec.endpoints[0]!;
    expect(endpoint).toMatchObject({ port: "grpc", path: "/metrics" });
    const port = services.items[0]!.spec.ports.find((p) => p.name === endpoint.port);
    expect(port).toMatchObject({ port: 50051, targetPort: "grpc" });
    // The seed's Service (selector app, targetPort grpc) would find the chart's pods and their port.
    const seedService = must(seed, "Service", "navarch-control-plane") as unknown as {
      spec: { selector: Record<string, string>; ports: { targetPort: string }[] };
    };
    const pod = (
      must(chart, "Deployment", "navarch-control-plane") as unknown as {
        spec: {
          template: {
            metadata: { labels: Record<string, string> };
            spec: { containers: { ports: { name: string; containerPort: number; protocol: string }[] }[] };
          };
        };
      }
    ).spec.template;
    expect(pod.metadata.labels).toMatchObject(seedService.spec.selector);
    expect(pod.spec.containers[0]!.ports).toContainEqual({ name: seedService.spec.ports[0]!.targetPort, containerPort: 50051, protocol: "TCP" });
  }, 120_000);

  test("its DaemonSet's --server names the chart's Service; its probes, Secret and ConfigMap config fit the chart's control plane", async () => {
    const seed = parseObjects(readFileSync(join(REPO_ROOT, "test/fixtures/seed/kubernetes.yaml"), "utf8"));
    type Container = {
      args: string[];
      env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
      ports?: { containerPort: number }[];
      livenessProbe?: { httpGet: { path: string; port: number | string } };
      readinessProbe?: { httpGet: { path: string; port: number | string } };
    };
    const containerOf = (o: KubeObject) => (o as unknown as { spec: { template: { spec: { containers: Container[] } } } }).spec.template.spec.containers[0]!;
    const chart = await render("default");
    const service = must(chart, "Service", "navarch-control-plane") as unknown as {
      metadata: { name: string; namespace: string };
      spec: { ports: { port: number }[] };
    };
    const seedAgent = containerOf(must(seed, "DaemonSet"));
    const server = seedAgent.args.find((a) => a.startsWith("--server="))!.slice("--server=".length);
    expect(server).toBe(`${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local:${service.spec.ports[0]!.port}`);
    // The same Secret and key for the admin token, the same probes on the same port.
    const cp = containerOf(must(chart, "Deployment", "navarch-control-plane"));
    const seedCp = containerOf(must(seed, "Deployment"));
    const tokenRef = (c: Container) => c.env?.find((e) => e.name === "NAVARCH_AUTH_TOKEN")?.valueFrom?.secretKeyRef;
    expect(tokenRef(cp)).toEqual(tokenRef(seedCp));
    expect(tokenRef(seedAgent)).toEqual(tokenRef(seedCp));
    expect(seedCp.args).toEqual(cp.args);
    for (const probe of ["livenessProbe", "readinessProbe"] as const) expect(cp[probe]!.httpGet.path).toBe(seedCp[probe]!.httpGet.path);
    expect(seedCp.livenessProbe!.httpGet.port).toBe(cp.ports![0]!.containerPort);
    // The seed's ConfigMap config as the chart's config: rendered, the reconciler accepts it.
    const seedConfig = YAML.parse((must(seed, "ConfigMap") as unknown as { data: Record<string, string> }).data["config.yaml"]!);
    const values = join(tempDir("navarch-helm-seed-"), "values.yaml");
    writeFileSync(values, YAML.stringify({ config: seedConfig, credentials: { env: { LAMBDA_API_KEY: "lambda-api-key" } } }));
    const rendered = configOf(parseObjects(await helmTemplate(["-f", values])));
    expect(rendered.pools).toEqual(seedConfig.pools);
    const dir = tempDir("navarch-helm-seed-config-");
    delete rendered.kubernetes!.in_cluster;
    rendered.kubernetes!.kubeconfig = kube.kubeconfigPath;
    writeFileSync(join(dir, "config.yaml"), YAML.stringify(rendered));
    const { navarch } = await ensureBinaries();
    const r = await runTool([navarch, "config", "check", join(dir, "config.yaml")], { env: { NAVARCH_AUTH_TOKEN: "t", LAMBDA_API_KEY: "k" } });
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  }, 60_000);
});

describe("plain manifests", () => {
  test("deploy/manifests is what scripts/manifests.sh renders from the chart today", async () => {
    const out = tempDir("navarch-manifests-");
    const r = await runTool(["sh", "scripts/manifests.sh", out]);
    expect(r.code, r.stderr).toBe(0);
    for (const file of ["navarch.yaml", "navarch-ha.yaml", "monitoring.yaml"]) {
      const committed = readFileSync(join(REPO_ROOT, "deploy/manifests", file), "utf8");
      const fresh = readFileSync(join(out, file), "utf8");
      expect(committed === fresh, `deploy/manifests/${file} is stale: run npm run manifests`).toBe(true);
    }
    // For users without Helm: the namespace and the CRD are in it, and no Secret (created by the operator).
    const objects = parseObjects(readFileSync(join(REPO_ROOT, "deploy/manifests/navarch.yaml"), "utf8"));
    expect(objects[0]?.kind).toBe("CustomResourceDefinition");
    expect(find(objects, "Namespace", "navarch")).toBeDefined();
    expect(find(objects, "Secret")).toBeUndefined();
  }, 120_000);
});
