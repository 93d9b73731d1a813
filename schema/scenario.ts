// Simulator scenario files (`navarch sim run|validate FILE`): one valibot schema for the
// YAML document and the types of the normalised result. The loader
// (reconciler/sim/load.ts) adds YAML parsing, the checks across sections (every pool a
// target names exists, every provider an outage names is used, …) and error formatting by
// key path, the same way reconciler/config/load.ts does for the config file.
//
//   name: single-fatal-xid           # required: a DNS label
//   description: …                   # optional
//   seed: 1                          # default seed (`--seed N` overrides it)
//   start: 2026-11-23T00:00:00Z      # virtual start time (UTC); default Monday 2026-11-23 00:00
//   duration: 2h                     # virtual time to simulate
//   fleet:                           # the reconciler's config format: server, safety, pools
//     initial: running               #   running (default): min_nodes per pool already Ready at start;
//                                    #   empty: the reconciler launches everything itself
//     nodes_per_rack: 8              #   racks (and zones, from pools[].zones) for targets and correlated chaos
//     server: { health_check_interval: 30s }
//     safety: { breaker: { max_cordons: 3 } }
//     pools:
//       - { name: training, provider: lambda, instance_type: dgxh100.80g, region: us-east-1,
//           scaling: { min_nodes: 8, max_nodes: 12 } }
//   node_types: { my.type: { gpus: 4, gpu_name: NVIDIA L4 } }   # besides the built-in ones
//   clouds:                          # per provider type the pools use (the simulated cloud plays each)
//     lambda: { launch_latency: 5m, launch_jitter: 1m, capacity: { dgxh100.80g: 20 }, quota: 30, error_rate: 0.01,
//               bootstrap_failure_rate: 0 }   # share of machines whose agent never registers
//   workload:                        # a simulated scheduler: a queue of jobs per pool
//     drain_grace: 30s               #   how long evicting a node's jobs takes
//     pools:
//       training: { gpus_per_job: 8, job_duration: 2h, arrivals_per_hour: 4, initial_jobs: 6 }
//   chaos:                           # random faults over the in-service nodes
//     failure_rate: 0.5              #   per 1,000 node-hours
//     xids: { 79: 2, 48: 1, 94: 3 }  #   weights
//     correlation: { scope: rack, probability: 0.2, nodes: 3 }
//   sim: { reconcile_interval: 1s, idle_pass_interval: 1h, event_latency: 1s, sample_every: 5m, database: file }
//   events:                          # at a virtual time (or `end`), exactly one action each
//     - { at: 30m, fault: { xid: 79, target: { pool: training, index: 2 } } }
//     - { at: 2h, assert: [ { nodes: { pool: training, state: ready }, equals: 8 } ] }
//
// Targets pick nodes: `{ node: training-3 }` (the simulator's name: pool + creation order),
// or filters (`pool`, `rack`, `zone`) plus one of `index: N`, `random: K`, `all: true`.
import * as v from "valibot";
import { NavarchConfigSchema, parseDuration, type Millis, type NavarchConfig } from "./config.ts";
import { NODE_STATES, STATES, type NodeState } from "./lifecycle.ts";
import { accept, isRecord, issuePathAt, oneOf, show, strict, suggest, type PathKey } from "./shapes.ts";

// ───────────────────────────── normalised types ─────────────────────────────

export interface Scenario {
  name: string;
  description: string;
  seed: number;
  /** Virtual start, epoch ms (UTC). */
  start: number;
  duration: Millis;
  /** The reconciler's config, exactly as `navarch config check` would normalise it. */
  config: NavarchConfig;
  fleet: FleetSpec;
  /** Custom node types (the built-in ones are in reconciler/sim/node-types.ts). */
  node_types: Record<string, NodeTypeSpec>;
  /** Per provider type; one for every provider a pool uses (defaults filled in). */
  clouds: Record<string, CloudSpec>;
  workload: WorkloadSpec;
  chaos?: ChaosSpec;
  sim: SimSettings;
  /** In time order (file order among equal times). */
  events: ScenarioEvent[];
}

export interface FleetSpec {
  initial: "running" | "empty";
  nodes_per_rack: number;
}

export interface NodeTypeSpec {
  gpus: number;
  gpu_name: string;
}

export interface CloudSpec {
  launch_latency: Millis;
  /** Each launch takes launch_latency plus up to this much more (seeded). */
  launch_jitter: Millis;
  /** Instances of a type that may run at once; a launch past it fails with `capacity`. */
  capacity: Record<string, number>;
  /** Instances of any type that may run at once; a launch past it fails with `quota`. */
  quota?: number;
  /** Share of API calls (launch, terminate, get, list) that fail with a transient error. */
  error_rate: number;
  /** Share of launched machines that run but whose agent never registers (a bootstrap that fails). */
  bootstrap_failure_rate: number;
  /** From a reboot call until the machine runs again with a new boot. */
  reboot_latency: Millis;
  /** Share of the faults on a rebooted machine that the reboot clears (the rest are found again in the new boot). */
  reboot_fixes: number;
}

export interface WorkloadSpec {
  drain_grace: Millis;
  pools: Record<string, PoolWorkloadSpec>;
}

export interface PoolWorkloadSpec {
  gpus_per_job: number;
  /** Mean duration of the background jobs (exponentially distributed). */
  job_duration: Millis;
  /** Background arrivals (Poisson); 0 for none. */
  arrivals_per_hour: number;
  /** Jobs queued at the start. */
  initial_jobs: number;
}

export const CHAOS_SCOPES = ["rack", "zone"] as const;
export type ChaosScope = (typeof CHAOS_SCOPES)[number];

export interface ChaosSpec {
  /** Faults per 1,000 node-hours of in-service (ready or suspect) nodes. */
  failure_rate: number;
  /** Xid codes with their weights, in file order. */
  xids: [number, number][];
  correlation?: { scope: ChaosScope; probability: number; nodes: number };
  /** Pools chaos acts on; empty for all. */
  pools: string[];
  /** Chaos is active from this time (since start) until `until` (default: the end). */
  from: Millis;
  until?: Millis;
}

export interface SimSettings {
  /** While the fleet is changing, passes follow each other this often (serve's loop interval). */
  reconcile_interval: Millis;
  /** A pass at least this often even when nothing is due (0: never). */
  idle_pass_interval: Millis;
  /** From a fault on the node to its event stored by the reconciler (agent push + wake). */
  event_latency: Millis;
  /** Timeline resolution (nodes by state, queue depth). */
  sample_every: Millis;
  /** Forces a pass at least this often, like a real loop would (0: only when something is due). */
  pass_every: Millis;
  /** The libSQL database: a file in a temp directory, or in memory. */
  database: "file" | "memory";
}

export type TargetPick = { kind: "node"; name: string } | { kind: "index"; index: number } | { kind: "random"; count: number } | { kind: "all" };

export interface Target {
  pool?: string;
  rack?: number;
  zone?: string;
  pick: TargetPick;
}

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

// ───────────────────────────── leaves ─────────────────────────────

const Text = accept<string>((x) => typeof x === "string" && x.trim() !== "", "a non-empty string");
const Str = accept<string>((x) => typeof x === "string", "a string");
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const Name = accept<string>((x) => typeof x === "string" && DNS_LABEL.test(x), "a DNS label (lowercase letters, digits and '-', at most 63)");

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  const what = max !== Number.MAX_SAFE_INTEGER ? `an integer from ${min} to ${max}` : min === 0 ? "a non-negative integer" : `an integer ≥ ${min}`;
  return accept<number>((x) => typeof x === "number" && Number.isInteger(x) && x >= min && x <= max, what);
}
const NonNegative = accept<number>((x) => typeof x === "number" && Number.isFinite(x) && x >= 0, "a number ≥ 0");
const Probability = accept<number>((x) => typeof x === "number" && x >= 0 && x <= 1, "a probability from 0 to 1");
const True = accept<true>((x) => x === true, "true");

function duration({ positive }: { positive: boolean }) {
  return v.pipe(
    v.custom<string>(
      (x) => typeof x === "string" && parseDuration(x) !== undefined && (!positive || parseDuration(x)! > 0),
      (issue) =>
        typeof issue.input === "string" && parseDuration(issue.input) === 0
          ? `must be longer than zero, got ${show(issue.input)}`
          : `expected a duration like 30s, 5m or 2h30m, got ${show(issue.input)}`,
    ),
    v.transform((text) => parseDuration(text)!),
  );
}
const Duration = duration({ positive: false });
const PositiveDuration = duration({ positive: true });

/** `at:` a duration since the start, or `end`; `end` becomes -1 until the loader knows the duration. */
const At = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && (x === "end" || parseDuration(x) !== undefined),
    (issue) => `expected a time since the start like 90s, 2h30m, or end, got ${show(issue.input)}`,
  ),
  v.transform((text) => (text === "end" ? -1 : parseDuration(text)!)),
);

const StartTime = v.pipe(
  v.custom<string | Date>(
    (x) => (x instanceof Date && !Number.isNaN(x.getTime())) || (typeof x === "string" && /(Z|[+-]\d\d:\d\d)$/.test(x) && !Number.isNaN(Date.parse(x))),
    (issue) => `expected an ISO-8601 time with a zone like 2026-11-23T00:00:00Z, got ${show(issue.input)}`,
  ),
  v.transform((x) => (x instanceof Date ? x.getTime() : Date.parse(x))),
);

/** Weights by Xid code: `{ 79: 2, 48: 1 }` (YAML keys are strings). */
const XidWeights = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected a mapping of Xid code to weight like { 79: 2, 94: 1 }, got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: [number, number][] = [];
    let bad = false;
    for (const [key, weight] of Object.entries(dataset.value)) {
      const path: [v.IssuePathItem] = [{ type: "object", origin: "value", input: dataset.value, key, value: weight }];
      const code = Number(key);
      if (!/^\d+$/.test(key) || !Number.isInteger(code) || code < 1 || code > 999) {
        addIssue({ message: `expected an Xid code (an integer from 1 to 999) as the key, got ${show(key)}`, path });
        bad = true;
      } else if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
        addIssue({ message: `expected a weight (a number ≥ 0), got ${show(weight)}`, path });
        bad = true;
      } else out.push([code, weight]);
    }
    if (bad) return NEVER;
    if (out.length > 0 && out.every(([, w]) => w === 0)) {
      addIssue({ message: "at least one weight must be above 0" });
      return NEVER;
    }
    return out;
  }),
);

// ───────────────────────────── cross-field rules ─────────────────────────────

type Report = (path: PathKey | readonly PathKey[], message: string) => void;

/** Rules across the keys of one object; `raw` is the object as written. */
function rules<T>(check: (raw: Record<string, unknown>, report: Report) => void) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    const raw: unknown = dataset.value;
    if (!isRecord(raw)) return;
    check(raw, (path, message) => addIssue({ message, path: issuePathAt(raw, Array.isArray(path) ? path : [path as PathKey]) }));
  });
}

// ───────────────────────────── fleet ─────────────────────────────

const FLEET_SIM_KEYS = ["initial", "nodes_per_rack"] as const;
const FLEET_CONFIG_KEYS = ["server", "safety", "providers", "pools"] as const;

const FleetSim = strict({
  initial: v.optional(oneOf(["running", "empty"] as const, "initial fleet"), "running"),
  nodes_per_rack: v.optional(int(1), 8),
});

/** The config format (server, safety, providers, pools) plus the simulator's own fleet keys. */
const Fleet = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected the fleet (a mapping with pools, as in the config file), got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const raw = dataset.value;
    const simPart: Record<string, unknown> = {};
    const configPart: Record<string, unknown> = {};
    let ok = true;
    for (const [key, value] of Object.entries(raw)) {
      if ((FLEET_SIM_KEYS as readonly string[]).includes(key)) simPart[key] = value;
      else if ((FLEET_CONFIG_KEYS as readonly string[]).includes(key)) configPart[key] = value;
      else {
        ok = false;
        addIssue({
          message: `unknown key "${key}"${suggest(key, [...FLEET_CONFIG_KEYS, ...FLEET_SIM_KEYS])}`,
          path: [{ type: "object", origin: "key", input: raw, key, value }],
        });
      }
    }
    if (!("pools" in raw)) {
      ok = false;
      addIssue({
        message: "is required (the pools to simulate, as in the config file)",
        path: [{ type: "object", origin: "value", input: raw, key: "pools", value: undefined }],
      });
    }
    const config = v.safeParse(NavarchConfigSchema, configPart);
    if (!config.success) {
      ok = false;
      for (const issue of config.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
    }
    const sim = v.safeParse(FleetSim, simPart);
    if (!sim.success) {
      ok = false;
      for (const issue of sim.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
    }
    if (!ok || !config.success || !sim.success) return NEVER;
    if (config.output.pools.length === 0) {
      addIssue({ message: "must list at least one pool", path: [{ type: "object", origin: "value", input: raw, key: "pools", value: raw.pools }] });
      return NEVER;
    }
    return { config: config.output, fleet: sim.output as FleetSpec };
  }),
);

// ───────────────────────────── clouds, workload, chaos, sim ─────────────────────────────

const Cloud = strict({
  launch_latency: v.optional(Duration, "3m"),
  launch_jitter: v.optional(Duration, "0s"),
  capacity: v.optional(
    v.pipe(
      v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of instance type to count, got ${show(i.input)}`),
      v.record(v.string(), int(0)),
    ),
    {},
  ),
  quota: v.optional(int(0)),
  error_rate: v.optional(Probability, 0),
  bootstrap_failure_rate: v.optional(Probability, 0),
  reboot_latency: v.optional(Duration, "5m"),
  reboot_fixes: v.optional(Probability, 0.8),
});

const PoolWorkload = strict({
  gpus_per_job: v.optional(int(1), 8),
  job_duration: v.optional(PositiveDuration, "1h"),
  arrivals_per_hour: v.optional(NonNegative, 0),
  initial_jobs: v.optional(int(0), 0),
});

const Workload = strict({
  drain_grace: v.optional(Duration, "30s"),
  pools: v.optional(
    v.pipe(
      v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of pool name to workload, got ${show(i.input)}`),
      v.record(v.string(), PoolWorkload),
    ),
    {},
  ),
});

const Correlation = strict({
  scope: v.optional(oneOf(CHAOS_SCOPES, "correlation scope"), "rack"),
  probability: Probability,
  nodes: int(2),
});

/** A realistic mix when `xids` is not given: mostly app-caused and ECC noise, some fatal. */
export const DEFAULT_CHAOS_XIDS: [number, number][] = [
  [13, 3],
  [31, 2],
  [94, 2],
  [48, 1],
  [79, 2],
  [74, 1],
  [119, 1],
];

const Chaos = v.pipe(
  strict({
    failure_rate: NonNegative,
    xids: v.optional(XidWeights),
    correlation: v.optional(Correlation),
    pools: v.optional(
      v.array(Name, (i) => `expected a list of pool names, got ${show(i.input)}`),
      [],
    ),
    from: v.optional(Duration, "0s"),
    until: v.optional(Duration),
  }),
  v.transform((c): ChaosSpec => ({ ...c, xids: c.xids ?? DEFAULT_CHAOS_XIDS })),
);

const Sim = strict({
  reconcile_interval: v.optional(PositiveDuration, "1s"),
  idle_pass_interval: v.optional(Duration, "1h"),
  event_latency: v.optional(Duration, "1s"),
  sample_every: v.optional(PositiveDuration),
  pass_every: v.optional(Duration, "0s"),
  database: v.optional(oneOf(["file", "memory"] as const, "database kind"), "file"),
});

const NodeType = strict({
  gpus: int(1, 64),
  gpu_name: v.optional(Text, "NVIDIA GPU"),
});

// ───────────────────────────── targets ─────────────────────────────

const PICKS = ["node", "index", "random", "all"] as const;

const TargetSchema = v.pipe(
  strict(
    {
      node: v.optional(Text),
      pool: v.optional(Name),
      rack: v.optional(int(0)),
      zone: v.optional(Text),
      index: v.optional(int(0)),
      random: v.optional(int(1)),
      all: v.optional(True),
    },
    { what: "a target" },
  ),
  rules((raw, report) => {
    const picks = PICKS.filter((k) => raw[k] !== undefined);
    if (picks.length === 0) report([], `pick nodes with one of node, index, random or all (e.g. { pool: training, index: 0 })`);
    if (picks.length > 1) report(picks[1]!, `set only one of node, index, random and all (also set: ${picks[0]})`);
    if (raw.node !== undefined)
      for (const f of ["pool", "rack", "zone"]) if (raw[f] !== undefined) report(f, "cannot be combined with node (a node is named exactly)");
    if (raw.rack !== undefined && raw.pool === undefined) report("rack", "needs pool (racks are numbered per pool)");
  }),
  v.transform((t): Target => {
    const pick: TargetPick =
      t.node !== undefined
        ? { kind: "node", name: t.node }
        : t.index !== undefined
          ? { kind: "index", index: t.index }
          : t.random !== undefined
            ? { kind: "random", count: t.random }
            : { kind: "all" };
    return {
      ...(t.pool !== undefined ? { pool: t.pool } : {}),
      ...(t.rack !== undefined ? { rack: t.rack } : {}),
      ...(t.zone !== undefined ? { zone: t.zone } : {}),
      pick,
    };
  }),
);

// ───────────────────────────── checks ─────────────────────────────

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

const CheckSchema = v.pipe(
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

// ───────────────────────────── events ─────────────────────────────

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

const EventSchema = v.pipe(
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

// ───────────────────────────── the file ─────────────────────────────

/** Monday 2026-11-23 00:00 UTC: a week starts here, so schedule windows read naturally. */
export const DEFAULT_START = Date.parse("2026-11-23T00:00:00Z");

export const ScenarioSchema: v.GenericSchema<unknown, Scenario> = v.pipe(
  strict({
    name: Name,
    description: v.optional(Str, ""),
    seed: v.optional(int(0, 2 ** 32 - 1), 1),
    start: v.optional(StartTime),
    duration: PositiveDuration,
    fleet: Fleet,
    node_types: v.optional(
      v.pipe(
        v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of node type name to { gpus, gpu_name }, got ${show(i.input)}`),
        v.record(v.string(), NodeType),
      ),
      {},
    ),
    clouds: v.optional(
      v.pipe(
        v.custom<Record<string, unknown>>(isRecord, (i) => `expected a mapping of provider type to cloud settings, got ${show(i.input)}`),
        v.record(v.string(), Cloud),
      ),
      {},
    ),
    workload: v.optional(Workload, {}),
    chaos: v.optional(Chaos),
    sim: v.optional(Sim, {}),
    events: v.optional(
      v.array(EventSchema, (i) => `expected a list of events, got ${show(i.input)}`),
      [],
    ),
  }),
  v.transform((s): Scenario => {
    const duration = s.duration;
    const events = s.events.map((e, index) => ({ ...e, index, at: e.at < 0 ? duration : e.at })).sort((a, b) => a.at - b.at || a.index - b.index);
    const sim: SimSettings = { ...s.sim, sample_every: s.sim.sample_every ?? defaultSampleEvery(duration) };
    return {
      name: s.name,
      description: s.description.trim(),
      seed: s.seed,
      start: s.start ?? DEFAULT_START,
      duration,
      config: s.fleet.config,
      fleet: s.fleet.fleet,
      node_types: s.node_types,
      clouds: s.clouds as Record<string, CloudSpec>,
      workload: s.workload as WorkloadSpec,
      ...(s.chaos ? { chaos: s.chaos } : {}),
      sim,
      events,
    };
  }),
);

/** About 240 samples over the run, on a round number of seconds (at least 10 s). */
export function defaultSampleEvery(duration: Millis): Millis {
  return Math.max(10_000, Math.ceil(duration / 240 / 10_000) * 10_000);
}

/** Default settings of a cloud nobody described. */
export const DEFAULT_CLOUD: CloudSpec = {
  launch_latency: 3 * 60_000,
  launch_jitter: 0,
  capacity: {},
  error_rate: 0,
  bootstrap_failure_rate: 0,
  reboot_latency: 5 * 60_000,
  reboot_fixes: 0.8,
};
