// The `kubernetes:` section at work: one client (its lanes budgeted from
// kubernetes.client), the cordon mirror + drain (the loop's SchedulerMirror), the queue
// metrics source, and the GpuPool controller. serve.ts starts it before the loop and
// stops it after.
import type { KubernetesConfig, PoolConfig } from "../../schema/config.ts";
import type { Clock } from "../fleet/registry.ts";
import type { Store } from "../store/store.ts";
import { KubeApiError, KubeClient, type KubeSource } from "./client.ts";
import { KubeMirror } from "./mirror.ts";
import { GpuPoolController } from "./pools.ts";
import { kubeQueueMetrics, type QueueDepth } from "./queue.ts";

export { KubeApiError, KubeClient } from "./client.ts";
export { KubeMirror } from "./mirror.ts";

/** Where the connection comes from, per the config (secrets read from the env var it names). */
export function kubeSource(config: Pick<KubernetesConfig, "kubeconfig" | "context" | "in_cluster" | "server" | "token_env" | "ca_file">, env: (name: string) => string | undefined = (n) => process.env[n]): KubeSource {
  if (config.in_cluster) return { kind: "in-cluster" };
  if (config.server !== undefined) {
    const token = config.token_env ? env(config.token_env) : undefined;
    if (!token) throw new KubeApiError(0, "Config", `kubernetes.token_env: $${config.token_env ?? "?"} is not set (it must hold the bearer token for ${config.server})`);
    return { kind: "token", server: config.server, token, ...(config.ca_file ? { caFile: config.ca_file } : {}) };
  }
  return { kind: "kubeconfig", ...(config.kubeconfig ? { path: config.kubeconfig } : {}), ...(config.context ? { context: config.context } : {}) };
}

export function connectKube(config: KubernetesConfig, env?: (name: string) => string | undefined): Promise<KubeClient> {
  return KubeClient.connect({
    source: kubeSource(config, env),
    lanes: {
      cordon: { qps: config.client.cordon_qps, burst: config.client.cordon_burst },
      eviction: { qps: config.client.eviction_qps, burst: config.client.eviction_burst },
      default: { qps: config.client.qps, burst: config.client.burst },
    },
  });
}

export interface KubeIntegration {
  client: KubeClient;
  mirror: KubeMirror;
  queueMetrics?: (pool: string) => Promise<QueueDepth | undefined>;
  pools?: GpuPoolController;
  /** Starts the GpuPool controller (once the loop exists: it is the one pools are pushed to). */
  startPools(loop: { updatePools(pools: PoolConfig[]): string[] }, providers: () => ReadonlySet<string>, filePools: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

export interface KubeDeps {
  store: Store;
  log: (line: string) => void;
  now?: Clock;
  /** Wakes the reconcile loop (after a human's uncordon in Kubernetes). */
  wake?: () => void;
  env?: (name: string) => string | undefined;
  /** Use this client instead of connecting from the config (tests). */
  client?: KubeClient;
}

export async function startKubernetes(config: KubernetesConfig, deps: KubeDeps): Promise<KubeIntegration> {
  const client = deps.client ?? (await connectKube(config, deps.env));
  deps.log(`kubernetes: ${client.describe} (${client.server}); node mapping ${config.node_mapping}; drain on deadline: ${config.drain.on_deadline}`);
  const mirror = new KubeMirror({
    client,
    config,
    store: deps.store,
    log: deps.log,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.wake ? { onChange: deps.wake } : {}),
  });
  // An API server that is down at start must not keep Navarch from starting: keep trying.
  let stopped = false;
  const startMirror = async (): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await mirror.start();
        return;
      } catch (err) {
        if (attempt === 0) deps.log(`kubernetes: cannot list Nodes yet (retrying): ${err instanceof Error ? err.message : String(err)}`);
        await Bun.sleep(Math.min(30_000, 1000 * 2 ** attempt));
      }
    }
  };
  const mirrorStarted = Promise.race([startMirror(), Bun.sleep(10_000)]);
  await mirrorStarted;
  let pools: GpuPoolController | undefined;
  const integration: KubeIntegration = {
    client,
    mirror,
    ...(config.queue_metrics.enabled ? { queueMetrics: kubeQueueMetrics(client, { ...(config.queue_metrics.namespace ? { namespace: config.queue_metrics.namespace } : {}), log: deps.log }) } : {}),
    async startPools(loop, providers, filePools) {
      if (!config.pools_crd.enabled) return;
      pools = new GpuPoolController({
        client,
        namespace: config.pools_crd.namespace,
        store: deps.store,
        apply: (p) => loop.updatePools(p),
        filePools,
        providers,
        log: deps.log,
        ...(deps.now ? { now: deps.now } : {}),
      });
      integration.pools = pools;
      const controller = pools;
      const attempt = async (): Promise<boolean> => {
        try {
          await controller.start();
          return true;
        } catch (err) {
          deps.log(`kubernetes: GpuPool resources cannot be watched yet, retrying every 30 s (is deploy/crds/gpupool.yaml applied?): ${err instanceof Error ? err.message : String(err)}`);
          return false;
        }
      };
      if (!(await attempt())) {
        void (async () => {
          while (!stopped) {
            await Bun.sleep(30_000);
            if (stopped || (await attempt())) return;
          }
        })();
      }
    },
    async stop() {
      stopped = true;
      await pools?.stop();
      await mirror.stop();
      if (deps.client === undefined) client.close();
    },
  };
  return integration;
}
