// The seed's K8sMetricsSource: the jobs of a pool are the pods labelled
// navarch.dev/pool=<pool>; Pending ones are queued, Running ones are running. They feed
// the `queue` autoscaler (ceil((pending + running) / jobs_per_node)). An unreachable API
// server gives "unknown", and the autoscaler then holds the pool where it is.
import type { QueueDepth, QueueSource } from "../scheduler.ts";
import type { KubeClient } from "../../clients/kube/client.ts";
import { Pod } from "../../clients/kube/types.ts";

export const POOL_LABEL = "navarch.dev/pool";

export function kubeQueueMetrics(client: KubeClient, opts: { namespace?: string; log?: (line: string) => void } = {}): QueueSource {
  const path = opts.namespace ? `/api/v1/namespaces/${opts.namespace}/pods` : "/api/v1/pods";
  const depth = async (pool: string): Promise<QueueDepth | undefined> => {
    try {
      const { items } = await client.list(path, Pod, { query: { labelSelector: `${POOL_LABEL}=${pool}` } });
      let pending = 0;
      let running = 0;
      for (const pod of items) {
        if (pod.metadata.deletionTimestamp) continue; // on its way out: neither queued nor running
        if (pod.status.phase === "Pending") pending++;
        else if (pod.status.phase === "Running") running++;
      }
      return { pending, running };
    } catch (err) {
      opts.log?.(`queue metrics for pool ${pool}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  };
  return { depth };
}
