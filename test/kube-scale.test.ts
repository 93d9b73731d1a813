// Scale: 1,000 KWOK DGX H100 Nodes (8 nvidia.com/gpu each) with pods on them, mirrored by
// the real reconcile loop (real time, simulated cloud and agents in the store). Faults are
// injected as agent events, first one at a time, then in a burst (100 faults; 500 from 5,000
// Nodes up). Prints fault→cordon latency p50/p99 for the single faults, from the fault (the
// event's own time, when the agent saw it) and from when it was stored, to the Node being
// unschedulable with our taint as a watcher of the API server sees it (goal: p99 < 1 s), and
// cordon throughput for the burst (goal ≥ 20 nodes/s, set by the cordon-rate rail, not by the
// client); every faulted node is cordoned and drained. NAVARCH_KUBE_SCALE_NODES sets the size.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { and, eq, inArray } from "drizzle-orm";
import * as v from "valibot";
import { Pod } from "../reconciler/clients/kube/types.ts";
import { healthEvents, incidents } from "../schema/db.ts";
import { waitFor } from "./support.ts";
import { watchCordons } from "./kube/cordon-watch.ts";
import { kubeFleet, stopKubeFleets } from "./kube/fleet.ts";
import { ensureKubeBinaries, gpuNode, gpuPod, namespace, startKubeHarness, type KubeHarness } from "./kube/harness.ts";

const NODES = Number(process.env.NAVARCH_KUBE_SCALE_NODES ?? 1000);
/** Single faults: at 5,000 Nodes enough that p99 is not simply the slowest one. */
const SINGLE = NODES >= 5000 ? 100 : 40;
const BURST = NODES >= 5000 ? 500 : 100;
const PODS_PER_NODE = 2;
/** The cordon-rate rail: 40 new cordons/s after a burst of 40. */
const RAIL_PER_MINUTE = 2400;
const RAIL_BURST = 40;
/** The loop's tick between passes (a fault also wakes it, as the API does). */
const LOOP_INTERVAL_MS = 200;

let kube: KubeHarness;
beforeAll(async () => {
  const { bin, builtInSeconds } = await ensureKubeBinaries((line) => console.log(line));
  if (builtInSeconds !== undefined) console.log(`kubernetes binaries built in ${builtInSeconds} s`);
  // No node leases at scale: see KubeHarnessOptions.nodeLeases (the API server's CPU, not ours).
  kube = await startKubeHarness({ bin, nodeLeases: NODES < 5000 });
  console.log(`kubernetes harness started in ${kube.startMs} ms`);
}, 45 * 60_000);

afterAll(async () => {
  await stopKubeFleets();
  await kube?.stop();
}, 60_000);

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `p50 ${quantile(sorted, 0.5).toFixed(0)} ms, p99 ${quantile(sorted, 0.99).toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms`;
};

test(
  `${NODES} KWOK GPU nodes: fault→cordon latency and a burst of ${BURST} faults, all cordoned and drained`,
  async () => {
    const started = performance.now();
    const f = await kubeFleet(
      kube,
      `  - name: scale\n    provider: local\n    instance_type: dgxh100.80g\n    region: local\n    scaling:\n      min_nodes: ${NODES}\n      max_nodes: ${NODES}\n    health:\n      drain_timeout: 30m\n      registration_timeout: 1h\n`,
      {
        realTime: true,
        // Heartbeats are not needed during the run (nothing goes Lost in 15 min).
        server: "server:\n  heartbeat_interval: 5m\n  health_check_interval: 10m\n  autoscale_interval: 10m\n",
        // Every faulted node may drain at once: the remediation caps are above SINGLE + BURST.
        extra: `safety:\n  unhealthy_budget:\n    floor: ${SINGLE + BURST}\n  max_in_flight_per_pool: ${SINGLE + BURST}\n  max_in_flight_fleet: ${SINGLE + BURST}\n  cordon_rate:\n    per_minute: ${RAIL_PER_MINUTE}\n    burst: ${RAIL_BURST}\n  breaker:\n    max_cordons: 5000\n    percent: 100\n`,
        kubernetes: "  client:\n    cordon_qps: 200\n    cordon_burst: 200\n    eviction_qps: 50\n    eviction_burst: 50\n    qps: 200\n    burst: 200\n",
      },
    );
    // The pool comes up through the loop: launch, register, first health check, Ready.
    await f.until("the pool ready", async () => (await f.all()).filter((n) => n.state === "ready").length === NODES, { sleepMs: 0, timeoutMs: 300_000 });
    const ids = (await f.all()).map((n) => n.id).sort();
    const upAt = performance.now();

    // The Kubernetes side: a Node per Navarch node (node_mapping node_name), pods on each.
    await kube.createAll(
      "/api/v1/nodes",
      ids.map((id) => gpuNode(id)),
      64,
    );
    await kube.createAll("/api/v1/namespaces", [namespace("scale")]);
    const pods = ids.flatMap((id) => Array.from({ length: PODS_PER_NODE }, (_, i) => gpuPod(`${id}-job-${i}`, "scale", id, { gpus: 4 })));
    await kube.createAll("/api/v1/namespaces/scale/pods", pods, 64);
    await waitFor("the mirror sees every Node", () => (f.mirror.nodeCache.size >= NODES ? true : undefined), 120_000);
    const k8sAt = performance.now();
    // KWOK then writes every pod's status (Running), one write per pod: at 5,000 Nodes that
    // holds the API server at a full core for about a minute. Faults are measured once it is
    // done, in a settled cluster, as a running fleet's are; otherwise each run's figures depend
    // on how far KWOK had got.
    const notRunning = v.object({ items: v.array(v.unknown()) });
    await waitFor(
      "KWOK has every pod Running",
      async () => {
        const page = await kube.client.request(
          "GET",
          "/api/v1/namespaces/scale/pods",
          { query: { fieldSelector: "status.phase!=Running", limit: 1 } },
          notRunning,
        );
        if (page.items.length > 0) await Bun.sleep(1000);
        return page.items.length === 0 ? true : undefined;
      },
      300_000,
    );
    console.log(
      `setup: ${NODES} Navarch nodes Ready in ${((upAt - started) / 1000).toFixed(1)} s; ${NODES} KWOK Nodes + ${pods.length} pods created in ${((k8sAt - upAt) / 1000).toFixed(1)} s, every pod Running ${((performance.now() - k8sAt) / 1000).toFixed(1)} s later`,
    );

    // When each Node became unschedulable with our taint, as the scheduler sees it.
    const watch = await watchCordons(kube.kubeconfigPath, f.config.kubernetes!.taint_key);
    const cordonedAt = watch.cordonedAt;
    // Every pass, timed (as metrics.observeLoop does), to show where the time goes.
    const passes: { ms: number; cordons: number }[] = [];
    const pass = f.reconciler.pass.bind(f.reconciler);
    f.reconciler.pass = async () => {
      const report = await pass();
      passes.push({ ms: report.durationMs, cordons: report.transitions.filter((t) => t.to === "cordoned").length });
      return report;
    };
    // Where a single fault's time goes: when the loop decided to cordon (the mirror is asked)
    // and when the API server answered the Node's PATCH.
    const decidedAt = new Map<string, number>();
    const patchedAt = new Map<string, number>();
    const cordon = f.mirror.cordon.bind(f.mirror);
    f.mirror.cordon = async (node, reason, incidentId) => {
      if (!decidedAt.has(node.id)) decidedAt.set(node.id, Date.now());
      return cordon(node, reason, incidentId);
    };
    const request = f.kube.client.request.bind(f.kube.client);
    f.kube.client.request = (async (method: string, path: string, ...rest: unknown[]) => {
      const answer = await (request as (...a: unknown[]) => Promise<unknown>)(method, path, ...rest);
      const name = method === "PATCH" ? /^\/api\/v1\/nodes\/([^/]+)$/.exec(path)?.[1] : undefined;
      if (name !== undefined && !patchedAt.has(name)) patchedAt.set(name, Date.now());
      return answer;
    }) as typeof f.kube.client.request;
    f.reconciler.start(LOOP_INTERVAL_MS);
    try {
      // Single faults, one at a time: the agent sees the fault (the event's time), the event is
      // stored and the loop woken (as the API does), the Node is cordoned.
      const fromFault: number[] = [];
      const fromStored: number[] = [];
      const storedAt = new Map<string, number>();
      const singlePasses = passes.length;
      for (const id of ids.slice(0, SINGLE)) {
        const faultAt = Date.now();
        await f.agents.xid(id, 79, 0, faultAt);
        f.reconciler.wake();
        await waitFor(`${id} cordoned`, () => (cordonedAt.has(id) ? true : undefined), 10_000);
        const [stored] = await f.store.db
          .select({ receivedAt: healthEvents.receivedAt })
          .from(healthEvents)
          .where(and(eq(healthEvents.nodeId, id), eq(healthEvents.time, faultAt)));
        fromFault.push(cordonedAt.get(id)! - faultAt);
        fromStored.push(cordonedAt.get(id)! - stored!.receivedAt);
        storedAt.set(id, stored!.receivedAt);
      }
      const p99 = quantile(
        [...fromFault].sort((a, b) => a - b),
        0.99,
      );
      console.log(`fault→cordon latency, ${SINGLE} single faults, from the fault: ${summary(fromFault)}; from the stored event: ${summary(fromStored)}`);
      const singles = ids.slice(0, SINGLE);
      const part = (from: (id: string) => number | undefined, to: (id: string) => number | undefined) =>
        summary(singles.flatMap((id) => (from(id) !== undefined && to(id) !== undefined ? [to(id)! - from(id)!] : [])));
      console.log(
        `where it goes: stored → the loop decides to cordon ${part(
          (id) => storedAt.get(id),
          (id) => decidedAt.get(id),
        )}; ` +
          `→ the API server answers the PATCH ${part(
            (id) => decidedAt.get(id),
            (id) => patchedAt.get(id),
          )}; ` +
          `→ the watcher sees the Node ${part(
            (id) => patchedAt.get(id),
            (id) => cordonedAt.get(id),
          )}`,
      );
      console.log(`passes meanwhile: ${passes.length - singlePasses}, ${summary(passes.slice(singlePasses).map((p) => p.ms))}`);

      // The burst: BURST faults at once.
      await Bun.sleep(2000); // let the rail's bucket refill after the single faults
      // The faults are in the store at once (the loop paused while the test writes them one by
      // one); throughput is measured from the moment the loop sees them.
      const burst = ids.slice(SINGLE, SINGLE + BURST);
      await f.reconciler.stop();
      const i0 = performance.now();
      for (const id of burst) await f.agents.xid(id, 79, 0);
      const injected = performance.now() - i0;
      const burstPasses = passes.length;
      const b0 = Date.now();
      f.reconciler.start(LOOP_INTERVAL_MS);
      await waitFor("the burst cordoned", () => (burst.every((id) => cordonedAt.has(id)) ? true : undefined), 120_000);
      const times = burst.map((id) => cordonedAt.get(id)!).sort((a, b) => a - b);
      const total = (times.at(-1)! - b0) / 1000;
      const spread = (times.at(-1)! - times[0]!) / 1000;
      const throughput = BURST / total;
      const during = passes.slice(burstPasses);
      // The rail's own pace: its burst at once, the rest at its rate.
      const railSeconds = (BURST - RAIL_BURST) / (RAIL_PER_MINUTE / 60);
      console.log(`passes during the burst: ${during.length}, ${summary(during.map((p) => p.ms))}; cordons per pass ${during.map((p) => p.cordons).join(" ")}`);
      console.log(
        `burst of ${BURST} faults (stored in ${injected.toFixed(0)} ms): all cordoned ${total.toFixed(2)} s after the loop saw them → ${throughput.toFixed(1)} nodes/s ` +
          `(first→last cordon ${spread.toFixed(2)} s); rail cordon_rate ${RAIL_PER_MINUTE}/min = ${RAIL_PER_MINUTE / 60}/s, burst ${RAIL_BURST}: ${railSeconds.toFixed(2)} s at its pace`,
      );

      // All of them drained: every pod evicted through the Eviction API, the loop moves them on.
      const faulted = ids.slice(0, SINGLE + BURST);
      const d0 = performance.now();
      await waitFor(
        "every faulted node drained",
        async () => {
          const rows = await f.store.db.select({ drainedAt: incidents.drainedAt }).from(incidents).where(inArray(incidents.nodeId, faulted));
          return rows.length === faulted.length && rows.every((r) => r.drainedAt !== null) ? true : undefined;
        },
        300_000,
      );
      const faultedSet = new Set(faulted);
      const left = (await kube.client.list("/api/v1/namespaces/scale/pods", Pod)).items.filter((p) => faultedSet.has(p.spec.nodeName ?? ""));
      console.log(
        `drained ${faulted.length} nodes (${faulted.length * PODS_PER_NODE} pods evicted) in ${((performance.now() - d0) / 1000).toFixed(1)} s after the burst cordons`,
      );
      const lanes = f.kube.client.laneStats();
      console.log(
        `client lanes: cordon ${lanes.cordon.requests} requests, longest wait ${lanes.cordon.maxWaitMs} ms; eviction ${lanes.eviction.requests} requests, longest wait ${lanes.eviction.maxWaitMs} ms`,
      );

      expect(left).toEqual([]);
      expect(cordonedAt.size).toBe(SINGLE + BURST); // no other Node was touched
      expect(p99).toBeLessThan(1000);
      expect(throughput).toBeGreaterThanOrEqual(20);
      // Cordons never waited (for a token or a slot) behind the drains' pod lists and evictions.
      expect(lanes.cordon.maxWaitMs).toBeLessThan(100);
    } finally {
      await f.reconciler.stop();
      watch.stop();
    }
  },
  20 * 60_000,
);
