// Which Slurm node a Navarch node is (slurm.node_mapping): node_name (NodeName = the node
// id), hostname (NodeHostname, which defaults to NodeName, = the agent's hostname; a short
// name matches its fully qualified form), or feature (the node has the feature
// `<node_feature_prefix><node id>`, Slurm's nearest thing to a label).
import type { SlurmConfig } from "../../../schema/config.ts";
import type { SchedulerNodeView } from "../scheduler.ts";
import type { SlurmNode } from "./api.ts";

export type MappedFields = Pick<SchedulerNodeView, "id" | "hostname">;

/** A lookup over one listing of the cluster's nodes. */
export function slurmNodeIndex(
  config: Pick<SlurmConfig, "node_mapping" | "node_feature_prefix">,
  slurmNodes: readonly SlurmNode[],
): (node: MappedFields) => SlurmNode | undefined {
  switch (config.node_mapping) {
    case "node_name": {
      const byName = new Map(slurmNodes.map((n) => [n.name, n]));
      return (node) => byName.get(node.id);
    }
    case "hostname": {
      const byHost = new Map<string, SlurmNode>();
      for (const n of slurmNodes) {
        byHost.set(n.hostname, n);
        if (!byHost.has(shortName(n.hostname))) byHost.set(shortName(n.hostname), n);
      }
      return (node) => (node.hostname === null ? undefined : (byHost.get(node.hostname) ?? byHost.get(shortName(node.hostname))));
    }
    case "feature": {
      const prefix = config.node_feature_prefix;
      const byFeature = new Map<string, SlurmNode>();
      for (const n of slurmNodes) for (const f of n.features) if (f.startsWith(prefix)) byFeature.set(f.slice(prefix.length), n);
      return (node) => byFeature.get(node.id);
    }
  }
}

function shortName(host: string): string {
  const dot = host.indexOf(".");
  return dot > 0 ? host.slice(0, dot) : host;
}
