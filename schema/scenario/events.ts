// Scripted events: the `events:` list of a scenario file. Each is a time since the start
// (or `end`), an optional note, and exactly one action: a fault, a recovery, a silent or
// vanished agent, jobs, a provider outage, a reconciler restart, a human's breaker reset
// or pool resume, or an assert (checks.ts). reconciler/sim/scripted-events.ts plays them.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, oneOf, show, strict, suggest } from "../shapes.ts";
import { CheckSchema, type Check } from "./checks.ts";
import { Name, PositiveDuration, Text, int, parseScenarioDuration } from "./fields.ts";
import { TargetSchema, type Target } from "./targets.ts";

export const PROVIDER_CALLS = ["launch", "terminate", "get", "list"] as const;
export type ProviderCall = (typeof PROVIDER_CALLS)[number];
export const OUTAGE_ERRORS = ["capacity", "quota", "rate_limit", "transient", "auth"] as const;
export type OutageError = (typeof OUTAGE_ERRORS)[number];

export type ScenarioEvent = { at: Millis; note?: string; index: number } & (
  | { kind: "fault"; xid: number; gpu: number | "random"; target: Target }
  | { kind: "recover"; target: Target; by: "reboot" | "report" }
  | { kind: "silence"; target: Target; for?: Millis }
  | { kind: "vanish"; target: Target }
  | { kind: "jobs"; pool: string; count: number; duration: Millis; gpus?: number }
  | { kind: "outage"; provider: string; error: OutageError; calls: ProviderCall[]; for: Millis; instance_type?: string; region?: string }
  | { kind: "restart" }
  | { kind: "breaker_reset"; scope: string }
  /** An operator's `navarch pools resume POOL`. */
  | { kind: "pool_resume"; pool: string }
  | { kind: "assert"; checks: Check[] }
);
export type EventKind = ScenarioEvent["kind"];
export const EVENT_KINDS = [
  "fault",
  "recover",
  "silence",
  "vanish",
  "jobs",
  "outage",
  "restart",
  "breaker_reset",
  "pool_resume",
  "assert",
] as const satisfies readonly EventKind[];

/** `at:` a duration since the start, or `end`; `end` becomes -1 until the loader knows the duration. */
const At = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && (x === "end" || parseScenarioDuration(x) !== undefined),
    (issue) => `expected a time since the start like 90s, 2h30m, or end, got ${show(issue.input)}`,
  ),
  v.transform((text) => (text === "end" ? -1 : parseScenarioDuration(text)!)),
);

const Fault = strict({
  xid: int(1, 999),
  gpu: v.optional(
    v.union([int(0, 63), v.literal("random")], (i) => `expected a GPU index or random, got ${show(i.input)}`),
    0,
  ),
  target: TargetSchema,
});
const Recover = strict({ target: TargetSchema, by: v.optional(oneOf(["reboot", "report"] as const, "recovery"), "reboot") });
const Silence = strict({ target: TargetSchema, for: v.optional(PositiveDuration) });
const Vanish = strict({ target: TargetSchema });
const Jobs = strict({ pool: Name, count: int(1), duration: PositiveDuration, gpus: v.optional(int(1)) });
const Outage = strict({
  provider: Text,
  error: v.optional(oneOf(OUTAGE_ERRORS, "provider error"), "capacity"),
  calls: v.optional(
    v.array(oneOf(PROVIDER_CALLS, "provider call"), (i) => `expected a list of provider calls, got ${show(i.input)}`),
    ["launch"],
  ),
  for: PositiveDuration,
  /** Only launches of this type, or in this region, fail (launches only). */
  instance_type: v.optional(Text),
  region: v.optional(Text),
});
const Restart = v.pipe(
  v.custom<unknown>(
    (x) => x === null || x === true || (isRecord(x) && Object.keys(x).length === 0),
    (i) => `expected nothing, true or {}, got ${show(i.input)}`,
  ),
  v.transform(() => ({})),
);
const BreakerReset = strict({ scope: v.optional(Text, "fleet") });
const PoolResume = strict({ pool: Name });
const Assert = v.pipe(
  v.array(CheckSchema, (i) => `expected a list of checks, got ${show(i.input)}`),
  v.check((c) => c.length > 0, "must list at least one check"),
);

const ACTION_SCHEMAS = {
  fault: Fault,
  recover: Recover,
  silence: Silence,
  vanish: Vanish,
  jobs: Jobs,
  outage: Outage,
  restart: Restart,
  breaker_reset: BreakerReset,
  pool_resume: PoolResume,
  assert: Assert,
} satisfies Record<EventKind, v.GenericSchema>;

export const EventSchema = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected an event like { at: 30m, fault: {…} }, got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const raw = dataset.value;
    const at = (key: string): [v.IssuePathItem] => [{ type: "object", origin: "value", input: raw, key, value: raw[key] }];
    const known = ["at", "note", ...EVENT_KINDS];
    let ok = true;
    for (const key of Object.keys(raw)) {
      if (known.includes(key)) continue;
      ok = false;
      const hint = suggest(key, known);
      addIssue({
        message: `unknown key "${key}"${hint || ` (an event is at, an optional note, and one of ${EVENT_KINDS.join(", ")})`}`,
        path: [{ type: "object", origin: "key", input: raw, key, value: raw[key] }],
      });
    }
    const time = v.safeParse(At, raw.at);
    if (!time.success) {
      ok = false;
      addIssue({ message: raw.at === undefined ? "is required (a time since the start like 30m, or end)" : time.issues[0]!.message, path: at("at") });
    }
    if (raw.note !== undefined && typeof raw.note !== "string") {
      ok = false;
      addIssue({ message: `expected a string, got ${show(raw.note)}`, path: at("note") });
    }
    const kinds = Object.keys(raw).filter((k): k is EventKind => (EVENT_KINDS as readonly string[]).includes(k));
    if (kinds.length === 0) {
      if (ok) addIssue({ message: `an event needs one action: ${EVENT_KINDS.join(", ")}` });
      return NEVER;
    }
    if (kinds.length > 1) {
      addIssue({ message: `one action per event (also set: ${kinds[0]}); add another event at the same time instead`, path: at(kinds[1]!) });
      return NEVER;
    }
    const kind = kinds[0]!;
    const body = v.safeParse(ACTION_SCHEMAS[kind] as v.GenericSchema, raw[kind]);
    if (!body.success) {
      for (const issue of body.issues)
        addIssue({ message: issue.message, path: [...at(kind), ...(issue.path ?? [])] as unknown as [v.IssuePathItem, ...v.IssuePathItem[]] });
      return NEVER;
    }
    if (!ok || !time.success) return NEVER;
    const note = typeof raw.note === "string" ? { note: raw.note } : {};
    const payload = kind === "assert" ? { checks: body.output as Check[] } : (body.output as Record<string, unknown>);
    return { at: time.output, ...note, kind, ...payload, index: 0 } as ScenarioEvent;
  }),
);
