// Pool autoscalers as pure, deterministic functions: metrics and the time (epoch ms) come
// in, a decision with a human reason comes out. No I/O, no timers, no clock reads, so the
// same code runs in the reconciler on real time and in a simulator on virtual time.
//
// decideScale(scaling, metrics, state, now):
//   1. current = metrics.nodes.total (replacements never change it; see NodeCounts);
//   2. the autoscaler tree recommends a size (or has no opinion: hold);
//   3. the result is clamped to [min_nodes, max_nodes] — with no autoscaler too, so a pool
//      below min grows to min and one above max shrinks to max; a pool with no autoscaler
//      goes to the size an operator requested (navarch pools scale), clamped the same way;
//   4. within cooldown_period of the last change the pool holds, except that a move back
//      inside the bounds (min/max, or an active schedule window's at the top level) is not
//      held back.
// The caller applies `desired` and, whenever desired ≠ current, records
// state.lastScaleAt = now and state.lastDirection. Replacing a node is not a scale change:
// don't touch the state for it.
import {
  formatDuration,
  type AutoscalerConfig,
  type AutoscalerType,
  type CompositeAutoscalerConfig,
  type IdleAutoscalerConfig,
  type PredictiveAutoscalerConfig,
  type QueueAutoscalerConfig,
  type ReactiveAutoscalerConfig,
  type ScalingConfig,
  type ScheduledAutoscalerConfig,
} from "../../schema/config.ts";
import type { MetricsHistory, MetricsSample } from "./history.ts";
import { activeWindow, describeWindow, localClock } from "./schedule.ts";

export { historyLookback, MAX_HISTORY_SAMPLES, sampleOf, sampleSpacing, type MetricsHistory, type MetricsSample } from "./history.ts";
export { activeWindow, localClock, type ActiveWindow, type LocalClock } from "./schedule.ts";

// ───────────────────────────── inputs ─────────────────────────────

/**
 * Node counts of one pool. Replacement is not scaling: a node being replaced counts once
 * in `total` (and in `replacing`), and the machine launched to replace it is not counted
 * at all, so a pool of 10 with 1 being replaced has total 10.
 */
export interface NodeCounts {
  /** Ready nodes: registered, healthy, accepting work. Utilisation is averaged over these. */
  ready: number;
  /** Nodes launched to grow the pool (or restore min) that are not Ready yet. Part of `total`. */
  provisioning: number;
  /** Nodes of `total` being replaced (old node still counted, its replacement not). Informational. */
  replacing: number;
  /** The pool's size: ready + provisioning + every other live node (cordoned, draining, being replaced…). */
  total: number;
}

/** An in-service node with no work on its GPUs (none busy, no compute process), and since when (epoch ms). */
export interface IdleNode {
  id: string;
  idleSince: number;
}

/** Jobs for the pool. Queue depth = pending + running (the seed's K8sMetricsSource). */
export interface QueueMetrics {
  pending: number;
  running: number;
}

export interface PoolMetrics {
  nodes: NodeCounts;
  /** Average GPU utilisation over ready nodes, 0–100; undefined when unknown. */
  gpuUtilization?: number;
  /** Undefined when the pool has no job source. */
  queue?: QueueMetrics;
  /** In-service nodes with no work; undefined when unknown. Length = the idle count. */
  idleNodes?: readonly IdleNode[];
  /** Recent samples for the predictive autoscaler (see sampleOf), oldest first. */
  history?: MetricsHistory;
}

export type ScaleDirection = "up" | "down";

export interface ScalingState {
  /** When the pool's size was last changed (epoch ms); undefined if never. */
  lastScaleAt?: number;
  /** Only used in reasons. */
  lastDirection?: ScaleDirection;
  /**
   * The size an operator asked for (`navarch pools scale`). Without an autoscaler the pool is
   * held there (within its bounds), and cooldown_period does not hold back the move.
   */
  requested?: { nodes: number; by: string };
}

// ───────────────────────────── outputs ─────────────────────────────

export type Inputs = Record<string, number>;

/** What one autoscaler (of a possibly nested tree) recommends, before clamping and cooldown. */
export interface Recommendation {
  type: AutoscalerType;
  /** Recommended size; undefined = no opinion (metrics unknown, too little history without a fallback). */
  desired: number | undefined;
  reason: string;
  inputs: Inputs;
  /** Composite: each child's recommendation. Scheduled/predictive: [the fallback's], when it was used. */
  children?: Recommendation[];
  /** Scheduled: the bounds in force (window bounds clamped into the pool's). */
  bounds?: { min: number; max: number };
}

export type CooldownOutcome = { held: false } | { held: true; until: number; wanted: number };

export interface ScalingDecision {
  /** The size to converge to. */
  desired: number;
  /** metrics.nodes.total. */
  current: number;
  direction: ScaleDirection | "hold";
  /** e.g. `GPU utilisation 86% ≥ scale_up_threshold 80%: 10 → 11`. */
  reason: string;
  /** Pool numbers and the top autoscaler's inputs. */
  inputs: Inputs;
  autoscaler: AutoscalerType | "none";
  /** The autoscaler tree's recommendation (composite children inside); absent without an autoscaler. */
  recommendation?: Recommendation;
  /** Set when the recommendation was outside [min_nodes, max_nodes]: `clamped to max_nodes 50`. */
  bounded?: string;
  /** held: a change was held back by cooldown_period until `until`; `wanted` is what it would have been. */
  cooldown: CooldownOutcome;
}

// ───────────────────────────── decideScale ─────────────────────────────

/** `withoutAutoscaler`: what the reason says when no autoscaler ran (none configured, or not its tick). */
export function decideScale(
  scaling: ScalingConfig,
  metrics: PoolMetrics,
  state: ScalingState,
  now: number,
  withoutAutoscaler = "no autoscaler",
): ScalingDecision {
  const current = metrics.nodes.total;
  const { min_nodes: min, max_nodes: max, cooldown_period: cooldownPeriod } = scaling;
  const inputs: Inputs = {
    current,
    ready: metrics.nodes.ready,
    provisioning: metrics.nodes.provisioning,
    replacing: metrics.nodes.replacing,
    min_nodes: min,
    max_nodes: max,
    cooldown_period: cooldownPeriod,
  };

  let recommendation: Recommendation | undefined;
  if (scaling.autoscaler !== undefined) {
    const ctx: EvaluationContext = { scaling, metrics, now, current, jobsPerNode: findJobsPerNode(scaling.autoscaler) };
    recommendation = evaluate(scaling.autoscaler, ctx);
  }
  const allInputs: Inputs = { ...recommendation?.inputs, ...inputs };

  // 3. Pool bounds. Without an autoscaler, the size an operator asked for.
  const requested = scaling.autoscaler === undefined ? state.requested : undefined;
  let target = recommendation?.desired ?? requested?.nodes ?? current;
  let bounded: string | undefined;
  if (target > max) [target, bounded] = [max, `clamped to max_nodes ${max}`];
  else if (target < min) [target, bounded] = [min, `clamped to min_nodes ${min}`];

  // 4. Cooldown. The hard bounds: the pool's, or a top-level schedule window's (already inside the pool's).
  const lo = recommendation?.bounds?.min ?? min;
  const hi = recommendation?.bounds?.max ?? max;
  let desired = target;
  let cooldown: CooldownOutcome = { held: false };
  let cooldownNote: string | undefined;
  if (target !== current && requested === undefined && state.lastScaleAt !== undefined && now < state.lastScaleAt + cooldownPeriod) {
    const restore = clamp(current, lo, hi); // nearest size inside the bounds: not held back
    if (restore !== target) {
      desired = restore;
      const until = state.lastScaleAt + cooldownPeriod;
      cooldown = { held: true, until, wanted: target };
      const last = `last ${state.lastDirection === undefined ? "" : `scale-${state.lastDirection} `}at ${iso(state.lastScaleAt)}`;
      cooldownNote = `held back by cooldown_period ${formatDuration(cooldownPeriod)} until ${iso(until)} (${last})`;
      if (restore !== current) {
        const which =
          recommendation?.bounds === undefined ? (restore > current ? "min_nodes" : "max_nodes") : restore > current ? "the lower bound" : "the upper bound";
        cooldownNote += `; restoring ${which} ${restore} is not held back`;
      }
    }
  }

  let reason = recommendation?.reason ?? (requested === undefined ? withoutAutoscaler : `${requested.nodes} nodes requested by ${requested.by}`);
  if (bounded !== undefined) reason += `; ${bounded}`;
  if (cooldownNote !== undefined) reason += `; ${cooldownNote}`;
  if (recommendation === undefined || bounded !== undefined || cooldownNote !== undefined) reason += `: ${move(current, desired)}`;

  const decision: ScalingDecision = {
    desired,
    current,
    direction: desired > current ? "up" : desired < current ? "down" : "hold",
    reason,
    inputs: allInputs,
    autoscaler: scaling.autoscaler?.type ?? "none",
    cooldown,
  };
  if (recommendation !== undefined) decision.recommendation = recommendation;
  if (bounded !== undefined) decision.bounded = bounded;
  return decision;
}

/** Longest idle first; ties by id, so the choice is deterministic. */
export function byLongestIdle<T extends IdleNode>(nodes: readonly T[]): T[] {
  return [...nodes].sort((a, b) => a.idleSince - b.idleSince || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

// ───────────────────────────── the autoscalers ─────────────────────────────

export interface EvaluationContext {
  scaling: ScalingConfig;
  metrics: PoolMetrics;
  now: number;
  current: number;
  /** From the first queue autoscaler in the pool's tree: the predictive demand unit. */
  jobsPerNode: number | undefined;
}

/** What one autoscaler recommends. Exported for tests and tools; decideScale is the entry point. */
export function evaluate(config: AutoscalerConfig, ctx: EvaluationContext): Recommendation {
  switch (config.type) {
    case "reactive":
      return reactive(config, ctx);
    case "queue":
      return queue(config, ctx);
    case "scheduled":
      return scheduled(config, ctx);
    case "predictive":
      return predictive(config, ctx);
    case "composite":
      return composite(config, ctx);
    case "idle":
      return idle(config, ctx);
  }
}

/**
 * Reactive, on GPU utilisation over ready nodes.
 * - util ≥ scale_up_threshold: the smallest size that brings utilisation strictly under the
 *   threshold, n = floor(util × ready / up) + 1 (≥ ready + 1, so at least one node). When
 *   nodes already starting make current ≥ n, hold: they are the answer.
 * - util ≤ scale_down_threshold: one node fewer, unless the remaining nodes would be at or
 *   above scale_up_threshold (which would flap back next time): then hold.
 * - otherwise, unknown utilisation, or no ready node: hold.
 */
function reactive(config: ReactiveAutoscalerConfig, { metrics, current }: EvaluationContext): Recommendation {
  const { scale_up_threshold: up, scale_down_threshold: down } = config;
  const ready = metrics.nodes.ready;
  const util = metrics.gpuUtilization;
  const inputs: Inputs = { scale_up_threshold: up, scale_down_threshold: down, ready };
  const rec = (desired: number | undefined, reason: string): Recommendation => ({ type: "reactive", desired, reason, inputs });
  if (util === undefined || !Number.isFinite(util)) return rec(undefined, `GPU utilisation unknown: hold at ${current}`);
  inputs.gpu_utilization = util;
  if (ready <= 0) return rec(undefined, `GPU utilisation ${pct(util)} but no ready node to measure it on: hold at ${current}`);

  if (util >= up) {
    const needed = up <= 0 ? current + 1 : Math.floor((util * ready) / up + EPSILON) + 1;
    inputs.needed = needed;
    const head = `GPU utilisation ${pct(util)} ≥ scale_up_threshold ${pct(up)}`;
    if (needed <= current) {
      return rec(current, `${head}, but the ${current - ready} node(s) not ready yet make ${current} ≥ the ${needed} needed: hold at ${current}`);
    }
    const why = needed - current > 1 ? ` (${needed} nodes bring it under ${pct(up)})` : "";
    return rec(needed, `${head}: ${move(current, needed)}${why}`);
  }
  if (util <= down) {
    const head = `GPU utilisation ${pct(util)} ≤ scale_down_threshold ${pct(down)}`;
    if (current <= 0) return rec(current, `${head}: hold at ${current}`);
    const after = current - 1;
    const projected = after === 0 ? (util > 0 ? Infinity : 0) : (util * ready) / after;
    inputs.projected_utilization = projected;
    if (projected >= up) {
      const on = after === 0 ? "with no node left it would be unserved" : `on ${after} node(s) it would be ${pct(projected)} ≥ scale_up_threshold ${pct(up)}`;
      return rec(current, `${head}, but ${on}: hold at ${current}`);
    }
    return rec(after, `${head}: ${move(current, after)}`);
  }
  return rec(current, `GPU utilisation ${pct(util)} between scale_down_threshold ${pct(down)} and scale_up_threshold ${pct(up)}: hold at ${current}`);
}

/** Queue: ceil((pending + running) / jobs_per_node). Unknown queue: no opinion. */
function queue(config: QueueAutoscalerConfig, { metrics, current }: EvaluationContext): Recommendation {
  const jpn = config.jobs_per_node;
  const q = metrics.queue;
  if (q === undefined) return { type: "queue", desired: undefined, reason: `queue depth unknown: hold at ${current}`, inputs: { jobs_per_node: jpn } };
  const depth = q.pending + q.running;
  const desired = Math.ceil(depth / jpn - EPSILON);
  return {
    type: "queue",
    desired,
    reason: `queue depth ${depth} (${q.pending} pending + ${q.running} running) / jobs_per_node ${jpn} → ${desired} node(s): ${move(current, desired)}`,
    inputs: { jobs_per_node: jpn, pending: q.pending, running: q.running, queue_depth: depth },
  };
}

/**
 * Scheduled: the first window active at `now` (local time in `timezone`) replaces the
 * pool's bounds with its min_nodes/max_nodes (an unset one keeps the pool's). The pool's own
 * bounds win: a window bound outside [min_nodes, max_nodes] is clamped into it, and the
 * reason says so. With a fallback, its recommendation is clamped into the bounds in force
 * (a fallback with no opinion: current, clamped); without one the pool holds the lower
 * bound. At the top level these bounds are also the hard bounds cooldown never holds back.
 */
function scheduled(config: ScheduledAutoscalerConfig, ctx: EvaluationContext): Recommendation {
  const { scaling, current, now } = ctx;
  const { min_nodes: poolMin, max_nodes: poolMax } = scaling;
  const active = activeWindow(config, now);
  const inputs: Inputs = {};
  const notes: string[] = [];
  let lo = poolMin;
  let hi = poolMax;
  let head: string;
  if (active === undefined) {
    head = `no schedule window active at ${localClock(now, config.timezone).label}: pool bounds [${lo}, ${hi}]`;
  } else {
    const { window, index } = active;
    inputs.window = index + 1;
    if (window.min_nodes !== undefined) {
      inputs.window_min_nodes = window.min_nodes;
      lo = clamp(window.min_nodes, poolMin, poolMax);
      if (lo !== window.min_nodes)
        notes.push(`window min_nodes ${window.min_nodes} clamped to the pool's ${window.min_nodes > poolMax ? "max_nodes" : "min_nodes"} ${lo}`);
    }
    if (window.max_nodes !== undefined) {
      inputs.window_max_nodes = window.max_nodes;
      hi = clamp(window.max_nodes, poolMin, poolMax);
      if (hi !== window.max_nodes)
        notes.push(`window max_nodes ${window.max_nodes} clamped to the pool's ${window.max_nodes < poolMin ? "min_nodes" : "max_nodes"} ${hi}`);
    }
    const started = active.startedOn === active.clock.weekday ? "" : `, started ${active.startedOn}`;
    head = `${describeWindow(index, window)} active at ${active.clock.label}${started}: bounds [${lo}, ${hi}]`;
    if (notes.length > 0) head += ` (${notes.join("; ")})`;
  }
  inputs.bound_min = lo;
  inputs.bound_max = hi;
  const bounds = { min: lo, max: hi };

  if (config.fallback === undefined) {
    return { type: "scheduled", desired: lo, reason: `${head}; no fallback, hold the lower bound ${lo}: ${move(current, lo)}`, inputs, bounds };
  }
  const child = evaluate(config.fallback, ctx);
  const wanted = child.desired ?? current;
  const desired = clamp(wanted, lo, hi);
  const clampNote = desired === wanted ? "" : ` (clamped to ${desired < wanted ? "upper" : "lower"} bound ${desired})`;
  const childText = child.desired === undefined ? `fallback ${child.type} has no opinion [${child.reason}]` : `fallback ${child.type} [${child.reason}]`;
  return { type: "scheduled", desired, reason: `${head}; ${childText}${clampNote}: ${move(current, desired)}`, inputs, children: [child], bounds };
}

/**
 * Predictive: demand (in nodes) over the last lookback_window, fitted with a least-squares
 * line, projected `horizon` ahead (cooldown_period — the earliest the pool can change
 * again — or lookback_window / 4 when the cooldown is 0), times growth_factor, rounded up.
 *
 * Demand per sample: when the pool has a queue autoscaler (jobs_per_node) and the current
 * metrics have a queue, queueDepth / jobs_per_node; else utilization × ready / 100 (busy
 * node-equivalents — with this unit growth_factor is the headroom: 1.25 aims at 80%
 * utilisation). Samples without the chosen field are skipped.
 *
 * Fewer than 3 usable samples, or spanning less than lookback_window / 4: the fallback
 * decides (no fallback: no opinion, hold).
 */
function predictive(config: PredictiveAutoscalerConfig, ctx: EvaluationContext): Recommendation {
  const { metrics, now, current, scaling } = ctx;
  const { lookback_window: lookback, growth_factor: growth } = config;
  const useQueue = ctx.jobsPerNode !== undefined && metrics.queue !== undefined;
  const basis = useQueue ? `queue depth / jobs_per_node ${ctx.jobsPerNode}` : "GPU utilisation × ready nodes";
  const points: { x: number; y: number }[] = [];
  for (const s of metrics.history ?? []) {
    if (s.at < now - lookback || s.at > now) continue;
    const y = demandOf(s, useQueue ? ctx.jobsPerNode : undefined);
    if (y !== undefined && Number.isFinite(y)) points.push({ x: (s.at - now) / HOUR, y });
  }
  const span = points.length === 0 ? 0 : (Math.max(...points.map((p) => p.x)) - Math.min(...points.map((p) => p.x))) * HOUR;
  const inputs: Inputs = { lookback_window: lookback, growth_factor: growth, samples: points.length, span };

  if (points.length < 3 || span < lookback / 4) {
    const short = `history too short (${points.length} sample(s) over ${formatDuration(Math.round(span))}; need 3 over ${formatDuration(Math.round(lookback / 4))})`;
    if (config.fallback === undefined) return { type: "predictive", desired: undefined, reason: `${short}, no fallback: hold at ${current}`, inputs };
    const child = evaluate(config.fallback, ctx);
    return { type: "predictive", desired: child.desired, reason: `${short}; fallback ${child.type} [${child.reason}]`, inputs, children: [child] };
  }

  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx; // nodes per hour
  const horizon = scaling.cooldown_period > 0 ? scaling.cooldown_period : lookback / 4;
  const fittedNow = my + slope * (0 - mx);
  const projected = Math.max(0, my + slope * (horizon / HOUR - mx));
  const desired = Math.ceil(projected * growth - EPSILON);
  Object.assign(inputs, { slope_per_hour: slope, demand_now: fittedNow, horizon, projected_demand: projected });
  const trend = Math.abs(slope) < 1e-9 ? "flat" : slope > 0 ? `rising ${num(slope, 2)}/h` : `falling ${num(-slope, 2)}/h`;
  const horizonText = scaling.cooldown_period > 0 ? `cooldown_period ${formatDuration(horizon)}` : `lookback_window/4 ${formatDuration(Math.round(horizon))}`;
  return {
    type: "predictive",
    desired,
    reason:
      `demand (${basis}) ${trend} over ${n} samples in ${formatDuration(Math.round(span))}, now ${num(fittedNow, 2)} node(s); ` +
      `projected ${num(projected, 2)} in ${horizonText} × growth_factor ${num(growth, 2)} = ${num(projected * growth, 2)} → ${desired} node(s): ${move(current, desired)}`,
    inputs,
  };
}

/** A sample's demand in nodes (see predictive); undefined when it lacks the field needed. */
function demandOf(sample: MetricsSample, jobsPerNode: number | undefined): number | undefined {
  if (jobsPerNode !== undefined) return sample.queueDepth === undefined ? undefined : sample.queueDepth / jobsPerNode;
  return sample.utilization === undefined ? undefined : (sample.utilization * sample.ready) / 100;
}

/**
 * Composite: every child is evaluated; those with an opinion are combined by max, min or
 * avg (rounded up). No child with an opinion: no opinion. Each child's reason is kept.
 */
function composite(config: CompositeAutoscalerConfig, ctx: EvaluationContext): Recommendation {
  const children = config.autoscalers.map((c) => evaluate(c, ctx));
  const values = children.flatMap((c) => (c.desired === undefined ? [] : [c.desired]));
  const parts = children.map((c) => `${c.type}: ${c.reason}`).join("] [");
  const inputs: Inputs = { children: children.length, with_opinion: values.length };
  if (values.length === 0) {
    return {
      type: "composite",
      desired: undefined,
      reason: `composite ${config.mode}: no child has an opinion [${parts}]: hold at ${ctx.current}`,
      inputs,
      children,
    };
  }
  const desired =
    config.mode === "max"
      ? Math.max(...values)
      : config.mode === "min"
        ? Math.min(...values)
        : Math.ceil(values.reduce((a, b) => a + b, 0) / values.length - EPSILON);
  inputs.combined = desired;
  const of = `${config.mode} of ${values.join(", ")}${config.mode === "avg" ? " (rounded up)" : ""}`;
  return { type: "composite", desired, reason: `composite ${of} = ${desired}: ${move(ctx.current, desired)} [${parts}]`, inputs, children };
}

/**
 * Idle (Velda's AgentPool): keep between min_idle and max_idle nodes idle. A node is idle
 * while no GPU of it is busy and none runs a compute process (busy nodes are never idle,
 * so never released); nodes still coming up count as idle (they come up without work, as
 * Velda counts a pending worker's slots), so a scale-up is not repeated while they boot;
 * and each pending job, where a queue source knows them, takes one of them (as Velda's
 * pending sessions take slots: a node of an idle pool runs one session at a time).
 * - idle < min_idle: grow by the difference;
 * - idle > max_idle: release the excess at once (Velda deletes above max_idle without waiting);
 * - and, above min_idle, release every node idle for idle_decay or longer (longest idle
 *   first), down to min_idle; the others wait until their own decay is over.
 * Otherwise hold. Unknown idle nodes: no opinion.
 */
function idle(config: IdleAutoscalerConfig, { metrics, current, now }: EvaluationContext): Recommendation {
  const { min_idle: minIdle, max_idle: maxIdle, idle_decay: decay } = config;
  const inputs: Inputs = { min_idle: minIdle, max_idle: maxIdle, idle_decay: decay };
  const nodes = metrics.idleNodes;
  if (nodes === undefined) return { type: "idle", desired: undefined, reason: `idle nodes unknown: hold at ${current}`, inputs };
  const starting = metrics.nodes.provisioning;
  const pending = metrics.queue?.pending ?? 0;
  const idleCount = nodes.length + starting - pending;
  Object.assign(inputs, { idle: nodes.length, provisioning: starting, pending });
  const parts = [`${nodes.length} idle`, ...(starting > 0 ? [`+ ${starting} starting`] : []), ...(pending > 0 ? [`− ${pending} pending job(s)`] : [])];
  const counted = parts.length > 1 ? `${idleCount} idle (${parts.join(" ")})` : `${idleCount} idle`;
  const rec = (desired: number, reason: string): Recommendation => ({ type: "idle", desired, reason, inputs });

  if (idleCount < minIdle) {
    const desired = current + (minIdle - idleCount);
    return rec(desired, `${counted} < min_idle ${minIdle}: ${move(current, desired)}`);
  }
  const longestFirst = byLongestIdle(nodes);
  const decayed = longestFirst.filter((n) => now - n.idleSince >= decay);
  const excess = Math.max(0, idleCount - maxIdle);
  const release = Math.max(excess, Math.min(idleCount - minIdle, decayed.length));
  const longest = longestFirst[0];
  if (longest !== undefined) inputs.longest_idle = now - longest.idleSince;
  Object.assign(inputs, { decayed: decayed.length, release });
  const head = excess > 0 ? `${counted} > max_idle ${maxIdle}` : `${counted} within [min_idle ${minIdle}, max_idle ${maxIdle}]`;
  const longestText = (n: IdleNode) => `node ${n.id}, ${formatDuration(now - n.idleSince)}`;

  if (release > 0) {
    const desired = current - release;
    const overMax = `${excess} over max_idle at once`;
    const pastDecay = `${release - excess}${excess > 0 ? " more" : ""} idle ≥ idle_decay ${formatDuration(decay)}`;
    const what = release === excess ? overMax : excess === 0 ? pastDecay : `${release} (${overMax}, ${pastDecay})`;
    const order = longest === undefined ? "" : `, longest idle first (${longestText(longest)})`;
    return rec(desired, `${head}: release ${what}${order}: ${move(current, desired)}`);
  }
  if (idleCount > minIdle && longest !== undefined) {
    return rec(
      current,
      `${head}, but the longest idle (${longestText(longest)}) is under idle_decay ${formatDuration(decay)} until ${iso(longest.idleSince + decay)}: hold at ${current}`,
    );
  }
  return rec(current, `${head}: hold at ${current}`);
}

// ───────────────────────────── helpers ─────────────────────────────

const HOUR = 3_600_000;
/** Absorbs floating-point error before floor/ceil (86 × 10 / 80 must not become 10.7499…). */
const EPSILON = 1e-9;

/** jobs_per_node of the first queue autoscaler in the tree (depth first), if any. */
function findJobsPerNode(config: AutoscalerConfig): number | undefined {
  switch (config.type) {
    case "queue":
      return config.jobs_per_node;
    case "scheduled":
    case "predictive":
      return config.fallback === undefined ? undefined : findJobsPerNode(config.fallback);
    case "composite":
      for (const child of config.autoscalers) {
        const found = findJobsPerNode(child);
        if (found !== undefined) return found;
      }
      return undefined;
    default:
      return undefined;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

function move(from: number, to: number): string {
  return from === to ? `hold at ${from}` : `${from} → ${to}`;
}

function num(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return String(n);
  const f = 10 ** digits;
  return String(Math.round(n * f) / f);
}

function pct(n: number): string {
  return `${num(n)}%`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
