// Kubernetes integration against a real control plane (test/kube/harness.ts: etcd,
// kube-apiserver, kube-controller-manager, KWOK), driven by the real reconcile loop:
// the cordon mirror and its undo, a human's uncordon, drains through the Eviction API
// (PDBs, DaemonSet and mirror pods, emptyDir, the deadline, a dead kubelet), pools as
// GpuPool custom resources, queue metrics, the CoreWeave provider and the clients.
//
// The binaries are built on first use (test/kube/build.sh, cached outside the repo).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import * as v from "valibot";
import { PoolSchema } from "../schema/config.ts";
import { auditLog, nodes, pools } from "../schema/db.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler } from "../reconciler/app/serve.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { testConfig } from "./fleet-harness.ts";
import { KubeApiError, KubeClient } from "../reconciler/clients/kube/client.ts";
import { Informer } from "../reconciler/clients/kube/informer.ts";
import { ANNOTATIONS } from "../reconciler/schedulers/kubernetes/node-marks.ts";
import { GPUPOOL_API } from "../reconciler/schedulers/kubernetes/pools.ts";
import { KubeNode, Pod } from "../reconciler/clients/kube/types.ts";
import { CoreWeaveProvider, NODEPOOL_NODE_LABEL, NODEPOOL_PATH, NodePoolObject } from "../reconciler/providers/coreweave.ts";
import { ProviderError } from "../reconciler/providers/provider.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";
import { kubeFleet, stopKubeFleets, type KubeFleet } from "./kube/fleet.ts";
import { ensureKubeBinaries, getNode, gpuNode, gpuPod, namespace, podsOn, startKubeHarness, type KubeHarness } from "./kube/harness.ts";

let kube: KubeHarness;
const log = (line: string) => {
  if (process.env.NAVARCH_TEST_VERBOSE) console.log(line);
};

beforeAll(async () => {
  // Cold: builds kube-apiserver, kube-controller-manager, etcd and kwok (tens of minutes on 2 cores).
  const { bin, builtInSeconds } = await ensureKubeBinaries((line) => console.log(line));
  if (builtInSeconds !== undefined) console.log(`kubernetes binaries built in ${builtInSeconds} s`);
  kube = await startKubeHarness({ bin, log });
  console.log(`kubernetes harness (etcd, kube-apiserver, kube-controller-manager, kwok) started in ${kube.startMs} ms`);
}, 45 * 60_000);

afterAll(async () => {
  await stopKubeFleets();
  await kube?.stop();
}, 60_000);

afterEach(stopKubeFleets, 30_000);

const POOL = (name: string, min: number, max: number, health = "      drain_timeout: 2h\n") =>
  `  - name: ${name}\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${min}\n      max_nodes: ${max}\n    health:\n      unhealthy_threshold: 1\n      remediation: replace\n${health}`;
const ROOMY = "safety:\n  unhealthy_budget:\n    floor: 10\n  max_in_flight_per_pool: 10\n  max_in_flight_fleet: 20\n";
const HOT = { check: "temperature", code: "thermal", severity: "unhealthy" as const, action: "reset_gpu" as const, message: "GPU 2: 98°C" };
const COOL = { check: "temperature", code: "thermal", severity: "healthy" as const, action: "none" as const, message: "recovered: GPU 2: 98°C" };

async function createNs(name: string) {
  await kube.createAll("/api/v1/namespaces", [namespace(name)]);
}

async function createNodes(...objects: Record<string, unknown>[]) {
  await kube.createAll("/api/v1/nodes", objects);
}

async function createPods(ns: string, ...objects: Record<string, unknown>[]) {
  await kube.createAll(`/api/v1/namespaces/${ns}/pods`, objects);
}

/** Waits until the pods are Running (KWOK plays the kubelet). */
async function running(ns: string, names: string[]) {
  await waitFor(
    `pods ${names.join(", ")} running`,
    async () => {
      const { items } = await kube.client.list(`/api/v1/namespaces/${ns}/pods`, Pod);
      return names.every((n) => items.find((p) => p.metadata.name === n)?.status.phase === "Running") ? true : undefined;
    },
    30_000,
  );
}

/** Applies a CRD manifest from the repo (again is fine) and waits until it is Established. */
async function installCrd(file: string, name: string) {
  const docs = parseAllDocuments(await Bun.file(join(REPO_ROOT, file)).text()).map((d) => d.toJSON() as unknown);
  await kube.createAll("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", docs);
  await waitFor(
    `CRD ${name} established`,
    async () => {
      const got = (await kube.client.request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`)) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
    },
    30_000,
  );
}

/** How the drain ended, as the loop recorded it when it replaced the node. */
async function drainOutcome(f: KubeFleet, id: string): Promise<string> {
  const rows = await f.store.db.select().from(auditLog).where(eq(auditLog.target, id));
  const replace = rows.find((r) => r.action === "replace");
  return String((replace?.details as { how?: unknown } | null)?.how ?? "");
}

async function podNames(nodeName: string): Promise<string[]> {
  return (await podsOn(kube.client, nodeName))
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => p.metadata.name)
    .sort();
}

/** Taints other than the ones kube-controller-manager manages (node.kubernetes.io/unschedulable follows spec.unschedulable). */
const taintKeys = (n: KubeNode) =>
  (n.spec.taints ?? [])
    .map((t) => t.key)
    .filter((k) => !k.startsWith("node.kubernetes.io/"))
    .sort();
const ourTaint = (n: KubeNode) => (n.spec.taints ?? []).find((t) => t.key === "navarch.dev/unhealthy");
const condition = (n: KubeNode, type = "GpuHealthy") => n.status.conditions?.find((c) => c.type === type);

describe("cordon mirror", () => {
  test("a cordon sets unschedulable, our taint, annotations and the GPU condition; recovery undoes exactly that", async () => {
    const f = await kubeFleet(kube, POOL("mirror", 2, 2), { extra: ROOMY, log });
    const [a, b] = await f.ready("mirror", 2);
    // a: a human had cordoned and tainted it already; b: in service.
    await createNodes(gpuNode(a!, { unschedulable: true, taints: [{ key: "example.com/maintenance", value: "bios", effect: "NoSchedule" }] }), gpuNode(b!));
    await createNs("mirror");
    // Pods the drain cannot evict (emptyDir, not allowed by default): the nodes stay draining.
    await createPods("mirror", gpuPod("scratch-a", "mirror", a, { emptyDir: true }), gpuPod("scratch-b", "mirror", b, { emptyDir: true }));
    await waitFor("the mirror sees both Nodes", () => (f.mirror.nodeCache.get(a!) && f.mirror.nodeCache.get(b!) ? true : undefined));

    for (const id of [a!, b!]) await f.agents.event(id, HOT, 2);
    await f.until("both cordoned", async () => (await f.all()).filter((n) => n.state === "cordoned" || n.state === "draining").length === 2);
    await f.mirror.settle();

    const rowB = await f.node(b!);
    expect(rowB.k8sNodeName).toBe(b!); // the mapping, shown in the node's details
    const nodeB = await getNode(kube.client, b!);
    expect(nodeB.spec.unschedulable).toBe(true);
    expect(ourTaint(nodeB)).toMatchObject({ effect: "NoSchedule", value: "unhealthy" });
    expect(nodeB.metadata.annotations).toMatchObject({
      [ANNOTATIONS.cordonedBy]: "navarch",
      [ANNOTATIONS.incident]: String(rowB.incidentId),
      [ANNOTATIONS.node]: b!,
      [ANNOTATIONS.owned]: "taint,unschedulable",
    });
    expect(nodeB.metadata.annotations?.[ANNOTATIONS.reason]).toContain("98°C");
    expect(Date.parse(nodeB.metadata.annotations?.[ANNOTATIONS.at] ?? "")).toBeGreaterThan(0);
    expect(condition(nodeB)).toMatchObject({ status: "False", reason: "GpuUnhealthy" });
    expect(condition(nodeB)?.message).toContain(`incident ${rowB.incidentId}`);
    // KWOK's own conditions are still there (strategic merge by type).
    expect(condition(nodeB, "Ready")?.status).toBe("True");

    const nodeA = await getNode(kube.client, a!);
    expect(nodeA.metadata.annotations?.[ANNOTATIONS.owned]).toBe("taint"); // it was unschedulable already
    expect(taintKeys(nodeA)).toEqual(["example.com/maintenance", "navarch.dev/unhealthy"]);

    // Draining: progress is visible on the node row and on the Node.
    await f.until("drain progress", async () => (await f.node(b!)).stateReason?.includes("emptyDir") === true, { sleepMs: 100 });
    expect((await f.node(b!)).stateReason).toContain("1 pod(s) left");
    await waitFor("drain status annotation", async () =>
      (await getNode(kube.client, b!)).metadata.annotations?.[ANNOTATIONS.drain]?.includes("emptyDir") ? true : undefined,
    );

    // Both recover before they are replaced: the loop uncordons, the mirror undoes what it did.
    for (const id of [a!, b!]) await f.agents.event(id, COOL, 2);
    await f.until("both back in service", async () => (await f.all()).filter((n) => n.state === "ready").length === 2, { stepMs: 60_000, sleepMs: 0 });
    await f.mirror.settle();
    const backB = await getNode(kube.client, b!);
    expect(backB.spec.unschedulable ?? false).toBe(false);
    expect(ourTaint(backB)).toBeUndefined();
    expect(Object.keys(backB.metadata.annotations ?? {}).filter((k) => k.startsWith("navarch.dev/"))).toEqual([]);
    expect(condition(backB)).toMatchObject({ status: "True", reason: "GpuHealthy" });
    const backA = await getNode(kube.client, a!);
    // Only what we did is undone: the human's cordon and taint stay.
    expect(backA.spec.unschedulable).toBe(true);
    expect(taintKeys(backA)).toEqual(["example.com/maintenance"]);
    expect(await podNames(b!)).toEqual(["scratch-b"]); // nothing was evicted
  }, 120_000);

  test("a human's kubectl uncordon of our cordon cancels the incident", async () => {
    const f = await kubeFleet(kube, POOL("human", 1, 1), { log });
    const [c] = await f.ready("human", 1);
    await createNodes(gpuNode(c!));
    await createNs("human");
    await createPods("human", gpuPod("scratch-c", "human", c, { emptyDir: true }));
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(c!));
    await f.agents.event(c!, HOT, 2);
    await f.until("draining", async () => (await f.node(c!)).state === "draining");
    const incidentId = (await f.node(c!)).incidentId;
    expect(incidentId).not.toBeNull();
    expect((await getNode(kube.client, c!)).spec.unschedulable).toBe(true);

    // What `kubectl uncordon` sends.
    await kube.client.request("PATCH", `/api/v1/nodes/${c}`, {
      body: { spec: { unschedulable: null } },
      contentType: "application/strategic-merge-patch+json",
    });

    await waitFor("the incident cancelled", async () => ((await f.incident(incidentId))?.outcome === "cancelled" ? true : undefined));
    expect((await f.incident(incidentId))?.status).toContain("uncordoned by kubernetes (kubectl uncordon of node");
    const row = await f.node(c!);
    expect(row).toMatchObject({ state: "ready", cordonedBy: null, incidentId: null });
    const audit = await f.store.db.select().from(auditLog).where(eq(auditLog.target, c!));
    expect(audit.some((e) => e.action === "uncordon" && e.actor.startsWith("kubernetes"))).toBe(true);
    // The rest of our cordon (taint, annotations) comes off; the GPU condition says who vouched.
    await waitFor("our taint removed", async () => (taintKeys(await getNode(kube.client, c!)).length === 0 ? true : undefined));
    await f.mirror.settle();
    const after = await getNode(kube.client, c!);
    expect(Object.keys(after.metadata.annotations ?? {}).filter((k) => k.startsWith("navarch.dev/"))).toEqual([]);
    expect(condition(after)).toMatchObject({ status: "True", reason: "UncordonedByHuman" });
    // The loop leaves it in service.
    for (let i = 0; i < 3; i++) await f.step();
    expect((await f.node(c!)).state).toBe("ready");
    expect(await podNames(c!)).toEqual(["scratch-c"]);
  }, 90_000);
  test("a drain a human asks for through Navarch's API cordons in Kubernetes first; Navarch's own uncordon is mirrored", async () => {
    const f = await kubeFleet(kube, POOL("asked", 1, 1), { log });
    const [k] = await f.ready("asked", 1);
    await createNodes(gpuNode(k!));
    await createNs("asked");
    await createPods("asked", gpuPod("job-k", "asked", k));
    await running("asked", ["job-k"]);
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(k!));
    await f.operator.drain(k!, "alice", "firmware update", 3_600_000);
    await f.until("drained and held for alice", async () => (await f.node(k!)).state === "held", { sleepMs: 200 });
    const drained = await getNode(kube.client, k!);
    expect(drained.spec.unschedulable).toBe(true);
    expect(ourTaint(drained)).toBeDefined();
    expect(drained.metadata.annotations?.[ANNOTATIONS.reason]).toContain("drain requested by alice: firmware update");
    expect(await podNames(k!)).toEqual([]);

    // Alice uncordons through Navarch (not kubectl): the mirror sees the node back in service and undoes its cordon.
    await f.operator.uncordon(k!, "alice");
    f.mirror.staleCordonMs = 0;
    await f.mirror.syncMapping();
    await f.mirror.settle();
    const back = await getNode(kube.client, k!);
    expect(back.spec.unschedulable ?? false).toBe(false);
    expect(ourTaint(back)).toBeUndefined();
    expect((await f.node(k!)).state).toBe("ready");
  }, 60_000);
});

describe("a pool's labels and taints", () => {
  test("are on its Nodes once they register (the KAI seed's taint included); what a human changes afterwards stays", async () => {
    const labels = "    labels:\n      workload: training\n      navarch.dev/tier: gold\n";
    const taints = "    taints:\n      - key: node-type\n        value: gpu-optimized\n        effect: NoSchedule\n";
    const f = await kubeFleet(kube, POOL("marked", 2, 2) + labels + taints, { log });
    const [a, b] = await f.ready("marked", 2);
    // b already says where its workload goes: that label is left as it is.
    await createNodes(gpuNode(a!), gpuNode(b!, { labels: { workload: "inference" } }));
    await waitFor(
      "both Nodes marked",
      async () => {
        await f.mirror.syncMapping();
        await f.mirror.settle();
        const [na, nb] = await Promise.all([getNode(kube.client, a!), getNode(kube.client, b!)]);
        return na.metadata.annotations?.["navarch.dev/pool-marks"] && nb.metadata.annotations?.["navarch.dev/pool-marks"] ? [na, nb] : undefined;
      },
      20_000,
    );
    const [na, nb] = await Promise.all([getNode(kube.client, a!), getNode(kube.client, b!)]);
    expect(na.metadata.labels).toMatchObject({ workload: "training", "navarch.dev/tier": "gold" });
    expect(nb.metadata.labels).toMatchObject({ workload: "inference", "navarch.dev/tier": "gold" });
    for (const n of [na, nb]) expect(n.spec.taints).toContainEqual({ key: "node-type", value: "gpu-optimized", effect: "NoSchedule" });
    expect(na.metadata.annotations?.["navarch.dev/pool-marks"]).toBe("marked");
    // A human takes the taint off a: it stays off.
    await kube.client.request("PATCH", `/api/v1/nodes/${a}`, { body: { spec: { taints: [] } }, contentType: "application/merge-patch+json" });
    await f.mirror.syncMapping();
    await f.mirror.settle();
    expect((await getNode(kube.client, a!)).spec.taints ?? []).toEqual([]);
  }, 60_000);
});

describe("drain", () => {
  test("a PodDisruptionBudget blocks the drain (429, retried with backoff) until the budget allows it", async () => {
    const f = await kubeFleet(kube, POOL("pdb", 2, 2), { extra: ROOMY, kubernetes: "  drain:\n    max_backoff: 1s\n", log });
    const [d, e] = await f.ready("pdb", 2);
    await createNodes(gpuNode(d!), gpuNode(e!));
    await createNs("pdb");
    await createPods("pdb", gpuPod("web-0", "pdb", d, { labels: { app: "web" } }), gpuPod("web-1", "pdb", e, { labels: { app: "web" } }));
    await kube.client.request("POST", "/apis/policy/v1/namespaces/pdb/poddisruptionbudgets", {
      body: {
        apiVersion: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: { name: "web" },
        spec: { minAvailable: 2, selector: { matchLabels: { app: "web" } } },
      },
    });
    await running("pdb", ["web-0", "web-1"]);
    const pdbStatus = async () =>
      (
        (await kube.client.request("GET", "/apis/policy/v1/namespaces/pdb/poddisruptionbudgets/web")) as {
          status?: { currentHealthy?: number; disruptionsAllowed?: number };
        }
      ).status;
    await waitFor("the disruption controller counts 2 healthy", async () => ((await pdbStatus())?.currentHealthy === 2 ? true : undefined), 30_000);
    expect((await pdbStatus())?.disruptionsAllowed).toBe(0);
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(d!));

    await f.agents.event(d!, HOT, 2);
    await f.until("blocked by the PDB", async () => (await f.node(d!)).stateReason?.includes("PodDisruptionBudget") === true, { sleepMs: 200 });
    expect((await f.node(d!)).stateReason).toContain("pdb/web-0");
    // It stays blocked: several rounds later the pod is still there.
    for (let i = 0; i < 8; i++) {
      await f.step();
      await Bun.sleep(250);
    }
    expect((await f.node(d!)).state).toBe("draining");
    expect(await podNames(d!)).toEqual(["web-0"]);

    // A third replica comes up elsewhere: the budget allows one disruption; the next retry evicts.
    await createPods("pdb", gpuPod("web-2", "pdb", e, { labels: { app: "web" } }));
    await running("pdb", ["web-2"]);
    await f.until("drained and on its way out", async () => ["terminating", "terminated"].includes((await f.node(d!)).state), {
      sleepMs: 250,
      timeoutMs: 60_000,
    });
    expect(await podNames(d!)).toEqual([]);
    expect(await podNames(e!)).toEqual(["web-1", "web-2"]);
    const inc = await f.incident((await f.node(d!)).incidentId);
    expect(inc?.drainedAt).not.toBeNull();
    expect(await drainOutcome(f, d!)).toContain("no pods left");
  }, 120_000);

  test("DaemonSet and mirror pods are left alone; emptyDir pods are evicted when configured", async () => {
    const f = await kubeFleet(kube, POOL("ds", 1, 1), { kubernetes: "  drain:\n    delete_emptydir_data: true\n", log });
    const [g] = await f.ready("ds", 1);
    await createNodes(gpuNode(g!, { labels: { "navarch-test/ds": "yes" } }));
    await createNs("ds");
    // A real DaemonSet: its controller makes the pod, we bind it as kube-scheduler would.
    await kube.client.request("POST", "/apis/apps/v1/namespaces/ds/daemonsets", {
      body: {
        apiVersion: "apps/v1",
        kind: "DaemonSet",
        metadata: { name: "gpu-exporter" },
        spec: {
          selector: { matchLabels: { app: "gpu-exporter" } },
          template: {
            metadata: { labels: { app: "gpu-exporter" } },
            spec: {
              nodeSelector: { "navarch-test/ds": "yes" },
              containers: [{ name: "exporter", image: "registry.example/dcgm-exporter:latest" }],
              tolerations: [{ operator: "Exists" }],
            },
          },
        },
      },
    });
    await waitFor("the DaemonSet pod bound", async () => ((await kube.bindPending("ds")) > 0 || (await podNames(g!)).length > 0 ? true : undefined), 30_000);
    const mirrorPod = gpuPod("static-etcd", "ds", g, { annotations: { "kubernetes.io/config.mirror": "0123456789abcdef" } });
    await createPods("ds", mirrorPod, gpuPod("job-0", "ds", g), gpuPod("scratch-0", "ds", g, { emptyDir: true }));
    const before = await podNames(g!);
    expect(before).toHaveLength(4);
    const dsPod = before.find((n) => n.startsWith("gpu-exporter-"))!;
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(g!));

    await f.agents.event(g!, HOT, 2);
    await f.until("drained", async () => ["terminating", "terminated"].includes((await f.node(g!)).state), { sleepMs: 200 });
    expect(await podNames(g!)).toEqual([dsPod, "static-etcd"].sort());
    expect(await drainOutcome(f, g!)).toContain("2 evicted; 1 DaemonSet pod(s) and 1 mirror pod(s) left alone");
  }, 90_000);

  test("the drain deadline: what is left is deleted (on_deadline: delete) or the node is held (hold)", async () => {
    await createNs("deadline");
    const blockedPod = async (ns: string, name: string, node: string) => {
      await createPods(ns, gpuPod(name, ns, node, { labels: { app: name } }));
      await kube.client.request("POST", `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`, {
        body: { apiVersion: "policy/v1", kind: "PodDisruptionBudget", metadata: { name }, spec: { minAvailable: 1, selector: { matchLabels: { app: name } } } },
      });
      await running(ns, [name]);
    };
    // delete
    const f = await kubeFleet(kube, POOL("dl-delete", 1, 1, "      drain_timeout: 1m\n"), { log });
    const [h] = await f.ready("dl-delete", 1);
    await createNodes(gpuNode(h!));
    await blockedPod("deadline", "solo-h", h!);
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(h!));
    await f.agents.event(h!, HOT, 2);
    await f.until("blocked", async () => (await f.node(h!)).stateReason?.includes("PodDisruptionBudget") === true, { stepMs: 1000, sleepMs: 200 });
    await f.until("past the deadline", async () => ["terminating", "terminated"].includes((await f.node(h!)).state), { stepMs: 10_000, sleepMs: 100 });
    expect(await drainOutcome(f, h!)).toContain("drain deadline passed");
    await waitFor("the pod deleted", async () => ((await podNames(h!)).length === 0 ? true : undefined), 20_000);

    // hold
    const g = await kubeFleet(kube, POOL("dl-hold", 1, 1, "      drain_timeout: 1m\n"), { kubernetes: "  drain:\n    on_deadline: hold\n", log });
    const [i] = await g.ready("dl-hold", 1);
    await createNodes(gpuNode(i!));
    await blockedPod("deadline", "solo-i", i!);
    await waitFor("the mirror sees the Node", () => g.mirror.nodeCache.get(i!));
    await g.agents.event(i!, HOT, 2);
    await g.until("blocked", async () => (await g.node(i!)).stateReason?.includes("PodDisruptionBudget") === true, { stepMs: 1000, sleepMs: 200 });
    await g.until("held", async () => (await g.node(i!)).state === "held", { stepMs: 10_000, sleepMs: 100 });
    const held = await g.node(i!);
    expect(held.stateReason).toContain("held (kubernetes.drain.on_deadline: hold)");
    expect((await g.incident(held.incidentId))?.status).toContain("held:");
    for (let n = 0; n < 3; n++) await g.step();
    expect((await g.node(i!)).state).toBe("held");
    expect(await podNames(i!)).toEqual(["solo-i"]); // nothing deleted
    expect(g.cloud.running()).toHaveLength(1); // nor terminated
  }, 120_000);

  test("a dead kubelet (Node not Ready, agent silent): pods deleted with a 1 s grace, PDB bypassed", async () => {
    const f = await kubeFleet(kube, POOL("dead", 1, 1), {
      server: "server:\n  heartbeat_interval: 60s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n",
      kubernetes: "  drain:\n    unreachable_after: 30s\n    max_backoff: 1s\n",
      log,
    });
    const [j] = await f.ready("dead", 1);
    await createNodes(gpuNode(j!));
    await createNs("dead");
    await createPods("dead", gpuPod("train-0", "dead", j, { labels: { app: "train-dead" }, terminationGracePeriodSeconds: 600 }));
    await kube.client.request("POST", "/apis/policy/v1/namespaces/dead/poddisruptionbudgets", {
      body: {
        apiVersion: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: { name: "train" },
        spec: { minAvailable: 1, selector: { matchLabels: { app: "train-dead" } } },
      },
    });
    await running("dead", ["train-0"]);
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(j!));
    await f.agents.event(j!, HOT, 2);
    await f.until("blocked by the PDB", async () => (await f.node(j!)).stateReason?.includes("PodDisruptionBudget") === true, { stepMs: 1000, sleepMs: 200 });

    // The machine dies: its kubelet (KWOK lets go of the Node) and its agent go silent.
    await kube.client.request("PATCH", `/api/v1/nodes/${j}`, {
      body: { metadata: { annotations: { "kwok.x-k8s.io/node": null } } },
      contentType: "application/merge-patch+json",
    });
    await Bun.sleep(500);
    const unknown = {
      type: "Ready",
      status: "Unknown",
      reason: "NodeStatusUnknown",
      message: "Kubelet stopped posting node status.",
      lastHeartbeatTime: new Date().toISOString(),
      lastTransitionTime: new Date().toISOString(),
    };
    await kube.client.request("PATCH", `/api/v1/nodes/${j}/status`, {
      body: { status: { conditions: [unknown] } },
      contentType: "application/strategic-merge-patch+json",
    });
    f.agents.setSilent(j!, true);
    await f.until("drained by the fast path", async () => ["terminating", "terminated"].includes((await f.node(j!)).state), { stepMs: 5000, sleepMs: 300 });
    expect(await drainOutcome(f, j!)).toContain("dead kubelet");
    expect((await getNode(kube.client, j!)).status.conditions?.find((c) => c.type === "Ready")?.status).toBe("Unknown");
    // The pod was deleted with a 1 s grace (not its own 600 s), past the PDB: gone, or marked
    // for deletion with nothing left to confirm it.
    const [pod] = await podsOn(kube.client, j!);
    if (pod !== undefined) expect(Date.parse(pod.metadata.deletionTimestamp ?? "")).toBeLessThan(Date.now() + 5_000);
  }, 90_000);
});

describe("nodes of a DaemonSet (monitored: not launched by Navarch)", () => {
  /** A machine someone else launched (a GKE node pool), whose agent registers without --pool, as the seed's DaemonSet runs it. */
  async function daemonSetMachine(f: KubeFleet, name: string, node: { pool?: string; providerID?: boolean }) {
    const instance = await f.cloud.launch({ name, idempotencyKey: `gke-${name}`, pool: "", instanceType: "a3-highgpu-8g", region: "local", tags: {} });
    await f.step(1000); // its agent boots and registers (no pool), as the DaemonSet's would
    expect((await f.node(name)).origin).toBe("registered");
    expect((await f.node(name)).pool).toBeNull();
    await createNodes(
      gpuNode(name, {
        labels: node.pool ? { "navarch.dev/pool": node.pool } : {},
        ...(node.providerID ? { providerID: `simulated://local/${instance.id}` } : {}),
      }),
    );
    await waitFor("the mirror sees the Node", () => f.mirror.nodeCache.get(name));
    await f.mirror.syncMapping();
    return instance;
  }

  test("the pool comes from the Node's navarch.dev/pool label; with auto_replace the machine is terminated for its owner to replace, and Navarch launches nothing", async () => {
    const f = await kubeFleet(kube, POOL("gke-gpu", 0, 10), { extra: ROOMY, log });
    const instance = await daemonSetMachine(f, "gke-gpu-a1", { pool: "gke-gpu", providerID: true });
    const row = await f.node("gke-gpu-a1");
    expect({ pool: row.pool, provider: row.provider, instanceName: row.instanceName }).toEqual({
      pool: "gke-gpu",
      provider: "local",
      instanceName: instance.id,
    });
    await f.until("ready", async () => (await f.node("gke-gpu-a1")).state === "ready");

    await f.agents.xid("gke-gpu-a1", 79, 3);
    await f.until("terminated", async () => (await f.node("gke-gpu-a1")).state === "terminated", { stepMs: 2000, sleepMs: 20 });
    expect((await f.cloud.get(instance.id))?.state).toBe("terminated");
    const done = await f.node("gke-gpu-a1");
    const incident = await f.incident(done.incidentId);
    expect(incident).toMatchObject({ outcome: "terminated" });
    expect(incident?.status).toContain("owner");
    // Kubernetes owns this pool's size: no machine was requested in its place.
    expect((await f.all()).filter((n) => n.origin === "launched")).toEqual([]);
  }, 60_000);

  test("without a providerID a configured provider recognises, or with auto_replace off, the node is held for a human; a silent agent is never fenced", async () => {
    const f = await kubeFleet(
      kube,
      `${POOL("gke-a", 0, 10)}${POOL("gke-b", 0, 10).replace("      remediation: replace\n", "      remediation: replace\n      auto_replace: false\n")}`,
      { extra: ROOMY, log },
    );
    await daemonSetMachine(f, "gke-a-1", { pool: "gke-a" });
    const b = await daemonSetMachine(f, "gke-b-1", { pool: "gke-b", providerID: true });
    const c = await daemonSetMachine(f, "gke-a-2", { pool: "gke-a", providerID: true });
    await f.until("all ready", async () => (await f.all()).filter((n) => n.state === "ready").length === 3);
    await f.agents.xid("gke-a-1", 79, 3);
    await f.agents.xid("gke-b-1", 79, 3);
    f.agents.setSilent("gke-a-2", true);
    await f.until(
      "two held, one lost",
      async () => {
        const all = await f.all();
        return all.filter((n) => n.state === "held").length === 2 && all.some((n) => n.id === "gke-a-2" && n.state === "lost");
      },
      { stepMs: 10_000, sleepMs: 20 },
    );
    expect((await f.node("gke-a-1")).stateReason).toContain("cannot name it at a provider");
    expect((await f.node("gke-b-1")).stateReason).toContain("auto_replace is off");
    for (let i = 0; i < 10; i++) await f.step(30_000);
    expect((await f.node("gke-a-2")).state).toBe("lost");
    expect((await f.node("gke-a-2")).stateReason).toContain("does not fence it");
    for (const i of [b, c]) expect((await f.cloud.get(i.id))?.state).toBe("running");
  }, 60_000);
});

describe("pools as custom resources", () => {
  test("GpuPool resources create, change and delete pools; status is written; invalid specs are rejected with field paths", async () => {
    await installCrd("deploy/crds/gpupool.yaml", "gpupools.navarch.dev");
    await createNs("navarch-pools");
    const f = await kubeFleet(kube, POOL("from-file", 0, 0), {
      kubernetes: "  pools_crd:\n    enabled: true\n    namespace: navarch-pools\n",
      pools: true,
      log,
    });
    const controller = f.kube.pools!;
    const base = `${GPUPOOL_API}/namespaces/navarch-pools/gpupools`;
    const queuePending = 'sum(kube_pod_status_phase{phase="Pending",pool="{{.Pool}}"})';
    const spec = {
      provider: "local",
      instance_type: "local-8gpu",
      region: "local",
      scaling: { min_nodes: 2, max_nodes: 4, metrics: { prometheus: { queue_pending: queuePending } } },
      health: { drain_timeout: "5m" },
    };
    await kube.client.request("POST", base, { body: { apiVersion: "navarch.dev/v1alpha1", kind: "GpuPool", metadata: { name: "crd-a" }, spec } });

    await f.until("the pool from the resource comes up", async () => (await f.all()).filter((n) => n.pool === "crd-a" && n.state === "ready").length === 2, {
      sleepMs: 20,
    });
    const [row] = await f.store.db.select().from(pools).where(eq(pools.name, "crd-a"));
    expect(row?.source).toBe("crd");
    // The pool's Prometheus queries survive the CRD's structural schema (not pruned) and reach the pool.
    expect((row?.spec as { scaling: { metrics?: unknown } } | undefined)?.scaling.metrics).toEqual({ prometheus: { queue_pending: queuePending } });
    const status = async () => {
      await controller.refreshNow();
      return (await kube.client.request("GET", `${base}/crd-a`)) as {
        metadata: { finalizers?: string[]; generation: number };
        status?: {
          observedGeneration?: number;
          appliedGeneration?: number;
          nodes?: { ready: number; total: number };
          lastError?: string;
          conditions?: { type: string; status: string; reason: string; message: string }[];
        };
      };
    };
    let got = await status();
    expect(got.metadata.finalizers).toContain("navarch.dev/pool-cleanup");
    expect(got.status).toMatchObject({ observedGeneration: 1, appliedGeneration: 1, nodes: { ready: 2, total: 2 }, lastError: "" });
    expect(got.status?.conditions?.find((c) => c.type === "Valid")).toMatchObject({ status: "True", reason: "Valid" });
    expect(got.status?.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "True" });

    // kubectl get shows the printer columns.
    const tableResponse = await fetch(`${kube.server}${base}`, {
      headers: { Authorization: `Bearer ${kube.token}`, Accept: "application/json;as=Table;v=v1;g=meta.k8s.io" },
      tls: { ca: kube.caPem },
    });
    const table = (await tableResponse.json()) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
    expect(table.columnDefinitions.map((c) => c.name)).toEqual(["Name", "Provider", "Instance-Type", "Min", "Max", "Ready", "Total", "Valid", "Error", "Age"]);
    expect(table.rows[0]?.cells.slice(0, 8)).toEqual(["crd-a", "local", "local-8gpu", 2, 4, 2, 2, "True"]);

    // Changed: min 3.
    await kube.client.request("PATCH", `${base}/crd-a`, { body: { spec: { scaling: { min_nodes: 3 } } }, contentType: "application/merge-patch+json" });
    await f.until("three nodes", async () => (await f.all()).filter((n) => n.pool === "crd-a" && n.state === "ready").length === 3, { sleepMs: 20 });
    got = await status();
    expect(got.status).toMatchObject({ observedGeneration: 2, appliedGeneration: 2, nodes: { ready: 3, total: 3 } });

    // Rejected by the CRD's schema at apply time, with the field path.
    const refused = await kube.client
      .request("POST", base, {
        body: {
          apiVersion: "navarch.dev/v1alpha1",
          kind: "GpuPool",
          metadata: { name: "crd-bad" },
          spec: { ...spec, scaling: { min_nodes: 4, max_nodes: 2 } },
        },
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(refused).toBeInstanceOf(KubeApiError);
    expect((refused as KubeApiError).status).toBe(422);
    expect((refused as KubeApiError).message).toContain("spec.scaling.max_nodes");

    // Accepted by the CRD (autoscalers are free-form there) but not by the reconciler's own
    // validation: status says where, and the last valid spec stays in force (never half-applied).
    await kube.client.request("PATCH", `${base}/crd-a`, {
      body: { spec: { scaling: { min_nodes: 1, autoscaler: { type: "queue", jobs_per_node: 0 } } } },
      contentType: "application/merge-patch+json",
    });
    await waitFor("rejected by the reconciler", async () => ((await status()).status?.observedGeneration === 3 ? true : undefined));
    got = await status();
    expect(got.status?.appliedGeneration).toBe(2);
    expect(got.status?.lastError).toContain("spec.scaling.autoscaler.jobs_per_node: expected an integer ≥ 1, got 0");
    expect(got.status?.conditions?.find((c) => c.type === "Valid")).toMatchObject({ status: "False", reason: "Invalid" });
    expect(controller.pools().find((p) => p.name === "crd-a")?.scaling).toMatchObject({ min_nodes: 3, max_nodes: 4 });
    for (let n = 0; n < 5; n++) await f.step();
    expect((await f.all()).filter((n) => n.pool === "crd-a" && n.state === "ready")).toHaveLength(3);

    // A resource named like a file pool: the file wins.
    await kube.client.request("POST", base, { body: { apiVersion: "navarch.dev/v1alpha1", kind: "GpuPool", metadata: { name: "from-file" }, spec } });
    await waitFor("the clash reported", async () => {
      await controller.refreshNow();
      const clash = (await kube.client.request("GET", `${base}/from-file`)) as { status?: { conditions?: { type: string; reason: string }[] } };
      return clash.status?.conditions?.find((c) => c.type === "Valid")?.reason === "NameConflict" ? true : undefined;
    });

    // Deleted: scaled to zero first (the finalizer holds the resource), then gone.
    await kube.client.request("DELETE", `${base}/crd-a`);
    await f.until(
      "the pool emptied and removed",
      async () => {
        await controller.refreshNow();
        const left = (await f.all()).filter((n) => n.pool === "crd-a" && !["terminated", "failed"].includes(n.state));
        const exists = await kube.client.request("GET", `${base}/crd-a`).then(
          () => true,
          () => false,
        );
        return left.length === 0 && !exists;
      },
      { sleepMs: 50, timeoutMs: 90_000 },
    );
    expect(await f.store.db.select().from(pools).where(eq(pools.name, "crd-a"))).toEqual([]);
    expect(controller.pools().map((p) => p.name)).toEqual([]);
  }, 180_000);
});

describe("the GpuPool CRD, generated from the config pool's schema", () => {
  test("a GpuPool with every key a config pool has is stored whole (the API server prunes nothing) and is a valid pool", async () => {
    await installCrd("deploy/crds/gpupool.yaml", "gpupools.navarch.dev");
    await createNs("navarch-every-key");
    const spec = {
      providers: ["local"],
      instance_type: "local-8gpu",
      region: "local",
      zones: ["local-a"],
      scaling: {
        min_nodes: 0,
        max_nodes: 4,
        cooldown_period: "2m",
        autoscaler: { type: "composite", mode: "max", autoscalers: [{ type: "reactive", scale_up_threshold: 70, scale_down_threshold: 10 }] },
      },
      health: {
        unhealthy_threshold: 2,
        auto_replace: true,
        drain_timeout: "10m",
        registration_timeout: "20m",
        replacement: "surge",
        remediation: "replace",
        reboot_timeout: "15m",
        reboot_window: "72h",
      },
      labels: { workload: "training", "navarch.dev/tier": "gold" },
      taints: [{ key: "node-type", value: "gpu-optimized", effect: "NoSchedule" }],
      ssh_user: "ubuntu",
      ssh_private_key_path: "/etc/navarch/ssh-key",
      ssh_key_names: ["ops"],
      setup_commands: ["echo {{.NodeID}}"],
    };
    const base = `${GPUPOOL_API}/namespaces/navarch-every-key/gpupools`;
    await kube.client.request("POST", base, {
      body: { apiVersion: GPUPOOL_API.slice("/apis/".length), kind: "GpuPool", metadata: { name: "every-key" }, spec },
    });
    const stored = (await kube.client.request("GET", `${base}/every-key`)) as { spec: Record<string, unknown> };
    expect(stored.spec).toEqual(spec);
    expect(v.safeParse(PoolSchema, { name: "every-key", ...stored.spec }).success).toBe(true);
  }, 30_000);
});

describe("queue metrics", () => {
  test("pending and running pods labelled navarch.dev/pool drive the queue autoscaler", async () => {
    const poolYaml = `  - name: queued\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 1\n      max_nodes: 6\n      cooldown_period: 0s\n      autoscaler:\n        type: queue\n        jobs_per_node: 8\n`;
    const f = await kubeFleet(kube, poolYaml, { log });
    const [first] = await f.ready("queued", 1);
    await createNodes(gpuNode(first!));
    await createNs("jobs");
    // 4 running on the node, 18 waiting for capacity.
    const running4 = Array.from({ length: 4 }, (_, i) => gpuPod(`run-${i}`, "jobs", first, { labels: { "navarch.dev/pool": "queued" } }));
    const pending18 = Array.from({ length: 18 }, (_, i) => gpuPod(`wait-${i}`, "jobs", undefined, { labels: { "navarch.dev/pool": "queued" } }));
    const other = gpuPod("not-ours", "jobs", undefined, { labels: { "navarch.dev/pool": "another" } });
    await createPods("jobs", ...running4, ...pending18, other);
    await running(
      "jobs",
      running4.map((_, i) => `run-${i}`),
    );
    expect(await f.kube.queueMetrics!("queued")).toEqual({ pending: 18, running: 4 });

    // The queue is read beside the loop (a pass never waits for the API server): real time between passes lets it answer.
    await f.until("scaled up to ceil(22 / 8) = 3", async () => (await f.all()).filter((n) => n.pool === "queued" && n.state !== "terminated").length === 3, {
      stepMs: 10_000,
      sleepMs: 10,
    });
    const scale = (await f.store.db.select().from(auditLog).where(eq(auditLog.action, "scale"))).at(-1);
    expect(JSON.stringify(scale?.details)).toContain("queue depth 22 (18 pending + 4 running)");
  }, 60_000);
});

describe("CoreWeave provider", () => {
  test("launches, finds, lists and terminates Node Pools against the documented CRD", async () => {
    await installCrd("test/kube/coreweave-nodepool-crd.yaml", "nodepools.compute.coreweave.com");
    await waitFor(
      "the NodePool CRD served",
      async () =>
        (await kube.client.request("GET", NODEPOOL_PATH).then(
          () => true,
          () => false,
        ))
          ? true
          : undefined,
      30_000,
    );

    // A fake CKS: boots one KWOK Node per targetNodes, labelled like CKS labels them, and reports status.
    const cks = new Informer(kube.client, {
      path: NODEPOOL_PATH,
      schema: NodePoolObject,
      onEvent: (event, pool) => void cksReconcile(event, pool),
    });
    const cksReconcile = async (event: string, pool: NodePoolObject) => {
      const name = pool.metadata.name;
      const nodeName = `${name}-node-0`;
      if (event === "deleted") {
        await kube.client.request("DELETE", `/api/v1/nodes/${nodeName}`).catch(() => undefined);
        return;
      }
      if ((pool.spec.targetNodes ?? 0) > 0 && (pool.status?.currentNodes ?? 0) === 0) {
        await createNodes(gpuNode(nodeName, { labels: { [NODEPOOL_NODE_LABEL]: name, ...pool.spec.nodeLabels }, providerID: `coreweave://${name}/0` }));
        await kube.client.request("PATCH", `${NODEPOOL_PATH}/${name}/status`, {
          body: {
            status: {
              currentNodes: 1,
              conditions: [
                { type: "Valid", status: "True", reason: "Valid", message: "", lastTransitionTime: new Date().toISOString() },
                { type: "AtTarget", status: "True", reason: "AtTarget", message: "", lastTransitionTime: new Date().toISOString() },
              ],
            },
          },
          contentType: "application/merge-patch+json",
        });
      }
    };
    await cks.start();
    try {
      const provider = new CoreWeaveProvider({ source: { kind: "kubeconfig", path: kube.kubeconfigPath } });
      const req = {
        name: "cw-train-0a1b2c3d",
        idempotencyKey: "launch:cw-train-0a1b2c3d:coreweave",
        pool: "cw-train",
        instanceType: "gd-8xh100ib-i128",
        region: "US-EAST-04A",
        tags: { "navarch-managed-by": "navarch", "navarch-pool": "cw-train", "navarch-operation": "launch:cw-train-0a1b2c3d:coreweave" },
      };
      const launched = await provider.launch(req);
      expect(launched).toMatchObject({ id: req.name, provider: "coreweave", instanceType: "gd-8xh100ib-i128", region: "US-EAST-04A", tags: req.tags });
      // A retried launch finds the same Node Pool; another launch cannot take the name.
      expect((await provider.launch(req)).id).toBe(req.name);
      const taken = await provider.launch({ ...req, idempotencyKey: "launch:other" }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(taken).toBeInstanceOf(ProviderError);
      expect((taken as ProviderError).kind).toBe("invalid");

      const pool = await kube.client.request("GET", `${NODEPOOL_PATH}/${req.name}`, {}, NodePoolObject);
      expect(pool.spec).toMatchObject({
        computeClass: "default",
        instanceType: "gd-8xh100ib-i128",
        targetNodes: 1,
        autoscaling: false,
        nodeLabels: { "navarch.dev/node-id": req.name },
      });
      const running = await waitFor(
        "the instance running",
        async () => {
          const got = await provider.get(req.name);
          return got?.state === "running" ? got : undefined;
        },
        30_000,
      );
      expect(running.address).toBe("10.0.0.1");
      expect((await provider.list({ "navarch-managed-by": "navarch" })).map((i) => i.id)).toContain(req.name);
      expect(await provider.list({ "navarch-pool": "another" })).toEqual([]);

      // The documented schema holds: instanceType is immutable.
      const immutable = await kube.client
        .request("PATCH", `${NODEPOOL_PATH}/${req.name}`, { body: { spec: { instanceType: "gd-8xa100-i128" } }, contentType: "application/merge-patch+json" })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect((immutable as KubeApiError).message).toContain("instanceType is immutable");

      // The Node it brought up maps back to the Navarch node by label.
      const f = await kubeFleet(kube, POOL("cwmap", 0, 0), { kubernetes: "  node_mapping: label\n", log });
      await waitFor("the Node seen", () => f.mirror.nodeCache.get(`${req.name}-node-0`));
      expect(f.mirror.mapNode({ id: req.name, hostname: null, instanceId: req.name })).toBe(`${req.name}-node-0`);

      await provider.terminate(req.name);
      await waitFor("the Node Pool gone", async () => ((await provider.get(req.name)) === undefined ? true : undefined));
      await provider.terminate(req.name); // already gone: fine
      await waitFor("its Node gone", async () =>
        (await kube.client.request("GET", `/api/v1/nodes/${req.name}-node-0`).then(
          () => false,
          () => true,
        ))
          ? true
          : undefined,
      );

      // Credentials the API server refuses are an auth error (a human must fix them).
      const bad = new CoreWeaveProvider({ source: { kind: "token", server: kube.server, token: "wrong", caPem: kube.caPem } });
      const refused = await bad.list({}).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((refused as ProviderError).kind).toBe("auth");
    } finally {
      await cks.stop();
    }
  }, 90_000);
});

describe("serve", () => {
  test("navarch serve with a kubernetes section: the mirror drives the loop, GpuPools are served, the Node shows in the node's details", async () => {
    await installCrd("deploy/crds/gpupool.yaml", "gpupools.navarch.dev");
    await createNs("served-pools");
    const dir = tempDir("navarch-serve-kube-");
    const config = testConfig(
      `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\nkubernetes:\n  kubeconfig: ${kube.kubeconfigPath}\n  pools_crd:\n    enabled: true\n    namespace: served-pools\npools: []\n`,
    );
    const cloud = new SimulatedCloud({ name: "local", now: Date.now, launchLatencyMs: 0 });
    process.env.NAVARCH_KUBE_TEST_TOKEN = "kube-serve-token";
    const rec = await startReconciler(
      {
        host: "127.0.0.1",
        port: 0,
        dataDir: dir,
        databaseUrl: `file:${join(dir, "navarch.db")}`,
        authTokenEnv: "NAVARCH_KUBE_TEST_TOKEN",
        heartbeatIntervalSeconds: 10,
      },
      log,
      Date.now,
      { config, providers: new Map([["local", cloud]]), intervalMs: 100 },
    );
    try {
      const agents = new SimulatedAgents(rec.store.db, cloud, Date.now);
      await kube.client.request("POST", `${GPUPOOL_API}/namespaces/served-pools/gpupools`, {
        body: {
          apiVersion: "navarch.dev/v1alpha1",
          kind: "GpuPool",
          metadata: { name: "served" },
          spec: { provider: "local", instance_type: "local-8gpu", region: "local", scaling: { min_nodes: 1 } },
        },
      });
      const id = await waitFor(
        "a node of the GpuPool registered",
        async () => {
          await agents.tick();
          const [row] = await rec.store.db.select().from(nodes).where(eq(nodes.pool, "served"));
          return row?.bootId ? row.id : undefined;
        },
        30_000,
      );
      await createNodes(gpuNode(id));
      const api = (path: string) =>
        fetch(`${rec.url}/v1${path}`, { headers: { Authorization: "Bearer kube-serve-token" } }).then(
          (r) => r.json() as Promise<{ node: { k8sNodeName: string | null } }>,
        );
      await waitFor("the mapping in the node's details", async () => ((await api(`/nodes/${id}`)).node.k8sNodeName === id ? true : undefined), 10_000);
    } finally {
      await rec.stop();
      delete process.env.NAVARCH_KUBE_TEST_TOKEN;
    }
  }, 60_000);
});

describe("clients", () => {
  const whoami = async (client: KubeClient) =>
    (
      (await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
        body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
      })) as { status: { userInfo: { username: string } } }
    ).status.userInfo.username;

  test("kubeconfig with a client certificate, a bearer token, and an in-cluster service account", async () => {
    const cert = await KubeClient.connect({ source: { kind: "kubeconfig", path: kube.certKubeconfigPath } });
    expect(await whoami(cert)).toBe("navarch-admin");
    cert.close();
    const token = await KubeClient.connect({ source: { kind: "token", server: kube.server, token: kube.token, caPem: kube.caPem } });
    expect(await whoami(token)).toBe("navarch-test-admin");
    token.close();

    // A service account with only what Navarch needs, its token requested like the kubelet would.
    await createNs("navarch-system");
    await kube.createAll("/api/v1/namespaces/navarch-system/serviceaccounts", [{ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "navarch" } }]);
    await kube.createAll("/apis/rbac.authorization.k8s.io/v1/clusterroles", [NAVARCH_CLUSTER_ROLE]);
    await kube.createAll("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", [
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "navarch" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "navarch" },
        subjects: [{ kind: "ServiceAccount", name: "navarch", namespace: "navarch-system" }],
      },
    ]);
    const tr = (await kube.client.request("POST", "/api/v1/namespaces/navarch-system/serviceaccounts/navarch/token", {
      body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
    })) as { status: { token: string } };
    const root = tempDir("navarch-incluster-");
    const sa = join(root, "var/run/secrets/kubernetes.io/serviceaccount");
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, "token"), tr.status.token);
    writeFileSync(join(sa, "ca.crt"), kube.caPem);
    writeFileSync(join(sa, "namespace"), "navarch-system");
    const url = new URL(kube.server);
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = url.hostname;
    process.env.KUBERNETES_SERVICE_PORT = url.port;
    try {
      const inCluster = await KubeClient.connect({ source: { kind: "in-cluster", root } });
      expect(inCluster.namespace).toBe("navarch-system");
      expect(await whoami(inCluster)).toBe("system:serviceaccount:navarch-system:navarch");
      await inCluster.list("/api/v1/nodes", KubeNode); // allowed by the role
      const denied = await inCluster.request("DELETE", "/api/v1/namespaces/default").then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((denied as KubeApiError).status).toBe(403);
      inCluster.close();
    } finally {
      for (const [k, val] of [
        ["KUBERNETES_SERVICE_HOST", saved.host],
        ["KUBERNETES_SERVICE_PORT", saved.port],
      ] as const) {
        if (val === undefined) delete process.env[k];
        else process.env[k] = val;
      }
    }
  }, 60_000);

  test("CA and client certificate work in a compiled binary", async () => {
    const dir = tempDir("navarch-compiled-kube-");
    const out = join(dir, "kube-probe");
    const build = Bun.spawn([process.execPath, "build", "--compile", join(REPO_ROOT, "test/kube/probe.ts"), "--outfile", out], {
      cwd: REPO_ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await build.exited).toBe(0);
    // From another directory with no node_modules around (bun-notes.md).
    const run = Bun.spawn([out, kube.certKubeconfigPath], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ username: "navarch-admin", nodes: expect.any(Number) });
  }, 120_000);

  test("watches restart on every error: the API server goes away and comes back", async () => {
    const client = await KubeClient.connect({ source: { kind: "kubeconfig", path: kube.kubeconfigPath } });
    const seen: string[] = [];
    const informer = new Informer(client, { path: "/api/v1/nodes", schema: KubeNode, onEvent: (event, n) => seen.push(`${event}:${n.metadata.name}`) });
    await informer.start();
    try {
      await createNodes(gpuNode("watch-before"));
      await waitFor("seen before", () => (seen.includes("added:watch-before") ? true : undefined));
      await kube.restartApiServer(2000);
      // Created while the watch was broken and after: both are seen, with no 410 involved.
      await createNodes(gpuNode("watch-after"));
      await waitFor("seen after the restart", () => (seen.includes("added:watch-after") ? true : undefined), 30_000);
      expect(informer.restarts).toBeGreaterThan(0);
      expect(informer.get("watch-before")).toBeDefined();
    } finally {
      await informer.stop();
      client.close();
    }
  }, 120_000);
});

/** What the reconciler needs (the README's RBAC): Nodes, pods, evictions, GpuPools, Node Pools. */
const NAVARCH_CLUSTER_ROLE = {
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "ClusterRole",
  metadata: { name: "navarch" },
  rules: [
    { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch", "patch"] },
    { apiGroups: [""], resources: ["nodes/status"], verbs: ["patch"] },
    { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "delete"] },
    { apiGroups: [""], resources: ["pods/eviction"], verbs: ["create"] },
    { apiGroups: ["navarch.dev"], resources: ["gpupools"], verbs: ["get", "list", "watch", "patch"] },
    { apiGroups: ["navarch.dev"], resources: ["gpupools/status"], verbs: ["patch"] },
    { apiGroups: ["compute.coreweave.com"], resources: ["nodepools"], verbs: ["get", "list", "watch", "create", "delete"] },
    { apiGroups: ["authentication.k8s.io"], resources: ["selfsubjectreviews"], verbs: ["create"] },
  ],
};
