// A node's lifecycle: its states, the named groups of states every part of Navarch
// counts by, and the transitions that are legal. Defined once here; the one writer
// of node states (reconciler/nodes/writer.ts) refuses anything not listed.
//
//   requested → provisioning → (bootstrapping) → validating → ready ⇄ suspect
//     → cordoned → draining → terminating → terminated
//   plus failed (never came up), lost (agent silent) and held (a human must look);
//   and the reboot rung of a remediation: draining → rebooting → validating → ready.
import { inArray, notInArray, type SQL, type SQLWrapper } from "drizzle-orm";

export const NODE_STATES = [
  "requested",
  "provisioning",
  "bootstrapping",
  "validating",
  "ready",
  "suspect",
  "cordoned",
  "draining",
  "rebooting",
  "terminating",
  "terminated",
  "failed",
  "lost",
  "held",
] as const;
export type NodeState = (typeof NODE_STATES)[number];

type Group = readonly NodeState[];
const except = (...out: NodeState[]): Group => NODE_STATES.filter((s) => !out.includes(s));

/** The named groups of states. Everything that counts nodes counts by one of these. */
export const STATES = {
  /** Asked for or starting: not yet taking work. */
  comingUp: ["requested", "provisioning", "bootstrapping", "validating"],
  /** Taking work. */
  inService: ["ready", "suspect"],
  /** The agent must keep heartbeating; silence makes the node Lost. */
  watched: ["validating", "ready", "suspect", "cordoned", "draining"],
  /** Out of service by Navarch's or a human's hand, with the machine still there. */
  takenOut: ["cordoned", "draining", "rebooting", "held"],
  /** On the way out or gone: no longer part of the pool's size. */
  outOfPool: ["terminating", "terminated", "failed"],
  /** Everything else: what a pool's size is made of. */
  inPool: except("terminating", "terminated", "failed"),
  /** Finished: the reconciler never moves a node out of these (a late agent's registration may: TRANSITIONS). */
  terminal: ["terminated", "failed"],
  /** Not finished. */
  live: except("terminated", "failed"),
} as const satisfies Record<string, Group>;
export type StateGroup = keyof typeof STATES;

const STATE_SETS = new Map<StateGroup, ReadonlySet<NodeState>>((Object.keys(STATES) as StateGroup[]).map((g) => [g, new Set<NodeState>(STATES[g])]));

/** Whether `state` is in the group (a Set: asked several times per node per pass, at 100,000 nodes). */
export function isIn(group: StateGroup, state: NodeState): boolean {
  return STATE_SETS.get(group)!.has(state);
}

/** `column IN (group)` for queries over the nodes table. */
export function stateIn(column: SQLWrapper, group: StateGroup): SQL {
  return inArray(column as Parameters<typeof inArray>[0], [...STATES[group]]);
}

/** `column NOT IN (group)`. */
export function stateNotIn(column: SQLWrapper, group: StateGroup): SQL {
  return notInArray(column as Parameters<typeof notInArray>[0], [...STATES[group]]);
}

/**
 * Every legal change of state, from → to. Who makes it is in the comment; the writer
 * checks only legality, so a caller that wants something not listed gets an error.
 */
export const TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = {
  // launched; cancelled before launch (scale-down); registered before the launch was recorded; pool gone
  requested: ["provisioning", "terminating", "validating", "failed"],
  // SSH bootstrap starts; the agent registers; no registration in time; scale-down
  provisioning: ["bootstrapping", "validating", "failed", "terminating"],
  bootstrapping: ["validating", "failed", "terminating"],
  // first full health check passed; failed validation (replaced or held); silent; a human cordons or drains
  validating: ["ready", "terminating", "held", "lost", "cordoned", "draining"],
  // degraded; quarantined (Navarch or a human); silent; a human drains
  ready: ["suspect", "cordoned", "lost", "draining"],
  suspect: ["ready", "cordoned", "lost", "draining"],
  // a remediation slot opened; recovered or a human uncordoned; silent; monitored node held
  cordoned: ["draining", "ready", "lost", "held"],
  // drained and removed or replaced, or rebooted; held (a human's drain, deadline hold); recovered; silent
  draining: ["terminating", "rebooting", "held", "ready", "lost"],
  // back with a new boot (judged afresh); did not come back in time, or no reboot to be had: replaced or held
  rebooting: ["validating", "terminating", "held"],
  // a human uncordons, or asks for a replacement
  held: ["ready", "cordoned"],
  // heartbeats resumed (re-judged); fenced and replaced; held for a human
  lost: ["validating", "terminating", "held"],
  terminating: ["terminated"],
  terminated: [],
  // its agent registered late, while its instance was still there (adopted back into its pool)
  failed: ["validating"],
};

export function isLegalTransition(from: NodeState, to: NodeState): boolean {
  return TRANSITIONS[from].includes(to);
}
