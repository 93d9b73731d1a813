// Pool autoscalers: pure decisions from metrics and a time argument. Every type, the
// pool bounds, cooldown, replacement, schedule windows across midnight and DST, the
// predictive trend and its fallback, composite modes, velda-style idle pools, and the
// bounded history the predictive scaler reads.
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import {
  activeWindow,
  byLongestIdle,
  decideScale,
  historyLookback,
  localClock,
  MAX_HISTORY_SAMPLES,
  sampleOf,
  sampleSpacing,
  type MetricsSample,
  type NodeCounts,
  type PoolMetrics,
  type ScalingDecision,
  type ScalingState,
} from "../reconciler/pools/autoscaler.ts";
import type { AutoscalerConfig, ScalingConfig, ScheduledAutoscalerConfig } from "../schema/config.ts";

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
/** Wednesday 2025-01-08 12:00 UTC. */
const T0 = Date.UTC(2025, 0, 8, 12, 0);

function pool(autoscaler?: AutoscalerConfig, over: Partial<Omit<ScalingConfig, "autoscaler">> = {}): ScalingConfig {
  return { min_nodes: 2, max_nodes: 50, cooldown_period: 5 * MIN, ...(autoscaler === undefined ? {} : { autoscaler }), ...over };
}

function nodes(total: number, over: Partial<NodeCounts> = {}): NodeCounts {
  return { ready: total, provisioning: 0, replacing: 0, total, ...over };
}

function metrics(total: number, over: Omit<Partial<PoolMetrics>, "nodes"> & { nodes?: Partial<NodeCounts> } = {}): PoolMetrics {
  const { nodes: counts, ...rest } = over;
  return { nodes: nodes(total, counts), ...rest };
}

const REACTIVE: AutoscalerConfig = { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 };
const QUEUE8: AutoscalerConfig = { type: "queue", jobs_per_node: 8 };

function decide(scaling: ScalingConfig, m: PoolMetrics, now = T0, state: ScalingState = {}): ScalingDecision {
  return decideScale(scaling, m, state, now);
}

// The functions must never read the clock: time is an argument.
let clockSpy: ReturnType<typeof spyOn> | undefined;
beforeEach(() => {
  clockSpy = spyOn(Date, "now").mockImplementation(() => {
    throw new Error("autoscaler read the clock");
  });
});
afterEach(() => clockSpy?.mockRestore());

describe("pool bounds without an autoscaler", () => {
  test.each([
    { name: "below min_nodes: up to min at once", total: 1, desired: 2, reason: "no autoscaler; clamped to min_nodes 2: 1 → 2" },
    { name: "empty pool: up to min", total: 0, desired: 2, reason: "no autoscaler; clamped to min_nodes 2: 0 → 2" },
    { name: "above max_nodes: down to max", total: 53, desired: 50, reason: "no autoscaler; clamped to max_nodes 50: 53 → 50" },
    { name: "inside the bounds: hold", total: 7, desired: 7, reason: "no autoscaler: hold at 7" },
  ])("$name", ({ total, desired, reason }) => {
    const d = decide(pool(), metrics(total));
    expect(d).toMatchObject({ desired, current: total, reason, autoscaler: "none", cooldown: { held: false } });
    expect(d.direction).toBe(desired > total ? "up" : desired < total ? "down" : "hold");
    expect(d.recommendation).toBeUndefined();
  });

  test("restoring min is not held back by cooldown", () => {
    const d = decide(pool(), metrics(1), T0, { lastScaleAt: T0 - MIN, lastDirection: "down" });
    expect(d.desired).toBe(2);
    expect(d.cooldown).toEqual({ held: false });
  });

  test("the inputs carry the pool's numbers", () => {
    const d = decide(pool(), metrics(4, { nodes: { ready: 3, provisioning: 1 } }));
    expect(d.inputs).toMatchObject({ current: 4, ready: 3, provisioning: 1, replacing: 0, min_nodes: 2, max_nodes: 50, cooldown_period: 5 * MIN });
  });
});

describe("replacement never counts as scaling", () => {
  const replacing = { nodes: { ready: 9, replacing: 1 } };
  test("10 nodes, 1 being replaced, min_nodes 10: size 10, hold", () => {
    const d = decide(pool(undefined, { min_nodes: 10 }), metrics(10, replacing));
    expect(d).toMatchObject({ current: 10, desired: 10, direction: "hold" });
    expect(d.inputs).toMatchObject({ ready: 9, replacing: 1 });
  });
  test("reactive in the dead band holds at 10 though only 9 are ready", () => {
    const d = decide(pool(REACTIVE), metrics(10, { ...replacing, gpuUtilization: 50 }));
    expect(d).toMatchObject({ current: 10, desired: 10 });
  });
  test("queue sized exactly to 10 nodes holds with one being replaced", () => {
    const d = decide(pool(QUEUE8), metrics(10, { ...replacing, queue: { pending: 0, running: 80 } }));
    expect(d).toMatchObject({ current: 10, desired: 10 });
  });
});

describe("cooldown_period", () => {
  const busy = metrics(10, { gpuUtilization: 90 }); // needs floor(900/80)+1 = 12
  const last = T0 - 2 * MIN;
  const state: ScalingState = { lastScaleAt: last, lastDirection: "up" };

  test("holds a scale-up inside the period, saying until when", () => {
    const d = decide(pool(REACTIVE), busy, T0, state);
    expect(d.desired).toBe(10);
    expect(d.direction).toBe("hold");
    expect(d.cooldown).toEqual({ held: true, until: last + 5 * MIN, wanted: 12 });
    expect(d.reason).toContain("GPU utilisation 90% ≥ scale_up_threshold 80%: 10 → 12");
    expect(d.reason).toContain(`held back by cooldown_period 5m until ${new Date(last + 5 * MIN).toISOString()}`);
    expect(d.reason).toContain("last scale-up at");
    expect(d.reason.endsWith(": hold at 10")).toBe(true);
  });

  test.each([
    { name: "releases it once the period has passed", now: last + 5 * MIN },
    { name: "and later", now: last + HOUR },
  ])("$name", ({ now }) => {
    const d = decide(pool(REACTIVE), busy, now, state);
    expect(d).toMatchObject({ desired: 12, cooldown: { held: false } });
  });

  test("holds a scale-down too", () => {
    const d = decide(pool(REACTIVE), metrics(10, { gpuUtilization: 5 }), T0, state);
    expect(d).toMatchObject({ desired: 10, cooldown: { held: true, wanted: 9 } });
  });

  test("never scaled: no cooldown", () => {
    expect(decide(pool(REACTIVE), busy).desired).toBe(12);
  });

  test("below min inside the period: up to min now, the rest held back", () => {
    // 1 node at 100% with up=20 wants 6; min_nodes 3 is restored at once.
    const scaling = pool({ type: "reactive", scale_up_threshold: 20, scale_down_threshold: 10 }, { min_nodes: 3 });
    const d = decide(scaling, metrics(1, { gpuUtilization: 100 }), T0, state);
    expect(d.desired).toBe(3);
    expect(d.cooldown).toMatchObject({ held: true, wanted: 6 });
    expect(d.reason).toContain("restoring min_nodes 3 is not held back: 1 → 3");
  });

  test("above max inside the period: down to max now", () => {
    const d = decide(pool(REACTIVE, { max_nodes: 8 }), metrics(10, { gpuUtilization: 50 }), T0, state);
    expect(d).toMatchObject({ desired: 8, bounded: "clamped to max_nodes 8", cooldown: { held: false } });
  });
});

describe("reactive", () => {
  test.each([
    { name: "86% ≥ 80: one node", util: 86, total: 10, desired: 11, reason: "GPU utilisation 86% ≥ scale_up_threshold 80%: 10 → 11" },
    { name: "exactly the threshold scales up", util: 80, total: 10, desired: 11, reason: "GPU utilisation 80% ≥ scale_up_threshold 80%: 10 → 11" },
    {
      name: "100%: proportional step",
      util: 100,
      total: 10,
      desired: 13,
      reason: "GPU utilisation 100% ≥ scale_up_threshold 80%: 10 → 13 (13 nodes bring it under 80%)",
    },
    { name: "fractional utilisation", util: 95.5, total: 4, desired: 5, reason: "GPU utilisation 95.5% ≥ scale_up_threshold 80%: 4 → 5" },
    {
      name: "dead band: hold",
      util: 50,
      total: 10,
      desired: 10,
      reason: "GPU utilisation 50% between scale_down_threshold 20% and scale_up_threshold 80%: hold at 10",
    },
    { name: "15% ≤ 20: one node down", util: 15, total: 10, desired: 9, reason: "GPU utilisation 15% ≤ scale_down_threshold 20%: 10 → 9" },
    { name: "0%: still one at a time", util: 0, total: 10, desired: 9, reason: "GPU utilisation 0% ≤ scale_down_threshold 20%: 10 → 9" },
    {
      name: "down to min, not below",
      util: 0,
      total: 2,
      desired: 2,
      reason: "GPU utilisation 0% ≤ scale_down_threshold 20%: 2 → 1; clamped to min_nodes 2: hold at 2",
    },
    { name: "up to max, not above", util: 99, total: 50, desired: 50, reason: "clamped to max_nodes 50: hold at 50" },
  ])("$name", ({ util, total, desired, reason }) => {
    const d = decide(pool(REACTIVE), metrics(total, { gpuUtilization: util }));
    expect(d.desired).toBe(desired);
    expect(d.reason).toContain(reason);
    expect(d.autoscaler).toBe("reactive");
    expect(d.inputs).toMatchObject({ gpu_utilization: util, scale_up_threshold: 80, scale_down_threshold: 20 });
  });

  test("unknown utilisation: hold with a reason", () => {
    const d = decide(pool(REACTIVE), metrics(10));
    expect(d).toMatchObject({ desired: 10, reason: "GPU utilisation unknown: hold at 10" });
    expect(d.recommendation?.desired).toBeUndefined();
  });

  test("unknown utilisation below min still restores min", () => {
    expect(decide(pool(REACTIVE), metrics(0)).desired).toBe(2);
  });

  test("nodes already starting cover the need: hold", () => {
    const d = decide(pool(REACTIVE), metrics(12, { gpuUtilization: 86, nodes: { ready: 10, provisioning: 2 } }));
    expect(d.desired).toBe(12);
    expect(d.reason).toContain("the 2 node(s) not ready yet make 12 ≥ the 11 needed: hold at 12");
  });

  test("nodes starting but not enough: the difference", () => {
    // 100% on 10 ready needs 13; 11 already counted.
    const d = decide(pool(REACTIVE), metrics(11, { gpuUtilization: 100, nodes: { ready: 10, provisioning: 1 } }));
    expect(d.desired).toBe(13);
  });

  test("scale-down that would land at or above scale_up_threshold holds (no flapping)", () => {
    const scaling = pool({ type: "reactive", scale_up_threshold: 60, scale_down_threshold: 50 }, { min_nodes: 0 });
    const d = decide(scaling, metrics(2, { gpuUtilization: 45 }));
    expect(d.desired).toBe(2);
    expect(d.reason).toContain("on 1 node(s) it would be 90% ≥ scale_up_threshold 60%");
  });
});

describe("queue (depth = pending + running)", () => {
  test.each([
    {
      name: "20 jobs / 8 per node",
      pending: 12,
      running: 8,
      total: 2,
      desired: 3,
      reason: "queue depth 20 (12 pending + 8 running) / jobs_per_node 8 → 3 node(s): 2 → 3",
    },
    {
      name: "exact multiple",
      pending: 16,
      running: 0,
      total: 2,
      desired: 2,
      reason: "queue depth 16 (16 pending + 0 running) / jobs_per_node 8 → 2 node(s): hold at 2",
    },
    {
      name: "running jobs count",
      pending: 0,
      running: 40,
      total: 10,
      desired: 5,
      reason: "queue depth 40 (0 pending + 40 running) / jobs_per_node 8 → 5 node(s): 10 → 5",
    },
    { name: "empty queue: min_nodes", pending: 0, running: 0, total: 4, desired: 2, reason: "→ 0 node(s): 4 → 0; clamped to min_nodes 2: 4 → 2" },
    { name: "huge queue: max_nodes", pending: 1000, running: 0, total: 10, desired: 50, reason: "→ 125 node(s): 10 → 125; clamped to max_nodes 50: 10 → 50" },
  ])("$name", ({ pending, running, total, desired, reason }) => {
    const d = decide(pool(QUEUE8), metrics(total, { queue: { pending, running } }));
    expect(d.desired).toBe(desired);
    expect(d.reason).toContain(reason);
    expect(d.inputs).toMatchObject({ pending, running, queue_depth: pending + running, jobs_per_node: 8 });
  });

  test("no queue metrics: hold", () => {
    expect(decide(pool(QUEUE8), metrics(5))).toMatchObject({ desired: 5, reason: "queue depth unknown: hold at 5" });
  });
});

describe("scheduled", () => {
  const night: ScheduledAutoscalerConfig = {
    type: "scheduled",
    timezone: "Europe/Berlin",
    windows: [{ days: ["fri"], start: "22:00", end: "06:00", min_nodes: 10 }],
  };
  const scaling = pool(night);

  // Berlin is UTC+1 in January, UTC+2 in summer; 2025-03-30 and 2025-10-26 are DST days (Sundays).
  test.each([
    { name: "Sat 02:00, after midnight of Friday's window", at: "2025-01-11T01:00:00Z", active: true, clock: "sat 02:00" },
    { name: "Fri 22:00, the start is inclusive", at: "2025-01-10T21:00:00Z", active: true, clock: "fri 22:00" },
    { name: "Fri 23:59", at: "2025-01-10T22:59:00Z", active: true, clock: "fri 23:59" },
    { name: "Sat 05:59", at: "2025-01-11T04:59:00Z", active: true, clock: "sat 05:59" },
    { name: "Sat 06:00, the end is exclusive", at: "2025-01-11T05:00:00Z", active: false, clock: "sat 06:00" },
    { name: "Sat 07:00", at: "2025-01-11T06:00:00Z", active: false, clock: "sat 07:00" },
    { name: "Fri 02:00 belongs to a Thursday window: inactive", at: "2025-01-10T01:00:00Z", active: false, clock: "fri 02:00" },
    { name: "Fri 21:59 (20:59Z; 21:59 in Berlin)", at: "2025-01-10T20:59:00Z", active: false, clock: "fri 21:59" },
    { name: "Fri 22:30 in summer (20:30Z, UTC+2)", at: "2025-07-04T20:30:00Z", active: true, clock: "fri 22:30" },
  ])("$name", ({ at, active, clock }) => {
    const now = Date.parse(at);
    expect(localClock(now, "Europe/Berlin").label).toBe(`${clock} Europe/Berlin`);
    expect(activeWindow(night, now) !== undefined).toBe(active);
    const d = decide(scaling, metrics(2), now);
    expect(d.desired).toBe(active ? 10 : 2);
    expect(d.reason).toContain(active ? `window 1 (fri 22:00–06:00) active at ${clock} Europe/Berlin` : `no schedule window active at ${clock} Europe/Berlin`);
    if (active) expect(d.reason).toContain("no fallback, hold the lower bound 10: 2 → 10");
  });

  test("the window's start day is named when active after midnight", () => {
    expect(decide(scaling, metrics(10), Date.parse("2025-01-11T01:00:00Z")).reason).toContain("started fri");
    expect(activeWindow(night, Date.parse("2025-01-11T01:00:00Z"))?.startedOn).toBe("fri");
  });

  describe("DST days in Europe/Berlin", () => {
    const sat: ScheduledAutoscalerConfig = { ...night, windows: [{ days: ["sat"], start: "22:00", end: "06:00", min_nodes: 10 }] };
    test.each([
      // Spring forward 2025-03-30 02:00 CET → 03:00 CEST: 06:00 local is 04:00Z, not 05:00Z.
      { name: "spring: Sun 05:30 CEST is inside", at: "2025-03-30T03:30:00Z", active: true, clock: "sun 05:30" },
      { name: "spring: Sun 06:00 CEST is outside (a fixed +1 offset would say 05:00)", at: "2025-03-30T04:00:00Z", active: false, clock: "sun 06:00" },
      { name: "spring: the skipped hour, Sun 03:00 CEST", at: "2025-03-30T01:00:00Z", active: true, clock: "sun 03:00" },
      // Fall back 2025-10-26 03:00 CEST → 02:00 CET: 06:00 local is 05:00Z, not 04:00Z.
      { name: "fall: Sun 05:59 CET is inside (a fixed +2 offset would say 06:59)", at: "2025-10-26T04:59:00Z", active: true, clock: "sun 05:59" },
      { name: "fall: Sun 06:00 CET is outside", at: "2025-10-26T05:00:00Z", active: false, clock: "sun 06:00" },
      { name: "fall: Sat 22:00 CEST starts it", at: "2025-10-25T20:00:00Z", active: true, clock: "sat 22:00" },
    ])("$name", ({ at, active, clock }) => {
      const now = Date.parse(at);
      expect(localClock(now, "Europe/Berlin").label).toBe(`${clock} Europe/Berlin`);
      expect(decide(pool(sat), metrics(2), now).desired).toBe(active ? 10 : 2);
    });
  });

  test("a daytime window (UTC default) with a queue fallback clamps it into the window's bounds", () => {
    const workday: ScheduledAutoscalerConfig = {
      type: "scheduled",
      timezone: "UTC",
      windows: [{ days: ["mon", "tue", "wed", "thu", "fri"], start: "09:00", end: "17:00", min_nodes: 4, max_nodes: 8 }],
      fallback: QUEUE8,
    };
    const wed = (hhmm: string) => Date.parse(`2025-01-08T${hhmm}:00Z`);
    const cases = [
      { now: wed("12:00"), jobs: 160, desired: 8, note: "(clamped to upper bound 8)" },
      { now: wed("12:00"), jobs: 8, desired: 4, note: "(clamped to lower bound 4)" },
      { now: wed("12:00"), jobs: 48, desired: 6, note: "fallback queue [queue depth 48" },
      { now: wed("18:00"), jobs: 160, desired: 20, note: "no schedule window active at wed 18:00 UTC: pool bounds [2, 50]" },
      { now: wed("18:00"), jobs: 0, desired: 2, note: "(clamped to lower bound 2)" },
    ];
    for (const c of cases) {
      const d = decide(pool(workday), metrics(5, { queue: { pending: c.jobs, running: 0 } }), c.now);
      expect({ desired: d.desired, hasNote: d.reason.includes(c.note) }).toEqual({ desired: c.desired, hasNote: true });
    }
    const inside = decide(pool(workday), metrics(5, { queue: { pending: 160, running: 0 } }), wed("12:00"));
    expect(inside.recommendation?.children?.[0]).toMatchObject({ type: "queue", desired: 20 });
    expect(inside.inputs).toMatchObject({ window: 1, window_min_nodes: 4, window_max_nodes: 8, bound_min: 4, bound_max: 8 });
  });

  test("the fallback with no opinion: current, clamped into the window's bounds", () => {
    const s: ScheduledAutoscalerConfig = {
      type: "scheduled",
      timezone: "UTC",
      windows: [{ days: ["wed"], start: "00:00", end: "23:59", min_nodes: 6 }],
      fallback: REACTIVE,
    };
    const d = decide(pool(s), metrics(3), T0);
    expect(d.desired).toBe(6);
    expect(d.reason).toContain("fallback reactive has no opinion [GPU utilisation unknown");
  });

  test("window bounds outside the pool's: the pool's bounds win, and the reason says so", () => {
    const wide: ScheduledAutoscalerConfig = { type: "scheduled", timezone: "UTC", windows: [{ days: ["wed"], start: "08:00", end: "20:00", min_nodes: 80 }] };
    const d = decide(pool(wide), metrics(10), T0);
    expect(d.desired).toBe(50);
    expect(d.reason).toContain("bounds [50, 50] (window min_nodes 80 clamped to the pool's max_nodes 50)");

    const narrow: ScheduledAutoscalerConfig = {
      type: "scheduled",
      timezone: "UTC",
      windows: [{ days: ["wed"], start: "08:00", end: "20:00", max_nodes: 1 }],
      fallback: QUEUE8,
    };
    const n = decide(pool(narrow), metrics(10, { queue: { pending: 100, running: 0 } }), T0);
    expect(n.desired).toBe(2);
    expect(n.reason).toContain("bounds [2, 2] (window max_nodes 1 clamped to the pool's min_nodes 2)");
  });

  test("a window with only max_nodes keeps the pool's min_nodes; no fallback holds it", () => {
    const capped: ScheduledAutoscalerConfig = { type: "scheduled", timezone: "UTC", windows: [{ days: ["wed"], start: "08:00", end: "20:00", max_nodes: 5 }] };
    const d = decide(pool(capped), metrics(9), T0);
    expect(d.desired).toBe(2);
    expect(d.reason).toContain("bounds [2, 5]");
  });

  test("the first active window wins", () => {
    const two: ScheduledAutoscalerConfig = {
      type: "scheduled",
      timezone: "UTC",
      windows: [
        { days: ["wed"], start: "11:00", end: "13:00", min_nodes: 7 },
        { days: ["wed"], start: "00:00", end: "23:00", min_nodes: 3 },
      ],
    };
    expect(activeWindow(two, T0)?.index).toBe(0);
    expect(decide(pool(two), metrics(2), T0).desired).toBe(7);
    expect(decide(pool(two), metrics(2), T0 + 2 * HOUR).desired).toBe(3);
  });

  test("entering a window raises to its lower bound even during cooldown", () => {
    const now = Date.parse("2025-01-10T21:00:00Z"); // Fri 22:00 Berlin
    const d = decide(scaling, metrics(2), now, { lastScaleAt: now - MIN, lastDirection: "down" });
    expect(d).toMatchObject({ desired: 10, cooldown: { held: false } });
  });

  test("inside a window, a fallback's move within its bounds is held by cooldown; the lower bound is restored", () => {
    const s: ScheduledAutoscalerConfig = {
      type: "scheduled",
      timezone: "UTC",
      windows: [{ days: ["wed"], start: "08:00", end: "20:00", min_nodes: 4 }],
      fallback: QUEUE8,
    };
    const state = { lastScaleAt: T0 - MIN };
    const d = decide(pool(s), metrics(2, { queue: { pending: 80, running: 0 } }), T0, state);
    expect(d).toMatchObject({ desired: 4, cooldown: { held: true, wanted: 10 } });
    expect(d.reason).toContain("restoring the lower bound 4 is not held back: 2 → 4");
  });
});

describe("predictive", () => {
  /**
   * Samples whose demand is `values` (in nodes), every `step` ms, ending at `end`: as busy
   * node-equivalents (100 ready nodes at `value` % utilisation), or as a queue of 8 jobs per node.
   */
  function series(values: number[], end = T0, step = 10 * MIN, as: "utilization" | "queue" = "utilization"): MetricsSample[] {
    return values.map((demand, i) => ({
      at: end - (values.length - 1 - i) * step,
      ready: 100,
      ...(as === "utilization" ? { utilization: demand } : { queueDepth: demand * 8 }),
    }));
  }
  const predictive = (over: Partial<{ lookback_window: number; growth_factor: number; fallback: AutoscalerConfig }> = {}): AutoscalerConfig => ({
    type: "predictive",
    lookback_window: HOUR,
    growth_factor: 1,
    ...over,
  });

  test("a rising trend scales ahead of the current demand", () => {
    // 10 → 22 nodes over the last hour (12/h); 5 min ahead: 23.
    const d = decide(pool(predictive()), metrics(20, { history: series([10, 12, 14, 16, 18, 20, 22]) }));
    expect(d.desired).toBe(23);
    expect(d.reason).toContain("rising 12/h over 7 samples in 1h, now 22 node(s)");
    expect(d.reason).toContain("projected 23 in cooldown_period 5m × growth_factor 1 = 23 → 23 node(s): 20 → 23");
    expect(d.inputs).toMatchObject({ samples: 7, span: HOUR, horizon: 5 * MIN });
    expect(d.inputs.slope_per_hour).toBeCloseTo(12, 9);
  });

  test("growth_factor multiplies the projection (rounded up)", () => {
    const d = decide(pool(predictive({ growth_factor: 1.5 })), metrics(20, { history: series([10, 12, 14, 16, 18, 20, 22]) }));
    expect(d.desired).toBe(35); // 23 × 1.5 = 34.5
  });

  test("a falling trend scales down ahead", () => {
    const d = decide(pool(predictive()), metrics(20, { history: series([22, 20, 18, 16, 14, 12, 10]) }));
    expect(d.desired).toBe(9);
    expect(d.reason).toContain("falling 12/h");
  });

  test("cooldown_period 0: projects lookback_window / 4 ahead", () => {
    const d = decide(pool(predictive(), { cooldown_period: 0 }), metrics(20, { history: series([10, 12, 14, 16, 18, 20, 22]) }));
    expect(d.desired).toBe(25); // 22 + 12 × 0.25
    expect(d.reason).toContain("lookback_window/4 15m");
  });

  test("demand from utilisation × ready / 100 when there is no queue", () => {
    const history: MetricsSample[] = [
      { at: T0 - HOUR, ready: 10, utilization: 40 },
      { at: T0 - 30 * MIN, ready: 10, utilization: 60 },
      { at: T0, ready: 10, utilization: 80 },
    ];
    // demand 4, 6, 8 nodes (4/h); +5 min = 8.33; × 1.25 = 10.4 → 11
    const d = decide(pool(predictive({ growth_factor: 1.25 })), metrics(10, { gpuUtilization: 80, history }));
    expect(d.desired).toBe(11);
    expect(d.reason).toContain("demand (GPU utilisation × ready nodes) rising 4/h");
  });

  test("demand from queue depth / jobs_per_node when the pool has a queue autoscaler", () => {
    const history: MetricsSample[] = [
      { at: T0 - HOUR, ready: 2, queueDepth: 8, utilization: 99 },
      { at: T0 - 30 * MIN, ready: 2, queueDepth: 16, utilization: 99 },
      { at: T0, ready: 3, queueDepth: 24, utilization: 99 },
    ];
    // demand 1, 2, 3 (2/h); +5 min = 3.17 → 4; queue alone says 3; max → 4
    const scaling = pool({ type: "composite", mode: "max", autoscalers: [predictive(), QUEUE8] });
    const d = decide(scaling, metrics(3, { queue: { pending: 0, running: 24 }, history }));
    expect(d.desired).toBe(4);
    expect(d.recommendation?.children?.map((c) => c.desired)).toEqual([4, 3]);
    expect(d.reason).toContain("demand (queue depth / jobs_per_node 8)");
  });

  test("samples older than lookback_window or after now are ignored", () => {
    const history = [
      { at: T0 - 3 * HOUR, ready: 100, utilization: 100 },
      ...series([10, 12, 14, 16, 18, 20, 22]),
      { at: T0 + MIN, ready: 1000, utilization: 50 },
    ];
    expect(decide(pool(predictive()), metrics(20, { history })).desired).toBe(23);
  });

  test.each([
    { name: "two samples", history: series([10, 22], T0, 30 * MIN, "queue"), count: "2 sample(s) over 30m" },
    { name: "no history", history: [], count: "0 sample(s) over 0s" },
    { name: "span under lookback/4", history: series([10, 11, 12, 13, 14], T0, 2 * MIN, "queue"), count: "5 sample(s) over 8m" },
  ])("short history ($name) uses the fallback", ({ history, count }) => {
    const scaling = pool(predictive({ fallback: QUEUE8 }));
    const d = decide(scaling, metrics(4, { queue: { pending: 40, running: 0 }, history }));
    expect(d.desired).toBe(5);
    expect(d.reason).toContain(`history too short (${count}; need 3 over 15m); fallback queue [queue depth 40`);
    expect(d.recommendation?.children?.[0]?.type).toBe("queue");
  });

  test("short history without a fallback holds", () => {
    const d = decide(pool(predictive()), metrics(4, { history: series([1, 2]) }));
    expect(d.desired).toBe(4);
    expect(d.reason).toContain("no fallback: hold at 4");
  });
});

describe("composite", () => {
  // reactive: 86% on 10 → 11; queue: 24 jobs / 8 → 3; 10 nodes, min 2.
  const m = metrics(10, { gpuUtilization: 86, queue: { pending: 16, running: 8 } });
  test.each([
    { mode: "max" as const, desired: 11, of: "composite max of 11, 3 = 11: 10 → 11" },
    { mode: "min" as const, desired: 3, of: "composite min of 11, 3 = 3: 10 → 3" },
    { mode: "avg" as const, desired: 7, of: "composite avg of 11, 3 (rounded up) = 7: 10 → 7" },
  ])("mode $mode", ({ mode, desired, of }) => {
    const d = decide(pool({ type: "composite", mode, autoscalers: [REACTIVE, QUEUE8] }), m);
    expect(d.desired).toBe(desired);
    expect(d.reason).toContain(of);
    // each child's reason is kept, in the text and in the tree
    expect(d.reason).toContain("[reactive: GPU utilisation 86% ≥ scale_up_threshold 80%: 10 → 11]");
    expect(d.reason).toContain("[queue: queue depth 24 (16 pending + 8 running) / jobs_per_node 8 → 3 node(s): 10 → 3]");
    expect(d.recommendation?.children?.map((c) => [c.type, c.desired])).toEqual([
      ["reactive", 11],
      ["queue", 3],
    ]);
  });

  test("avg rounds up", () => {
    const d = decide(
      pool({ type: "composite", mode: "avg", autoscalers: [REACTIVE, QUEUE8] }),
      metrics(10, { gpuUtilization: 86, queue: { pending: 32, running: 0 } }),
    );
    expect(d.desired).toBe(8); // (11 + 4) / 2 = 7.5
  });

  test("a child without an opinion is left out", () => {
    const d = decide(pool({ type: "composite", mode: "max", autoscalers: [REACTIVE, QUEUE8] }), metrics(10, { queue: { pending: 24, running: 0 } }));
    expect(d.desired).toBe(3);
    expect(d.reason).toContain("GPU utilisation unknown");
  });

  test("no child with an opinion: hold", () => {
    const d = decide(pool({ type: "composite", mode: "min", autoscalers: [REACTIVE, QUEUE8] }), metrics(10));
    expect(d.desired).toBe(10);
    expect(d.reason).toContain("no child has an opinion");
  });

  test("nesting", () => {
    const inner: AutoscalerConfig = { type: "composite", mode: "min", autoscalers: [REACTIVE, QUEUE8] };
    const d = decide(pool({ type: "composite", mode: "max", autoscalers: [inner, { type: "queue", jobs_per_node: 4 }] }), m);
    expect(d.desired).toBe(6); // max(min(11, 3), 24 / 4)
    expect(d.recommendation?.children?.[0]?.children).toHaveLength(2);
  });

  test("the seed's training pool: composite max of reactive and queue, clamped to max_nodes 20", () => {
    const d = decide(
      pool({ type: "composite", mode: "max", autoscalers: [REACTIVE, QUEUE8] }, { max_nodes: 20, cooldown_period: 10 * MIN }),
      metrics(10, { gpuUtilization: 50, queue: { pending: 200, running: 0 } }),
    );
    expect(d).toMatchObject({ desired: 20, bounded: "clamped to max_nodes 20" });
  });
});

describe("idle (Velda's AgentPool)", () => {
  const idleCfg: AutoscalerConfig = { type: "idle", min_idle: 2, max_idle: 4, idle_decay: 10 * MIN };
  /** Idle nodes n-0, n-1, … idle for these many minutes. */
  const idleNodes = (...minutes: number[]) => minutes.map((m, i) => ({ id: `n-${i}`, idleSince: T0 - m * MIN }));

  test.each([
    { name: "0 idle < min_idle 2: up by 2", idle: idleNodes(), total: 6, desired: 8, reason: "0 idle < min_idle 2: 6 → 8" },
    { name: "1 idle < min_idle 2: up by 1", idle: idleNodes(30), total: 6, desired: 7, reason: "1 idle < min_idle 2: 6 → 7" },
    {
      name: "2 idle = min_idle, decayed or not: hold",
      idle: idleNodes(30, 30),
      total: 6,
      desired: 6,
      reason: "2 idle within [min_idle 2, max_idle 4]: hold at 6",
    },
    {
      name: "3 idle, none idle for idle_decay yet: hold until the longest decays",
      idle: idleNodes(2, 6, 4),
      total: 6,
      desired: 6,
      reason: `3 idle within [min_idle 2, max_idle 4], but the longest idle (node n-1, 6m) is under idle_decay 10m until ${new Date(T0 + 4 * MIN).toISOString()}: hold at 6`,
    },
    {
      name: "3 idle, one past idle_decay: released",
      idle: idleNodes(2, 12, 4),
      total: 6,
      desired: 5,
      reason: "3 idle within [min_idle 2, max_idle 4]: release 1 idle ≥ idle_decay 10m, longest idle first (node n-1, 12m): 6 → 5",
    },
    { name: "4 idle, all past idle_decay: down to min_idle", idle: idleNodes(30, 30, 30, 30), total: 6, desired: 4, reason: "release 2 idle ≥ idle_decay 10m" },
    {
      name: "5 idle > max_idle 4, none decayed: the excess at once",
      idle: idleNodes(1, 2, 3, 4, 5),
      total: 6,
      desired: 5,
      reason: "5 idle > max_idle 4: release 1 over max_idle at once, longest idle first (node n-4, 5m): 6 → 5",
    },
    {
      name: "7 idle > max_idle, two decayed: the excess takes them (longest idle first)",
      idle: idleNodes(1, 2, 3, 4, 5, 30, 40),
      total: 9,
      desired: 6,
      reason: "7 idle > max_idle 4: release 3 over max_idle at once, longest idle first (node n-6, 40m): 9 → 6",
    },
    {
      name: "7 idle > max_idle, five decayed: the excess and the decayed, never below min_idle",
      idle: idleNodes(1, 2, 30, 40, 50, 60, 70),
      total: 9,
      desired: 4,
      reason: "7 idle > max_idle 4: release 5 (3 over max_idle at once, 2 more idle ≥ idle_decay 10m), longest idle first (node n-6, 1h10m): 9 → 4",
    },
  ])("$name", ({ idle, total, desired, reason }) => {
    const d = decide(pool(idleCfg, { min_nodes: 0 }), metrics(total, { idleNodes: idle }));
    expect(d.desired).toBe(desired);
    expect(d.reason).toContain(reason);
    expect(d.inputs).toMatchObject({ idle: idle.length, min_idle: 2, max_idle: 4, idle_decay: 10 * MIN });
  });

  test("the same pool once the longest idle node's decay is over scales down", () => {
    const idle = idleNodes(2, 6, 4);
    expect(decide(pool(idleCfg), metrics(6, { idleNodes: idle }), T0).desired).toBe(6);
    expect(decide(pool(idleCfg), metrics(6, { idleNodes: idle }), T0 + 4 * MIN - 1).desired).toBe(6);
    expect(decide(pool(idleCfg), metrics(6, { idleNodes: idle }), T0 + 4 * MIN).desired).toBe(5);
  });

  test("nodes still coming up count as idle, so a scale-up is not repeated while they boot", () => {
    const d = decide(pool(idleCfg), metrics(8, { idleNodes: [], nodes: { ready: 6, provisioning: 2 } }));
    expect(d.desired).toBe(8);
    expect(d.reason).toContain("2 idle (0 idle + 2 starting) within");
  });

  test("each pending job takes one idle node (Velda's pending sessions), so the pool grows for them at once", () => {
    const d = decide(pool(idleCfg), metrics(5, { idleNodes: idleNodes(1), queue: { pending: 3, running: 4 }, nodes: { ready: 5, provisioning: 0 } }));
    expect(d.desired).toBe(9);
    expect(d.reason).toContain("-2 idle (1 idle − 3 pending job(s)) < min_idle 2: 5 → 9");
  });

  test("unknown idle nodes: hold", () => {
    expect(decide(pool(idleCfg), metrics(6)).reason).toBe("idle nodes unknown: hold at 6");
  });

  test("min_nodes still applies", () => {
    const d = decide(pool(idleCfg, { min_nodes: 7 }), metrics(7, { idleNodes: idleNodes(60, 60, 60, 60, 60, 60) }));
    expect(d).toMatchObject({ desired: 7, bounded: "clamped to min_nodes 7" });
  });

  test("byLongestIdle: longest idle first, ties by id", () => {
    const order = byLongestIdle([
      { id: "b", idleSince: T0 - MIN },
      { id: "a", idleSince: T0 - HOUR },
      { id: "c", idleSince: T0 - MIN },
    ]).map((n) => n.id);
    expect(order).toEqual(["a", "b", "c"]);
  });
});

describe("metrics history", () => {
  test("sampleOf records what the predictive scaler reads", () => {
    expect(sampleOf(metrics(5, { nodes: { ready: 4 }, gpuUtilization: 70, queue: { pending: 3, running: 9 } }), T0)).toEqual({
      at: T0,
      ready: 4,
      utilization: 70,
      queueDepth: 12,
    });
    expect(sampleOf(metrics(5), T0)).toEqual({ at: T0, ready: 5 });
  });

  test("sampleSpacing keeps a lookback window within MAX_HISTORY_SAMPLES", () => {
    expect(sampleSpacing(HOUR)).toBe(2.5 * SEC);
    expect((168 * HOUR) / sampleSpacing(168 * HOUR)).toBe(MAX_HISTORY_SAMPLES);
  });

  test("historyLookback: the longest predictive lookback in the tree, 0 without one", () => {
    expect(historyLookback(pool(REACTIVE))).toBe(0);
    expect(historyLookback(pool())).toBe(0);
    const tree: AutoscalerConfig = {
      type: "composite",
      mode: "max",
      autoscalers: [
        { type: "predictive", lookback_window: HOUR, growth_factor: 1 },
        { type: "scheduled", timezone: "UTC", windows: [], fallback: { type: "predictive", lookback_window: 3 * HOUR, growth_factor: 1 } },
      ],
    };
    expect(historyLookback(pool(tree))).toBe(3 * HOUR);
  });

  test("a simulated day: decisions from recorded history are deterministic", () => {
    const scaling = pool({ type: "predictive", lookback_window: HOUR, growth_factor: 1.2, fallback: REACTIVE });
    const lookback = historyLookback(scaling);
    const run = () => {
      let history: MetricsSample[] = [];
      let state: ScalingState = {};
      let size = 2;
      const out: number[] = [];
      for (let t = 0; t < 6 * HOUR; t += 30 * SEC) {
        const now = T0 + t;
        const util = Math.min(100, 30 + (t / HOUR) * 12);
        const m: PoolMetrics = { nodes: nodes(size), gpuUtilization: util };
        history = [...history.filter((x) => x.at >= now - lookback), sampleOf(m, now)];
        const d = decideScale(scaling, { ...m, history }, state, now);
        if (d.desired !== size) {
          state = { lastScaleAt: now, lastDirection: d.desired > size ? "up" : "down" };
          size = d.desired;
        }
        out.push(size);
      }
      return out;
    };
    const first = run();
    expect(run()).toEqual(first);
    expect(first.at(-1)!).toBeGreaterThan(2);
  });
});
