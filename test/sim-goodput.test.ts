// Goodput in the simulator: gang jobs that span nodes and checkpoint, what they lose to
// faults, restarts, waiting and drains, ETTR, compare: variants that replay one fault trace,
// the schema's refusals of bad job specs (by key path), and the scenario calibrated on
// Meta's Llama 3 run (scenarios/llama3-54d.yaml) at a reduced length, beside the paper's
// table. Each hand-computed figure is derived in the comments next to it.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { simCommand } from "../reconciler/cli/sim.ts";
import { comparisonTable, runComparison, type SimComparison } from "../reconciler/sim/compare.ts";
import { runScenario } from "../reconciler/sim/engine.ts";
import { drawTrace, traceDigest } from "../reconciler/sim/fault-trace.ts";
import { referenceLines } from "../reconciler/sim/goodput.ts";
import { loadScenarioFile, parseScenario } from "../reconciler/sim/load.ts";
import type { SimReport } from "../reconciler/sim/report.ts";
import { REPO_ROOT } from "./support.ts";

const H = 3_600_000;

function load(yaml: string) {
  const loaded = parseScenario(yaml, "test");
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems, null, 2));
  return loaded.scenario;
}

async function run(yaml: string): Promise<SimReport> {
  return (await runScenario(load(yaml), { database: "memory" })).report;
}

async function compare(yaml: string): Promise<SimComparison> {
  return (await runComparison(load(yaml), { database: "memory" })).comparison;
}

/** Within 1 % of `expected` (relative), or of 0.01 when it is 0. */
function near(actual: number | null | undefined, expected: number): void {
  expect(actual).not.toBeNull();
  expect(Math.abs((actual as number) - expected)).toBeLessThanOrEqual(Math.max(0.01 * Math.abs(expected), 0.01));
}

/** One pool of `nodes` 8-GPU machines and one gang job of `gang` nodes, with extra YAML after. */
const pool = (nodes: number, extra = "") => `
fleet:
  pools:
    - { name: training, provider: lambda, instance_type: dgxh100.80g, region: us-east-1, scaling: { min_nodes: ${nodes}, max_nodes: ${nodes} }${extra} }
clouds:
  lambda: { launch_latency: 20m, reboot_latency: 5m }
`;

const gang = (nodes: number, extra = "") => `
workload:
  pools:
    training:
      jobs:
        - { name: pretrain, nodes: ${nodes}, work: 20h, checkpoint_interval: 1h, restart_overhead: 10m }${extra}
`;

describe("a hand-computable gang job", () => {
  test("one 4-node gang on a 5-node pool, one fault in the middle of a checkpoint interval", async () => {
    const r = await run(`name: hand
duration: 10h
${pool(5)}
${gang(4)}
events:
  - { at: 2h30m, fault: { xid: 79, target: { node: training-1 } } }
`);
    const g = r.summary.goodput!;
    // The gang starts at 0 on training-0..3 (the first nodes in service), 4 × 8 = 32 GPUs, and
    // pays no restart overhead at its first start. At 2h30m the fault kills it: it has done
    // 2h30m of work, checkpointed at 1h and 2h, so 30 min are lost (recompute): 0.5 h × 32 =
    // 16 GPU-h. The device plugin keeps the faulty node's GPUs out; the spare (training-4) is
    // free: it restarts at once on training-0, 2, 3 and 4 (no waiting) and loads its
    // checkpoint for 10 min (restart): 10/60 h × 32 = 5.33 GPU-h. Then it works to the end.
    // Window: 10 h × 32 = 320 GPU-h. Useful: 10 h − 30 min − 10 min = 9h20m = 9.333 h, so
    // 298.67 GPU-h and ETTR 9.333 / 10 = 0.9333.
    near(g.ettr, 0.9333);
    near(g.gpu_hours.window, 320);
    near(g.gpu_hours.useful, 298.67);
    near(g.gpu_hours.lost.recompute, 16);
    near(g.gpu_hours.lost.restart, 5.333);
    expect(g.gpu_hours.lost.waiting_for_nodes).toBe(0);
    expect(g.gpu_hours.lost.drain).toBe(0);
    near(g.gpu_hours.lost.total, 21.33);
    expect(g.interruptions).toEqual({ total: 1, by_cause: { xid_79: 1 } });
    const job = g.jobs[0]!;
    expect(job).toMatchObject({ name: "pretrain", nodes: 4, gpus: 32, state: "running", first_start: 0, end: null, interruptions: 1 });
    near(job.done_h, 9.333);
    near(job.wall_h, 10);
    // Useful + lost = the window, exactly.
    expect(g.gpu_hours.useful + g.gpu_hours.lost.total).toBeCloseTo(g.gpu_hours.window, 0);
    // The node's time out of service is counted by the rung that ended it.
    expect(g.node_hours_unavailable.total).toBeGreaterThan(0);
    expect(r.events.some((e) => e.kind === "interruption" && /pretrain interrupted by xid_79 on training-1: 30m of work lost/.test(e.text))).toBe(true);
    // The timeline (a sample every 2m30s): the gang did useful work at every sample but the
    // four of its restart (2h30m, 2h32m30s, 2h35m, 2h37m30s), and 16 GPU-h were redone by the end.
    const running = r.timeline.goodput!.running;
    expect(running.map((n, i) => (n === 0 ? r.timeline.t[i]! / 1000 : -1)).filter((t) => t >= 0)).toEqual([9000, 9150, 9300, 9450]);
    near(r.timeline.goodput!.lost_gpu_hours.recompute.at(-1)!, 16);
  });

  test("no fault: all of its time is useful, and its first start pays no restart overhead", async () => {
    const r = await run(`name: calm\nduration: 3h\n${pool(4)}\n${gang(4)}`);
    const g = r.summary.goodput!;
    // 3 h × 32 GPUs = 96 GPU-h, all useful.
    expect(g.ettr).toBe(1);
    near(g.gpu_hours.useful, 96);
    expect(g.gpu_hours.lost.total).toBe(0);
  });

  test("a job that finishes ends its window: ETTR counts to its end, not the run's", async () => {
    const r = await run(`name: done
duration: 6h
${pool(5)}
workload:
  pools:
    training:
      jobs:
        - { name: short, nodes: 2, work: 3h, checkpoint_interval: 1h, restart_overhead: 10m }
events:
  - { at: 1h30m, fault: { xid: 79, target: { node: training-0 } } }
`);
    const job = r.summary.goodput!.jobs[0]!;
    // 1h30m done, 30 min lost to the fault, 10 min restart: it needs 3 h of work, so it ends at
    // 1h30m + 10m + (3h − 1h) = 3h40m; wall 3h40m, ETTR 3 / 3.667 = 0.818.
    expect(job.state).toBe("done");
    expect(job.end).toBe(3 * H + 40 * 60_000);
    near(job.ettr, 0.8182);
    expect(r.summary.workload.completed).toBe(1);
  });
});

describe("gang semantics", () => {
  test("all or none: with no spare, a gang waits for the node's replacement, then restarts", async () => {
    const r = await run(`name: wait
duration: 4h
${pool(4, ", health: { remediation: replace }")}
${gang(4)}
events:
  - { at: 1h, fault: { xid: 79, target: { node: training-2 } } }
`);
    const g = r.summary.goodput!;
    // 1 h done and checkpointed at 1h: nothing to redo. 3 nodes are not enough: it waits, on
    // none of them, until training-2's replacement is ready, then pays 10 min of restart.
    const waited = r.summary.fault_to_replacement_ready!.max_s / 3600;
    expect(waited).toBeGreaterThan(0.3); // the cloud takes 20 min to bring a machine up
    near(g.jobs[0]!.lost_h.waiting_for_nodes, waited);
    near(g.jobs[0]!.lost_h.restart, 1 / 6);
    expect(g.jobs[0]!.lost_h.recompute).toBe(0);
    near(g.ettr, (4 - waited - 1 / 6) / 4);
    // While it waits it runs on no node at all.
    const running = r.timeline.goodput!.running;
    expect(running).toContain(0);
    expect(Math.max(...r.timeline.goodput!.capacity)).toBe(4);
    expect(Math.min(...r.timeline.goodput!.capacity)).toBe(3);
  });

  test("a drain loses the work since the last checkpoint, unless the scheduler checkpoints on drain", async () => {
    // One host_maintenance interruption, drawn at a random time: 50 per 1,000 node-hours of 4
    // nodes for 5 h is exactly one. An operator drains one of the gang's nodes and reboots it;
    // the gang stops drain_grace (30 s) later.
    const yaml = (checkpoint: boolean) => `name: drain
duration: 5h
${pool(5)}
${gang(4, "")}
      checkpoint_on_drain: ${checkpoint}
chaos:
  failure_rate: 50
  trace: { nodes: 4, draw: exact }
  causes: { host_maintenance: 1 }
`;
    for (const checkpoint of [false, true]) {
      const r = await run(yaml(checkpoint));
      const g = r.summary.goodput!;
      expect(g.interruptions).toEqual({ total: 1, by_cause: { host_maintenance: 1 } });
      const stop = r.events.find((e) => e.kind === "interruption")!.at;
      // It had worked since 0: the work since the last whole hour is lost, or nothing.
      const lost = checkpoint ? 0 : (stop % H) / H;
      near(g.jobs[0]!.lost_h.drain, lost);
      expect(g.jobs[0]!.lost_h.recompute).toBe(0);
      near(g.jobs[0]!.lost_h.restart, 1 / 6);
      expect(r.summary.workload.evicted).toBe(1);
      expect(g.node_hours_unavailable.by_rung.reboot).toBeGreaterThan(0);
    }
  });

  test("a fault the scheduler cannot see stalls the gang until the node is taken out: Navarch at once, a human after the delay", async () => {
    // One NIC failure (its InfiniBand port down) in the first 2h30m: 100 per 1,000 node-hours of
    // 4 nodes for 2.5 h. The device plugin does not see it, so the gang restarts on the same
    // nodes and cannot start until the node is cordoned: by Navarch when it judges the
    // finding, by the human 2 h after the incident opens (before the end, at 6 h).
    const yaml = `name: stall
duration: 6h
${pool(5)}
${gang(4)}
chaos:
  failure_rate: 100
  until: 2h30m
  trace: { nodes: 4, draw: exact }
  causes: { nic: 1 }
compare:
  - name: navarch
  - name: human
    automation: none
    human_delay: 2h
`;
    const c = await compare(yaml);
    const [navarch, human] = c.variants.map((v) => v.report.summary.goodput!);
    expect(navarch!.interruptions.by_cause).toEqual({ nic: 1 });
    expect(navarch!.jobs[0]!.lost_h.waiting_for_nodes).toBeLessThan(5 / 60);
    expect(human!.jobs[0]!.lost_h.waiting_for_nodes).toBeGreaterThan(2);
    expect(human!.jobs[0]!.lost_h.waiting_for_nodes).toBeLessThan(2 + 10 / 60);
    expect(human!.node_hours_unavailable.waiting_for_human).toBeGreaterThan(2);
    expect(human!.ettr!).toBeLessThan(navarch!.ettr!);
    // The same seed gives the same comparison, byte for byte.
    expect(JSON.stringify(await compare(yaml))).toBe(JSON.stringify(c));
  });
});

describe("compare: variants", () => {
  const YAML = `name: variants
duration: 12h
${pool(10)}
${gang(8)}
chaos:
  failure_rate: 40
  trace: { nodes: 8 }
  causes: { faulty_gpu: 3, gpu_hbm3: 2, nic: 1, software_bug: 1, host_maintenance: 1 }
compare:
  - name: navarch
  - name: replace
    pools: { training: { health: { remediation: replace } } }
  - name: no-automation
    automation: none
`;

  test("share one fault trace, whatever each reconciler does", async () => {
    const c = await compare(YAML);
    expect(c.variants.map((v) => v.name)).toEqual(["navarch", "replace", "no-automation"]);
    const traces = c.variants.map((v) => v.report.summary.faults.trace);
    expect(traces[0]!.drawn).toBeGreaterThan(2);
    for (const t of traces) expect(t).toEqual(traces[0]!);
    expect(c.trace).toEqual(traces[0]!);
    // The variants did differ.
    const launched = c.rows.find((r) => r.figure === "machines launched")!.values;
    expect(new Set(launched).size).toBeGreaterThan(1);
    expect(c.variants[2]!.report.summary.goodput!.node_hours_unavailable.waiting_for_human).toBeGreaterThan(0);
    expect(c.rows[0]!.figure).toBe("ETTR");
    expect(c.rows[0]!.ratios[0]).toBe(1);
    const table = comparisonTable(c);
    expect(table).toContain("ratios to navarch");
    expect(table).toContain("no automation: a human acts 4h after each incident");
    expect(table).toContain("pools.training.health.remediation: replace");
    // It is the seed's trace; another seed draws another one.
    expect(traceDigest(drawTrace(load(YAML), 1))).toBe(c.trace!.digest);
    expect(traceDigest(drawTrace(load(YAML), 2))).not.toBe(c.trace!.digest);
  }, 60_000);

  test("navarch sim run prints them side by side; JSON holds each variant's report; --duration cuts the run", async () => {
    const { writeFileSync } = await import("node:fs");
    const { tempDir } = await import("./support.ts");
    const file = join(tempDir(), "variants.yaml");
    writeFileSync(file, YAML);
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) };
    expect(await simCommand(["run", file, "--memory", "--duration", "3h"], io)).toBe(0);
    const text = out.join("");
    expect(text).toContain("ETTR");
    expect(text).toMatch(/compare: 3 variants of variants \(seed 1, 3h\)/);
    out.length = 0;
    expect(await simCommand(["run", file, "--memory", "--duration", "3h", "-o", "json"], io)).toBe(0);
    const json = JSON.parse(out.join("")) as SimComparison;
    expect(json.variants.map((v) => [v.name, v.report.scenario.variant, v.report.scenario.duration])).toEqual([
      ["navarch", "navarch", "3h"],
      ["replace", "replace", "3h"],
      ["no-automation", "no-automation", "3h"],
    ]);
    out.length = 0;
    expect(await simCommand(["run", file, "--memory", "--duration", "3h", "-o", "html"], io)).toBe(0);
    expect(out.join("")).toContain("<h2>Variants</h2>");
    expect(out.join("")).toContain("<h2>Goodput</h2>");
    expect(await simCommand(["run", file, "--duration", "three hours"], io)).toBe(2);
  }, 60_000);
});

describe("the schema refuses bad job specs, naming the key path", () => {
  const BASE = `name: bad\nduration: 2h\n${pool(5)}`;
  const CASES: { what: string; yaml: string; path: string; message: RegExp }[] = [
    { what: "a gang of no nodes", yaml: `${BASE}${gang(0)}`, path: "workload.pools.training.jobs[0].nodes", message: /expected an integer ≥ 1, got 0/ },
    {
      what: "a gang larger than its pool",
      yaml: `${BASE}${gang(6)}`,
      path: "workload.pools.training.jobs[0].nodes",
      message: /a gang of 6 nodes never fits in pool training \(scaling.max_nodes 5\)/,
    },
    {
      what: "work that is not a duration",
      yaml: `${BASE}${gang(4).replace("work: 20h", "work: twenty hours")}`,
      path: "workload.pools.training.jobs[0].work",
      message: /expected a duration like 30s, 5m, 2h30m or 54d, got "twenty hours"/,
    },
    {
      what: "no work",
      yaml: `${BASE}${gang(4).replace("work: 20h, ", "")}`,
      path: "workload.pools.training.jobs[0].work",
      message: /is required/,
    },
    {
      what: "an unknown job key, with a suggestion",
      yaml: `${BASE}${gang(4).replace("restart_overhead", "restart_overheads")}`,
      path: "workload.pools.training.jobs[0].restart_overheads",
      message: /unknown key "restart_overheads" \(did you mean "restart_overhead"\?\)/,
    },
    {
      what: "a checkpoint interval longer than the work",
      yaml: `${BASE}${gang(4).replace("checkpoint_interval: 1h", "checkpoint_interval: 21h")}`,
      path: "workload.pools.training.jobs[0].checkpoint_interval",
      message: /longer than the job's work \(20h\)/,
    },
    {
      what: "two jobs of one name",
      yaml: `${BASE}${gang(2)}        - { name: pretrain, nodes: 2, work: 1h }\n`,
      path: "workload.pools.training.jobs[1].name",
      message: /the job name pretrain is taken by workload.pools.training.jobs\[0\]/,
    },
    {
      what: "checkpoint_on_drain not a boolean",
      yaml: `${BASE}${gang(2)}      checkpoint_on_drain: sometimes\n`,
      path: "workload.pools.training.checkpoint_on_drain",
      message: /expected true or false, got "sometimes"/,
    },
    {
      what: "an unknown cause",
      yaml: `${BASE}chaos: { failure_rate: 1, trace: { nodes: 4 }, causes: { faulty_gpus: 1 } }\n`,
      path: "chaos.causes.faulty_gpus",
      message: /unknown cause "faulty_gpus".*did you mean "faulty_gpu"/,
    },
    {
      what: "causes without a trace",
      yaml: `${BASE}chaos: { failure_rate: 1, causes: { faulty_gpu: 1 } }\n`,
      path: "chaos.causes",
      message: /set trace: \{ nodes: N \}/,
    },
    {
      what: "a variant's bad override, at its own key path",
      yaml: `${BASE}compare:\n  - name: a\n  - name: b\n    pools: { training: { health: { remediation: replac } } }\n`,
      path: "compare[1].pools.training.health.remediation",
      message: /unknown remediation "replac".*did you mean "replace"/,
    },
    {
      what: "a variant naming a pool the fleet lacks",
      yaml: `${BASE}compare:\n  - name: a\n  - name: b\n    pools: { trainin: { health: { remediation: replace } } }\n`,
      path: "compare[1].pools.trainin",
      message: /unknown pool "trainin" \(the fleet has training\).*did you mean "training"/,
    },
    {
      what: "a human delay with automation",
      yaml: `${BASE}compare:\n  - name: a\n  - name: b\n    human_delay: 2h\n`,
      path: "compare[1].human_delay",
      message: /set automation: none/,
    },
    {
      what: "variants over chaos without a trace",
      yaml: `${BASE}chaos: { failure_rate: 1 }\ncompare:\n  - name: a\n  - name: b\n    automation: none\n`,
      path: "chaos.trace",
      message: /compare: variants replay one fault trace/,
    },
  ];
  for (const c of CASES) {
    test(c.what, () => {
      const loaded = parseScenario(c.yaml, "bad");
      expect(loaded.ok).toBe(false);
      if (loaded.ok) return;
      const hit = loaded.problems.find((p) => p.path === c.path);
      expect(hit, `problems: ${JSON.stringify(loaded.problems)}`).toBeDefined();
      expect(hit!.message).toMatch(c.message);
    });
  }
});

describe("scenarios/llama3-54d.yaml at a reduced length", () => {
  test("its first day, beside Meta's Llama 3 table, under every variant", async () => {
    // The full 54 days run in `npm run bench` (bench/run.ts: goodput.llama3).
    const loaded = await loadScenarioFile(join(REPO_ROOT, "scenarios", "llama3-54d.yaml"), { duration: 24 * H });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const { comparison: c } = await runComparison(loaded.scenario, { database: "memory" });
    const base = c.variants[0]!.report.summary.goodput!;
    console.log(referenceLines(base.reference!).join("\n"));
    console.log(comparisonTable(c));
    expect(c.variants.map((v) => v.name)).toEqual(["navarch", "replace", "no-automation", "no-spares"]);
    for (const v of c.variants) expect(v.report.summary.faults.trace).toEqual(c.trace!);
    // 466 in 54 days: 8.6 in one; every one of them strikes the job.
    expect(c.trace!.drawn).toBeGreaterThanOrEqual(7);
    expect(c.trace!.drawn).toBeLessThanOrEqual(11);
    expect(base.reference!.total.ok).toBe(true);
    expect(base.ettr!).toBeGreaterThan(0.85);
    // Without spares the job waits for each node it loses.
    const waiting = c.rows.find((r) => r.figure.trim() === "waiting for nodes")!.values;
    expect(waiting[0]).toBe(0);
    expect(waiting[3]!).toBeGreaterThan(0);
    for (const v of c.variants) expect(v.report.summary.leaked_instances).toBe(0);
  }, 300_000);
});
