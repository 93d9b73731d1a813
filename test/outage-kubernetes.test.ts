// The Kubernetes API failing under a running Navarch, on the real parts: the compiled `navarch
// serve` with a local pool of compiled agents (test/faults/served.ts) reaches a real
// kube-apiserver (test/kube/harness.ts) through a link the test cuts (test/faults/link.ts).
// What the issue saw: with the API server not answering at start, no pass ran, the lease
// flapped between "leader" and "standby (the leader is <itself>)", /readyz said ready and
// SIGTERM was ignored for over a minute. Now: the pool comes up, an Xid 79 is quarantined in
// Navarch at once and says what its cordon waits for, the cordon reaches the API within one
// retry once it answers, a signal stops serve within 5 s, and the lease never flaps. The same
// when the API server is paused (SIGSTOP) or killed in the middle of a drain.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ANNOTATIONS } from "../reconciler/schedulers/kubernetes/node-marks.ts";
import { FaultyLink } from "./faults/link.ts";
import { ServedFleet } from "./faults/served.ts";
import { ensureKubeBinaries, getNode, gpuNode, gpuPod, namespace, startKubeHarness, type KubeHarness } from "./kube/harness.ts";
import { waitFor } from "./support.ts";

let kube: KubeHarness;
let link: FaultyLink;
const fleets: ServedFleet[] = [];

beforeAll(async () => {
  const { bin } = await ensureKubeBinaries((line) => console.log(line));
  kube = await startKubeHarness({ bin });
  link = new FaultyLink({ port: Number(new URL(kube.server).port) });
}, 45 * 60_000);

afterAll(async () => {
  kube?.signalApiServer("SIGCONT");
  for (const f of fleets) await f.stop();
  link?.stop();
  await kube?.stop();
}, 60_000);

async function served(health?: string, size = 2): Promise<ServedFleet> {
  const f = await ServedFleet.create({
    sections: `kubernetes:\n  server: https://${link.address}\n  token_env: KUBE_TOKEN\n  ca_file: ${kube.caPath}\n`,
    env: { KUBE_TOKEN: kube.token },
    size,
    ...(health !== undefined ? { health } : {}),
  });
  fleets.push(f);
  return f;
}

/** Whether Node `name` carries Navarch's cordon (read past the link: the harness's own client). */
async function cordonedInKubernetes(name: string): Promise<boolean> {
  const node = await getNode(kube.client, name).catch(() => undefined);
  return node?.spec.unschedulable === true && node.metadata.annotations?.[ANNOTATIONS.cordonedBy] === "navarch";
}

describe("the Kubernetes API does not answer", () => {
  test("from start: the pool comes up, an Xid 79 is quarantined at once, SIGTERM stops serve; the cordon lands within one retry once the API answers, after reading what changed", async () => {
    link.set("blackhole");
    const f = await served(undefined, 3);
    const started = performance.now();
    await f.start();
    const [a, b, c] = await f.ready(3);
    console.log(`with the API server black-holed, the local pool came up in ${Math.round(performance.now() - started)} ms`);
    await kube.createAll("/api/v1/nodes", [gpuNode(a!), gpuNode(b!), gpuNode(c!)]);

    const quarantineMs = await f.xid(a!);
    console.log(`Xid 79 → out of service in Navarch: ${Math.round(quarantineMs)} ms (the API server not answering)`);
    expect(quarantineMs).toBeLessThan(10_000);
    const node = await waitFor("a's reason says what its cordon waits for", async () => {
      const n = await f.node(a!);
      return n?.stateReason?.includes("waiting for the Kubernetes API") ? n : undefined;
    });
    expect((await f.incident(node.incidentId!))?.status).toContain("waiting for the Kubernetes API");
    const readyz = await f.readyz();
    expect(readyz.status).toBe(200);
    expect(readyz.text).toMatch(/^ready \(leader, lease epoch 1\); degraded: kubernetes \(the Kubernetes API at https:\/\/127\.0\.0\.1:\d+, not reached since/);
    const dep = await f.dependency("kubernetes");
    expect(dep?.state).not.toBe("up");
    expect(dep?.queued).toContainEqual(expect.objectContaining({ action: "cordon", node: a }));

    // The SIGTERM, ignored for over a minute: now within 5 s.
    const stop = await f.signal("SIGTERM");
    console.log(`SIGTERM with the API server black-holed: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(5_000);
    expect(f.leaseFlaps()).toEqual([]);
    expect(f.log().match(/leading \(lease epoch \d+\)/g)).toHaveLength(1);

    // Again, still black-holed: the start does not wait for the API; more faults are quarantined too.
    await f.start();
    expect(await f.xid(b!)).toBeLessThan(10_000);
    expect(await f.xid(c!)).toBeLessThan(10_000);
    expect(await cordonedInKubernetes(a!)).toBe(false);
    // Meanwhile a human returns a to service through Navarch, and c's Node is deleted.
    expect((await f.fleet.run([f.fleet.navarch, "uncordon", a!, "-s", f.url], { NAVARCH_AUTH_TOKEN: f.fleet.token })).code).toBe(0);
    await kube.client.request("DELETE", `/api/v1/nodes/${c}`);

    // The API answers again: b's cordon lands within one retry (the Nodes are listed at most
    // 10 s apart); a's is dropped (in service now), c's skipped (no Node), each read first.
    link.set("up");
    const back = performance.now();
    await waitFor("b cordoned in Kubernetes", async () => ((await cordonedInKubernetes(b!)) ? true : undefined), 30_000);
    const landedMs = performance.now() - back;
    console.log(`the cordon reached the API ${Math.round(landedMs)} ms after it answered again`);
    expect(landedMs).toBeLessThan(15_000);
    await waitFor("the dependency up", async () => ((await f.dependency("kubernetes"))?.state === "up" ? true : undefined));
    expect((await f.readyz()).text).not.toContain("degraded");
    expect(f.log().match(new RegExp(`carrying out the queued cordon of ${b}`, "g"))).toHaveLength(1);
    expect(f.log()).toContain(`the queued cordon of ${a} is dropped: the node is ready now`);
    await Bun.sleep(2_000);
    expect(await cordonedInKubernetes(a!)).toBe(false);
    expect(f.log()).toMatch(new RegExp(`no Node for ${c}|Node ${c} no longer exists`));
    expect((await f.dependency("kubernetes"))?.queuedCount).toBe(0);

    const again = await f.signal("SIGINT");
    expect(again.ms).toBeLessThan(5_000);
    expect(f.leaseFlaps()).toEqual([]);
  }, 240_000);

  test("mid-drain: paused (SIGSTOP), then killed: Navarch goes on quarantining, the writes land once it is back, SIGTERM stops serve within 5 s", async () => {
    link.set("up");
    const f = await served();
    await f.start();
    const [a, b] = await f.ready(2);
    await kube.createAll("/api/v1/nodes", [gpuNode(a!), gpuNode(b!)]);
    await kube.createAll("/api/v1/namespaces", [namespace("outage")]);
    // One pod on a, that its PodDisruptionBudget never lets go: a's drain stays under way.
    await kube.createAll("/api/v1/namespaces/outage/pods", [gpuPod("job-0", "outage", a, { labels: { app: "job" } })]);
    await kube.client.request("POST", "/apis/policy/v1/namespaces/outage/poddisruptionbudgets", {
      body: {
        apiVersion: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: { name: "job" },
        spec: { minAvailable: 1, selector: { matchLabels: { app: "job" } } },
      },
    });
    await f.mapped(a!);
    await f.mapped(b!);
    await f.xid(a!);
    await waitFor("a cordoned in Kubernetes", async () => ((await cordonedInKubernetes(a!)) ? true : undefined), 30_000);
    await waitFor(
      "a's drain under way",
      async () => ((await f.node(a!))?.state === "draining" && (await f.node(a!))?.stateReason?.includes("pod") ? true : undefined),
      30_000,
    );

    kube.signalApiServer("SIGSTOP");
    try {
      const quarantineMs = await f.xid(b!);
      console.log(`Xid 79 → out of service in Navarch with the API server paused mid-drain: ${Math.round(quarantineMs)} ms`);
      expect(quarantineMs).toBeLessThan(10_000);
      // Requests time out after 30 s: then the API is down, and b's cordon waits for it.
      await waitFor("kubernetes down", async () => ((await f.dependency("kubernetes"))?.state === "down" ? true : undefined), 60_000);
      expect((await f.readyz()).text).toContain("degraded: kubernetes");
      expect((await f.dependency("kubernetes"))?.queued.some((q) => q.node === b)).toBe(true);
      await waitFor(
        "a's status says what the drain waits for",
        async () => ((await f.node(a!))?.stateReason?.includes("waiting for the Kubernetes API") ? true : undefined),
        30_000,
      );
    } finally {
      kube.signalApiServer("SIGCONT");
    }
    const back = performance.now();
    await waitFor("b cordoned in Kubernetes", async () => ((await cordonedInKubernetes(b!)) ? true : undefined), 30_000);
    console.log(`b's cordon reached the API ${Math.round(performance.now() - back)} ms after it was resumed`);
    expect(performance.now() - back).toBeLessThan(15_000);

    // Killed and started again (every connection drops): a's drain goes on, still held by its PDB.
    await kube.restartApiServer(2_000);
    await waitFor("kubernetes up again", async () => ((await f.dependency("kubernetes"))?.state === "up" ? true : undefined), 30_000);
    expect((await f.node(a!))?.state).toBe("draining");
    expect(await cordonedInKubernetes(a!)).toBe(true);

    // Paused again, with requests hanging on it: a signal still stops serve within 5 s.
    kube.signalApiServer("SIGSTOP");
    try {
      await Bun.sleep(2_000);
      const stop = await f.signal("SIGTERM");
      console.log(`SIGTERM with the API server paused: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
      expect(stop.ms).toBeLessThan(5_000);
    } finally {
      kube.signalApiServer("SIGCONT");
    }
    expect(f.leaseFlaps()).toEqual([]);
  }, 240_000);

  test("a human's kubectl uncordon of a held node closes Navarch's incident as cancelled", async () => {
    link.set("up");
    // Held for a human after its drain: the pool does not replace on its own.
    const f = await served("      drain_timeout: 30m\n      auto_replace: false\n");
    await f.start();
    const [a] = await f.ready(2);
    await kube.createAll("/api/v1/nodes", [gpuNode(a!)]);
    await f.mapped(a!);
    await f.xid(a!);
    await waitFor("a held", async () => ((await f.node(a!))?.state === "held" ? true : undefined), 60_000);
    const incidentId = (await f.node(a!))!.incidentId!;
    expect((await f.incident(incidentId))?.outcome).toBe("held");
    await waitFor("a cordoned in Kubernetes", async () => ((await cordonedInKubernetes(a!)) ? true : undefined), 30_000);
    await kube.client.request("PATCH", `/api/v1/nodes/${a}`, { body: { spec: { unschedulable: false } }, contentType: "application/merge-patch+json" });
    await waitFor("a back in service", async () => ((await f.node(a!))?.state === "ready" ? true : undefined), 30_000);
    expect(f.log()).toContain(`cancelled Navarch's incident on ${a}`);
    expect(await f.incident(incidentId)).toMatchObject({ outcome: "cancelled" });
    await f.signal("SIGTERM");
  }, 180_000);
});
