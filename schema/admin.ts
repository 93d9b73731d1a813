// Shapes of the admin API's answers that the CLI (and later the dashboard) read.
// Non-strict objects: the server may add fields without breaking older clients.
import * as v from "valibot";
import { NODE_STATES } from "./lifecycle.ts";

const Nullable = <T extends v.GenericSchema>(s: T) => v.nullable(s);

/** `launched`: Navarch asked a provider for it. `registered`: its agent came on its own (monitored only). */
export const NODE_ORIGINS = ["launched", "registered"] as const;

export const NodeRow = v.object({
  id: v.string(),
  origin: v.picklist(NODE_ORIGINS),
  pool: Nullable(v.string()),
  provider: Nullable(v.string()),
  instanceType: Nullable(v.string()),
  hostname: Nullable(v.string()),
  state: v.picklist(NODE_STATES),
  stateReason: Nullable(v.string()),
  stateChangedAt: v.number(),
  bootId: Nullable(v.string()),
  agentVersion: Nullable(v.string()),
  driverVersion: Nullable(v.string()),
  cudaVersion: Nullable(v.string()),
  nvmlAvailable: v.boolean(),
  nvmlError: Nullable(v.string()),
  agentHealth: Nullable(v.picklist(["healthy", "degraded", "unhealthy"])),
  registeredAt: Nullable(v.number()),
  lastHeartbeatAt: Nullable(v.number()),
  lastEventSeq: v.number(),
  verdict: Nullable(v.picklist(["healthy", "degraded", "unhealthy"])),
  incidentId: Nullable(v.number()),
  replacementOf: Nullable(v.string()),
  cordonedBy: Nullable(v.string()),
});
export type NodeRow = v.InferOutput<typeof NodeRow>;

export const GpuRow = v.object({
  index: v.number(),
  uuid: v.string(),
  pciBusId: v.string(),
  name: v.string(),
  memoryTotalBytes: Nullable(v.number()),
  lastSnapshot: Nullable(v.record(v.string(), v.unknown())),
});

export const EventRow = v.object({
  seq: v.number(),
  time: v.number(),
  check: v.string(),
  code: Nullable(v.string()),
  severity: v.string(),
  action: v.string(),
  gpuIndex: Nullable(v.number()),
  message: v.string(),
  count: v.number(),
});

/** Most nodes one page of GET /v1/nodes carries (and the default). */
export const NODE_PAGE_MAX = 1000;

export const NodeList = v.object({
  nodes: v.pipe(v.array(NodeRow), v.description(`in id order, at most \`limit\` (default and most ${NODE_PAGE_MAX})`)),
  next: v.pipe(v.nullable(v.string()), v.description("pass as `after` for the next page; null on the last")),
});
export type NodeList = v.InferOutput<typeof NodeList>;

/** GET /v1/nodes query: filters, and keyset paging by node id. */
export const NodeQuery = v.object({
  pool: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  state: v.optional(v.picklist(NODE_STATES)),
  unhealthy: v.optional(v.pipe(v.picklist(["true", "false"]), v.description("only nodes judged unhealthy, or Lost"))),
  after: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(253), v.description("the previous page's `next`"))),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/, `must be a whole number from 1 to ${NODE_PAGE_MAX}`))),
});
export type NodeQuery = v.InferOutput<typeof NodeQuery>;
export const NodeDetail = v.object({ node: NodeRow, gpus: v.array(GpuRow), events: v.array(EventRow) });
export type NodeDetail = v.InferOutput<typeof NodeDetail>;

/** An action only one dependency can carry out, waiting for it (a cordon for the Kubernetes API, a launch for a provider). */
export const QueuedAction = v.object({
  /** `cordon`, `uncordon`, `launch`, `terminate`, `list`, … */
  action: v.string(),
  /** The node it is for, if any: Navarch's id, or its name in the scheduler for a write under way there. */
  node: v.optional(v.string()),
  /** When it was asked for (ms). */
  since: v.number(),
});
export type QueuedAction = v.InferOutput<typeof QueuedAction>;

/** The states of a dependency: `unknown` until it first answered or failed. */
export const DEPENDENCY_STATES = ["up", "down", "unknown"] as const;

export const DependencyStatus = v.object({
  /** The navarch_dependency_up gauge's label: `database`, `kubernetes`, `slurm`, `prometheus`, `provider:NAME`. */
  name: v.string(),
  /** What it is, for people: `the Kubernetes API`. */
  label: v.string(),
  /** Where: a URL, a file, a provider's config key. */
  target: v.string(),
  state: v.picklist(DEPENDENCY_STATES),
  /** When the state began (ms). */
  since: v.number(),
  lastSuccessAt: Nullable(v.number()),
  lastError: Nullable(v.object({ at: v.number(), message: v.string() })),
  /** How many actions wait for it; the first QUEUED_SHOWN of them, oldest first, in `queued`. */
  queuedCount: v.number(),
  queued: v.array(QueuedAction),
});
export type DependencyStatus = v.InferOutput<typeof DependencyStatus>;

/** How many of a dependency's waiting actions GET /v1/status lists. */
export const QUEUED_SHOWN = 50;

export const LoopStatus = v.object({
  /** When the last pass ended (ms), and whether it failed (why). */
  lastPassAt: Nullable(v.number()),
  lastPassError: Nullable(v.string()),
  /** When the pass under way started (ms); null between passes. */
  passStartedAt: Nullable(v.number()),
});
export type LoopStatus = v.InferOutput<typeof LoopStatus>;

/** GET /v1/status: this reconciler's role, its loop, and each dependency with what waits for it. */
export const ReconcilerStatus = v.object({
  /** `leader, lease epoch 3`, `standby; the leader is …`. */
  role: v.string(),
  /** Whether this reconciler runs the loop (it leads). */
  leading: v.boolean(),
  loop: Nullable(LoopStatus),
  dependencies: v.array(DependencyStatus),
});
export type ReconcilerStatus = v.InferOutput<typeof ReconcilerStatus>;
