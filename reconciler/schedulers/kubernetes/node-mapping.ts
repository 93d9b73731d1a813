// Which Kubernetes Node a Navarch node is (kubernetes.node_mapping): node_name (the Node's name
// is the node id), hostname_label (the Node's kubernetes.io/hostname label is the agent's
// hostname), provider_id (the Node's spec.providerID names the node's instance), or label (the
// Node's kubernetes.node_label label is the node id). Read from the mirror's cache of Nodes,
// never by a request.
import type { KubernetesConfig } from "../../../schema/config.ts";
import type { KubeNode } from "../../clients/kube/types.ts";
import type { SchedulerNodeView } from "../scheduler.ts";

/** What mapping looks at. */
export type MappedFields = Pick<SchedulerNodeView, "id" | "hostname" | "instanceId">;

type MappingConfig = Pick<KubernetesConfig, "node_mapping" | "node_label">;

/** The Nodes mapping reads (the mirror's informer). */
interface NodeLookup {
  get(name: string): KubeNode | undefined;
  list(): KubeNode[];
}

/** The Kubernetes Node a Navarch node maps to under kubernetes.node_mapping. */
export function kubeNodeFor(config: MappingConfig, nodes: NodeLookup, row: MappedFields): string | undefined {
  switch (config.node_mapping) {
    case "node_name":
      return nodes.get(row.id) ? row.id : undefined;
    case "hostname_label":
      return row.hostname === null ? undefined : nodes.list().find((n) => n.metadata.labels?.["kubernetes.io/hostname"] === row.hostname)?.metadata.name;
    case "provider_id": {
      const id = row.instanceId;
      if (id === null) return undefined;
      return nodes.list().find((n) => providerIdMatches(n.spec.providerID ?? undefined, id))?.metadata.name;
    }
    case "label":
      return nodes.list().find((n) => n.metadata.labels?.[config.node_label] === row.id)?.metadata.name;
  }
}

/** kubeNodeFor over a one-time index of the Nodes (for many nodes at once). */
export function kubeNodeIndex(config: MappingConfig, nodes: NodeLookup): (row: MappedFields) => string | undefined {
  switch (config.node_mapping) {
    case "node_name":
    case "provider_id":
      return (row) => kubeNodeFor(config, nodes, row);
    case "hostname_label": {
      const byHost = new Map(
        nodes
          .list()
          .flatMap((n) => (n.metadata.labels?.["kubernetes.io/hostname"] ? [[n.metadata.labels["kubernetes.io/hostname"], n.metadata.name] as const] : [])),
      );
      return (row) => (row.hostname === null ? undefined : byHost.get(row.hostname));
    }
    case "label": {
      const byLabel = new Map(
        nodes.list().flatMap((n) => (n.metadata.labels?.[config.node_label] ? [[n.metadata.labels[config.node_label]!, n.metadata.name] as const] : [])),
      );
      return (row) => byLabel.get(row.id);
    }
  }
}

/** spec.providerID (`aws:///us-east-1a/i-0abc`, `gce://p/z/name`, `coreweave://…`) names instance `id`. */
export function providerIdMatches(providerId: string | undefined, id: string): boolean {
  if (!providerId) return false;
  return providerId === id || providerId.endsWith(`/${id}`);
}
