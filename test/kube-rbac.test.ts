// The reconciler as the chart's ServiceAccount, against a real control plane: the chart's
// CRD, ServiceAccount and RBAC applied with kubectl, a token for the ServiceAccount from the
// TokenRequest API (`kubectl create token`), and the real reconcile loop (test/kube/fleet.ts)
// using only that token. A GpuPool comes up and gets its status, a fault cordons a Node, a
// drain evicts, a PDB-blocked pod is deleted at the deadline, a human's `kubectl uncordon`
// cancels the incident. kubectl (built like the control plane) is the operator's client:
// `get gpupools`, `describe node`, `uncordon`. Verbs the role lacks are refused, and the API
// server's audit log shows the reconciler used the rules granted and nothing else.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureKubeBinaries, getNode, gpuNode, gpuPod, podsOn, startKubeHarness, type KubeHarness } from "./kube/harness.ts";
import { kubeFleet, stopKubeFleets, type KubeFleet } from "./kube/fleet.ts";
import { ensureKubectl, helmCrds, helmTemplate, kubectl, parseObjects } from "./kube/tools.ts";
import { tempDir, waitFor } from "./support.ts";

const SA_USER = "system:serviceaccount:navarch:navarch-control-plane";
let kube: KubeHarness;
/** The ServiceAccount's kubeconfig (its token, the cluster's CA). */
let saKubeconfig: string;
let rules: { namespace?: string; apiGroups: string[]; resources: string[]; verbs: string[] }[];
const log = (line: string) => {
  if (process.env.NAVARCH_TEST_VERBOSE) console.log(line);
};
const admin = () => kube.kubeconfigPath;
const ok = async (args: string[], stdin?: string) => {
  const r = await kubectl(admin(), args, stdin);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

beforeAll(async () => {
  await ensureKubectl();
  const { bin } = await ensureKubeBinaries((line) => console.log(line));
  kube = await startKubeHarness({ bin, log, audit: true });
  await ok(["create", "namespace", "navarch"]);
  await ok(["apply", "--server-side", "-f", "-"], await helmCrds());
  await ok(["wait", "--for=condition=Established", "--timeout=30s", "crd/gpupools.navarch.dev"]);
  // The chart's identity and roles, as helm install would create them.
  const identity = await helmTemplate(["--set", "agent.enabled=false", "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"]);
  await ok(["apply", "--server-side", "-f", "-"], identity);
  rules = parseObjects(identity).flatMap((o) =>
    o.kind === "ClusterRole" || o.kind === "Role"
      ? ((o as unknown as { rules: typeof rules }).rules ?? []).map((r) => ({ ...r, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}) }))
      : [],
  );
  const token = (await ok(["create", "token", "navarch-control-plane", "-n", "navarch", "--duration=2h"])).trim();
  saKubeconfig = join(tempDir("navarch-sa-"), "kubeconfig");
  writeFileSync(
    saKubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test", cluster: { server: kube.server, "certificate-authority-data": Buffer.from(kube.caPem).toString("base64") } }],
      users: [{ name: "navarch", user: { token } }],
      contexts: [{ name: "navarch", context: { cluster: "test", user: "navarch", namespace: "navarch" } }],
      "current-context": "navarch",
    }),
  );
}, 45 * 60_000);

afterAll(async () => {
  await stopKubeFleets();
  await kube?.stop();
}, 60_000);

const POOL = `  - name: rbac\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 4\n      max_nodes: 4\n    health:\n      unhealthy_threshold: 1\n      remediation: replace\n      drain_timeout: 1m\n`;
// Three faults at once in a fleet of four would trip the breaker (a storm): not what this tests.
const ROOMY =
  "safety:\n  unhealthy_budget:\n    floor: 10\n  max_in_flight_per_pool: 10\n  max_in_flight_fleet: 20\n  breaker:\n    max_cordons: 100\n    percent: 100\n";
const HOT = { check: "temperature", code: "thermal", severity: "unhealthy" as const, action: "reset_gpu" as const, message: "GPU 2: 98°C" };

describe("the reconciler as the chart's ServiceAccount", () => {
  let f: KubeFleet;

  test("it is who the reconciler is: kubectl auth whoami with its kubeconfig", async () => {
    const r = await kubectl(saKubeconfig, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    // whoami (SelfSubjectReview) is allowed to every authenticated user by the cluster's own roles.
    expect(r.stdout).toBe(SA_USER);
  });

  test("GpuPool status, kubectl get gpupools; a fault cordons (kubectl describe node), drains, deletes at the deadline; kubectl uncordon cancels", async () => {
    f = await kubeFleet(kube, POOL, {
      kubeconfigPath: saKubeconfig,
      extra: ROOMY,
      kubernetes: "  pools_crd:\n    enabled: true\n    namespace: navarch\n  drain:\n    max_backoff: 1s\n",
      pools: true,
      log,
    });
    // A pool from a GpuPool, applied by the operator with kubectl.
    await ok(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "navarch.dev/v1alpha1",
        kind: "GpuPool",
        metadata: { name: "crd-pool", namespace: "navarch" },
        spec: { provider: "local", instance_type: "local-8gpu", region: "local", scaling: { min_nodes: 1, max_nodes: 2 } },
      }),
    );
    const [a, b, c] = await f.ready("rbac", 4);
    await f.until("the GpuPool's node ready", async () => (await f.all()).some((n) => n.pool === "crd-pool" && n.state === "ready"), { sleepMs: 20 });
    const table = await waitFor(
      "kubectl get gpupools shows 1 ready of 1",
      async () => {
        await f.kube.pools!.refreshNow();
        const out = await ok(["get", "gpupools", "-n", "navarch"]);
        return /^crd-pool\s+local\s+local-8gpu\s+1\s+2\s+1\s+1\s+True\s+\d+s$/m.test(out) ? out : undefined;
      },
      20_000,
    );
    expect(table.split("\n")[0]!.trim().split(/\s+/)).toEqual(["NAME", "PROVIDER", "INSTANCE-TYPE", "MIN", "MAX", "READY", "TOTAL", "VALID", "AGE"]);
    expect(await ok(["get", "gpupools", "-n", "navarch", "-o", "wide"])).toMatch(
      /^NAME\s+PROVIDER\s+INSTANCE-TYPE\s+MIN\s+MAX\s+READY\s+TOTAL\s+VALID\s+ERROR\s+AGE$/m,
    );

    // Kubernetes Nodes for the file pool's machines; a job on a; b's only replica under a PDB; c with scratch data.
    await kube.createAll("/api/v1/nodes", [gpuNode(a!), gpuNode(b!), gpuNode(c!)]);
    await kube.createAll("/api/v1/namespaces", [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "jobs" } }]);
    await kube.createAll("/api/v1/namespaces/jobs/pods", [
      gpuPod("job-a", "jobs", a),
      gpuPod("solo-b", "jobs", b, { labels: { app: "solo-b" } }),
      gpuPod("scratch-c", "jobs", c, { emptyDir: true }),
    ]);
    await ok(["create", "poddisruptionbudget", "solo-b", "-n", "jobs", "--selector=app=solo-b", "--min-available=1"]);
    await ok(["wait", "pod/job-a", "pod/solo-b", "pod/scratch-c", "-n", "jobs", "--for=jsonpath={.status.phase}=Running", "--timeout=30s"]);
    await waitFor("the mirror sees the Nodes", () =>
      f.mirror.nodeCache.get(a!) && f.mirror.nodeCache.get(b!) && f.mirror.nodeCache.get(c!) ? true : undefined,
    );

    for (const id of [a!, b!, c!]) await f.agents.event(id, HOT, 2);
    await f.until(
      "all three cordoned",
      async () => (await f.all()).filter((n) => [a, b, c].includes(n.id) && ["cordoned", "draining"].includes(n.state)).length === 3,
    );
    await waitFor("a's cordon on its Node", async () =>
      (await getNode(kube.client, a!)).spec.taints?.some((t) => t.key === "navarch.dev/unhealthy") ? true : undefined,
    );
    await f.mirror.settle();
    // What an operator sees: the condition with Navarch's verdict, the taint, unschedulable.
    const described = await ok(["describe", "node", a!]);
    expect(described).toMatch(/^\s+GpuHealthy\s+False\s+.*GpuUnhealthy\s+.*98°C/m);
    expect(described).toMatch(/^Taints:\s+navarch\.dev\/unhealthy=unhealthy:NoSchedule$/m);
    expect(described).toMatch(/^Unschedulable:\s+true$/m);
    expect(described).toContain("navarch.dev/cordoned-by: navarch");

    // c: the operator uncordons it with kubectl; Navarch cancels its incident.
    const incident = (await f.node(c!)).incidentId;
    expect(incident).not.toBeNull();
    await f
      .until("c draining (its scratch pod is not evicted)", async () => (await f.node(c!)).state === "draining", { sleepMs: 100, timeoutMs: 20_000 })
      .catch(async (err: unknown) => {
        throw new Error(`${String(err)}; ${JSON.stringify((await f.all()).map((n) => [n.id, n.state, n.stateReason]))}`);
      });
    expect((await ok(["uncordon", c!])).trim()).toBe(`node/${c} uncordoned`);
    await waitFor("c's incident cancelled", async () => ((await f.incident(incident))?.outcome === "cancelled" ? true : undefined), 20_000);
    expect((await f.node(c!)).state).toBe("ready");

    // a: drained through the Eviction API; b: its PDB blocks the eviction, and at the deadline the pod is deleted.
    await f.until(
      "a and b drained and on their way out",
      async () => (await f.all()).filter((n) => [a, b].includes(n.id) && ["terminating", "terminated"].includes(n.state)).length === 2,
      { stepMs: 10_000, sleepMs: 200, timeoutMs: 90_000 },
    );
    expect((await podsOn(kube.client, a!)).filter((p) => !p.metadata.deletionTimestamp)).toEqual([]);
    await waitFor(
      "solo-b deleted",
      async () => ((await podsOn(kube.client, b!)).filter((p) => !p.metadata.deletionTimestamp).length === 0 ? true : undefined),
      20_000,
    );
    expect(await ok(["get", "pods", "-n", "jobs", "-o", "name"])).toBe("pod/scratch-c\n");
  }, 180_000);

  test("what the role lacks is refused: Secrets, deleting Nodes, creating workloads, GpuPools of another namespace", async () => {
    const refused = async (args: string[]) => {
      const r = await kubectl(saKubeconfig, args);
      expect(r.code, `kubectl ${args.join(" ")} was allowed`).not.toBe(0);
      expect(r.stderr).toMatch(/forbidden/i);
      expect(r.stderr).toContain(`User "${SA_USER}" cannot`);
    };
    await refused(["get", "secrets", "-n", "navarch"]);
    await refused(["delete", "node", "some-node", "--dry-run=server"]);
    await refused(["create", "deployment", "x", "--image=registry.example/x", "-n", "navarch", "--dry-run=server"]);
    await refused(["get", "gpupools", "-n", "default"]);
    await refused(["get", "poddisruptionbudgets", "-A"]);
    await refused(["get", "configmaps", "-n", "navarch"]);
    // The rules are what RBAC evaluates, verb by verb.
    const can = async (verb: string, resource: string, ns = "navarch") => {
      const [res, sub] = resource.split("/");
      return (await kubectl(saKubeconfig, ["auth", "can-i", verb, res!, "-n", ns, ...(sub ? [`--subresource=${sub}`] : [])])).stdout.trim();
    };
    expect(await can("patch", "nodes")).toBe("yes");
    expect(await can("update", "nodes")).toBe("no");
    expect(await can("patch", "nodes/status")).toBe("yes");
    expect(await can("create", "pods/eviction", "jobs")).toBe("yes");
    expect(await can("delete", "pods", "jobs")).toBe("yes");
    expect(await can("get", "pods", "jobs")).toBe("no");
    expect(await can("watch", "pods", "jobs")).toBe("no");
    expect(await can("patch", "gpupools.navarch.dev")).toBe("yes");
    expect(await can("delete", "gpupools.navarch.dev")).toBe("no");
    expect(await can("patch", "gpupools.navarch.dev", "default")).toBe("no");
  }, 60_000);

  test("the audit log: the reconciler used the rules granted and nothing else, and was never refused", async () => {
    await stopKubeFleets();
    const path = kube.auditLogPath!;
    const events = readFileSync(path, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(
        (l) =>
          JSON.parse(l) as {
            user: { username: string };
            userAgent?: string;
            verb: string;
            objectRef?: { apiGroup?: string; resource?: string; subresource?: string; namespace?: string };
            responseStatus?: { code?: number };
          },
      );
    // The reconciler's own requests (kubectl's, above, carry kubectl's user agent).
    const ours = events.filter((e) => e.user.username === SA_USER && e.userAgent === "navarch" && e.objectRef?.resource);
    expect(ours.length).toBeGreaterThan(20);
    const refusedCalls = ours.filter((e) => e.responseStatus?.code === 403);
    expect(refusedCalls.map((e) => `${e.verb} ${e.objectRef?.resource}`)).toEqual([]);
    const key = (group: string, resource: string, verb: string) => `${verb} ${group || "core"}/${resource}`;
    const used = new Set(
      ours.map((e) => key(e.objectRef!.apiGroup ?? "", e.objectRef!.resource! + (e.objectRef!.subresource ? `/${e.objectRef!.subresource}` : ""), e.verb)),
    );
    const granted = new Set(rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => key(g, res, v))))));
    for (const call of used) expect(granted.has(call), `${call} used but not granted`).toBe(true);
    // And every rule was needed by these flows: none is there just in case.
    expect([...granted].filter((g) => !used.has(g)).sort()).toEqual([]);
    expect([...used].sort()).toEqual([...granted].sort());
  }, 30_000);
});
