// Safety rails (remediation.md §5.4), computed from the rows as they are (level-
// triggered: nothing here is the only copy of anything). Every automatic action
// that takes capacity away asks first; a refusal names the rail and says why, and
// the node and its incident show it. Recovery (uncordon) is never blocked.
import type { SafetyConfig } from "../../schema/config.ts";
import { IN_POOL_STATES, type NodeState } from "../../schema/db.ts";

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
  incidentId: number | null;
  replacementOf: string | null;
  removal: "replace" | "scale_down" | null;
}

/** States in which a node is out of service for its health (counted by the budget). */
const OUT_OF_SERVICE: ReadonlySet<NodeState> = new Set(["cordoned", "draining", "terminating", "held"]);
/** A replacement not yet in service. */
const COMING_UP: ReadonlySet<NodeState> = new Set(["requested", "provisioning", "bootstrapping", "validating"]);
/** Nodes that make up a pool's size. */
export const IN_POOL: ReadonlySet<NodeState> = new Set(IN_POOL_STATES);

export interface RailInputs {
  safety: SafetyConfig;
  now: number;
  nodes: readonly RailNode[];
  /** Times of recent cordons (ours), fleet-wide, with their pool. */
  recentCordons: readonly { at: number; pool: string | null }[];
  /** Tripped breakers by scope ("fleet", "pool:<name>"), with their reason. */
  trippedBreakers: ReadonlyMap<string, string>;
  pausedPools: ReadonlyMap<string, string>;
  /** Set while too many heartbeats stopped at once. */
  partitionFrozen?: string;
}

export class Rails {
  constructor(private readonly inputs: RailInputs) {}

  /** May a new cordon (the start of taking a node out) happen in `pool`? */
  mayCordon(pool: string | null): RailVerdict {
    return (
      this.common(pool) ??
      this.budget(pool) ??
      this.inFlight(pool) ??
      this.cordonRate() ??
      ({ allowed: true } as const)
    );
  }

  /** May a drained node be terminated (and replaced)? */
  mayTerminate(pool: string | null): RailVerdict {
    return this.common(pool) ?? ({ allowed: true } as const);
  }

  /**
   * May a node that is not yet counted in flight (Lost, or failing validation) start a
   * replacement? Every replacement counts against the in-flight caps, however it began.
   */
  mayStartReplacement(pool: string | null): RailVerdict {
    return this.common(pool) ?? this.inFlight(pool) ?? ({ allowed: true } as const);
  }

  /** May a Lost node be fenced (its instance terminated)? Frozen while a partition is suspected. */
  mayDeclareLost(): RailVerdict {
    const frozen = this.inputs.partitionFrozen;
    return frozen ? { allowed: false, rail: "partition_freeze", reason: frozen } : { allowed: true };
  }

  /** May a node be replaced after `attempts` replacements of its slot? */
  mayReplace(attempts: number): RailVerdict {
    const max = this.inputs.safety.max_attempts;
    return attempts >= max
      ? { allowed: false, rail: "max_attempts", reason: `${attempts} replacements of this node's slot already (safety.max_attempts ${max}); a human must look` }
      : { allowed: true };
  }

  /** Records a cordon made in this pass, so later decisions of the same pass see it. */
  noteCordon(pool: string | null): void {
    (this.inputs.recentCordons as { at: number; pool: string | null }[]).push({ at: this.inputs.now, pool });
  }

  private common(pool: string | null): RailVerdict | undefined {
    const { safety, trippedBreakers, pausedPools } = this.inputs;
    if (safety.dry_run) return { allowed: false, rail: "dry_run", reason: "safety.dry_run is on: decisions are recorded, nothing is changed" };
    if (pool !== null && pausedPools.has(pool)) return { allowed: false, rail: "paused", reason: `pool ${pool} is paused: ${pausedPools.get(pool)}` };
    const fleet = trippedBreakers.get("fleet");
    if (fleet) return { allowed: false, rail: "breaker", reason: `fleet circuit breaker tripped: ${fleet}; reset it after checking the cause` };
    const poolBreaker = pool === null ? undefined : trippedBreakers.get(`pool:${pool}`);
    if (poolBreaker) return { allowed: false, rail: "breaker", reason: `pool ${pool} circuit breaker tripped: ${poolBreaker}; reset it after checking the cause` };
    return undefined;
  }

  private budget(pool: string | null): RailVerdict | undefined {
    const members = this.poolNodes(pool);
    const size = members.filter((n) => IN_POOL.has(n.state)).length;
    const { floor, percent } = this.inputs.safety.unhealthy_budget;
    const allowed = Math.max(floor, Math.ceil((percent / 100) * size));
    const out = members.filter((n) => OUT_OF_SERVICE.has(n.state) && n.removal !== "scale_down").length;
    if (out < allowed) return undefined;
    return {
      allowed: false,
      rail: "unhealthy_budget",
      reason: `${out} of ${size} nodes of pool ${pool ?? "-"} already out of service; the budget is max(${floor}, ${percent}% of ${size}) = ${allowed}`,
    };
  }

  private inFlight(pool: string | null): RailVerdict | undefined {
    const { max_in_flight_per_pool: perPool, max_in_flight_fleet: fleet } = this.inputs.safety;
    // One replacement is one slot: the node going out and the node coming up for it.
    const inFlight = (nodes: readonly RailNode[]) => {
      const slots = new Set<string>();
      for (const n of nodes) {
        if (OUT_OF_SERVICE.has(n.state) && n.removal !== "scale_down" && n.state !== "held") slots.add(n.id);
        else if (n.replacementOf !== null && COMING_UP.has(n.state)) slots.add(n.replacementOf);
      }
      return slots.size;
    };
    const poolCount = inFlight(this.poolNodes(pool));
    if (poolCount >= perPool) {
      return { allowed: false, rail: "in_flight_pool", reason: `${poolCount} replacements in flight in pool ${pool ?? "-"} (safety.max_in_flight_per_pool ${perPool})` };
    }
    const fleetCount = inFlight(this.inputs.nodes);
    if (fleetCount >= fleet) {
      return { allowed: false, rail: "in_flight_fleet", reason: `${fleetCount} replacements in flight fleet-wide (safety.max_in_flight_fleet ${fleet})` };
    }
    return undefined;
  }

  /** A token bucket of `burst` refilled at `per_minute`, replayed over the recent cordons. */
  private cordonRate(): RailVerdict | undefined {
    const { per_minute: perMinute, burst } = this.inputs.safety.cordon_rate;
    const refillMs = 60_000 / perMinute;
    const horizon = this.inputs.now - burst * refillMs;
    const times = this.inputs.recentCordons.map((c) => c.at).filter((t) => t > horizon).sort((a, b) => a - b);
    let tokens = burst;
    let last = horizon;
    for (const t of times) {
      tokens = Math.min(burst, tokens + (t - last) / refillMs) - 1;
      last = t;
    }
    tokens = Math.min(burst, tokens + (this.inputs.now - last) / refillMs);
    if (tokens >= 1) return undefined;
    // No countdown in the text: the reason is stored on the node and the incident, and a text
    // that changes every pass would rewrite them every pass.
    return { allowed: false, rail: "cordon_rate", reason: `new cordons limited to ${perMinute}/min (burst ${burst}); waiting for the next token` };
  }

  private poolNodes(pool: string | null): readonly RailNode[] {
    return this.inputs.nodes.filter((n) => n.pool === pool);
  }
}

const BREAKER_MIN_FOR_SHARE = 3;

/**
 * Whether the breaker of `scope` should trip now: too many cordons within the window,
 * in absolute numbers or as a share of the nodes the scope covers.
 */
export function breakerShouldTrip(safety: SafetyConfig, cordonsInWindow: number, scopeSize: number): string | undefined {
  const { max_cordons: max, percent, window } = safety.breaker;
  const minutes = Math.round(window / 60_000);
  if (cordonsInWindow >= max) return `${cordonsInWindow} nodes cordoned within ${minutes} min (safety.breaker.max_cordons ${max})`;
  // A share means a storm only past a few cordons: in a 1- or 2-node pool a single flapping
  // slot would trip it, and repeated failures of one slot are the attempt cap's to stop.
  if (cordonsInWindow >= BREAKER_MIN_FOR_SHARE && scopeSize > 0 && (cordonsInWindow / scopeSize) * 100 >= percent) {
    return `${cordonsInWindow} of ${scopeSize} nodes cordoned within ${minutes} min (≥ safety.breaker.percent ${percent}%)`;
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
