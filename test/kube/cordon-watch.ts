// When each Node became unschedulable with a taint, as a watcher of the API server sees it:
// a Node watch on a thread of its own, so the times are not held back by whatever the test's
// thread (the reconcile loop, its mirror) is busy with. Times are wall-clock ms (Date.now()).
//
//   const watch = await watchCordons(kube.kubeconfigPath, "navarch.dev/unhealthy");
//   … watch.cordonedAt.get(name) …
//   watch.stop();
import { KubeClient } from "../../reconciler/clients/kube/client.ts";
import { Informer } from "../../reconciler/clients/kube/informer.ts";
import { KubeNode } from "../../reconciler/clients/kube/types.ts";

interface Start {
  kubeconfigPath: string;
  taintKey: string;
}

declare const self: Worker;

type Report = { synced: true } | { name: string; at: number } | { error: string };

export interface CordonWatch {
  /** Node name → when it was first seen unschedulable with the taint (Date.now() ms). */
  readonly cordonedAt: ReadonlyMap<string, number>;
  stop(): void;
}

/** Starts the watch; resolves once it has listed every Node. */
export function watchCordons(kubeconfigPath: string, taintKey: string): Promise<CordonWatch> {
  const worker = new Worker(import.meta.url);
  const cordonedAt = new Map<string, number>();
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<Report>) => {
      const report = e.data;
      if ("error" in report) reject(new Error(`cordon watch: ${report.error}`));
      else if ("synced" in report) resolve({ cordonedAt, stop: () => worker.terminate() });
      else if (!cordonedAt.has(report.name)) cordonedAt.set(report.name, report.at);
    };
    worker.onerror = (e) => reject(new Error(`cordon watch: ${e.message}`));
    worker.postMessage({ kubeconfigPath, taintKey } satisfies Start);
  });
}

if (!Bun.isMainThread) {
  const post = (report: Report) => postMessage(report);
  self.onmessage = async (e: MessageEvent<Start>) => {
    const { kubeconfigPath, taintKey } = e.data;
    try {
      const client = await KubeClient.connect({ source: { kind: "kubeconfig", path: kubeconfigPath } });
      const seen = new Set<string>();
      const informer = new Informer(client, {
        path: "/api/v1/nodes",
        schema: KubeNode,
        onEvent: (_event, node) => {
          const name = node.metadata.name;
          if (seen.has(name) || node.spec.unschedulable !== true || !(node.spec.taints ?? []).some((t) => t.key === taintKey)) return;
          seen.add(name);
          post({ name, at: Date.now() });
        },
      });
      await informer.start();
      post({ synced: true });
    } catch (err) {
      post({ error: err instanceof Error ? err.message : String(err) });
    }
  };
}
