// Same scenario, same seed → byte-identical reports (JSON and HTML), although the
// reconciler names the nodes it creates with crypto-random ids; a different seed →
// a different report. The scenario uses every source of randomness the simulator has:
// chaos with correlated faults, random targets and GPUs, launch jitter, API error rates,
// workload arrivals and durations, and a restart.
import { describe, expect, test } from "bun:test";
import { runScenario } from "../reconciler/sim/engine.ts";
import { reportHtml } from "../reconciler/sim/html.ts";
import { parseScenario } from "../reconciler/sim/load.ts";
import { reportTable } from "../reconciler/sim/report.ts";

const SCENARIO = `
name: determinism
duration: 5h
fleet:
  nodes_per_rack: 4
  server: { heartbeat_interval: 15s, health_check_interval: 30s }
  safety: { breaker: { max_cordons: 50 }, max_in_flight_per_pool: 6 }
  pools:
    - name: a
      providers: [lambda, gcp]
      instance_type: dgxh100.80g
      region: us-east-1
      zones: [us-east-1a, us-east-1b]
      scaling: { min_nodes: 24, max_nodes: 30 }
      health: { drain_timeout: 5m, replacement: surge }
    - name: b
      provider: aws
      instance_type: p5.48xlarge
      region: us-west-2
      scaling: { min_nodes: 12, max_nodes: 12 }
clouds:
  lambda: { launch_latency: 3m, launch_jitter: 3m, error_rate: 0.05, capacity: { dgxh100.80g: 27 } }
  gcp: { launch_latency: 5m, launch_jitter: 2m }
  aws: { launch_latency: 4m, launch_jitter: 4m, error_rate: 0.03 }
workload:
  pools:
    a: { gpus_per_job: 4, job_duration: 1h, arrivals_per_hour: 20, initial_jobs: 30 }
    b: { gpus_per_job: 8, job_duration: 2h, arrivals_per_hour: 4 }
chaos:
  failure_rate: 25
  correlation: { scope: rack, probability: 0.3, nodes: 2 }
events:
  - { at: 1h, fault: { xid: 79, gpu: random, target: { pool: a, random: 2 } } }
  - { at: 2h, restart: }
  - { at: 3h, silence: { target: { pool: b, random: 1 }, for: 20m } }
  - { at: 2h30m, outage: { provider: aws, error: transient, calls: [launch, terminate], for: 30m } }
  - { at: end, assert: [ { leaked_instances: {}, equals: 0 } ] }
`;

async function report(seed: number) {
  const loaded = parseScenario(SCENARIO, "determinism");
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return (await runScenario(loaded.scenario, { seed })).report;
}

describe("simulator determinism", () => {
  test("the same seed gives byte-identical reports; another seed a different one", async () => {
    const first = await report(11);
    const second = await report(11);
    const third = await report(12);
    const json = (r: unknown) => JSON.stringify(r, null, 2);
    expect(json(second)).toBe(json(first));
    expect(reportHtml(second)).toBe(reportHtml(first));
    expect(reportTable(second)).toBe(reportTable(first));
    // Something happened, so the comparison means something.
    expect(first.summary.faults.chaos).toBeGreaterThan(3);
    expect(first.summary.faults.correlated).toBeGreaterThan(0);
    expect(first.summary.replacements.ready).toBeGreaterThan(0);
    expect(first.summary.workload.completed).toBeGreaterThan(0);
    // Another seed: more than the seed field differs.
    const { scenario: _a, ...restFirst } = first;
    const { scenario: _b, ...restThird } = third;
    expect(json(restThird)).not.toBe(json(restFirst));
    // Reports name nodes by pool and creation order, never by the reconciler's random ids.
    expect(json(first)).not.toMatch(/\b[ab]-[0-9a-f]{8}\b/);
  }, 120_000);
});
