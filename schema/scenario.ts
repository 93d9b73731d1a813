// Simulator scenario files (`navarch sim run|validate FILE`): the valibot schema of the
// whole YAML document and the type of the normalised result. Each section has its own file
// in schema/scenario/ (fleet, node types, clouds, workload, chaos, sim settings, targets,
// checks, events); this one assembles them and fills in what spans sections (`at: end`,
// the default sample interval, events in time order). The loader
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
import type { Millis, NavarchConfig } from "./config.ts";
import { show, strict } from "./shapes.ts";
import { Chaos, type ChaosSpec } from "./scenario/chaos.ts";
import { Clouds, type CloudSpec } from "./scenario/clouds.ts";
import { EventSchema, type ScenarioEvent } from "./scenario/events.ts";
import { Name, PositiveDuration, Str, int } from "./scenario/fields.ts";
import { Fleet, type FleetSpec } from "./scenario/fleet.ts";
import { NodeTypes, type NodeTypeSpec } from "./scenario/node-types.ts";
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

export const ScenarioSchema: v.GenericSchema<unknown, Scenario> = v.pipe(
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
