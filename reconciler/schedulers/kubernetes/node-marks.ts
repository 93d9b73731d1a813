// What Navarch writes on a Kubernetes Node, as JSON patches conditional on the Node's
// resourceVersion (a merge patch would replace the whole taint list):
//   - its cordon: spec.unschedulable, a NoSchedule taint (kubernetes.taint_key) and annotations
//     naming the reason, the incident, the time and exactly which of the two it changed;
//   - the cordon's undo, which takes back only what those annotations say it changed, and
//     only on a Node whose annotations say Navarch cordoned it;
//   - a pool's labels and taints, added once per Node (an annotation says it was done).
import { textPrefix } from "../../../schema/text.ts";
import { pointer, type KubeNode } from "../../clients/kube/types.ts";
import type { PoolMarks } from "../scheduler.ts";

/** Annotations we put on a Node we cordon. */
export const ANNOTATIONS = {
  cordonedBy: "navarch.dev/cordoned-by",
  reason: "navarch.dev/cordon-reason",
  incident: "navarch.dev/incident-id",
  at: "navarch.dev/cordoned-at",
  node: "navarch.dev/node-id",
  /** What the cordon changed: `unschedulable`, `taint` (comma-separated); uncordon undoes only these. */
  owned: "navarch.dev/cordon-owned",
  drain: "navarch.dev/drain-status",
} as const;
const OUR_ANNOTATIONS: readonly string[] = Object.values(ANNOTATIONS);

/** The pool whose labels and taints a Node was given, once (a Node created again gets them again). */
export const POOL_MARKS_ANNOTATION = "navarch.dev/pool-marks";

type JsonPatchOp = { op: "add" | "replace" | "test"; path: string; value: unknown } | { op: "remove"; path: string };

/** One cordon of ours: who, why, for which incident and Navarch node, and when. */
export interface CordonMarks {
  actor: string;
  taintKey: string;
  reason: string;
  incidentId: number;
  /** When Navarch cordoned (ms since the epoch). */
  at: number;
  nodeId: string;
}

/** The patch that puts our cordon on the Node as it is now; undefined when it is already there for this incident. */
export function cordonPatch(current: KubeNode, cordon: CordonMarks): JsonPatchOp[] | undefined {
  const annotations = current.metadata.annotations ?? {};
  const ours = annotations[ANNOTATIONS.cordonedBy] === cordon.actor;
  const owned = ours ? parseOwned(annotations[ANNOTATIONS.owned]) : new Set<string>();
  const taints = current.spec.taints ?? [];
  const hasTaint = taints.some((t) => t.key === cordon.taintKey && t.effect === "NoSchedule");
  const unschedulable = current.spec.unschedulable === true;
  if (ours && hasTaint && unschedulable && annotations[ANNOTATIONS.incident] === String(cordon.incidentId)) return undefined; // already done
  const ops: JsonPatchOp[] = [{ op: "test", path: "/metadata/resourceVersion", value: current.metadata.resourceVersion }];
  if (!unschedulable) {
    ops.push({ op: "add", path: "/spec/unschedulable", value: true });
    owned.add("unschedulable");
  }
  if (!hasTaint) {
    const taint = { key: cordon.taintKey, value: cordon.incidentId > 0 ? "unhealthy" : "scale-down", effect: "NoSchedule" };
    ops.push(current.spec.taints ? { op: "add", path: "/spec/taints/-", value: taint } : { op: "add", path: "/spec/taints", value: [taint] });
    owned.add("taint");
  }
  const values: Record<string, string> = {
    [ANNOTATIONS.cordonedBy]: cordon.actor,
    [ANNOTATIONS.reason]: textPrefix(cordon.reason, 1000),
    [ANNOTATIONS.incident]: String(cordon.incidentId),
    [ANNOTATIONS.at]: new Date(cordon.at).toISOString(),
    [ANNOTATIONS.node]: cordon.nodeId,
    [ANNOTATIONS.owned]: [...owned].sort().join(","),
  };
  if (current.metadata.annotations) {
    for (const [k, val] of Object.entries(values)) ops.push({ op: "add", path: `/metadata/annotations/${pointer(k)}`, value: val });
  } else {
    ops.push({ op: "add", path: "/metadata/annotations", value: values });
  }
  return ops;
}

/** The patch that undoes what our annotations say we did; undefined when the Node is not cordoned by `actor`. */
export function uncordonPatch(current: KubeNode, actor: string, taintKey: string): JsonPatchOp[] | undefined {
  const annotations = current.metadata.annotations ?? {};
  if (annotations[ANNOTATIONS.cordonedBy] !== actor) return undefined;
  const owned = parseOwned(annotations[ANNOTATIONS.owned]);
  const ops: JsonPatchOp[] = [{ op: "test", path: "/metadata/resourceVersion", value: current.metadata.resourceVersion }];
  if (owned.has("unschedulable") && current.spec.unschedulable === true) ops.push({ op: "replace", path: "/spec/unschedulable", value: false });
  if (owned.has("taint")) {
    const index = (current.spec.taints ?? []).findIndex((t) => t.key === taintKey && t.effect === "NoSchedule");
    if (index >= 0) ops.push({ op: "remove", path: `/spec/taints/${index}` });
  }
  for (const key of OUR_ANNOTATIONS) if (key in annotations) ops.push({ op: "remove", path: `/metadata/annotations/${pointer(key)}` });
  return ops;
}

/** Our annotations are on the Node but it is schedulable again: someone uncordoned it. */
export function humanUncordoned(node: KubeNode, actor: string): boolean {
  const annotations = node.metadata.annotations ?? {};
  return annotations[ANNOTATIONS.cordonedBy] === actor && node.spec.unschedulable !== true && annotations[ANNOTATIONS.node] !== undefined;
}

/**
 * The patch that gives the Node what it lacks of pool `pool`'s labels and taints, and the
 * annotation that says it was done, with what it added (for the log); undefined when the
 * annotation is already there.
 */
export function poolMarksPatch(current: KubeNode, pool: string, marks: PoolMarks): { ops: JsonPatchOp[]; added: string[] } | undefined {
  if (current.metadata.annotations?.[POOL_MARKS_ANNOTATION] !== undefined) return undefined;
  const labels = current.metadata.labels ?? {};
  const taints = current.spec.taints ?? [];
  const addLabels = Object.entries(marks.labels).filter(([k]) => labels[k] === undefined);
  const addTaints = marks.taints.filter((t) => !taints.some((x) => x.key === t.key && x.effect === t.effect));
  const ops: JsonPatchOp[] = [{ op: "test", path: "/metadata/resourceVersion", value: current.metadata.resourceVersion }];
  if (current.metadata.labels === undefined) ops.push({ op: "add", path: "/metadata/labels", value: Object.fromEntries(addLabels) });
  else for (const [k, val] of addLabels) ops.push({ op: "add", path: `/metadata/labels/${pointer(k)}`, value: val });
  if (current.spec.taints === undefined || current.spec.taints === null) ops.push({ op: "add", path: "/spec/taints", value: addTaints });
  else for (const t of addTaints) ops.push({ op: "add", path: "/spec/taints/-", value: t });
  if (current.metadata.annotations === undefined) ops.push({ op: "add", path: "/metadata/annotations", value: { [POOL_MARKS_ANNOTATION]: pool } });
  else ops.push({ op: "add", path: `/metadata/annotations/${pointer(POOL_MARKS_ANNOTATION)}`, value: pool });
  const added = [...addLabels.map(([k, val]) => `${k}=${val}`), ...addTaints.map((t) => `taint ${t.key}${t.value ? `=${t.value}` : ""}:${t.effect}`)];
  return { ops, added };
}

function parseOwned(text: string | undefined): Set<string> {
  return new Set((text ?? "").split(",").filter((x) => x === "unschedulable" || x === "taint"));
}
