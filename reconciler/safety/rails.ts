// Safety rails, computed from the rows as they are (level-triggered: nothing here is
// the only copy of anything). Two kinds of action ask them first:
//
// - Quarantine (cordoning a node with an unhealthy verdict) stops new work landing on a
//   broken GPU. It is limited only by storm protection: the circuit breaker and the
//   cordon rate (and, as everything, by dry run and a paused pool). A dead GPU never
//   waits for a replacement slot before it leaves service.
// - Remediation (draining toward a replacement or a removal, fencing a Lost node,
//   replacing a node that never served) takes capacity away and evicts work: the
//   unhealthy budget and the in-flight caps limit how much of it runs at once. A
//   quarantined node waiting for a slot says so.
//
// A refusal names the rail and says why; the node and its incident show it. Recovery
// (uncordon) is never blocked.
import { and, eq, gt, sql } from "drizzle-orm";
import type { SafetyConfig } from "../../schema/config.ts";
import { auditLog, breakers, incidents, pools } from "../../schema/db.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import type { Executor } from "../nodes/writer.ts";

export type RailName =
  | "dry_run"
  | "paused"
  | "unhealthy_budget"
  | "in_flight_pool"
  | "in_flight_fleet"
  | "cordon_rate"
  | "breaker"
  | "partition_freeze"
  | "max_attempts";

export type RailVerdict = { allowed: true } | { allowed: false; rail: RailName; reason: string };

export interface RailNode {
  id: string;
  pool: string | null;
  state: NodeState;
  origin: "launched" | "registered";
  incidentId: number | null;
  replacementOf: string | null;
  removal: "replace" | "scale_down" | null;
  cordonedBy: string | null;
}

export interface RailInputs {
  safety: SafetyConfig;
  now: number;
  nodes: readonly RailNode[];
  /** Times of recent cordons made by the reconciler (for health or scale-down), fleet-wide. */
  recentCordons: readonly number[];
  /** Tripped breakers by scope ("fleet", "pool:<name>"), with their reason. */
  trippedBreakers: ReadonlyMap<string, string>;
  pausedPools: ReadonlyMap<string, string>;
  /** Set while too many heartbeats stopped at once. */
  partitionFrozen?: string;
}

const ALLOWED: RailVerdict = { allowed: true };

/**
 * Whether the node holds a remediation slot itself: it is draining, being rebooted or
 * checked after its reboot, a Lost node being fenced, or terminating for a replacement or
 * after a drain. Cancelling a node that never served (scale-down before it was in
 * service) takes nothing away and holds none.
 */
export function holdsRemediationSlot(n: Pick<RailNode, "state" | "removal" | "cordonedBy">): boolean {
  if (n.removal === null) return false;
  switch (n.state) {
    case "draining":
    case "rebooting":
    case "lost":
      return true;
    case "validating":
      // Back from a reboot (it was taken out of service); a new machine failing its first check is not yet.
      return n.cordonedBy !== null;
    case "terminating":
      return n.removal === "replace" || n.cordonedBy !== null;
    default:
      return false;
  }
}

/** One remediation is one slot: the node going out and, once it is gone, the node coming up for it. */
function remediationSlots(nodes: readonly RailNode[]): number {
  const slots = new Set<string>();
  for (const n of nodes) {
    if (holdsRemediationSlot(n)) slots.add(n.id);
    else if (n.removal === null && n.replacementOf !== null && isIn("comingUp", n.state)) slots.add(n.replacementOf);
  }
  return slots.size;
}

export class Rails {
  private readonly cordons: number[];

  constructor(private readonly inputs: RailInputs) {
    this.cordons = [...inputs.recentCordons];
  }

  /** May a node with an unhealthy verdict (or a scale-down victim) be cordoned now? */
  mayQuarantine(pool: string | null): RailVerdict {
    return this.common(pool) ?? this.cordonRate() ?? ALLOWED;
  }

  /** May a remediation start in `pool`: a drain toward replacement or removal, fencing, a replacement? */
  mayRemediate(pool: string | null): RailVerdict {
    return this.common(pool) ?? this.budget(pool) ?? this.inFlight(pool) ?? ALLOWED;
  }

  /** May a drained node be terminated? Its slot is already counted. */
  mayTerminate(pool: string | null): RailVerdict {
    return this.common(pool) ?? ALLOWED;
  }

  /** May a silent node be declared Lost? Frozen while a partition is suspected. */
  mayDeclareLost(): RailVerdict {
    const frozen = this.inputs.partitionFrozen;
    return frozen ? { allowed: false, rail: "partition_freeze", reason: frozen } : ALLOWED;
  }

  /** May a node be replaced after `attempts` replacements of its slot? */
  mayReplace(attempts: number): RailVerdict {
    const max = this.inputs.safety.max_attempts;
    return attempts >= max
      ? { allowed: false, rail: "max_attempts", reason: `${attempts} replacements of this node's slot already (safety.max_attempts ${max}); a human must look` }
      : ALLOWED;
  }

  /** Dry run and nothing else: a human's explicit request is theirs to decide. */
  mayActForHuman(): RailVerdict {
    return this.inputs.safety.dry_run
      ? { allowed: false, rail: "dry_run", reason: "safety.dry_run is on: decisions are recorded, nothing is changed" }
      : ALLOWED;
  }

  /** Records a cordon made in this pass, so later decisions of the same pass see it. */
  noteCordon(): void {
    this.cordons.push(this.inputs.now);
  }

  /** When the cordon rate allows the next cordon (for the loop's next look). */
  nextCordonAt(): number {
    const refillMs = 60_000 / this.inputs.safety.cordon_rate.per_minute;
    const tokens = this.tokens();
    return tokens >= 1 ? this.inputs.now : this.inputs.now + Math.ceil((1 - tokens) * refillMs);
  }

  private common(pool: string | null): RailVerdict | undefined {
    const { safety, trippedBreakers, pausedPools } = this.inputs;
    if (safety.dry_run) return { allowed: false, rail: "dry_run", reason: "safety.dry_run is on: decisions are recorded, nothing is changed" };
    if (pool !== null && pausedPools.has(pool)) return { allowed: false, rail: "paused", reason: `pool ${pool} is paused: ${pausedPools.get(pool)}` };
    const fleet = trippedBreakers.get("fleet");
    if (fleet) return { allowed: false, rail: "breaker", reason: `fleet circuit breaker tripped: ${fleet}; reset it after checking the cause` };
    const poolBreaker = pool === null ? undefined : trippedBreakers.get(`pool:${pool}`);
    if (poolBreaker)
      return { allowed: false, rail: "breaker", reason: `pool ${pool} circuit breaker tripped: ${poolBreaker}; reset it after checking the cause` };
    return undefined;
  }

  private budget(pool: string | null): RailVerdict | undefined {
    const members = this.poolNodes(pool);
    const size = members.filter((n) => isIn("inPool", n.state)).length;
    const { floor, percent } = this.inputs.safety.unhealthy_budget;
    const allowed = Math.max(floor, Math.ceil((percent / 100) * size));
    const out = remediationSlots(members);
    if (out < allowed) return undefined;
    return {
      allowed: false,
      rail: "unhealthy_budget",
      reason: `${out} of ${size} nodes of pool ${pool ?? "-"} already being drained or replaced; the budget is max(${floor}, ${percent}% of ${size}) = ${allowed}`,
    };
  }

  private inFlight(pool: string | null): RailVerdict | undefined {
    const { max_in_flight_per_pool: perPool, max_in_flight_fleet: fleet } = this.inputs.safety;
    const poolCount = remediationSlots(this.poolNodes(pool));
    if (poolCount >= perPool) {
      return {
        allowed: false,
        rail: "in_flight_pool",
        reason: `${poolCount} remediations in flight in pool ${pool ?? "-"} (safety.max_in_flight_per_pool ${perPool})`,
      };
    }
    const fleetCount = remediationSlots(this.inputs.nodes);
    if (fleetCount >= fleet) {
      return { allowed: false, rail: "in_flight_fleet", reason: `${fleetCount} remediations in flight fleet-wide (safety.max_in_flight_fleet ${fleet})` };
    }
    return undefined;
  }

  /** Tokens in a bucket of `burst`, refilled at `per_minute`, replayed over the recent cordons. */
  private tokens(): number {
    const { per_minute: perMinute, burst } = this.inputs.safety.cordon_rate;
    const refillMs = 60_000 / perMinute;
    const horizon = this.inputs.now - burst * refillMs;
    const times = this.cordons.filter((t) => t > horizon).sort((a, b) => a - b);
    let tokens = burst;
    let last = horizon;
    for (const t of times) {
      tokens = Math.min(burst, tokens + (t - last) / refillMs) - 1;
      last = t;
    }
    return Math.min(burst, tokens + (this.inputs.now - last) / refillMs);
  }

  private cordonRate(): RailVerdict | undefined {
    if (this.tokens() >= 1) return undefined;
    const { per_minute: perMinute, burst } = this.inputs.safety.cordon_rate;
    // No countdown in the text: the reason is stored on the node and the incident, and a text
    // that changes every pass would rewrite them every pass.
    return { allowed: false, rail: "cordon_rate", reason: `new cordons limited to ${perMinute}/min (burst ${burst}); waiting for the next token` };
  }

  private poolNodes(pool: string | null): readonly RailNode[] {
    return this.inputs.nodes.filter((n) => n.pool === pool);
  }
}

/**
 * Whether the breaker of `scope` should trip now: too many cordons within the window,
 * in absolute numbers or as a share of the nodes the scope covers.
 */
export function breakerShouldTrip(safety: SafetyConfig, cordonsInWindow: number, scopeSize: number): string | undefined {
  const { max_cordons: max, percent, window, min_cordons: min } = safety.breaker;
  const minutes = Math.round(window / 60_000);
  if (cordonsInWindow >= max) return `${cordonsInWindow} nodes cordoned within ${minutes} min (safety.breaker.max_cordons ${max})`;
  // A share means a storm only past a few cordons (min_cordons): in a 1- or 2-node pool a single
  // flapping slot would trip it, and repeated failures of one slot are the attempt cap's to stop.
  if (cordonsInWindow >= min && scopeSize > 0 && (cordonsInWindow / scopeSize) * 100 >= percent) {
    return `${cordonsInWindow} of ${scopeSize} nodes cordoned within ${minutes} min (≥ safety.breaker.percent ${percent}%, at least safety.breaker.min_cordons ${min})`;
  }
  return undefined;
}

/** Whether many heartbeats stopped at once: then the problem is more likely ours than theirs. */
export function partitionSuspected(safety: SafetyConfig, silent: number, watched: number): string | undefined {
  const { percent, min_nodes: minNodes } = safety.partition;
  if (silent >= minNodes && watched > 0 && (silent / watched) * 100 >= percent) {
    return `${silent} of ${watched} nodes stopped heartbeating at once (≥ safety.partition.percent ${percent}%): suspecting a partition on our side, Lost handling frozen`;
  }
  return undefined;
}

export interface RailsInputsFromStore {
  safety: SafetyConfig;
  /** Who the audit log names for the reconciler's own actions. */
  actor: string;
  poolNames: readonly string[];
  /** Every live node: its full row where the pass read one, else its light row (lifecycle/live-nodes.ts). */
  nodes: readonly (RailNode & ({ heard: boolean } | { lastHeartbeatAt: number | null }))[];
  /** The nodes silent past the heartbeat timeout (lifecycle/live-nodes.ts silentNodes). */
  silent: ReadonlyMap<string, number>;
  at: number;
}

/**
 * The rails for one pass, from the store: recent cordons, breakers (tripping those a storm
 * calls for, through `trip`), paused pools, and whether a partition is suspected.
 */
export async function loadRails(db: Executor, inputs: RailsInputsFromStore, trip: (scope: string, why: string) => Promise<void>): Promise<Rails> {
  const { safety, at, nodes } = inputs;
  // The breaker counts cordons for health (incidents); the rate, every cordon of ours.
  const recent = await db
    .select({ at: incidents.cordonedAt, pool: incidents.pool })
    .from(incidents)
    .where(gt(incidents.cordonedAt, at - Math.max(safety.breaker.window, 3_600_000)));
  const recentCordons = recent.flatMap((r) => (r.at === null ? [] : [{ at: r.at, pool: r.pool }]));
  const rateHorizon = at - Math.ceil((safety.cordon_rate.burst * 60_000) / safety.cordon_rate.per_minute);
  const ours = await db
    .select({ at: auditLog.at })
    .from(auditLog)
    .where(
      and(
        gt(auditLog.at, rateHorizon),
        eq(auditLog.action, "transition"),
        eq(auditLog.actor, inputs.actor),
        sql`json_extract(${auditLog.details}, '$.to') = 'cordoned'`,
      ),
    );
  // Trip breakers (fleet and per pool) from the cordons within the breaker window. A reset
  // starts the window afresh: what tripped it is not counted again (no backlog replay).
  const allBreakers = await db.select().from(breakers);
  const resetAt = new Map(allBreakers.map((b) => [b.scope, b.resetAt ?? Number.NEGATIVE_INFINITY]));
  const since = (scope: string) => Math.max(at - safety.breaker.window, resetAt.get(scope) ?? Number.NEGATIVE_INFINITY);
  const cordonsSince = (scope: string, pool?: string) => recentCordons.filter((c) => c.at > since(scope) && (pool === undefined || c.pool === pool)).length;
  // One walk over the nodes (100,000 of them at the largest): pool sizes, and who is watched and silent.
  const poolSize = new Map<string | null, number>();
  let fleetSize = 0;
  let watched = 0;
  let silent = 0;
  for (const n of nodes) {
    if (isIn("inPool", n.state)) {
      fleetSize++;
      poolSize.set(n.pool, (poolSize.get(n.pool) ?? 0) + 1);
    }
    // Only a node ever heard is watched for silence.
    if (isIn("watched", n.state) && ("heard" in n ? n.heard : n.lastHeartbeatAt !== null)) {
      watched++;
      if (inputs.silent.has(n.id)) silent++;
    }
  }
  const scopes = [
    { scope: "fleet", cordons: cordonsSince("fleet"), size: fleetSize },
    ...inputs.poolNames.map((p) => ({ scope: `pool:${p}`, cordons: cordonsSince(`pool:${p}`, p), size: poolSize.get(p) ?? 0 })),
  ];
  const tripped = new Map(allBreakers.filter((b) => b.resetAt === null).map((b) => [b.scope, b.reason]));
  for (const s of scopes) {
    if (tripped.has(s.scope)) continue;
    const why = breakerShouldTrip(safety, s.cordons, s.size);
    if (why === undefined) continue;
    await trip(s.scope, why);
    tripped.set(s.scope, why);
  }
  const paused = new Map((await db.select().from(pools)).filter((p) => p.paused).map((p) => [p.name, p.pausedReason ?? "paused"]));
  // Partition: many watched nodes silent past the heartbeat timeout at once.
  const frozen = partitionSuspected(safety, silent, watched);
  return new Rails({
    safety,
    now: at,
    nodes,
    recentCordons: ours.map((c) => c.at),
    trippedBreakers: tripped,
    pausedPools: paused,
    ...(frozen ? { partitionFrozen: frozen } : {}),
  });
}
