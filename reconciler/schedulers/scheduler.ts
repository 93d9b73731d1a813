// Where workloads are scheduled: the plug-in contract every scheduler integration
// (Kubernetes in reconciler/schedulers/kubernetes, Slurm in reconciler/schedulers/slurm) implements, as providers
// implement providers/provider.ts. The reconcile loop cordons and drains through the
// integration's mirror; its queue source feeds the `queue` autoscaler. A plug-in never
// reads or writes Navarch's tables: it sees nodes through a read-only view and reaches
// back through the host its owner gives it (record a mapping, cancel an incident when a
// human returns a node to service in the scheduler, wake the loop). Without a scheduler
// Navarch's own cordon is the only one, and a drain waits for the node's GPUs to go idle
// or for the pool's drain deadline.
import type { NodeState } from "../../schema/lifecycle.ts";
import type { PoolConfig, PoolTaint } from "../../schema/config.ts";
import type { GpuSnapshot } from "../../schema/wire.ts";
import type { Dependency } from "../dependencies/status.ts";

/** What a plug-in may know of a Navarch node: enough to map it to the scheduler's node and judge its drain. */
export interface SchedulerNodeView {
  readonly id: string;
  /** The agent's hostname; null until it registers. */
  readonly hostname: string | null;
  /** The provider's id of the instance behind the node; null until launched. */
  readonly instanceId: string | null;
  readonly pool: string | null;
  /** The scheduler's name for this node when it was last mapped; null when never. */
  readonly mappedName: string | null;
  readonly state: NodeState;
  /** Who took it out of service (`navarch`, `human:alice`); null while in service. */
  readonly cordonedBy: string | null;
  readonly incidentId: number | null;
  readonly verdict: "healthy" | "degraded" | "unhealthy" | null;
  /** The node's status line. */
  readonly stateReason: string | null;
  /** When its agent last sent a heartbeat (ms); null when never. */
  readonly lastHeartbeatAt: number | null;
}

/** The view the loop hands a mirror call, with the node's latest GPU readings on demand. */
export interface SchedulerNode extends SchedulerNodeView {
  /**
   * Latest per-GPU readings from the agent (utilisation tells whether work is running). Read
   * from the store when asked: a scheduler that knows its own work never pays a query per node
   * per pass.
   */
  readings(): Promise<readonly GpuSnapshot[]>;
}

/** The columns of a nodes row a view is made of. */
export interface SchedulerNodeRow {
  id: string;
  hostname: string | null;
  instanceName: string | null;
  pool: string | null;
  k8sNodeName: string | null;
  state: NodeState;
  cordonedBy: string | null;
  incidentId: number | null;
  verdict: "healthy" | "degraded" | "unhealthy" | null;
  stateReason: string | null;
  lastHeartbeatAt: number | null;
}

export function schedulerNodeView(row: SchedulerNodeRow): SchedulerNodeView {
  return {
    id: row.id,
    hostname: row.hostname,
    instanceId: row.instanceName,
    pool: row.pool,
    mappedName: row.k8sNodeName,
    state: row.state,
    cordonedBy: row.cordonedBy,
    incidentId: row.incidentId,
    verdict: row.verdict,
    stateReason: row.stateReason,
    lastHeartbeatAt: row.lastHeartbeatAt,
  };
}

/** What the loop passes a mirror call: the row as a read-only view, with its readings on demand. */
export function schedulerNode(row: SchedulerNodeRow, readings: () => Promise<readonly GpuSnapshot[]>): SchedulerNode {
  return { ...schedulerNodeView(row), readings };
}

export interface DrainProgress {
  done: boolean;
  /** What is still running, for the node's status line (e.g. "3 pods left, 1 blocked by a PDB"). */
  detail: string;
  /** Set when the drain must stop and wait for a human (why); the loop holds the node. */
  hold?: string;
  /** Set while the drain cannot go on because the scheduler does not answer: what it waits for, since when (the incident says it too). */
  waiting?: string;
  /**
   * Not final: the mirror is still reading the scheduler (what is left on the node, whether a
   * write landed). Past the drain deadline the loop asks again instead of acting on it: Navarch
   * never deletes, requeues or terminates at a deadline without having read what is left.
   */
  again?: boolean;
}

export interface SchedulerMirror {
  readonly name: string;
  /**
   * Stop new work from landing on the node; idempotent. Resolves at once, without a request:
   * the write goes out beside the loop, and a scheduler that is down never holds up Navarch's
   * own cordon (it is queued, and retried until the scheduler answers). Resolves with what the
   * cordon waits for when the scheduler does not answer now (for the node and its incident).
   */
  cordon(node: SchedulerNode, reason: string, incidentId: number): Promise<string | void>;
  /** Undo our cordon (only ever called for cordons we made); idempotent, retried like cordon. */
  uncordon(node: SchedulerNode): Promise<void>;
  /**
   * Move work off the node; called every pass until done or the deadline passes. Must not
   * wait for work to leave, nor for the scheduler to answer (report progress instead: what
   * it read last, what it waits for); may reject with SchedulerError.
   */
  drain(node: SchedulerNode, deadlineAt: number, now: number): Promise<DrainProgress>;
}

export interface QueueDepth {
  pending: number;
  running: number;
}

/** Jobs of a pool as the scheduler counts them, for the `queue` autoscaler. */
export interface QueueSource {
  /** Undefined when unknown (the scheduler is unreachable, the pool maps to nothing): the pool holds its size. */
  depth(pool: string): Promise<QueueDepth | undefined>;
}

export interface MonitoredFacts {
  pool?: string;
  providerId?: string;
}

/** How a human's return of a node to service in the scheduler ended. */
export type ExternalUncordonOutcome =
  | "cancelled" // Navarch's incident was cancelled and the node is in service again
  | "nothing_to_cancel" // the node was no longer taken out (in service, terminating, …)
  | "unknown_node"; // not a node of this reconciler's store: another Navarch's cordon

/** What the integration's owner gives it: the only way back into Navarch. */
/** A pool's labels and taints, which its nodes carry in the scheduler (Kubernetes Nodes). */
export interface PoolMarks {
  labels: Readonly<Record<string, string>>;
  taints: readonly PoolTaint[];
}

export interface SchedulerHost {
  log(line: string): void;
  /** The reconciler's clock (virtual in tests and the simulator). */
  now(): number;
  /** Every live node (not terminated or failed), read-only: for mapping sweeps. */
  nodes(): Promise<SchedulerNodeView[]>;
  /** A node's name in the scheduler changed (null: none): the owner records it (shown in the node's details). */
  recordMapping(nodeId: string, name: string | null): Promise<void>;
  /**
   * What the scheduler says of a node's machine (the Kubernetes Node's `navarch.dev/pool`
   * label and `spec.providerID`). Used only for monitored nodes (a DaemonSet's agents, not
   * launched by Navarch), and only to fill what is unknown: a pool the agent did not name,
   * and the provider's instance, so an unhealthy one can be terminated for its owner to replace.
   */
  describeMonitored(nodeId: string, facts: MonitoredFacts): Promise<void>;
  /** What a pool asks of its nodes in the scheduler (its `labels` and `taints`); undefined for a pool not configured. */
  poolMarks(pool: string): Promise<PoolMarks | undefined>;
  /**
   * A human returned our cordoned node to service in the scheduler (`kubectl uncordon`,
   * `scontrol update state=resume`): cancel Navarch's incident as an uncordon through its own
   * API would. `who` is the audit log's actor.
   */
  externalUncordon(nodeId: string, who: string): Promise<ExternalUncordonOutcome>;
  /** Something changed behind the loop's back: run a pass soon. */
  wake(): void;
  /**
   * The scheduler's API as one of the reconciler's dependencies (`name`: the config section),
   * where the integration reports each answer and failure: /v1/status, the gauge, and the
   * "waiting for … since …" reasons on nodes and incidents read it.
   */
  dependency(name: string, label: string, target: string): Dependency;
}

/** Ready (in service) and total (in the pool) nodes per pool. */
export type PoolNodeCounts = ReadonlyMap<string, { ready: number; total: number }>;

/** What an integration whose scheduler defines pools (Kubernetes GpuPools) may ask of the loop once it exists. */
export interface SchedulerLoopHandle {
  /** Replaces the pools from the scheduler's resources; returns the names a file pool took. */
  updatePools(pools: PoolConfig[]): string[];
  /** The provider types this reconciler has. */
  providers(): ReadonlySet<string>;
  /** The config file's pools (a resource may not take their names). */
  filePools: readonly string[];
  /** Node counts per pool, for the resources' status. */
  poolNodeCounts(): Promise<PoolNodeCounts>;
  /** A pool from a resource is gone for good (its last node removed): forget its record. */
  forgetPool(pool: string): Promise<void>;
}

/** One scheduler, as the config names it: built by its factory, started once the loop exists. */
export interface SchedulerIntegration {
  /** The config section it comes from (`kubernetes`, `slurm`). */
  readonly name: string;
  readonly mirror: SchedulerMirror;
  readonly queue?: QueueSource;
  /**
   * Starts what runs beside the loop (caches, watches, sweeps) and returns at once: nothing
   * here waits for the scheduler's API, and one that is down does not hold up Navarch's start.
   */
  start(loop: SchedulerLoopHandle): Promise<void>;
  /** Resolves once what start() began is up (the scheduler answered and was read): for tests and tools; the loop never waits for it. */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/** Why a scheduler call failed, as the reconciler must react to it. */
export type SchedulerErrorKind =
  | "unreachable" // connection refused, timeouts, 5xx: retry
  | "auth" // credentials refused: tell a human
  | "not_found" // the node (or job) does not exist there
  | "refused" // the scheduler said no (permissions, a state it will not enter)
  | "invalid"; // we sent something wrong, or got an answer we cannot read: do not retry blindly

export class SchedulerError extends Error {
  override readonly name = "SchedulerError";
  constructor(
    readonly scheduler: string,
    readonly kind: SchedulerErrorKind,
    message: string,
  ) {
    super(`${scheduler}: ${message}`);
  }

  get retryable(): boolean {
    return this.kind === "unreachable";
  }
}

/** No scheduler: drained once every GPU reports 0 % utilisation (no work left). */
export const NO_SCHEDULER: SchedulerMirror = {
  name: "none",
  async cordon() {},
  async uncordon() {},
  async drain(node) {
    const gpus = await node.readings();
    if (gpus.length === 0) return { done: true, detail: "no GPU readings: nothing known to be running" };
    const busy = gpus.filter((g) => (g.utilizationPct ?? 0) > 0);
    return busy.length === 0
      ? { done: true, detail: "all GPUs idle" }
      : { done: false, detail: `${busy.length} of ${gpus.length} GPUs still busy (${busy.map((g) => `GPU ${g.index} ${g.utilizationPct}%`).join(", ")})` };
  },
};
