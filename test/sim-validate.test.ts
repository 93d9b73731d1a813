// `navarch sim validate`: every problem of a scenario file is reported with its key path
// (and line), and the command exits 2. Each case below is a distinct mistake.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { simCommand } from "../reconciler/cli/sim.ts";
import { parseScenario } from "../reconciler/sim/load.ts";
import { tempDir } from "./support.ts";

const BASE = `name: ok
duration: 2h
fleet:
  pools:
    - name: training
      provider: lambda
      instance_type: dgxh100.80g
      region: us-east-1
      scaling: { min_nodes: 4, max_nodes: 4 }
`;

/** The base scenario with `extra` appended (YAML text). */
const withExtra = (extra: string) => `${BASE}${extra}`;

const CASES: { what: string; yaml: string; path: string; message: RegExp }[] = [
  { what: "missing name", yaml: BASE.replace("name: ok\n", ""), path: "name", message: /is required/ },
  { what: "duration not a duration", yaml: BASE.replace("duration: 2h", "duration: two hours"), path: "duration", message: /expected a duration like 30s/ },
  {
    what: "unknown top-level key, with a suggestion",
    yaml: withExtra("evnts: []\n"),
    path: "evnts",
    message: /unknown key "evnts" \(did you mean "events"\?\)/,
  },
  {
    what: "a pool error from the config format",
    yaml: BASE.replace("max_nodes: 4", "max_nodes: 2"),
    path: "fleet.pools[0].scaling.max_nodes",
    message: /must be ≥ min_nodes \(4\), got 2/,
  },
  {
    what: "unknown node type",
    yaml: BASE.replace("dgxh100.80g", "dgxh100.80"),
    path: "fleet.pools[0].instance_type",
    message: /unknown node type "dgxh100.80".*did you mean "dgxh100.80g"/,
  },
  {
    what: "unknown fleet key",
    yaml: BASE.replace("fleet:\n", "fleet:\n  nodes_per_racks: 4\n"),
    path: "fleet.nodes_per_racks",
    message: /did you mean "nodes_per_rack"/,
  },
  { what: "event without an action", yaml: withExtra("events:\n  - at: 10m\n"), path: "events[0]", message: /an event needs one action/ },
  {
    what: "event with two actions",
    yaml: withExtra("events:\n  - at: 10m\n    restart:\n    fault: { xid: 79, target: { pool: training, index: 0 } }\n"),
    path: "events[0].fault",
    message: /one action per event \(also set: restart\)/,
  },
  { what: "event after the end", yaml: withExtra("events:\n  - at: 3h\n    restart:\n"), path: "events[0].at", message: /after the end of the run/ },
  {
    what: "event time not a duration",
    yaml: withExtra("events:\n  - at: later\n    restart:\n"),
    path: "events[0].at",
    message: /expected a time since the start/,
  },
  {
    what: "xid not a code",
    yaml: withExtra("events:\n  - at: 10m\n    fault: { xid: fatal, target: { pool: training, index: 0 } }\n"),
    path: "events[0].fault.xid",
    message: /expected an integer from 1 to 999/,
  },
  {
    what: "target with two picks",
    yaml: withExtra("events:\n  - at: 10m\n    fault: { xid: 79, target: { pool: training, index: 0, random: 2 } }\n"),
    path: "events[0].fault.target.random",
    message: /set only one of node, index, random and all/,
  },
  {
    what: "target without a pick",
    yaml: withExtra("events:\n  - at: 10m\n    fault: { xid: 79, target: { pool: training } }\n"),
    path: "events[0].fault.target",
    message: /pick nodes with one of node, index, random or all/,
  },
  {
    what: "target naming an unknown pool",
    yaml: withExtra("events:\n  - at: 10m\n    vanish: { target: { pool: trainig, index: 0 } }\n"),
    path: "events[0].vanish.target.pool",
    message: /unknown pool "trainig".*did you mean "training"/,
  },
  {
    what: "rack without a pool",
    yaml: withExtra("events:\n  - at: 10m\n    fault: { xid: 79, target: { rack: 1, all: true } }\n"),
    path: "events[0].fault.target.rack",
    message: /needs pool/,
  },
  {
    what: "GPU index beyond the node's GPUs",
    yaml: withExtra("events:\n  - at: 10m\n    fault: { xid: 79, gpu: 8, target: { pool: training, index: 0 } }\n"),
    path: "events[0].fault.gpu",
    message: /below the 8 GPUs/,
  },
  {
    what: "assert without a comparison",
    yaml: withExtra("events:\n  - at: 10m\n    assert:\n      - nodes: { state: ready }\n"),
    path: "events[0].assert[0]",
    message: /needs one of equals, at_least, at_most/,
  },
  {
    what: "assert with an unknown metric",
    yaml: withExtra("events:\n  - at: 10m\n    assert:\n      - nodez: { state: ready }\n        equals: 4\n"),
    path: "events[0].assert[0].nodez",
    message: /unknown key "nodez" \(did you mean "nodes"\?\)/,
  },
  {
    what: "unknown node state in a check",
    yaml: withExtra("events:\n  - at: 10m\n    assert:\n      - nodes: { state: redy }\n        equals: 4\n"),
    path: "events[0].assert[0].nodes.state",
    message: /unknown node state "redy".*did you mean "ready"/,
  },
  {
    what: "outage of a provider no pool uses",
    yaml: withExtra("events:\n  - at: 10m\n    outage: { provider: gcp, for: 1h }\n"),
    path: "events[0].outage.provider",
    message: /no pool uses provider "gcp"/,
  },
  {
    what: "workload for an unknown pool",
    yaml: withExtra("workload:\n  pools:\n    inference: { gpus_per_job: 1 }\n"),
    path: "workload.pools.inference",
    message: /unknown pool "inference"/,
  },
  {
    what: "job bigger than a node",
    yaml: withExtra("workload:\n  pools:\n    training: { gpus_per_job: 16 }\n"),
    path: "workload.pools.training.gpus_per_job",
    message: /≤ the 8 GPUs/,
  },
  {
    what: "chaos weight negative",
    yaml: withExtra("chaos:\n  failure_rate: 1\n  xids: { 79: -1 }\n"),
    path: "chaos.xids.79",
    message: /expected a weight \(a number ≥ 0\)/,
  },
  {
    what: "chaos correlation of one node",
    yaml: withExtra("chaos:\n  failure_rate: 1\n  correlation: { probability: 0.5, nodes: 1 }\n"),
    path: "chaos.correlation.nodes",
    message: /an integer ≥ 2/,
  },
  {
    what: "probability above 1",
    yaml: withExtra("clouds:\n  lambda: { error_rate: 5 }\n"),
    path: "clouds.lambda.error_rate",
    message: /a probability from 0 to 1/,
  },
  {
    what: "cloud for an unused provider",
    yaml: withExtra("clouds:\n  aws: { launch_latency: 5m }\n"),
    path: "clouds.aws",
    message: /no pool uses provider "aws"/,
  },
  { what: "start without a zone", yaml: withExtra("start: 2026-11-23T00:00:00\n"), path: "start", message: /ISO-8601 time with a zone/ },
  {
    what: "unknown breaker scope",
    yaml: withExtra("events:\n  - at: 1h\n    breaker_reset: { scope: pool:train }\n"),
    path: "events[0].breaker_reset.scope",
    message: /unknown breaker scope "pool:train".*did you mean "pool:training"/,
  },
];

describe("sim validate", () => {
  test("the base scenario is valid", () => {
    const r = parseScenario(BASE, "base");
    expect(r.ok).toBe(true);
  });

  for (const c of CASES) {
    test(c.what, () => {
      const r = parseScenario(c.yaml, "case");
      expect(r.ok).toBe(false);
      if (r.ok) return;
      const hit = r.problems.find((p) => p.path === c.path);
      if (hit === undefined) throw new Error(`no problem at ${c.path}; got ${JSON.stringify(r.problems.map((p) => `${p.path}: ${p.message}`))}`);
      expect(hit.message).toMatch(c.message);
    });
  }

  test("at least 10 distinct mistakes are caught", () => {
    expect(new Set(CASES.map((c) => c.path)).size).toBeGreaterThanOrEqual(10);
  });

  test("every problem of a file at once, with lines, and exit status 2", async () => {
    const dir = tempDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(file, `name: Bad_Name\nduration: 0s\nfleet:\n  pools: []\nevents:\n  - at: 1m\n`);
    const err: string[] = [];
    const out: string[] = [];
    const code = await simCommand(["validate", file], { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
    expect(code).toBe(2);
    const text = err.join("");
    expect(text).toContain(`${file}: name: expected a DNS label`);
    expect(text).toContain(`${file}: duration: must be longer than zero`);
    expect(text).toContain(`${file}: events[0]: an event needs one action`);
    expect(out.join("")).toBe("");
  });

  test("a valid file: exit 0 and a one-line summary", async () => {
    const dir = tempDir();
    const file = join(dir, "ok.yaml");
    writeFileSync(file, BASE);
    const out: string[] = [];
    const code = await simCommand(["validate", file], { stdout: (s) => out.push(s), stderr: () => undefined });
    expect(code).toBe(0);
    expect(out.join("")).toContain("is valid: scenario ok, 1 pool(s), 4 node(s) at start");
  });

  test("run refuses an invalid file with exit 2 and runs nothing", async () => {
    const dir = tempDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(file, BASE.replace("duration: 2h", "duration: soon"));
    const err: string[] = [];
    expect(await simCommand(["run", file], { stdout: () => undefined, stderr: (s) => err.push(s) })).toBe(2);
    expect(err.join("")).toContain("duration: expected a duration");
  });
});
