// The `kubernetes:` section (reconciler/schedulers/kubernetes): how the reconciler reaches the
// API server, how a Navarch node finds its Kubernetes Node, the taint and condition it sets,
// client rate budgets per lane, how nodes are drained, GpuPool resources and queue metrics.
import * as v from "valibot";
import { accept, oneOf, strict } from "../shapes.ts";
import { rules } from "./cross-field-rules.ts";
import { duration, type Millis } from "./duration.ts";
import { LabelKey } from "./kubernetes-labels.ts";
import { Bool, DnsLabel, EnvVarName, HttpUrl, int, shaped, Text } from "./leaf-schemas.ts";

export const NODE_MAPPING_RULES = ["node_name", "hostname_label", "provider_id", "label"] as const;
export type NodeMappingRule = (typeof NODE_MAPPING_RULES)[number];

/** The `kubernetes:` section (reconciler/schedulers/kubernetes). */
export interface KubernetesConfig {
  /** A kubeconfig file; absent (and no server, not in_cluster): $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** The kubeconfig context to use; absent: its current-context. */
  context?: string;
  /** Use the pod's service account (token, CA and namespace under /var/run/secrets/kubernetes.io). */
  in_cluster: boolean;
  /** API server URL for bearer-token access without a kubeconfig (with token_env). */
  server?: string;
  /** Name of the environment variable holding the bearer token (never the token). */
  token_env?: string;
  /** CA bundle for `server`; absent: the system's trust store. */
  ca_file?: string;
  /**
   * How a Navarch node finds its Kubernetes Node: node_name (Node name = node id),
   * hostname_label (`kubernetes.io/hostname` = the agent's hostname), provider_id
   * (spec.providerID ends with the provider's instance id), label (node_label = node id).
   */
  node_mapping: NodeMappingRule;
  /** The label the `label` rule matches (the CoreWeave provider sets it on its nodes). */
  node_label: string;
  /** Our NoSchedule taint's key. */
  taint_key: string;
  /** The node condition carrying the GPU health verdict. */
  condition_type: string;
  /** Client-side rate budgets (token buckets) per lane: cordons never queue behind evictions. */
  client: { cordon_qps: number; cordon_burst: number; eviction_qps: number; eviction_burst: number; qps: number; burst: number };
  drain: KubernetesDrainConfig;
  /** Pools as GpuPool custom resources (deploy/crds/gpupool.yaml) in this namespace. */
  pools_crd: { enabled: boolean; namespace: string };
  /** Pending + running pods labelled navarch.dev/pool=<pool> feed queue autoscalers; namespace absent: all. */
  queue_metrics: { enabled: boolean; namespace?: string };
}

export interface KubernetesDrainConfig {
  /** Evict pods using emptyDir volumes (their data is lost), like `kubectl drain --delete-emptydir-data`. */
  delete_emptydir_data: boolean;
  /** At the pool's health.drain_timeout: delete what is left (delete), or hold the node for a human (hold). */
  on_deadline: "delete" | "hold";
  /** Grace period for evictions and deletions; absent: each pod's own. */
  grace_period?: Millis;
  /** Kubernetes Node not Ready and agent silent this long: the dead-kubelet fast path (delete with 1 s grace). */
  unreachable_after: Millis;
  /** Longest wait between eviction retries of a pod a PodDisruptionBudget protects (429). */
  max_backoff: Millis;
}

const Qps = accept<number>((x) => typeof x === "number" && x > 0 && x <= 10_000, "a number of requests per second > 0 (at most 10000)");
const Burst = int(1, 10_000);

const KubeDrain: v.GenericSchema<unknown, KubernetesDrainConfig> = strict({
  delete_emptydir_data: v.optional(Bool, false),
  on_deadline: v.optional(oneOf(["delete", "hold"] as const, "deadline behaviour"), "delete"),
  grace_period: v.optional(duration("0s", "1h")),
  unreachable_after: v.optional(duration("10s", "1h"), "1m"),
  max_backoff: v.optional(duration("1s", "10m"), "30s"),
});

export const Kubernetes: v.GenericSchema<unknown, KubernetesConfig> = v.pipe(
  strict({
    kubeconfig: v.optional(Text),
    context: v.optional(Text),
    in_cluster: v.optional(Bool, false),
    server: v.optional(HttpUrl),
    token_env: v.optional(EnvVarName),
    ca_file: v.optional(Text),
    node_mapping: v.optional(oneOf(NODE_MAPPING_RULES, "node mapping rule"), "node_name"),
    node_label: v.optional(LabelKey, "navarch.dev/node-id"),
    taint_key: v.optional(LabelKey, "navarch.dev/unhealthy"),
    condition_type: v.optional(shaped(/^[A-Za-z][A-Za-z0-9]{0,62}$/, "a condition type like GpuHealthy (letters and digits)"), "GpuHealthy"),
    // Cordons get their own budget, well above what the cordon-rate rail lets through.
    client: v.optional(
      strict({
        cordon_qps: v.optional(Qps, 100),
        cordon_burst: v.optional(Burst, 200),
        eviction_qps: v.optional(Qps, 20),
        eviction_burst: v.optional(Burst, 40),
        qps: v.optional(Qps, 50),
        burst: v.optional(Burst, 100),
      }),
      {},
    ),
    drain: v.optional(KubeDrain, {}),
    pools_crd: v.optional(strict({ enabled: v.optional(Bool, false), namespace: v.optional(DnsLabel, "navarch") }), {}),
    queue_metrics: v.optional(strict({ enabled: v.optional(Bool, true), namespace: v.optional(DnsLabel) }), {}),
  }),
  rules((_f, report, raw) => {
    const [file, cluster, server] = [raw.kubeconfig !== undefined, raw.in_cluster === true, raw.server !== undefined];
    if (file && cluster) report("in_cluster", "set kubeconfig or in_cluster, not both");
    if (server && (file || cluster)) report("server", "set server (with token_env) or kubeconfig or in_cluster, only one");
    if (server && raw.token_env === undefined) report("token_env", "is required when server is set (the bearer token's variable)");
    if (!server && raw.token_env !== undefined) report("server", "is required when token_env is set");
    if (!server && raw.ca_file !== undefined) report("ca_file", "only applies with server (a kubeconfig carries its own CA)");
    if (raw.context !== undefined && (cluster || server)) report("context", "only applies with a kubeconfig");
  }),
);
