// A real Kubernetes control plane for tests, on 127.0.0.1 and free ports, without Docker:
// etcd + kube-apiserver (token and client-certificate auth, RBAC, a serving certificate
// and service-account keys made with openssl) + kube-controller-manager (PDB status,
// DaemonSets, garbage collection, node lifecycle) + KWOK (plays the kubelet of every Node
// annotated kwok.x-k8s.io/node=fake). The binaries come from test/kube/build.sh (built
// from the Go module proxy into a cache outside the repo; idempotent).
//
//   const kube = await startKubeHarness();
//   … kube.kubeconfigPath, kube.client(), kube.createNodes([gpuNode("n1")]) …
//   await kube.stop();
import type { Subprocess } from "bun";
import { existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeApiError, KubeClient } from "../../reconciler/clients/kube/client.ts";
import { KubeNode, Pod } from "../../reconciler/clients/kube/types.ts";
import { freePort, harnessChildren } from "../support.ts";

const REPO_ROOT = new URL("../..", import.meta.url).pathname;
export const BUILD_SCRIPT = join(REPO_ROOT, "test/kube/build.sh");

export interface KubeBinaries {
  bin: string;
  /** Seconds the build took when this call built anything (a cold or partial build). */
  builtInSeconds?: number;
}

/** Runs test/kube/build.sh (a no-op when the cache has this version); its progress goes to `log`. */
export async function ensureKubeBinaries(log: (line: string) => void = () => undefined): Promise<KubeBinaries> {
  const proc = Bun.spawn(["sh", BUILD_SCRIPT], { stdout: "pipe", stderr: "pipe", cwd: REPO_ROOT });
  let builtInSeconds: number | undefined;
  const tail: string[] = [];
  const readErr = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of proc.stderr) {
      buffered += decoder.decode(chunk, { stream: true });
      let i = buffered.indexOf("\n");
      while (i >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        i = buffered.indexOf("\n");
        const built = /built in (\d+) s/.exec(line);
        if (built) builtInSeconds = Number(built[1]);
        if (line.startsWith("build.sh:")) log(line);
        tail.push(line);
        if (tail.length > 40) tail.shift();
      }
    }
  })();
  const out = await new Response(proc.stdout).text();
  await readErr;
  const code = await proc.exited;
  if (code !== 0) throw new Error(`test/kube/build.sh failed (exit ${code}):\n${tail.join("\n")}`);
  const bin = out.trim().split("\n").at(-1) ?? "";
  if (!existsSync(join(bin, "kube-apiserver"))) throw new Error(`test/kube/build.sh printed ${JSON.stringify(bin)}, which has no kube-apiserver`);
  return { bin, ...(builtInSeconds !== undefined ? { builtInSeconds } : {}) };
}

export interface KubeHarnessOptions {
  /** Run kube-controller-manager (default true). */
  controllerManager?: boolean;
  /** Run KWOK (default true). */
  kwok?: boolean;
  log?: (line: string) => void;
  bin?: string;
  /** Write the API server's audit log (Metadata level) of requests by service accounts: which verbs they used. */
  audit?: boolean;
  /**
   * KWOK renews a Lease per Node every 10 s, as kubelets do (default true). At 5,000 Nodes that
   * is 500 writes a second, most of the API server's CPU on 2 cores shared with everything
   * else. Without leases the Nodes' status still beats (every 10–20 min, KWOK's stage), and
   * the node lifecycle controller, which would find the Nodes unreachable, is not run.
   */
  nodeLeases?: boolean;
}

export interface KubeHarness {
  dir: string;
  bin: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** Bearer token of a cluster admin (system:masters). */
  token: string;
  caPath: string;
  caPem: string;
  /** kubeconfig with the CA and the admin token. */
  kubeconfigPath: string;
  /** kubeconfig with the CA and an admin client certificate (no token). */
  certKubeconfigPath: string;
  /** Milliseconds from the first process started to everything ready. */
  startMs: number;
  /** The audit log (JSON lines), with `audit: true`. */
  auditLogPath?: string;
  /** An admin client on the token kubeconfig (one per harness, closed by stop()). */
  client: KubeClient;
  /** Creates objects at `path` (POST), in parallel batches; returns how many were created. */
  createAll(path: string, objects: unknown[], concurrency?: number): Promise<number>;
  /** Binds pending pods that have no node to the node their nodeAffinity names (what kube-scheduler would do). */
  bindPending(namespace: string): Promise<number>;
  logs(component: "etcd" | "kube-apiserver" | "kube-controller-manager" | "kwok"): Promise<string>;
  /** Kills kube-apiserver, waits `downMs`, starts it again on the same port; resolves once it is ready. */
  restartApiServer(downMs?: number): Promise<void>;
  /** Pauses (SIGSTOP) or resumes (SIGCONT) kube-apiserver: its connections stay open and nothing answers. */
  signalApiServer(signal: "SIGSTOP" | "SIGCONT"): void;
  stop(): Promise<void>;
}

async function run(cmd: string[], cwd: string): Promise<void> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${await new Response(proc.stderr).text()}`);
}

/** CA, serving and client certificates, service-account keys (openssl, ~1 s). */
async function makePki(dir: string): Promise<void> {
  const ext = (name: string, text: string) => writeFileSync(join(dir, name), text);
  ext(
    "server.ext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
  );
  ext("client.ext", "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(["openssl", "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj", "/CN=navarch-test-ca"], dir);
  await Promise.all([
    run(["openssl", "req", ...ec, "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"], dir),
    run(["openssl", "req", ...ec, "-keyout", "admin.key", "-out", "admin.csr", "-subj", "/O=system:masters/CN=navarch-admin"], dir),
    run(["openssl", "genrsa", "-out", "sa.key", "2048"], dir),
  ]);
  await Promise.all([
    run(
      [
        "openssl",
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "1001",
        "-out",
        "apiserver.crt",
        "-days",
        "3",
        "-extfile",
        "server.ext",
      ],
      dir,
    ),
    run(
      [
        "openssl",
        "x509",
        "-req",
        "-in",
        "admin.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "1002",
        "-out",
        "admin.crt",
        "-days",
        "3",
        "-extfile",
        "client.ext",
      ],
      dir,
    ),
    run(["openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir),
  ]);
}

function kubeconfig(server: string, caPem: string, user: Record<string, string>): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "test", cluster: { server, "certificate-authority-data": b64(caPem) } }],
    users: [{ name: "admin", user }],
    contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
    "current-context": "test",
  });
}

export async function startKubeHarness(opts: KubeHarnessOptions = {}): Promise<KubeHarness> {
  const log = opts.log ?? (() => undefined);
  const bin = opts.bin ?? (await ensureKubeBinaries(log)).bin;
  const dir = mkdtempSync(join(tmpdir(), "navarch-kube-"));
  const started = performance.now();
  const procs: { name: string; proc: Subprocess }[] = [];
  const spawn = (name: string, cmd: string[]) => {
    const out = openSync(join(dir, `${name}.log`), "a");
    const proc = Bun.spawn(cmd, { cwd: dir, stdout: out, stderr: out, env: { ...process.env, KUBECONFIG: "" } });
    harnessChildren.add(proc);
    procs.push({ name, proc });
    return proc;
  };
  const stop = async () => {
    for (const { proc } of [...procs].reverse()) {
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
      if (!exited) proc.kill("SIGKILL");
      harnessChildren.delete(proc);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await makePki(dir);
    const [etcdClient, etcdPeer, apiPort, kwokPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const token = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("hex");
    writeFileSync(join(dir, "tokens.csv"), `${token},navarch-test-admin,uid-admin,"system:masters"\n`);

    spawn("etcd", [
      join(bin, "etcd"),
      "--name=n0",
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=n0=http://127.0.0.1:${etcdPeer}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
    ]);
    await waitUntil("etcd", async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, 30_000, dir, "etcd");

    const server = `https://127.0.0.1:${apiPort}`;
    mkdirSync(join(dir, "pki"));
    const apiserverArgs = [
      join(bin, "kube-apiserver"),
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, "pki")}`,
      `--tls-cert-file=${join(dir, "apiserver.crt")}`,
      `--tls-private-key-file=${join(dir, "apiserver.key")}`,
      `--client-ca-file=${join(dir, "ca.crt")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--allow-privileged=true",
      "--endpoint-reconciler-type=none",
      // Pods here have no service-account volumes (no kubelet would mount them).
      "--disable-admission-plugins=ServiceAccount",
      "--max-requests-inflight=2000",
      "--max-mutating-requests-inflight=1000",
      "--profiling=false",
    ];
    const auditLogPath = opts.audit ? join(dir, "audit.log") : undefined;
    if (auditLogPath !== undefined) {
      writeFileSync(
        join(dir, "audit-policy.yaml"),
        'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n    userGroups: ["system:serviceaccounts"]\n  - level: None\n',
      );
      apiserverArgs.push(
        `--audit-policy-file=${join(dir, "audit-policy.yaml")}`,
        `--audit-log-path=${auditLogPath}`,
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
      );
    }
    let apiserver = spawn("kube-apiserver", apiserverArgs);
    const caPem = await Bun.file(join(dir, "ca.crt")).text();
    const apiReady = () =>
      waitUntil(
        "kube-apiserver /readyz",
        async () => (await fetch(`${server}/readyz`, { headers: { Authorization: `Bearer ${token}` }, tls: { ca: caPem } })).ok,
        90_000,
        dir,
        "kube-apiserver",
      );
    await apiReady();
    const kubeconfigPath = join(dir, "admin.kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig(server, caPem, { token }));
    const certKubeconfigPath = join(dir, "admin-cert.kubeconfig");
    writeFileSync(
      certKubeconfigPath,
      kubeconfig(server, caPem, {
        "client-certificate-data": Buffer.from(await Bun.file(join(dir, "admin.crt")).text()).toString("base64"),
        "client-key-data": Buffer.from(await Bun.file(join(dir, "admin.key")).text()).toString("base64"),
      }),
    );

    if (opts.controllerManager !== false) {
      spawn("kube-controller-manager", [
        join(bin, "kube-controller-manager"),
        `--kubeconfig=${kubeconfigPath}`,
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        `--service-account-private-key-file=${join(dir, "sa.key")}`,
        `--root-ca-file=${join(dir, "ca.crt")}`,
        "--use-service-account-credentials=false",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--concurrent-gc-syncs=50",
        ...(opts.nodeLeases === false ? ["--controllers=*,-node-lifecycle-controller"] : []),
      ]);
    }
    if (opts.kwok !== false) {
      spawn("kwok", [
        join(bin, "kwok"),
        `--kubeconfig=${kubeconfigPath}`,
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--manage-nodes-with-label-selector=",
        `--config=${join(bin, "kwok-stages.yaml")}`,
        `--server-address=127.0.0.1:${kwokPort}`,
        "--cidr=10.64.0.0/12",
        "--node-ip=10.0.0.1",
        `--node-lease-duration-seconds=${opts.nodeLeases === false ? 0 : 40}`,
      ]);
      await waitUntil("kwok /healthz", async () => (await fetch(`http://127.0.0.1:${kwokPort}/healthz`)).ok, 30_000, dir, "kwok");
    }
    const client = await KubeClient.connect({
      source: { kind: "kubeconfig", path: kubeconfigPath },
      lanes: { default: { qps: 1000, burst: 2000 }, cordon: { qps: 1000, burst: 2000 }, eviction: { qps: 1000, burst: 2000 } },
    });
    // The default namespace and its service account appear once the controllers ran.
    await waitUntil("namespace default", async () => (await client.request("GET", "/api/v1/namespaces/default")) !== undefined, 30_000, dir, "kube-apiserver");
    const startMs = Math.round(performance.now() - started);
    log(`kube harness up in ${startMs} ms at ${server} (${dir})`);

    const harness: KubeHarness = {
      dir,
      bin,
      server,
      token,
      caPath: join(dir, "ca.crt"),
      caPem,
      kubeconfigPath,
      certKubeconfigPath,
      startMs,
      ...(auditLogPath !== undefined ? { auditLogPath } : {}),
      client,
      async createAll(path, objects, concurrency = 32) {
        let created = 0;
        let next = 0;
        const worker = async () => {
          while (next < objects.length) {
            const object = objects[next++];
            for (let attempt = 0; ; attempt++) {
              try {
                await client.request("POST", path, { body: object });
                created++;
                break;
              } catch (err) {
                if (err instanceof KubeApiError && err.status === 409) break;
                if (attempt >= 5 || !(err instanceof KubeApiError && err.transient)) throw err;
                await Bun.sleep(200 * 2 ** attempt);
              }
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(concurrency, objects.length) }, worker));
        return created;
      },
      async bindPending(namespace) {
        const { items } = await client.list(`/api/v1/namespaces/${namespace}/pods`, Pod, { query: { fieldSelector: "spec.nodeName=,status.phase=Pending" } });
        let bound = 0;
        for (const pod of items) {
          const raw = (await client.request("GET", `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}`)) as {
            spec?: {
              affinity?: {
                nodeAffinity?: {
                  requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: { matchFields?: { key: string; values: string[] }[] }[] };
                };
              };
            };
          };
          const node = raw.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.find(
            (f) => f.key === "metadata.name",
          )?.values[0];
          if (node === undefined) continue;
          await client.request("POST", `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}/binding`, {
            body: {
              apiVersion: "v1",
              kind: "Binding",
              metadata: { name: pod.metadata.name, namespace },
              target: { apiVersion: "v1", kind: "Node", name: node },
            },
          });
          bound++;
        }
        return bound;
      },
      async restartApiServer(downMs = 1000) {
        apiserver.kill("SIGKILL"); // a crash: every connection drops at once
        await apiserver.exited;
        harnessChildren.delete(apiserver);
        await Bun.sleep(downMs);
        apiserver = spawn("kube-apiserver", apiserverArgs);
        await apiReady();
      },
      signalApiServer(signal) {
        apiserver.kill(signal);
      },
      async logs(component) {
        const file = Bun.file(join(dir, `${component}.log`));
        return (await file.exists()) ? file.text() : "";
      },
      async stop() {
        client.close();
        await stop();
      },
    };
    return harness;
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, dir: string, component: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await Bun.sleep(100);
  }
  const logFile = Bun.file(join(dir, `${component}.log`));
  const tail = (await logFile.exists()) ? (await logFile.text()).split("\n").slice(-30).join("\n") : "(no log)";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})\n${component} log:\n${tail}`);
}

// ───────────────────────────── object factories ─────────────────────────────

export interface GpuNodeOptions {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  providerID?: string;
  taints?: { key: string; value?: string; effect: string }[];
  unschedulable?: boolean;
  /** Managed by KWOK (default true); false: a Node nothing keeps Ready. */
  kwok?: boolean;
}

/** A KWOK-managed DGX H100 Node (8 nvidia.com/gpu), like Knavigator's dgxh100.80g. */
export function gpuNode(name: string, opts: GpuNodeOptions = {}): Record<string, unknown> {
  const capacity = {
    cpu: "224",
    memory: "2Ti",
    "ephemeral-storage": "30Ti",
    "nvidia.com/gpu": "8",
    "nvidia.com/mlnxnics": "16",
    pods: "110",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
  };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
        type: "kwok",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.present": "true",
        ...opts.labels,
      },
      annotations: {
        "node.alpha.kubernetes.io/ttl": "0",
        ...(opts.kwok === false ? {} : { "kwok.x-k8s.io/node": "fake" }),
        ...opts.annotations,
      },
    },
    spec: {
      ...(opts.providerID ? { providerID: opts.providerID } : {}),
      ...(opts.taints ? { taints: opts.taints } : {}),
      ...(opts.unschedulable ? { unschedulable: true } : {}),
    },
    status: {
      capacity,
      allocatable: capacity,
      nodeInfo: { kubeletVersion: "fake", architecture: "amd64", operatingSystem: "linux" },
    },
  };
}

export interface PodOptions {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  emptyDir?: boolean;
  gpus?: number;
  terminationGracePeriodSeconds?: number;
}

/** A pod bound to `nodeName` (no scheduler needed), asking for GPUs like a training job. */
export function gpuPod(name: string, namespace: string, nodeName: string | undefined, opts: PodOptions = {}): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace,
      labels: { app: "train", ...opts.labels },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
      ...(opts.ownerReferences ? { ownerReferences: opts.ownerReferences } : {}),
    },
    spec: {
      ...(nodeName ? { nodeName } : {}),
      terminationGracePeriodSeconds: opts.terminationGracePeriodSeconds ?? 1,
      containers: [
        {
          name: "main",
          image: "registry.example/train:latest",
          resources: { limits: { "nvidia.com/gpu": String(opts.gpus ?? 1) }, requests: { "nvidia.com/gpu": String(opts.gpus ?? 1) } },
          ...(opts.emptyDir ? { volumeMounts: [{ name: "scratch", mountPath: "/scratch" }] } : {}),
        },
      ],
      ...(opts.emptyDir ? { volumes: [{ name: "scratch", emptyDir: {} }] } : {}),
      tolerations: [{ key: "kwok.x-k8s.io/node", operator: "Exists", effect: "NoSchedule" }],
    },
  };
}

export function namespace(name: string): Record<string, unknown> {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name } };
}

/** Reads a Node (parsed). */
export async function getNode(client: KubeClient, name: string): Promise<KubeNode> {
  return client.request("GET", `/api/v1/nodes/${name}`, {}, KubeNode);
}

/** Pods on a node (parsed). */
export async function podsOn(client: KubeClient, nodeName: string): Promise<Pod[]> {
  return (await client.list("/api/v1/pods", Pod, { query: { fieldSelector: `spec.nodeName=${nodeName}` } })).items;
}
