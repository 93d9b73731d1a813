// The real reconcile loop (virtual clock, simulated cloud and agents, a libSQL file) with
// the Kubernetes mirror against the harness's real API server: what the kube tests drive.
// Drain workers run in real time, so `until` alternates loop passes with short sleeps.
import type { PoolConfig } from "../../schema/config.ts";
import type { Reconciler } from "../../reconciler/lifecycle/loop.ts";
import { Operator } from "../../reconciler/nodes/operator-actions.ts";
import { schedulerLoopHandle, storeSchedulerHost } from "../../reconciler/schedulers/host.ts";
import { kubernetesScheduler, type KubeIntegration } from "../../reconciler/schedulers/kubernetes/index.ts";
import { SimulatedCloud } from "../../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../../reconciler/sim/agents.ts";
import { openStore, type Store } from "../../reconciler/store/store.ts";
import { testConfig } from "../fleet-harness.ts";
import { fleetQueries, schedulerLoop } from "../scheduler-fleet.ts";
import { tempDir } from "../support.ts";
import type { KubeHarness } from "./harness.ts";

export interface KubeFleetOptions {
  /** The `server:` section (default: fast 10 s heartbeats and health checks). */
  server?: string;
  /** Extra lines of the `kubernetes:` section (two-space indented), after kubeconfig. */
  kubernetes?: string;
  /** Extra top-level YAML (e.g. a `safety:` section). */
  extra?: string;
  /** Real time instead of the virtual clock. */
  realTime?: boolean;
  log?: (line: string) => void;
  /** Start the GpuPool controller (kubernetes.pools_crd must be enabled). */
  pools?: boolean;
  /** The reconciler's kubeconfig (default: the harness's admin): e.g. a service account's token. */
  kubeconfigPath?: string;
}

export type KubeFleet = Awaited<ReturnType<typeof kubeFleet>>;

const open: { stop(): Promise<void> }[] = [];

/** Stops every fleet started since the last call (afterEach): mirrors, watches, stores. */
export async function stopKubeFleets(): Promise<void> {
  for (const f of open.splice(0)) await f.stop();
}

export async function kubeFleet(kube: KubeHarness, poolsYaml: string, opts: KubeFleetOptions = {}) {
  let clock = Date.now();
  const now = opts.realTime ? Date.now : () => clock;
  const store: Store = await openStore({ url: `file:${tempDir()}/navarch.db` });
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 0 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  const server = opts.server ?? "server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n";
  const yaml = `${server}${opts.extra ?? ""}kubernetes:\n  kubeconfig: ${opts.kubeconfigPath ?? kube.kubeconfigPath}\n${opts.kubernetes ?? ""}pools:\n${poolsYaml}`;
  const config = testConfig(yaml);
  const log = opts.log ?? (() => undefined);
  let loop: Reconciler | undefined;
  const k: KubeIntegration = await kubernetesScheduler(
    config.kubernetes!,
    storeSchedulerHost({ store, log, now, wake: () => loop?.wake(), providers: () => new Map([["local", cloud]]) }),
  );
  loop = schedulerLoop({ store, config, cloud, now, log, integration: k });
  const reconciler = loop;
  // GpuPools only where a test asks for them (kubernetes.pools_crd must be enabled then).
  const filePools = opts.pools ? config.pools.map((p: PoolConfig) => p.name) : [];
  await k.start(schedulerLoopHandle({ store, loop: reconciler, providers: () => new Set(["local"]), filePools }));
  await k.ready(); // the Nodes listed (and GpuPools watched): the tests start from a synced mirror
  const step = async (ms = 5000) => {
    if (!opts.realTime) clock += ms;
    await agents.tick();
    return reconciler.pass();
  };
  const { node, all, incident, until } = fleetQueries(store, step);
  const ready = async (pool: string, count: number) => {
    await until(`${count} ready nodes in ${pool}`, async () => (await all()).filter((n) => n.pool === pool && n.state === "ready").length >= count, {
      sleepMs: 0,
    });
    return (await all()).filter((n) => n.pool === pool && n.state === "ready").map((n) => n.id);
  };
  const handle = {
    store,
    cloud,
    agents,
    reconciler,
    /** The integration as the kube tests use it: its queue source as a function, the GpuPool controller. */
    kube: {
      client: k.client,
      queueMetrics: k.queue ? (pool: string) => k.queue!.depth(pool) : undefined,
      get pools() {
        return k.pools;
      },
    },
    mirror: k.mirror,
    operator: new Operator(store.db, now),
    config,
    step,
    node,
    all,
    incident,
    until,
    ready,
    now,
    advance: (ms: number) => (clock += ms),
    async stop() {
      await reconciler.stop();
      await k.stop();
      store.close();
    },
  };
  open.push(handle);
  return handle;
}
