// What a lifecycle step sees: the node's pool, the pass's clock and rails, and the
// reconciler's services (the one writer, providers, scheduler, incidents). Steps are
// small functions over this; the loop (loop.ts) builds one context per pass.
import type { NavarchConfig, PoolConfig } from "../../schema/config.ts";
import type { NodeState } from "../../schema/lifecycle.ts";
import type { GpuSnapshot, RecommendedAction } from "../../schema/wire.ts";
import type { Bootstrapper } from "./ssh-bootstrap.ts";
import type { SourcedMetrics } from "../pools/metrics-source.ts";
import type { SchedulerMirror } from "../schedulers/scheduler.ts";
import type { Provider } from "../providers/provider.ts";
import type { RailVerdict, Rails } from "../safety/rails.ts";
import type { Store } from "../store/store.ts";
import type { BesideCall } from "../safety/operations.ts";
import type { Incidents } from "./incidents.ts";
import type { InstanceTypeGpus } from "../providers/instance-gpus.ts";
import type { PoolLaunches } from "./launches.ts";
import type { RegistrationDeadlines } from "../nodes/registration-deadlines.ts";
import type { Fence, NodeRow, NodeWriter } from "../nodes/writer.ts";

/**
 * When a step next needs a look at its node: an absolute time (ms), or undefined when
 * nothing will change until something outside happens (an agent's event or heartbeat, a
 * human, another node's progress). A look at or before the pass's own time means "the
 * next pass".
 */
export type Look = number | undefined;

export type Step = (node: NodeRow, ctx: StepContext) => Promise<Look>;

/** What one pass did, for tests, the simulator and the log. */
export interface PassReport {
  at: number;
  transitions: { node: string; from: NodeState; to: NodeState; reason: string }[];
  blocked: { node: string; rail: string; reason: string }[];
  /** Nodes a scale-up asked for (launched by a later pass). */
  requested: string[];
  launched: string[];
  terminated: string[];
  /** The earliest look any step asked for (undefined: none). */
  nextLookAt: number | undefined;
  /** Each node's look, for the nodes that asked for one. */
  looks: Map<string, number>;
  durationMs: number;
}

/** The reconciler's services, shared by every step of every pass. */
export interface Services {
  readonly store: Store;
  readonly writer: NodeWriter;
  readonly incidents: Incidents;
  readonly launches: PoolLaunches;
  /** Registration deadlines learned from each pool's recent registrations. */
  readonly deadlines: RegistrationDeadlines;
  /** GPUs per instance type, as the providers list them (known after the first ask). */
  readonly instanceGpus: InstanceTypeGpus;
  readonly providers: ReadonlyMap<string, Provider>;
  readonly scheduler: SchedulerMirror;
  /** The leader lease, when one is held (every side effect checks it). */
  readonly fence: Fence | undefined;
  readonly actor: string;
  config(): NavarchConfig;
  /**
   * Since when this loop could have heard heartbeats (it started then): a node's silence is
   * counted from here at the earliest. A reconciler that was down, or whose database was
   * restored, finds heartbeat times older than the timeout that say nothing about the agents.
   */
  heardSince(): number;
  pool(name: string | null): PoolConfig | undefined;
  log(line: string): void;
  /** This pass's explanation of a node's verdict. */
  verdictReason(node: NodeRow): string;
  /** When the deciding finding of a node's verdict opened. */
  faultAt(node: NodeRow, fallback: number): number;
  /** The deciding finding's fault class (schema/fault-causes.ts), what goodput counts its incident under. */
  faultCause(node: NodeRow): string;
  /** What the deciding finding of a node's verdict recommends. */
  recommendedAction(node: NodeRow): RecommendedAction | undefined;
  /** A node's latest GPU readings. */
  readings(nodeId: string): Promise<GpuSnapshot[]>;
  /** Instances tagged for the pool that no node claims yet (they count toward its size until reaped). */
  unclaimedInstances(pool: string): number;
  /** Whether each of the pool's providers has been listed since the loop started (before that the pool is not grown). */
  inventoryKnown(pool: PoolConfig): boolean;
  /**
   * What the metrics sources (a scheduler's queue, Prometheus) know of a pool now; never throws.
   * Asked beside the loop: undefined until they answered (the loop is woken when they do).
   */
  sourcedMetrics(pool: PoolConfig): Promise<SourcedMetrics | undefined>;
  /**
   * How a call to provider `name` runs: beside the loop (beside.ts), with its deadline, counted
   * as that provider's dependency, shown as `action` (of `node`) while it waits. A pass never
   * waits for a provider.
   */
  providerCall(name: string, action: string, node?: string): BesideCall;
  /** A node's status line while a call to provider `name` (`action`, asked at `since`) has not answered. */
  providerWaiting(name: string, action: string, since: number): string;
  /** The SSH bootstrapper (created on first use). */
  bootstrapper(): Bootstrapper;
  /** The public key a pool's machines are launched with, for its SSH bootstrap. */
  sshPublicKey(pool: PoolConfig): { sshPublicKey?: string; sshOwnKey?: boolean };
}

export interface StepContext {
  at: number;
  report: PassReport;
  rails: Rails;
  svc: Services;
}

export function emptyReport(at: number): PassReport {
  return { at, transitions: [], blocked: [], requested: [], launched: [], terminated: [], nextLookAt: undefined, looks: new Map(), durationMs: 0 };
}

/** Moves `node` to `to` through the one writer, as the reconciler; records it in the report. */
export async function move(
  node: NodeRow,
  to: NodeState,
  reason: string,
  ctx: StepContext,
  fields: Partial<NodeRow> = {},
  incident?: Parameters<NodeWriter["transition"]>[2]["incident"],
): Promise<boolean> {
  const from = node.state;
  const ok = await ctx.svc.writer.transition(node, to, { at: ctx.at, actor: ctx.svc.actor, reason, fields, ...(incident ? { incident } : {}) });
  if (ok) ctx.report.transitions.push({ node: node.id, from, to, reason });
  return ok;
}

/**
 * A rail said no: the node (and its incident) say which rail and why, once, not on every
 * pass. Returns the look the refusal calls for.
 */
export async function blocked(node: NodeRow, verdict: RailVerdict & { allowed: false }, ctx: StepContext, waiting?: string): Promise<Look> {
  const text = `${waiting ? `${waiting}; ` : ""}blocked by ${verdict.rail}: ${verdict.reason}`;
  ctx.report.blocked.push({ node: node.id, rail: verdict.rail, reason: verdict.reason });
  if (node.stateReason !== text) {
    await ctx.svc.writer.patch(node, { stateReason: text }, ctx.at, {
      actor: ctx.svc.actor,
      action: "blocked",
      details: { rail: verdict.rail, reason: verdict.reason },
      ...(node.incidentId !== null ? { incident: { status: text } } : {}),
    });
  }
  return verdict.rail === "cordon_rate" ? ctx.rails.nextCordonAt() : undefined;
}

/** Sets the node's status line when it changed (no audit row: it is a progress note). */
export async function say(node: NodeRow, text: string, ctx: StepContext): Promise<void> {
  if (node.stateReason !== text) await ctx.svc.writer.patch(node, { stateReason: text }, ctx.at);
}
