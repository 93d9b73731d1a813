// The `kubernetes:` section as a scheduler integration (schedulers/scheduler.ts): one client
// (its lanes budgeted from kubernetes.client), the cordon mirror + drain, the queue source,
// and the GpuPool controller. The loop's owner builds it, starts it once the loop exists,
// and stops it after the loop.
import type { KubernetesConfig } from "../../../schema/config.ts";
import type { QueueSource, SchedulerHost, SchedulerIntegration, SchedulerLoopHandle } from "../scheduler.ts";
import { KubeApiError, KubeClient, type KubeSource } from "../../clients/kube/client.ts";
import { KubeMirror } from "./mirror.ts";
import { GpuPoolController } from "./pools.ts";
import { kubeQueueMetrics } from "./queue.ts";

/** Where the connection comes from, per the config (secrets read from the env var it names). */
export function kubeSource(
  config: Pick<KubernetesConfig, "kubeconfig" | "context" | "in_cluster" | "server" | "token_env" | "ca_file">,
  env: (name: string) => string | undefined = (n) => process.env[n],
): KubeSource {
  if (config.in_cluster) return { kind: "in-cluster" };
  if (config.server !== undefined) {
    const token = config.token_env ? env(config.token_env) : undefined;
    if (!token)
      throw new KubeApiError(0, "Config", `kubernetes.token_env: $${config.token_env ?? "?"} is not set (it must hold the bearer token for ${config.server})`);
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

/** The longest wait between two tries to list the Nodes while the API server does not answer. */
const START_RETRY_MAX_MS = 10_000;

/** The `kubernetes:` section as a scheduler integration, with what only Kubernetes has (the client, GpuPools). */
export interface KubeIntegration extends SchedulerIntegration {
  readonly client: KubeClient;
  readonly mirror: KubeMirror;
  /** The GpuPool controller, once started (kubernetes.pools_crd.enabled). */
  readonly pools: GpuPoolController | undefined;
}

export interface KubeOptions {
  env?: (name: string) => string | undefined;
  /** Use this client instead of connecting from the config (tests). */
  client?: KubeClient;
}

/** Connects to the cluster the config names; start() lists and watches Nodes, then GpuPools. */
export async function kubernetesScheduler(config: KubernetesConfig, host: SchedulerHost, opts: KubeOptions = {}): Promise<KubeIntegration> {
  const client = opts.client ?? (await connectKube(config, opts.env));
  host.log(`kubernetes: ${client.describe} (${client.server}); node mapping ${config.node_mapping}; drain on deadline: ${config.drain.on_deadline}`);
  const mirror = new KubeMirror({ client, config, host });
  let stopped = false;
  let pools: GpuPoolController | undefined;
  let starting: Promise<void> | undefined;
  // An API server that is down at start must not keep Navarch from starting: keep trying,
  // beside the loop (what the loop asks of the mirror meanwhile is queued).
  let retry: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;
  const startMirror = async (): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await mirror.start();
        return;
      } catch (err) {
        if (stopped) return;
        if (attempt === 0)
          host.log(
            `kubernetes: cannot list Nodes yet (retrying every ${START_RETRY_MAX_MS / 1000} s at most): ${err instanceof Error ? err.message : String(err)}`,
          );
        await new Promise<void>((resolve) => {
          retry = { timer: setTimeout(resolve, Math.min(START_RETRY_MAX_MS, 1000 * 2 ** attempt)), resolve };
        });
      }
    }
  };
  const startPools = async (loop: SchedulerLoopHandle): Promise<void> => {
    if (!config.pools_crd.enabled) return;
    const controller = new GpuPoolController({
      client,
      namespace: config.pools_crd.namespace,
      apply: (p) => loop.updatePools(p),
      counts: () => loop.poolNodeCounts(),
      forget: (pool) => loop.forgetPool(pool),
      filePools: loop.filePools,
      providers: () => loop.providers(),
      log: (line) => host.log(line),
      now: () => host.now(),
    });
    pools = controller;
    const attempt = async (): Promise<boolean> => {
      try {
        await controller.start();
        return true;
      } catch (err) {
        host.log(
          `kubernetes: GpuPool resources cannot be watched yet, retrying every 30 s (is deploy/crds/gpupool.yaml applied?): ${err instanceof Error ? err.message : String(err)}`,
        );
        return false;
      }
    };
    while (!stopped && !(await attempt())) {
      await new Promise<void>((resolve) => {
        retry = { timer: setTimeout(resolve, 30_000), resolve };
      });
    }
  };
  const queue: QueueSource | undefined = config.queue_metrics.enabled
    ? kubeQueueMetrics(client, { ...(config.queue_metrics.namespace ? { namespace: config.queue_metrics.namespace } : {}), log: (line) => host.log(line) })
    : undefined;
  return {
    name: "kubernetes",
    client,
    mirror,
    ...(queue ? { queue } : {}),
    get pools() {
      return pools;
    },
    async ready() {
      await starting;
    },
    async start(loop) {
      // Nothing here waits for the API server: the Nodes are listed, then GpuPools watched, beside the loop.
      starting = (async () => {
        await startMirror();
        if (!stopped) await startPools(loop);
      })().catch((err: unknown) => host.log(`kubernetes: ${err instanceof Error ? err.message : String(err)}`));
    },
    async stop() {
      stopped = true;
      if (retry !== undefined) {
        clearTimeout(retry.timer);
        retry.resolve();
      }
      // Requests in flight are aborted: a stop never waits for the API server.
      if (opts.client === undefined) client.close();
      await starting;
      await pools?.stop();
      await mirror.stop();
    },
  };
}
