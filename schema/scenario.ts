// Simulator scenario files (`navarch sim run|validate FILE`): the valibot schema of the
// whole YAML document and the type of the normalised result. Each section has its own file
// in schema/scenario/ (fleet, node types, clouds, workload, chaos, causes, reference, sim
// settings, targets, checks, events, compare); this one assembles them and fills in what
// spans sections (`at: end`, the default sample interval, events in time order, each
// `compare:` variant merged into the file and checked as a whole). The loader
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
//       training: { gpus_per_job: 8, job_duration: 2h, arrivals_per_hour: 4, initial_jobs: 6,
//                   jobs: [ { name: pretrain, nodes: 6, work: 3d, checkpoint_interval: 30m, restart_overhead: 10m } ],
//                   checkpoint_on_drain: false }   # gang jobs: all of their nodes run, or none
//   chaos:                           # random faults over the in-service nodes
//     failure_rate: 0.5              #   per 1,000 node-hours
//     xids: { 79: 2, 48: 1, 94: 3 }  #   weights
//     correlation: { scope: rack, probability: 0.2, nodes: 3 }
//     # or a trace drawn in advance, by cause: trace: { nodes: 8 }, causes: { faulty_gpu: 3, software_bug: 1 }
//   reference: { source: …, over: 54d, interruptions: { faulty_gpu: 148 }, ettr: 0.9 }   # a published run
//   compare:                         # variants replaying the same faults and workload
//     - { name: navarch }
//     - { name: no-automation, automation: none, human_delay: 4h }
//   sim: { reconcile_interval: 1s, idle_pass_interval: 1h, event_latency: 1s, sample_every: 5m, database: file }
//   events:                          # at a virtual time (or `end`), exactly one action each
//     - { at: 30m, fault: { xid: 79, target: { pool: training, index: 2 } } }
//     - { at: 2h, assert: [ { nodes: { pool: training, state: ready }, equals: 8 } ] }
//
// Targets pick nodes: `{ node: training-3 }` (the simulator's name: pool + creation order),
// or filters (`pool`, `rack`, `zone`) plus one of `index: N`, `random: K`, `all: true`.
import * as v from "valibot";
import type { Millis, NavarchConfig } from "./config.ts";
import { isRecord, issuePathAt, show, strict, suggest, type PathKey } from "./shapes.ts";
import { Chaos, type ChaosSpec } from "./scenario/chaos.ts";
import { Clouds, type CloudSpec } from "./scenario/clouds.ts";
import { Compare, mergeRaw, type Automation, type VariantOverrides } from "./scenario/compare.ts";
import { EventSchema, type ScenarioEvent } from "./scenario/events.ts";
import { Name, PositiveDuration, Str, int } from "./scenario/fields.ts";
import { Fleet, type FleetSpec } from "./scenario/fleet.ts";
import { NodeTypes, type NodeTypeSpec } from "./scenario/node-types.ts";
import { Reference, type ReferenceSpec } from "./scenario/reference.ts";
import { Sim, defaultSampleEvery, type SimSettings } from "./scenario/sim-settings.ts";
import { Workload, type WorkloadSpec } from "./scenario/workload.ts";

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
  /** A published run to set this one beside (its interruptions by cause, its ETTR). */
  reference?: ReferenceSpec;
  /** The variants to replay the same faults and workload under (`compare:`); empty for none. */
  compare: ScenarioVariant[];
  /** No automation: Navarch's pools are paused, and a simulated human acts on each incident after `delay` (a variant's). */
  human?: { delay: Millis };
}

/** A `compare:` variant, merged and checked: the config and workload it runs with. */
export interface ScenarioVariant {
  name: string;
  description: string;
  automation: Automation;
  /** With automation none: how long after an incident opens the human acts on it. */
  human_delay: Millis;
  /** What it overrides, as written: `pools.training.health.remediation: replace`. */
  changes: string[];
  config: NavarchConfig;
  workload: WorkloadSpec;
}

const StartTime = v.pipe(
  v.custom<string | Date>(
    (x) => (x instanceof Date && !Number.isNaN(x.getTime())) || (typeof x === "string" && /(Z|[+-]\d\d:\d\d)$/.test(x) && !Number.isNaN(Date.parse(x))),
    (issue) => `expected an ISO-8601 time with a zone like 2026-11-23T00:00:00Z, got ${show(issue.input)}`,
  ),
  v.transform((x) => (x instanceof Date ? x.getTime() : Date.parse(x))),
);

/** Monday 2026-11-23 00:00 UTC: a week starts here, so schedule windows read naturally. */
export const DEFAULT_START = Date.parse("2026-11-23T00:00:00Z");

/** The scenario without its variants: the whole file, and each variant merged into it. */
const Body = v.pipe(
  strict({
    name: Name,
    description: v.optional(Str, ""),
    seed: v.optional(int(0, 2 ** 32 - 1), 1),
    start: v.optional(StartTime),
    duration: PositiveDuration,
    fleet: Fleet,
    node_types: v.optional(NodeTypes, {}),
    clouds: v.optional(Clouds, {}),
    workload: v.optional(Workload, {}),
    chaos: v.optional(Chaos),
    reference: v.optional(Reference),
    sim: v.optional(Sim, {}),
    events: v.optional(
      v.array(EventSchema, (i) => `expected a list of events, got ${show(i.input)}`),
      [],
    ),
    // Checked on its own (compare.ts), then merged (below).
    compare: v.optional(v.unknown()),
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
      ...(s.reference ? { reference: s.reference } : {}),
      sim,
      events,
      compare: [],
    };
  }),
);

type IssuePath = [v.IssuePathItem, ...v.IssuePathItem[]];

export const ScenarioSchema: v.GenericSchema<unknown, Scenario> = v.pipe(
  v.custom<unknown>(() => true),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const raw = dataset.value;
    const base = v.safeParse(Body, raw);
    if (!base.success) for (const issue of base.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
    if (!isRecord(raw) || raw.compare === undefined) return base.success ? base.output : NEVER;
    const shape = v.safeParse(Compare, raw.compare);
    const prefix = issuePathAt(raw, ["compare"]);
    if (!shape.success) {
      for (const issue of shape.issues) addIssue({ message: issue.message, path: [...prefix, ...(issue.path ?? [])] as IssuePath });
      return NEVER;
    }
    if (!base.success) return NEVER;
    const variants: ScenarioVariant[] = [];
    shape.output.forEach((overrides, i) => {
      const merged = mergeVariant(raw, overrides, i, addIssue);
      if (merged === undefined) return;
      const parsed = v.safeParse(Body, merged);
      if (!parsed.success) {
        for (const issue of parsed.issues) {
          const { keys, message } = variantProblem(
            merged,
            i,
            (issue.path ?? []).map((item) => item.key as PathKey),
            issue.message,
          );
          addIssue({ message, path: issuePathAt(raw, keys) });
        }
        return;
      }
      variants.push({
        name: overrides.name,
        description: overrides.description.trim(),
        automation: overrides.automation,
        human_delay: overrides.human_delay,
        changes: describeOverrides(overrides),
        config: parsed.output.config,
        workload: parsed.output.workload,
      });
    });
    if (variants.length !== shape.output.length) return NEVER;
    return { ...base.output, compare: variants };
  }),
);

/** The whole file with one variant's overrides merged in; undefined (and issues) when one names what is not there. */
function mergeVariant(
  raw: Record<string, unknown>,
  o: VariantOverrides,
  i: number,
  addIssue: (info: { message: string; path: IssuePath }) => void,
): Record<string, unknown> | undefined {
  const fleet = { ...(raw.fleet as Record<string, unknown>) };
  const pools = [...(fleet.pools as unknown[])];
  const names = pools.map((p) => (isRecord(p) ? String(p.name) : ""));
  let ok = true;
  for (const [name, keys] of Object.entries(o.pools)) {
    const k = names.indexOf(name);
    if (k < 0) {
      ok = false;
      addIssue({
        message: `unknown pool "${name}" (the fleet has ${names.join(", ")})${suggest(name, names)}`,
        path: issuePathAt(raw, ["compare", i, "pools", name]),
      });
    } else if ("name" in keys) {
      ok = false;
      addIssue({ message: "a variant changes a pool, it does not rename it", path: issuePathAt(raw, ["compare", i, "pools", name, "name"]) });
    } else pools[k] = mergeRaw(pools[k], keys);
  }
  if (!ok) return undefined;
  fleet.pools = pools;
  if (o.safety !== undefined) fleet.safety = mergeRaw(fleet.safety ?? {}, o.safety);
  if (o.server !== undefined) fleet.server = mergeRaw(fleet.server ?? {}, o.server);
  const out: Record<string, unknown> = { ...raw, fleet };
  if (o.workload !== undefined) out.workload = mergeRaw(raw.workload ?? {}, o.workload);
  return out;
}

/** A variant's overrides as `key.path: value` lines. */
function describeOverrides(o: VariantOverrides): string[] {
  const out: string[] = [];
  const walk = (prefix: string, value: unknown): void => {
    if (isRecord(value) && Object.keys(value).length > 0) for (const [k, v] of Object.entries(value)) walk(`${prefix}.${k}`, v);
    else out.push(`${prefix}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  };
  for (const [pool, keys] of Object.entries(o.pools)) walk(`pools.${pool}`, keys);
  for (const key of ["safety", "server", "workload"] as const) if (o[key] !== undefined) walk(key, o[key]);
  return out;
}

/** Where a problem of a merged variant is reported: at the override that caused it, or at the variant. */
function variantProblem(merged: Record<string, unknown>, i: number, keys: PathKey[], message: string): { keys: PathKey[]; message: string } {
  const [section, sub, index, ...rest] = keys;
  if (section === "fleet" && sub === "pools" && typeof index === "number") {
    const pool = ((merged.fleet as Record<string, unknown>).pools as unknown[])[index];
    if (isRecord(pool) && typeof pool.name === "string") return { keys: ["compare", i, "pools", pool.name, ...rest], message };
  }
  if (section === "fleet" && (sub === "safety" || sub === "server")) return { keys: ["compare", i, sub, ...keys.slice(2)], message };
  if (section === "workload") return { keys: ["compare", i, "workload", ...keys.slice(1)], message };
  return { keys: ["compare", i], message: `${keys.join(".")}: ${message}` };
}
