// Goodput's accounting: from the changes of state the audit log records, each span of time a
// node that had been serving was out of service (an outage), the rungs it spent that time on,
// and the cause it counts under. Pure: the store is read by ledger.ts (the metrics, all time)
// and window.ts (the report, a window); both fold the same transitions through this.
//
// An outage starts when a node in service (ready, suspect) leaves it, and ends when the node is
// back in service, or when the slot has capacity again: the first machine of its replacement
// chain enters service (the replacement, or the replacement's replacement when the first one
// failed its validation). So a replacement's time is counted once, on the node it replaces: a
// replacement coming up never served, and is not an outage of its own. Without a replacement
// (a scale-down, a monitored machine its owner replaces, a replacement cancelled) it ends when
// the machine is terminated. An outage still open at the end of the log counts up to now.
//
// Its cause is its incident's (the incident open when it started); without one, an operator's
// cordon or drain is `maintenance`, a silent agent `no_heartbeat`, and the loop's own cordon of a
// healthy node a `scale_down`.
import { causeLabel } from "../../schema/fault-causes.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";

/** The rungs an outage spends its time on (the label of navarch_node_unavailable_seconds_total). */
export const RUNGS = ["quarantine", "drain", "reboot", "replace", "terminate", "held", "lost"] as const;
export type Rung = (typeof RUNGS)[number];

/** The audit actions of an operator's change of state (reconciler/nodes/operator-actions.ts); the loop's are `transition`. */
const OPERATOR_ACTIONS: ReadonlySet<string> = new Set(["cordon", "drain", "reboot", "replace", "uncordon"]);

/** One change of state, as the audit log records it. */
export interface Transition {
  /** The audit row's id: the order transitions were committed in. */
  id: number;
  at: number;
  node: string;
  from: NodeState;
  to: NodeState;
  /** The audit row's action: `transition` for the loop's, `cordon`, `drain`, … for an operator's. */
  action: string;
}

/** What the accounting needs of a node (its row, as it is now). */
export interface NodeFacts {
  id: string;
  pool: string | null;
  provider: string | null;
  /** Its GPUs; null when nobody knows (no GPU-hours are counted for it). */
  gpus: number | null;
  /** The node this one replaces. */
  replacementOf: string | null;
  /** Whether a node was requested to replace this one. */
  hasSuccessor: boolean;
}

/** What the accounting needs of an incident. */
export interface IncidentFacts {
  openedAt: number;
  closedAt: number | null;
  cause: string | null;
}

/** Lookups the fold makes while it folds a transition (the caller loads them for its batch). */
export interface Facts {
  node(id: string): NodeFacts | undefined;
  /** The node's incidents. */
  incidents(nodeId: string): readonly IncidentFacts[];
}

export interface Outage {
  readonly node: NodeFacts;
  readonly cause: string;
  readonly start: number;
  /** When it ended; null while open. */
  end: number | null;
  /** The rung it is on, since when (the stay not yet ended). */
  rung: Rung;
  rungStart: number;
  /** The node is terminated and waits for its replacement chain to serve. */
  awaiting: boolean;
  /** Its replacement chain ended without a machine serving: it ends when the node is terminated. */
  chainDead: boolean;
}

/** What the fold reports as it goes. */
export interface OutageSink {
  /** A stay on one rung ended (consecutive states of one rung are one stay). */
  stay?(o: Outage, rung: Rung, start: number, end: number): void;
  /** The outage ended. */
  ended?(o: Outage): void;
  /** A spell in service ended (only when the fold tracks them). */
  served?(node: NodeFacts, start: number, end: number): void;
}

/** Longest replacement chain walked (a slot replaced over and over is held long before). */
const MAX_CHAIN = 64;

export class OutageFold {
  /** Open outages by node. */
  readonly open = new Map<string, Outage>();
  /** Nodes in service now, since when (only when tracked). */
  readonly inService = new Map<string, { node: NodeFacts; since: number }>();
  /** Replacements seen entering service: only their first entry ends their predecessor's outage. */
  private readonly servedReplacements = new Set<string>();

  private facts: Facts = { node: () => undefined, incidents: () => [] };

  constructor(
    private readonly sink: OutageSink = {},
    private readonly trackService = false,
  ) {}

  /** Folds one transition in; `facts` knows its node, the node's chain and incidents. */
  apply(t: Transition, facts: Facts): void {
    this.facts = facts;
    const node = facts.node(t.node);
    if (node === undefined) return;
    const wasServing = isIn("inService", t.from);
    const serving = isIn("inService", t.to);
    if (this.trackService) {
      if (serving && !wasServing) this.inService.set(t.node, { node, since: t.at });
      if (wasServing && !serving) {
        const spell = this.inService.get(t.node);
        this.inService.delete(t.node);
        if (spell !== undefined) this.sink.served?.(node, spell.since, Math.max(spell.since, t.at));
      }
    }
    const open = this.open.get(t.node);
    if (open !== undefined) {
      const at = Math.max(t.at, open.rungStart);
      if (serving) this.end(open, at);
      else if (isIn("terminal", t.to)) {
        if (node.hasSuccessor && !open.chainDead) {
          this.move(open, "replace", at);
          open.awaiting = true;
        } else this.end(open, at);
      } else this.move(open, rungOf(t.to, node, open.rung), at);
    } else if (wasServing && !serving) {
      const outage: Outage = {
        node,
        cause: this.causeOf(t, node),
        start: t.at,
        end: null,
        rung: rungOf(t.to, node, undefined),
        rungStart: t.at,
        awaiting: false,
        chainDead: false,
      };
      if (isIn("terminal", t.to) && !node.hasSuccessor) this.sink.ended?.({ ...outage, end: t.at });
      else this.open.set(t.node, outage);
    }
    if (node.replacementOf !== null) {
      if (serving && !this.servedReplacements.has(node.id)) {
        this.servedReplacements.add(node.id);
        this.replacementServes(node, t.at);
      } else if (isIn("terminal", t.to) && open === undefined && !this.servedReplacements.has(node.id) && !node.hasSuccessor) {
        this.chainEnds(node, t.at);
      }
    }
  }

  /** Outages open now, each as if it ended at `now` (for totals up to now). */
  openAt(now: number): { outage: Outage; rung: Rung; start: number; end: number }[] {
    return [...this.open.values()].map((o) => ({ outage: o, rung: o.rung, start: o.rungStart, end: Math.max(o.rungStart, now) }));
  }

  private causeOf(t: Transition, node: NodeFacts): string {
    // The incident open when it started (the latest opened by then); a quarantine opens its incident first.
    let best: IncidentFacts | undefined;
    for (const i of this.facts.incidents(node.id)) {
      if (i.openedAt > t.at || (i.closedAt !== null && i.closedAt < t.at)) continue;
      if (best === undefined || i.openedAt >= best.openedAt) best = i;
    }
    if (best !== undefined) return causeLabel(best.cause);
    if (OPERATOR_ACTIONS.has(t.action)) return "maintenance";
    if (t.to === "lost") return "no_heartbeat";
    return "scale_down";
  }

  private move(o: Outage, rung: Rung, at: number): void {
    if (rung === o.rung) return;
    this.sink.stay?.(o, o.rung, o.rungStart, at);
    o.rung = rung;
    o.rungStart = at;
  }

  private end(o: Outage, at: number): void {
    const end = Math.max(at, o.rungStart);
    this.sink.stay?.(o, o.rung, o.rungStart, end);
    o.end = end;
    this.open.delete(o.node.id);
    this.sink.ended?.(o);
  }

  /** A replacement entered service for the first time: the outage of the node it stands in for ends. */
  private replacementServes(node: NodeFacts, at: number): void {
    const o = this.predecessorOutage(node);
    if (o !== undefined) this.end(o, at);
  }

  /** A replacement that never served is gone, and nothing replaces it: its predecessor waits for nothing. */
  private chainEnds(node: NodeFacts, at: number): void {
    const o = this.predecessorOutage(node);
    if (o === undefined) return;
    if (o.awaiting) this.end(o, at);
    else o.chainDead = true;
  }

  /** The open outage up the replacement chain, through replacements that never served. */
  private predecessorOutage(node: NodeFacts): Outage | undefined {
    let id = node.replacementOf;
    for (let depth = 0; id !== null && depth < MAX_CHAIN; depth++) {
      const open = this.open.get(id);
      if (open !== undefined) return open;
      const up = this.facts.node(id);
      if (up === undefined || up.replacementOf === null || this.servedReplacements.has(up.id)) return undefined;
      id = up.replacementOf;
    }
    return undefined;
  }
}

/** The rung a state puts an outage on. Validating (back after a reboot, or heard again) stays on the rung that brought it back. */
export function rungOf(state: NodeState, node: NodeFacts, current: Rung | undefined): Rung {
  switch (state) {
    case "cordoned":
      return "quarantine";
    case "draining":
      return "drain";
    case "rebooting":
      return "reboot";
    case "held":
      return "held";
    case "lost":
      return "lost";
    case "terminating":
    case "terminated":
      return node.hasSuccessor ? "replace" : "terminate";
    default:
      return current ?? "quarantine";
  }
}
