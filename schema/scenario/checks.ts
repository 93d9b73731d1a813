// Checks: what an `assert:` event measures and how it compares. A check is one metric
// (nodes by state, incidents, faults, breakers, scaling, launches, the queue, jobs, service
// hours, …) with its filters, one of equals / at_least / at_most, and an optional why.
// reconciler/sim/measurements.ts measures each metric; a new metric starts here.
import * as v from "valibot";
import { NODE_STATES, STATES, type NodeState } from "../lifecycle.ts";
import { isRecord, oneOf, show, strict, suggest } from "../shapes.ts";
import { Name, Text, int } from "./fields.ts";

export const INCIDENT_OUTCOMES = ["replaced", "recovered", "rebooted", "cancelled", "held", "terminated", "open"] as const;
export type IncidentOutcomeFilter = (typeof INCIDENT_OUTCOMES)[number];

/** State names a `nodes` check accepts besides the lifecycle states. */
export const STATE_GROUPS = {
  in_service: STATES.inService,
  in_pool: STATES.inPool,
  live: STATES.live,
} as const satisfies Record<string, readonly NodeState[]>;

export type Metric =
  | {
      kind: "nodes";
      pool?: string;
      states?: NodeState[];
      provider?: string /** The states as written (`in_service`, `cordoned|draining`), for messages. */;
      state_label?: string;
    }
  | { kind: "incidents"; pool?: string; outcome?: IncidentOutcomeFilter }
  | { kind: "faults"; pool?: string; xid?: number }
  | { kind: "breaker"; scope?: string }
  /** Pools held because their machines did not register (health.max_registration_failures). */
  | { kind: "pools_held"; pool?: string }
  | { kind: "blocked"; rail?: string }
  | { kind: "scale_events"; pool?: string; direction?: "up" | "down" }
  | { kind: "leaked_instances" }
  | { kind: "launches"; provider?: string }
  | { kind: "queue"; pool: string; jobs: "pending" | "running" | "total" }
  /** What became of the jobs over the whole run (evictions are work lost to drains). */
  | { kind: "jobs"; outcome: "submitted" | "completed" | "evicted" | "killed" }
  /** Seconds from a fault to its node's cordon, the slowest (or the median) over the incidents so far. */
  | { kind: "cordon_delay"; stat: "max" | "p50"; pool?: string }
  /** Node-hours in service (ready or suspect) so far, whole hours: the capacity a pool gave its work. */
  | { kind: "service_hours"; pool?: string }
  /** Node-minutes a pool had fewer nodes in service than its min_nodes: the capacity it lost. */
  | { kind: "shortfall_minutes"; pool?: string }
  /** Reboots the reconciler asked of a provider. */
  | { kind: "reboots"; provider?: string };
export const METRIC_KINDS = [
  "nodes",
  "incidents",
  "faults",
  "breaker",
  "pools_held",
  "blocked",
  "scale_events",
  "leaked_instances",
  "launches",
  "queue",
  "jobs",
  "cordon_delay",
  "service_hours",
  "shortfall_minutes",
  "reboots",
] as const satisfies readonly Metric["kind"][];

export const CHECK_OPS = ["equals", "at_least", "at_most"] as const;
export type CheckOp = (typeof CHECK_OPS)[number];

export interface Check {
  metric: Metric;
  op: CheckOp;
  value: number;
  why?: string;
}

const StateName = oneOf([...NODE_STATES, ...(Object.keys(STATE_GROUPS) as (keyof typeof STATE_GROUPS)[])] as const, "node state");
const States = v.pipe(
  v.custom<string | unknown[]>(
    (x) => typeof x === "string" || Array.isArray(x),
    (issue) => `expected a node state or a list of them, got ${show(issue.input)}`,
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const input = dataset.value;
    const names = Array.isArray(input) ? input : [input];
    const out: NodeState[] = [];
    let bad = false;
    names.forEach((name, i) => {
      const r = v.safeParse(StateName, name);
      if (r.success) out.push(...(r.output in STATE_GROUPS ? STATE_GROUPS[r.output as keyof typeof STATE_GROUPS] : [r.output as NodeState]));
      else {
        bad = true;
        const path: [v.IssuePathItem] | undefined = Array.isArray(input) ? [{ type: "array", origin: "value", input, key: i, value: name }] : undefined;
        addIssue({ message: r.issues[0]!.message, ...(path ? { path } : {}) });
      }
    });
    return bad ? NEVER : [...new Set(out)];
  }),
);

/** A metric's filters: a mapping, or nothing at all (`leaked_instances:`). */
function filters<const TEntries extends v.ObjectEntries>(entries: TEntries) {
  return v.pipe(
    v.custom<unknown>(
      (x) => x === null || isRecord(x),
      (issue) => `expected a mapping of filters (or nothing), got ${show(issue.input)}`,
    ),
    v.transform((x) => (x === null ? {} : x)),
    strict(entries),
  );
}

const METRIC_SCHEMAS = {
  nodes: filters({ pool: v.optional(Name), state: v.optional(States), provider: v.optional(Text) }),
  incidents: filters({ pool: v.optional(Name), outcome: v.optional(oneOf(INCIDENT_OUTCOMES, "incident outcome")) }),
  faults: filters({ pool: v.optional(Name), xid: v.optional(int(1, 999)) }),
  breaker: filters({ scope: v.optional(Text) }),
  pools_held: filters({ pool: v.optional(Name) }),
  blocked: filters({ rail: v.optional(Text) }),
  scale_events: filters({ pool: v.optional(Name), direction: v.optional(oneOf(["up", "down"] as const, "direction")) }),
  leaked_instances: filters({}),
  launches: filters({ provider: v.optional(Text) }),
  queue: filters({ pool: Name, jobs: v.optional(oneOf(["pending", "running", "total"] as const, "job count"), "total") }),
  jobs: filters({ outcome: oneOf(["submitted", "completed", "evicted", "killed"] as const, "job outcome") }),
  cordon_delay: filters({ stat: v.optional(oneOf(["max", "p50"] as const, "statistic"), "max"), pool: v.optional(Name) }),
  service_hours: filters({ pool: v.optional(Name) }),
  shortfall_minutes: filters({ pool: v.optional(Name) }),
  reboots: filters({ provider: v.optional(Text) }),
} satisfies Record<Metric["kind"], v.GenericSchema>;

export const CheckSchema = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected a check like { nodes: { state: ready }, equals: 8 }, got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const raw = dataset.value;
    const at = (key: string): [v.IssuePathItem] => [{ type: "object", origin: "value", input: raw, key, value: raw[key] }];
    const known = [...METRIC_KINDS, ...CHECK_OPS, "why"];
    let ok = true;
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) {
        ok = false;
        addIssue({
          message: `unknown key "${key}"${suggest(key, known) || ` (a check is one metric of ${METRIC_KINDS.join(", ")}, one of ${CHECK_OPS.join(", ")}, and an optional why)`}`,
          path: [{ type: "object", origin: "key", input: raw, key, value: raw[key] }],
        });
      }
    }
    const metrics = Object.keys(raw).filter((k): k is Metric["kind"] => (METRIC_KINDS as readonly string[]).includes(k));
    const ops = Object.keys(raw).filter((k): k is CheckOp => (CHECK_OPS as readonly string[]).includes(k));
    if (metrics.length === 0) {
      addIssue({ message: `a check needs one metric: ${METRIC_KINDS.join(", ")}` });
      return NEVER;
    }
    if (metrics.length > 1) {
      addIssue({ message: `one metric per check (also set: ${metrics[0]})`, path: at(metrics[1]!) });
      ok = false;
    }
    if (ops.length === 0) {
      addIssue({ message: `a check needs one of ${CHECK_OPS.join(", ")} (e.g. equals: 8)` });
      return NEVER;
    }
    if (ops.length > 1) {
      addIssue({ message: `one comparison per check (also set: ${ops[0]})`, path: at(ops[1]!) });
      ok = false;
    }
    const kind = metrics[0]!;
    const op = ops[0]!;
    const filterResult = v.safeParse(METRIC_SCHEMAS[kind], raw[kind]);
    if (!filterResult.success) {
      ok = false;
      for (const issue of filterResult.issues)
        addIssue({ message: issue.message, path: [...at(kind), ...(issue.path ?? [])] as unknown as [v.IssuePathItem, ...v.IssuePathItem[]] });
    }
    const value = raw[op];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      ok = false;
      addIssue({ message: `expected a non-negative integer, got ${show(value)}`, path: at(op) });
    }
    const why = raw.why;
    if (why !== undefined && typeof why !== "string") {
      ok = false;
      addIssue({ message: `expected a string, got ${show(why)}`, path: at("why") });
    }
    if (!ok || !filterResult.success) return NEVER;
    const metric = { kind, ...(filterResult.output as Record<string, unknown>) } as Record<string, unknown>;
    if (kind === "nodes" && "state" in metric) {
      const written = isRecord(raw.nodes) ? raw.nodes.state : undefined;
      metric.states = metric.state;
      metric.state_label = Array.isArray(written) ? written.join("|") : String(written);
      delete metric.state;
    }
    return { metric: metric as unknown as Metric, op, value: value as number, ...(typeof why === "string" ? { why } : {}) } satisfies Check;
  }),
);
