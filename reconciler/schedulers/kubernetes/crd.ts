// The GpuPool CustomResourceDefinition (deploy/crds/gpupool.yaml), generated from the config
// file's own pool schema (schema/config/pool.ts PoolSchema): every key a config pool has, with the
// type, bounds, enum or pattern its valibot leaf declares (schema/shapes.ts JsonShape), so a
// key added to a pool is a key of the CRD (the API server prunes fields its schema lacks: a
// key missing here would be accepted by kubectl and silently dropped). Cross-field rules the
// structural schema cannot derive are the CEL rules below; the reconciler checks every spec
// again with the config file's rules before applying it.
//   bun run scripts/crds.ts     (writes deploy/crds/gpupool.yaml; test/crd.test.ts fails when it is stale)
import YAML from "yaml";
import { PoolSchema } from "../../../schema/config/pool.ts";
import { isSchemaNode, jsonShapeOf, type CelRule, type JsonShape } from "../../../schema/shapes.ts";
import { GPUPOOL_GROUP, GPUPOOL_VERSION } from "./pools.ts";

/** The JSON Schema of one valibot schema; throws naming the key path where a leaf says nothing. */
export function structuralSchema(schema: unknown, path = "spec"): JsonShape {
  if (!isSchemaNode(schema)) throw new Error(`${path}: not a valibot schema`);
  const shape = jsonShapeOf(schema);
  if (shape !== undefined) return shape;
  // A pipe keeps its first schema's type and lists it first; objects, lists and maps checked
  // further in it (strict() mappings, lists, labels) say more than that first schema.
  if (Array.isArray(schema.pipe) && schema.pipe.length > 0) {
    const [root, ...rest] = schema.pipe;
    // A check over any value first (schema/text.ts WellFormedStrings), then the schema that has the shape.
    const shaped = rest.find((i) => i.kind === "schema");
    if (root?.type === "unknown" && shaped !== undefined) return structuralSchema(shaped, path);
    const inner = rest.find((i) => ["loose_object", "object", "strict_object", "array", "record"].includes(i.type));
    return structuralSchema(inner ?? root, path);
  }
  switch (schema.type) {
    case "optional":
    case "nullish":
      return structuralSchema(schema.wrapped, path);
    case "loose_object":
    case "object":
    case "strict_object": {
      const entries = Object.entries(schema.entries ?? {});
      const required = entries.filter(([, e]) => e.type !== "optional" && e.type !== "nullish").map(([k]) => k);
      return {
        type: "object",
        ...(required.length > 0 ? { required } : {}),
        properties: Object.fromEntries(entries.map(([k, e]) => [k, structuralSchema(e, `${path}.${k}`)])),
      };
    }
    case "array":
      return { type: "array", items: structuralSchema(schema.item, `${path}[]`) };
    case "record":
      return { type: "object", additionalProperties: structuralSchema(schema.value, `${path}.*`) };
    case "string":
      return { type: "string" };
    case "number":
      return { type: "number" };
    case "boolean":
      return { type: "boolean" };
    case "literal":
      return { type: "string" };
    default:
      throw new Error(`${path}: a ${schema.type} schema with no JSON shape (give its leaf one: schema/shapes.ts withJsonShape)`);
  }
}

/** What the structural schema cannot say, as the config file's rules say it (schema/config/pool.ts, pool-scaling.ts). */
const SPEC_RULES: CelRule[] = [
  { rule: "has(self.provider) != has(self.providers)", message: "set provider, or providers (a failover list), exactly one of them" },
  {
    rule: "!has(self.setup_commands) || size(self.setup_commands) == 0 || has(self.ssh_private_key_path) || (has(self.provider) && self.provider == 'lambda') || (has(self.providers) && self.providers.all(p, p == 'lambda'))",
    message: "ssh_private_key_path is required when setup_commands is not empty (they run over SSH), unless the pool launches on Lambda alone",
    fieldPath: ".ssh_private_key_path",
  },
];
const SCALING_RULES: CelRule[] = [
  { rule: "!has(self.min_nodes) || !has(self.max_nodes) || self.max_nodes >= self.min_nodes", message: "must be ≥ min_nodes", fieldPath: ".max_nodes" },
  { rule: "!has(self.autoscaler) || has(self.max_nodes)", message: "is required when an autoscaler is set", fieldPath: ".max_nodes" },
];

/** The spec: a config pool without `name` (the resource's metadata.name is the pool's name). */
export function gpuPoolSpecSchema(): JsonShape {
  const pool = structuralSchema(PoolSchema);
  const { name: _name, ...properties } = pool.properties ?? {};
  const scaling = properties.scaling;
  if (scaling === undefined) throw new Error("a pool has no scaling");
  return {
    type: "object",
    required: (pool.required ?? []).filter((k) => k !== "name"),
    "x-kubernetes-validations": SPEC_RULES,
    properties: { ...properties, scaling: { ...scaling, "x-kubernetes-validations": SCALING_RULES } },
  };
}

/** What the reconciler writes (reconciler/schedulers/kubernetes/pools.ts). */
const STATUS = {
  type: "object",
  properties: {
    observedGeneration: { type: "integer" },
    appliedGeneration: { description: "The generation whose spec the reconciler runs (an invalid later spec leaves it in force).", type: "integer" },
    nodes: { type: "object", properties: { ready: { type: "integer" }, total: { type: "integer" } } },
    lastError: { type: "string" },
    conditions: {
      type: "array",
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
      items: {
        type: "object",
        required: ["type", "status"],
        properties: {
          type: { type: "string" },
          status: { type: "string", enum: ["True", "False", "Unknown"] },
          reason: { type: "string" },
          message: { type: "string" },
          observedGeneration: { type: "integer" },
          lastTransitionTime: { type: "string", format: "date-time" },
        },
      },
    },
  },
};

export function gpuPoolCrd(): Record<string, unknown> {
  const [group, version] = [GPUPOOL_GROUP, GPUPOOL_VERSION];
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `gpupools.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { plural: "gpupools", singular: "gpupool", kind: "GpuPool", listKind: "GpuPoolList", shortNames: ["gpool"], categories: ["navarch"] },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: "Provider", type: "string", jsonPath: ".spec.provider" },
            { name: "Instance-Type", type: "string", jsonPath: ".spec.instance_type" },
            { name: "Min", type: "integer", jsonPath: ".spec.scaling.min_nodes" },
            { name: "Max", type: "integer", jsonPath: ".spec.scaling.max_nodes" },
            { name: "Ready", type: "integer", jsonPath: ".status.nodes.ready" },
            { name: "Total", type: "integer", jsonPath: ".status.nodes.total" },
            { name: "Valid", type: "string", jsonPath: '.status.conditions[?(@.type=="Valid")].status' },
            { name: "Error", type: "string", jsonPath: ".status.lastError", priority: 1 },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              "x-kubernetes-validations": [
                {
                  rule: "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                  message: "metadata.name is the pool's name: a DNS label (lowercase letters, digits and '-', at most 63)",
                },
              ],
              properties: { spec: gpuPoolSpecSchema(), status: STATUS },
            },
          },
        },
      ],
    },
  };
}

const HEADER = `# GpuPool: a Navarch pool as a Kubernetes custom resource. The spec is one pool of the
# config file (same snake_case keys, same durations like 5m), without \`name\`: the pool's
# name is metadata.name. The reconciler (kubernetes.pools_crd.enabled) watches the
# namespace in kubernetes.pools_crd.namespace, validates each spec again with the config
# file's own rules (what this schema cannot say: autoscaler details, template syntax),
# applies a spec whole or not at all, and writes status: nodes ready/total, conditions
# Valid and Ready, lastError. A pool the config file also defines stays the file's.
#
# Generated from the config pool's schema by scripts/crds.ts (reconciler/schedulers/kubernetes/crd.ts): do not edit.
#
#   kubectl apply -f deploy/crds/gpupool.yaml
#   kubectl get gpupools -n navarch
`;

/** The file deploy/crds/gpupool.yaml. */
export function gpuPoolCrdYaml(): string {
  return HEADER + YAML.stringify(gpuPoolCrd(), { lineWidth: 0, aliasDuplicateObjects: false });
}
