// The parts of Kubernetes objects Navarch reads, as valibot schemas (every answer from
// the API server is parsed at the edge). Loose objects: the server sends much more than
// we read, and a newer server may add fields.
import * as v from "valibot";

const StringMap = v.record(v.string(), v.string());

export const OwnerReference = v.looseObject({
  apiVersion: v.string(),
  kind: v.string(),
  name: v.string(),
  uid: v.string(),
  controller: v.optional(v.nullable(v.boolean())),
});

export const ObjectMeta = v.looseObject({
  name: v.string(),
  namespace: v.optional(v.string()),
  uid: v.optional(v.string()),
  resourceVersion: v.optional(v.string()),
  generation: v.optional(v.number()),
  creationTimestamp: v.optional(v.nullable(v.string())),
  deletionTimestamp: v.optional(v.nullable(v.string())),
  labels: v.optional(v.nullable(StringMap)),
  annotations: v.optional(v.nullable(StringMap)),
  ownerReferences: v.optional(v.nullable(v.array(OwnerReference))),
  finalizers: v.optional(v.nullable(v.array(v.string()))),
});
export type ObjectMeta = v.InferOutput<typeof ObjectMeta>;

export const Taint = v.looseObject({
  key: v.string(),
  value: v.optional(v.nullable(v.string())),
  effect: v.string(),
  timeAdded: v.optional(v.nullable(v.string())),
});
export type Taint = v.InferOutput<typeof Taint>;

export const Condition = v.looseObject({
  type: v.string(),
  status: v.string(),
  reason: v.optional(v.nullable(v.string())),
  message: v.optional(v.nullable(v.string())),
  lastTransitionTime: v.optional(v.nullable(v.string())),
  lastHeartbeatTime: v.optional(v.nullable(v.string())),
});
export type Condition = v.InferOutput<typeof Condition>;

export const KubeNode = v.looseObject({
  metadata: ObjectMeta,
  spec: v.optional(
    v.looseObject({
      unschedulable: v.optional(v.nullable(v.boolean())),
      taints: v.optional(v.nullable(v.array(Taint))),
      providerID: v.optional(v.nullable(v.string())),
    }),
    {},
  ),
  status: v.optional(
    v.looseObject({
      conditions: v.optional(v.nullable(v.array(Condition))),
      addresses: v.optional(v.nullable(v.array(v.looseObject({ type: v.string(), address: v.string() })))),
    }),
    {},
  ),
});
export type KubeNode = v.InferOutput<typeof KubeNode>;

export const Pod = v.looseObject({
  metadata: ObjectMeta,
  spec: v.optional(
    v.looseObject({
      nodeName: v.optional(v.nullable(v.string())),
      volumes: v.optional(v.nullable(v.array(v.looseObject({ name: v.string(), emptyDir: v.optional(v.nullable(v.looseObject({}))) })))),
      terminationGracePeriodSeconds: v.optional(v.nullable(v.number())),
    }),
    {},
  ),
  status: v.optional(v.looseObject({ phase: v.optional(v.nullable(v.string())) }), {}),
});
export type Pod = v.InferOutput<typeof Pod>;

/** A list answer (`…List`): raw items (parsed one by one, so a bad one is skipped), the resourceVersion to watch from, the page token. */
export const AnyList = v.looseObject({
  metadata: v.optional(v.looseObject({ resourceVersion: v.optional(v.string()), continue: v.optional(v.nullable(v.string())) }), {}),
  items: v.nullable(v.array(v.unknown())),
});

/** The API server's error body (`kind: Status`). */
export const Status = v.looseObject({
  kind: v.optional(v.string()),
  status: v.optional(v.string()),
  message: v.optional(v.string()),
  reason: v.optional(v.string()),
  code: v.optional(v.number()),
  details: v.optional(
    v.nullable(
      v.looseObject({
        retryAfterSeconds: v.optional(v.number()),
        causes: v.optional(
          v.nullable(v.array(v.looseObject({ field: v.optional(v.string()), message: v.optional(v.string()), reason: v.optional(v.string()) }))),
        ),
      }),
    ),
  ),
});
export type Status = v.InferOutput<typeof Status>;

/** One line of a watch stream. */
export const WatchEvent = v.looseObject({
  type: v.picklist(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]),
  object: v.unknown(),
});

/** `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(meta: { name: string; namespace?: string | undefined }): string {
  return meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;
}

/** JSON Pointer escaping for one path segment (`a/b` → `a~1b`). */
export function pointer(segment: string): string {
  return segment.replaceAll("~", "~0").replaceAll("/", "~1");
}
