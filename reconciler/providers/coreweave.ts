// CoreWeave: GPU nodes come from Node Pool custom resources in the CKS cluster
// (docs.coreweave.com, "CKS Node Pool reference": `compute.coreweave.com/v1alpha1`,
// kind NodePool, cluster-scoped; spec.instanceType (immutable), spec.targetNodes,
// computeClass, autoscaling with minNodes/maxNodes, nodeLabels, nodeAnnotations,
// nodeTaints; status.currentNodes and conditions). CKS labels each Node it boots for a
// pool with `compute.coreweave.com/node-pool: <pool>`.
//
// One Navarch instance is one NodePool of targetNodes 1, named after the node (the
// launch request's name): a launch is exactly one create (a retry finds the pool its
// idempotency key made), a terminate deletes exactly that node's pool, and the Node it
// brings up carries `navarch.dev/node-id` (kubernetes.node_mapping: label finds it).
// Navarch does the autoscaling, so CoreWeave's own autoscaler stays off.
//
// No reboot: CoreWeave documents rebooting a CKS Node ("Reboot Nodes": safe or force) only
// through its own CLI (`cwic node reboot`) against CoreWeave's API, not through the
// Kubernetes API or the Node Pool resource this provider speaks, so it has no `reboot` and
// the remediation ladder replaces the node instead.
import * as v from "valibot";
import type { CoreWeaveProviderConfig } from "../../schema/config.ts";
import { KubeApiError, KubeClient, labelSelector, type KubeSource } from "../clients/kube/client.ts";
import { Condition, KubeNode, ObjectMeta } from "../clients/kube/types.ts";
import { ProviderError, TAG_MANAGED_BY, type Instance, type InstanceState, type InstanceTypeInfo, type LaunchRequest, type Provider } from "./provider.ts";

export const NODEPOOL_GROUP_VERSION = "compute.coreweave.com/v1alpha1";
export const NODEPOOL_PATH = "/apis/compute.coreweave.com/v1alpha1/nodepools";
/** The label CKS puts on the Nodes of a Node Pool. */
export const NODEPOOL_NODE_LABEL = "compute.coreweave.com/node-pool";
/** On the Node (through spec.nodeLabels): which Navarch node it is. */
export const NODE_ID_LABEL = "navarch.dev/node-id";

const MANAGED_LABEL = "navarch.dev/managed-by";
const POOL_LABEL = "navarch.dev/pool";
const KEY_ANNOTATION = "navarch.dev/idempotency-key";
const TAGS_ANNOTATION = "navarch.dev/tags";
const REGION_ANNOTATION = "navarch.dev/region";
const ZONE_ANNOTATION = "navarch.dev/zone";

export const NodePoolObject = v.looseObject({
  metadata: ObjectMeta,
  spec: v.looseObject({
    instanceType: v.string(),
    targetNodes: v.optional(v.number()),
    computeClass: v.optional(v.string()),
    nodeLabels: v.optional(v.nullable(v.record(v.string(), v.string()))),
  }),
  status: v.optional(
    v.nullable(
      v.looseObject({
        currentNodes: v.optional(v.number()),
        conditions: v.optional(v.nullable(v.array(Condition))),
      }),
    ),
  ),
});
export type NodePoolObject = v.InferOutput<typeof NodePoolObject>;

/** CoreWeave GPU instance ids read `gd-<count>x<model>[ib]-<cpu>` (gd-8xh100ib-i128); others are looked up here. */
const KNOWN_TYPES: InstanceTypeInfo[] = [
  { name: "gd-8xh100ib-i128", gpus: 8, gpuModel: "H100 80GB HBM3 (InfiniBand)" },
  { name: "gd-8xh200ib-i128", gpus: 8, gpuModel: "H200 141GB (InfiniBand)" },
  { name: "gd-8xa100-i128", gpus: 8, gpuModel: "A100 80GB" },
  { name: "gd-8xl40-i128", gpus: 8, gpuModel: "L40" },
];

export interface CoreWeaveProviderOptions {
  config?: CoreWeaveProviderConfig;
  /** Instead of the config's kubeconfig (tests). */
  client?: KubeClient;
  source?: KubeSource;
  log?: (line: string) => void;
}

export class CoreWeaveProvider implements Provider {
  readonly name = "coreweave";
  private client: Promise<KubeClient> | undefined;

  constructor(private readonly opts: CoreWeaveProviderOptions = {}) {
    if (opts.client) this.client = Promise.resolve(opts.client);
  }

  async launch(req: LaunchRequest): Promise<Instance> {
    const client = await this.connect();
    const body = {
      apiVersion: NODEPOOL_GROUP_VERSION,
      kind: "NodePool",
      metadata: {
        name: req.name,
        labels: { [MANAGED_LABEL]: "navarch", [POOL_LABEL]: req.pool },
        annotations: {
          [KEY_ANNOTATION]: req.idempotencyKey,
          [TAGS_ANNOTATION]: JSON.stringify(req.tags),
          [REGION_ANNOTATION]: req.region,
          ...(req.zone ? { [ZONE_ANNOTATION]: req.zone } : {}),
        },
      },
      spec: {
        computeClass: "default",
        instanceType: req.instanceType,
        targetNodes: 1,
        // Navarch sizes its pools itself: CKS's autoscaler must not add or remove this node.
        autoscaling: false,
        nodeLabels: { [NODE_ID_LABEL]: req.name, [POOL_LABEL]: req.pool },
      },
    };
    try {
      const created = await client.request("POST", NODEPOOL_PATH, { body }, NodePoolObject);
      return this.view(created, []);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409)) throw this.error(err, `create Node Pool ${req.name}`);
    }
    // Already there: ours from an earlier try of this launch, or someone else's.
    const existing = await this.fetch(req.name);
    if (existing === undefined) throw new ProviderError(this.name, "transient", `Node Pool ${req.name} exists and vanished while it was read; retry`);
    if (existing.metadata.annotations?.[KEY_ANNOTATION] !== req.idempotencyKey) {
      throw new ProviderError(this.name, "invalid", `a Node Pool named ${req.name} already exists and was not created by this launch (${req.idempotencyKey})`);
    }
    return this.view(existing, await this.nodesOf(req.name));
  }

  async terminate(id: string): Promise<void> {
    const client = await this.connect();
    try {
      await client.request("DELETE", `${NODEPOOL_PATH}/${encodeURIComponent(id)}`, {
        body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" },
      });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // already gone
      throw this.error(err, `delete Node Pool ${id}`);
    }
  }

  async get(id: string): Promise<Instance | undefined> {
    const pool = await this.fetch(id);
    return pool === undefined ? undefined : this.view(pool, await this.nodesOf(id));
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    const client = await this.connect();
    try {
      const [{ items }, nodes] = await Promise.all([
        client.list(NODEPOOL_PATH, NodePoolObject, { query: { labelSelector: labelSelector({ [MANAGED_LABEL]: "navarch" }) } }),
        client.list("/api/v1/nodes", KubeNode, { query: { labelSelector: NODEPOOL_NODE_LABEL } }),
      ]);
      const byPool = new Map<string, KubeNode[]>();
      for (const node of nodes.items) {
        const pool = node.metadata.labels?.[NODEPOOL_NODE_LABEL];
        if (pool !== undefined) byPool.set(pool, [...(byPool.get(pool) ?? []), node]);
      }
      return items
        .map((pool) => this.view(pool, byPool.get(pool.metadata.name) ?? []))
        .filter((instance) => Object.entries(tags).every(([k, val]) => instance.tags[k] === val));
    } catch (err) {
      throw this.error(err, "list Node Pools");
    }
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    return KNOWN_TYPES;
  }

  private async fetch(id: string): Promise<NodePoolObject | undefined> {
    const client = await this.connect();
    try {
      return await client.request("GET", `${NODEPOOL_PATH}/${encodeURIComponent(id)}`, {}, NodePoolObject);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw this.error(err, `read Node Pool ${id}`);
    }
  }

  private async nodesOf(pool: string): Promise<KubeNode[]> {
    const client = await this.connect();
    try {
      return (await client.list("/api/v1/nodes", KubeNode, { query: { labelSelector: labelSelector({ [NODEPOOL_NODE_LABEL]: pool }) } })).items;
    } catch (err) {
      throw this.error(err, `list the Nodes of Node Pool ${pool}`);
    }
  }

  /** The instance a Node Pool of one node stands for. */
  private view(pool: NodePoolObject, nodes: KubeNode[]): Instance {
    const annotations = pool.metadata.annotations ?? {};
    let tags: Record<string, string> = {};
    try {
      const parsed: unknown = JSON.parse(annotations[TAGS_ANNOTATION] ?? "{}");
      if (typeof parsed === "object" && parsed !== null)
        tags = Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === "string"));
    } catch {
      tags = {};
    }
    if (pool.metadata.labels?.[MANAGED_LABEL] === "navarch") tags[TAG_MANAGED_BY] ??= "navarch";
    const ready = nodes.find((n) => n.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
    let state: InstanceState = "pending";
    if (pool.metadata.deletionTimestamp) state = "stopping";
    else if (ready !== undefined) state = "running";
    const address = ready?.status.addresses?.find((a) => a.type === "InternalIP")?.address;
    return {
      id: pool.metadata.name,
      name: pool.metadata.name,
      provider: this.name,
      instanceType: pool.spec.instanceType,
      region: annotations[REGION_ANNOTATION] ?? "",
      ...(annotations[ZONE_ANNOTATION] ? { zone: annotations[ZONE_ANNOTATION] } : {}),
      state,
      ...(address ? { address } : {}),
      tags,
      ...(pool.metadata.creationTimestamp ? { createdAt: pool.metadata.creationTimestamp } : {}),
    };
  }

  private connect(): Promise<KubeClient> {
    this.client ??= KubeClient.connect({
      source: this.opts.source ?? (this.opts.config?.kubeconfig ? { kind: "kubeconfig", path: this.opts.config.kubeconfig } : { kind: "kubeconfig" }),
    }).catch((err: unknown) => {
      this.client = undefined; // a fixed kubeconfig is picked up on the next call
      throw new ProviderError(this.name, "auth", err instanceof Error ? err.message : String(err));
    });
    return this.client;
  }

  private error(err: unknown, what: string): ProviderError {
    if (err instanceof ProviderError) return err;
    if (!(err instanceof KubeApiError)) return new ProviderError(this.name, "transient", `${what}: ${err instanceof Error ? err.message : String(err)}`);
    const message = `${what}: ${err.message}`;
    if (err.status === 401 || err.status === 403) return new ProviderError(this.name, "auth", message);
    if (err.status === 404) return new ProviderError(this.name, "not_found", message);
    if (err.status === 400 || err.status === 409 || err.status === 422) return new ProviderError(this.name, "invalid", message);
    if (err.status === 429) return new ProviderError(this.name, "rate_limit", message, err.retryAfterSeconds);
    return new ProviderError(this.name, "transient", message);
  }
}
