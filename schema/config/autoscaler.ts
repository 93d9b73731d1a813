// A pool's `scaling.autoscaler:`: the autoscaler types (reactive, queue, scheduled,
// predictive, composite, idle), each one's settings and rules, and the schema that dispatches
// on `type`. Scheduled windows (days, times of day, time zones) are here too: they nest
// autoscalers as a fallback, as predictive and composite do.
import * as v from "valibot";
import { accept, closestMatch, isRecord, oneOf, show, strict, unknownNameMessage, withJsonShape } from "../shapes.ts";
import { num, rules } from "./cross-field-rules.ts";
import { duration, type Millis } from "./duration.ts";
import { int, list, NodeCount, Percent, shaped } from "./leaf-schemas.ts";

export const AUTOSCALER_TYPES = ["reactive", "queue", "scheduled", "predictive", "composite", "idle"] as const;
export type AutoscalerType = (typeof AUTOSCALER_TYPES)[number];

export type AutoscalerConfig =
  | ReactiveAutoscalerConfig
  | QueueAutoscalerConfig
  | ScheduledAutoscalerConfig
  | PredictiveAutoscalerConfig
  | CompositeAutoscalerConfig
  | IdleAutoscalerConfig;

/** Scales on GPU utilisation (percent): up above scale_up_threshold, down below scale_down_threshold. */
export interface ReactiveAutoscalerConfig {
  type: "reactive";
  scale_up_threshold: number;
  /** < scale_up_threshold. */
  scale_down_threshold: number;
}

/** Sizes the pool to ceil(queued + running jobs / jobs_per_node). */
export interface QueueAutoscalerConfig {
  type: "queue";
  jobs_per_node: number;
}

/**
 * Time windows that override the pool's bounds; `fallback` picks the size inside the
 * bounds in force (without one, the pool holds the lower bound).
 */
export interface ScheduledAutoscalerConfig {
  type: "scheduled";
  /** Canonical IANA name (`Intl` resolved), e.g. `Europe/Berlin`. */
  timezone: string;
  windows: ScheduleWindow[];
  fallback?: AutoscalerConfig;
}

export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface ScheduleWindow {
  /** Days on which the window starts; deduplicated, as three-letter lowercase names. */
  days: Weekday[];
  /** `HH:MM`, 24-hour. When end ≤ start the window runs past midnight into the next day. */
  start: string;
  end: string;
  /** At least one of the two is set. */
  min_nodes?: number;
  max_nodes?: number;
}

/** Extrapolates the demand trend over lookback_window, times growth_factor. */
export interface PredictiveAutoscalerConfig {
  type: "predictive";
  lookback_window: Millis;
  growth_factor: number;
  fallback?: AutoscalerConfig;
}

/** Combines the recommendations of several autoscalers (nesting allowed). */
export interface CompositeAutoscalerConfig {
  type: "composite";
  mode: "max" | "min" | "avg";
  autoscalers: AutoscalerConfig[];
}

/** Interactive pools (velda's AgentPool): keep between min_idle and max_idle nodes idle. */
export interface IdleAutoscalerConfig {
  type: "idle";
  min_idle: number;
  /** ≥ min_idle. */
  max_idle: number;
  /** How long an idle node above max_idle is kept before removal. */
  idle_decay: Millis;
}

const Reactive = v.pipe(
  strict({
    type: v.literal("reactive"),
    scale_up_threshold: v.optional(Percent, 80),
    scale_down_threshold: v.optional(Percent, 20),
  }),
  rules((f, report) => {
    const [up, down] = [num(f.scale_up_threshold), num(f.scale_down_threshold)];
    if (up !== undefined && down !== undefined && down >= up) {
      report("scale_down_threshold", `must be < scale_up_threshold (${up}), got ${down}`);
    }
  }),
);

const Queue = strict({
  type: v.literal("queue"),
  jobs_per_node: int(1, 10_000),
});

const DAY_NAMES: Record<string, Weekday> = Object.fromEntries(
  ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].flatMap((name, i) => [
    [name, WEEKDAYS[i]!],
    [WEEKDAYS[i]!, WEEKDAYS[i]!],
  ]),
);
const Day = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && x.toLowerCase() in DAY_NAMES,
    (issue) =>
      typeof issue.input === "string" ? unknownNameMessage("day", issue.input, WEEKDAYS) : `expected a day like mon or monday, got ${show(issue.input)}`,
  ),
  v.transform((day) => DAY_NAMES[day.toLowerCase()]!),
);

const ClockTime = v.pipe(
  shaped(/^([01]?\d|2[0-3]):[0-5]\d$/, "a time of day as HH:MM (00:00 to 23:59)"),
  v.transform((t) => t.padStart(5, "0")),
);

const Window = v.pipe(
  strict({
    days: list(Day, { nonEmpty: true, noun: "day" }),
    start: ClockTime,
    end: ClockTime,
    min_nodes: v.optional(NodeCount),
    max_nodes: v.optional(NodeCount),
  }),
  rules((f, report, raw) => {
    if (f.start !== undefined && f.start === f.end) report("end", `must differ from start (${String(f.start)})`);
    const [min, max] = [num(f.min_nodes), num(f.max_nodes)];
    if (min !== undefined && max !== undefined && max < min) report("max_nodes", `must be ≥ min_nodes (${min}), got ${max}`);
    if (raw.min_nodes === undefined && raw.max_nodes === undefined) {
      report("min_nodes", "set min_nodes or max_nodes (a window without either changes nothing)");
    }
  }),
  v.transform((w) => ({ ...w, days: [...new Set(w.days)] })),
);

const TimeZone = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && canonicalTimeZone(x) !== undefined,
    (issue) => {
      if (typeof issue.input !== "string") return `expected an IANA time zone like Europe/Berlin or UTC, got ${show(issue.input)}`;
      const guess = closestMatch(issue.input, Intl.supportedValuesOf("timeZone"));
      return `unknown time zone ${show(issue.input)} (expected an IANA name like Europe/Berlin or UTC${guess ? `; did you mean "${guess}"?` : ""})`;
    },
  ),
  v.transform((tz) => canonicalTimeZone(tz)!),
);

function canonicalTimeZone(name: string): string | undefined {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

const Scheduled = strict({
  type: v.literal("scheduled"),
  timezone: v.optional(TimeZone, "UTC"),
  windows: list(Window, { nonEmpty: true, noun: "window" }),
  fallback: v.optional(v.lazy(() => Autoscaler)),
});

const Predictive = strict({
  type: v.literal("predictive"),
  lookback_window: v.optional(duration("1m", "168h"), "1h"),
  growth_factor: v.optional(
    v.custom<number>(
      (x) => typeof x === "number" && x > 0 && x <= 100,
      (issue) => `expected a number > 0${typeof issue.input === "number" && issue.input > 100 ? " (at most 100)" : ""}, got ${show(issue.input)}`,
    ),
    1,
  ),
  fallback: v.optional(v.lazy(() => Autoscaler)),
});

const Composite = strict({
  type: v.literal("composite"),
  mode: v.optional(oneOf(["max", "min", "avg"] as const, "composite mode"), "max"),
  autoscalers: list(
    v.lazy(() => Autoscaler),
    { nonEmpty: true, noun: "autoscaler" },
  ),
});

const Idle = v.pipe(
  strict({
    type: v.literal("idle"),
    min_idle: NodeCount,
    max_idle: NodeCount,
    idle_decay: v.optional(duration("0s", "24h"), "60s"), // velda's idleDecaySecond default
  }),
  rules((f, report) => {
    const [min, max] = [num(f.min_idle), num(f.max_idle)];
    if (min !== undefined && max !== undefined && max < min) report("max_idle", `must be ≥ min_idle (${min}), got ${max}`);
  }),
);

const AUTOSCALER_SCHEMAS: Record<AutoscalerType, v.GenericSchema<unknown, AutoscalerConfig>> = {
  reactive: Reactive,
  queue: Queue,
  scheduled: Scheduled,
  predictive: Predictive,
  composite: Composite,
  idle: Idle,
};

/** What an autoscaler without a known `type` fails with (always): the message names the types. */
const UnknownAutoscaler = v.pipe(
  accept<Record<string, unknown>>(isRecord, `a mapping with a "type" (one of ${AUTOSCALER_TYPES.join(", ")})`),
  v.looseObject(
    {
      type: v.custom<never>(
        () => false,
        (issue) =>
          typeof issue.input === "string"
            ? unknownNameMessage("autoscaler type", issue.input, AUTOSCALER_TYPES)
            : `expected an autoscaler type (one of ${AUTOSCALER_TYPES.join(", ")}), got ${show(issue.input)}`,
      ),
    },
    `is required (one of ${AUTOSCALER_TYPES.join(", ")})`,
  ),
) as unknown as v.GenericSchema<unknown, never>;

/** Discriminated on `type`, dispatched by hand so each variant keeps its own strict keys and rules. */
// Nested (composite, fallback) autoscalers cannot be written as a structural schema: a
// generated schema keeps the type and leaves the rest to these rules.
export const Autoscaler: v.GenericSchema<unknown, AutoscalerConfig> = withJsonShape(
  v.lazy((input) => {
    const type = isRecord(input) ? input.type : undefined;
    return typeof type === "string" && type in AUTOSCALER_SCHEMAS ? AUTOSCALER_SCHEMAS[type as AutoscalerType] : UnknownAutoscaler;
  }),
  {
    type: "object",
    required: ["type"],
    "x-kubernetes-preserve-unknown-fields": true,
    properties: { type: { type: "string", enum: AUTOSCALER_TYPES } },
  },
);
