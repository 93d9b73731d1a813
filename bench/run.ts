// `npm run bench`: runs the project's benchmarks and prints one table: each figure, its goal
// (met or not) and its ratio to the figure recorded before it (bench/figures.json).
//   bun run bench/run.ts [agent|reconciler|writer|ingest|metrics|sim|cli|dashboard|kube] [--quick] [--soak] [--record]
// `--record` writes this run's figures into bench/figures.json.
import { cpus, totalmem } from "node:os";
import { benchAgent } from "./agent.ts";
import { CATALOGUE, about } from "./catalogue.ts";
import { loadRecorded, record, table, type Figure } from "./figures.ts";
import { PERFORMANCE_PAGE, performancePage } from "./page.ts";
import { benchIngest, benchLoopGap, benchPass } from "./reconciler.ts";
import { testOutput } from "./test-figures.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.filter((a) => !a.startsWith("--"));
const want = (name: string) => only.length === 0 || only.includes(name);
const log = (s: string) => process.stderr.write(`${s}\n`);
const figures: Figure[] = [];
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const f1 = (n: number) => n.toFixed(1);
const machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown"}), ${Math.round(totalmem() / 2 ** 30)} GiB`;

if (want("agent")) {
  // `--soak`: a 10-minute window, to see whether the agent's memory keeps growing.
  const soak = args.includes("--soak");
  const r = await benchAgent({
    windowSeconds: soak ? 600 : quick ? 20 : 60,
    injections: 200,
    kmsgRecords: 50,
    slowdownTrials: quick ? 3 : 10,
    skipOutage: quick,
    log,
  });
  const slowdown = quantile(r.slowdownMs, 0.5);
  figures.push(
    {
      ...about("agent.rss", r.agent.max <= 40),
      value: r.agent.max,
      unit: "MiB",
      notes: `start ${f1(r.agent.start)}, end ${f1(r.agent.end)}, ${r.agent.slopePer10Min >= 0 ? "+" : ""}${f1(r.agent.slopePer10Min)} MiB per 10 min over ${r.windowSeconds} s; minimal Bun program (bun:ffi + fetch) beside it ${f1(r.minimal.max)} MiB (×${(r.agent.max / r.minimal.max).toFixed(2)})`,
    },
    { label: "agent memory report (SIGUSR1)", result: r.memoryReport.replace(/^memory: /, "") },
    {
      ...about("agent.cpu", r.agent.cpuPercentOfOneCore <= 0.1),
      value: r.agent.cpuPercentOfOneCore,
      unit: "% of a core",
      notes: `over ${r.windowSeconds} s; the minimal program ${r.minimal.cpuPercentOfOneCore.toFixed(3)} %`,
    },
    {
      ...about("agent.slowdown_p50", (r.slowdownMs.at(-1) ?? Infinity) < 2000),
      value: slowdown,
      unit: "ms p50",
      notes: `max ${Math.round(r.slowdownMs.at(-1) ?? NaN)} ms over ${r.slowdownMs.length} trials at random points of the second`,
    },
    {
      ...about("agent.kmsg_p99", r.kmsgLatencyMs.p99 <= 50),
      value: r.kmsgLatencyMs.p99,
      unit: "ms p99",
      notes: `p50 ${f1(r.kmsgLatencyMs.p50)} ms, p90 ${f1(r.kmsgLatencyMs.p90)} ms, max ${f1(r.kmsgLatencyMs.max)} ms, ${r.kmsgLatencyMs.count} records; agent CPU ${r.agent.cpuPercentOfOneCore.toFixed(3)} % of a core while idle`,
    },
    {
      ...about("agent.xid_p99", r.latencyMs.p99 < 100),
      value: r.latencyMs.p99,
      unit: "ms p99",
      notes: `p50 ${f1(r.latencyMs.p50)} ms, max ${f1(r.latencyMs.max)} ms, ${r.latencyMs.injections} injections`,
    },
  );
  if (r.recoveryMs !== null)
    figures.push({
      ...about("agent.outage_recovery", r.recoveryMs < 5000),
      value: r.recoveryMs / 1000,
      unit: "s",
      notes: "16 events, after the reconciler is back",
    });
}

if (want("reconciler")) {
  const base = await benchPass(100);
  figures.push({
    ...about("pass.100"),
    value: base.medianMs,
    unit: "ms",
    notes: `median of 5; max ${f1(base.maxMs)} ms`,
  });
  log("reconcile pass: seeding 10,000 nodes…");
  const ten = await benchPass(10_000);
  figures.push({
    ...about("pass.10k", ten.medianMs < 200),
    value: ten.medianMs,
    unit: "ms",
    notes: `median of 5; max ${f1(ten.maxMs)} ms; ${f1(ten.medianMs / base.medianMs)}× the baseline`,
  });
  if (!quick) {
    log("reconcile pass: seeding 100,000 nodes…");
    const hundred = await benchPass(100_000, 3);
    figures.push(
      {
        ...about("memory.per_node"),
        value: ((hundred.heapMiB - base.heapMiB) * 1024) / (100_000 - 100),
        unit: "KiB",
        notes: `heap in use with the loop alive after its passes: ${f1(hundred.heapMiB)} MiB at 100,000 nodes, ${f1(base.heapMiB)} MiB at 100`,
      },
      {
        ...about("pass.100k", hundred.medianMs <= 1000),
        value: hundred.medianMs,
        unit: "ms",
        notes: `median of 3; max ${f1(hundred.maxMs)} ms; ${f1(hundred.medianMs / ten.medianMs)}× the 10,000-node pass`,
      },
    );
  }
  log("heartbeat ingest in the reconciler's process: 10,000 nodes…");
  const ingest = await benchIngest(10_000, quick ? 5_000 : 20_000);
  figures.push({
    ...about("ingest.inprocess"),
    value: ingest.perSecond,
    unit: "/s",
    notes: `p50 ${f1(ingest.p50Ms)} ms, p99 ${f1(ingest.p99Ms)} ms; ${ingest.heartbeats} heartbeats from 32 clients sharing the process and the admin token; for comparison with the row from outside`,
  });
}

if (want("writer")) {
  // The ingest worker beside the store's writes: what test/ingest-writer.test.ts once asserted
  // with a deadline, measured here instead (a loaded machine stretches it).
  log("ingest worker beside store writes: groups of 3,000 heartbeats…");
  const r = await benchLoopGap(3000, 30, quick ? 2 : 5);
  const worst = Math.max(...r.worstMs);
  figures.push({
    ...about("ingest.loop_gap", worst < 45),
    value: worst,
    unit: "ms",
    notes: `each trial's longest: ${r.worstMs.map((ms) => ms.toFixed(0)).join(", ")} ms; ${r.groups.join(", ")} groups written during the trials' store writes`,
  });
}

if (want("ingest")) {
  // From outside the process: vegeta (its own process, built into a cache outside the repo) against
  // the compiled reconciler, every node with its own credential; the in-process figure is above.
  const { benchIngestExternal } = await import("./ingest.ts");
  for (const rate of quick ? [3000] : [3000, 5000, 10_000]) {
    log(`heartbeat ingest with vegeta: 10,000 nodes at ${rate}/s…`);
    const r = await benchIngestExternal({ nodes: 10_000, rate, seconds: quick ? 10 : 30, log });
    const met = r.perSecond >= rate * 0.99;
    figures.push(
      {
        ...about(`ingest.vegeta.${rate}.rate`, met),
        value: r.perSecond,
        unit: "/s",
        notes: `sent at ${Math.round(r.offeredPerSecond)}/s; reconciler ${r.reconcilerCpu.toFixed(0)} % of a core (${Object.entries(r.reconcilerThreads)
          .sort((a, b) => b[1] - a[1])
          .map(([name, pct]) => `${name} ${pct}`)
          .join(", ")}), vegeta ${r.loadToolCpu.toFixed(0)} %; ${f1(r.meanGroup)} requests per transaction`,
      },
      {
        ...about(`ingest.vegeta.${rate}.p99`, r.p99Ms <= 50),
        value: r.p99Ms,
        unit: "ms p99",
        notes: `p50 ${f1(r.p50Ms)} ms, p90 ${f1(r.p90Ms)} ms, max ${f1(r.maxMs)} ms; ${r.checkpoints} WAL checkpoints, each ${f1(r.meanCheckpointBesideMs)} ms beside the writes and ${f1(r.meanCheckpointMs)} ms between groups; ${r.passes} passes, ${f1(r.meanPassMs)} ms each`,
      },
    );
  }
}

if (want("metrics")) {
  const { benchScrape } = await import("./metrics.ts");
  for (const nodes of quick ? [10_000] : [10_000, 100_000]) {
    log(`/metrics scrape: seeding ${nodes.toLocaleString("en-US")} nodes…`);
    // The default first: the per-GPU registry (1.7 million series at 100,000 nodes) left garbage that
    // slowed the scrape after it (1,003 ms against 632 measured alone).
    const [auto, on] = await benchScrape(nodes, ["auto", "on"]);
    figures.push(
      {
        ...about(`metrics.${nodes / 1000}k.auto`, auto!.medianMs < 1000),
        value: auto!.medianMs,
        unit: "ms",
        notes: `${(auto!.bytes / 1e6).toFixed(1)} MB, ${auto!.series.toLocaleString("en-US")} samples`,
      },
      {
        ...about(`metrics.${nodes / 1000}k.on`),
        value: on!.medianMs,
        unit: "ms",
        notes: `${(on!.bytes / 1e6).toFixed(1)} MB, ${on!.series.toLocaleString("en-US")} samples`,
      },
    );
  }
}

if (want("sim")) {
  // The simulator: the real reconcile loop on virtual time (bench/sim.ts).
  const { benchSim } = await import("./sim.ts");
  // Fault rates: 0.16 per 1,000 node-hours is what Llama 3's training on 16k H100s saw; 0.5 is harsher.
  const runs: [number, number][] = quick
    ? [[1000, 0.5]]
    : [
        [1000, 0.5],
        [10_000, 0.16],
        [10_000, 0.5],
        [100_000, 0.16],
      ];
  for (const [nodes, rate] of runs) {
    log(`simulator: ${nodes} nodes × 24 h at ${rate} faults per 1,000 node-hours…`);
    const r = await benchSim(nodes, 24, rate, log);
    const s = r.stats;
    const key = `sim.${nodes / 1000}k.${rate}`;
    figures.push({
      ...about(key, CATALOGUE[key]?.goal?.met?.(s.wallMs / 1000)),
      value: s.wallMs / 1000,
      unit: "s",
      notes: `${(24 / (s.wallMs / 1000)).toFixed(2)} virtual h/s; CPU ${f1(s.cpuMs / 1000)} s; ${s.passes} passes (${f1(s.passWallMs / 1000)} s); ${r.faults} faults`,
    });
  }
}

if (want("cli")) {
  // The compiled navarch's start: a command's module is loaded only when it runs (reconciler/main.ts).
  const { benchCliStart } = await import("./cli.ts");
  const keys: Record<string, string> = { "navarch --help": "cli.help", "navarch nodes --help": "cli.nodes_help", "navarch nodes list": "cli.nodes_list" };
  for (const r of await benchCliStart(quick ? 10 : 20, log)) {
    const median = quantile(r.wallMs, 0.5);
    figures.push({
      ...about(keys[r.command]!, median <= 150),
      value: median,
      unit: "ms",
      notes: `p90 ${f1(quantile(r.wallMs, 0.9))} ms, min ${f1(r.wallMs[0]!)} ms over ${r.wallMs.length} runs; CPU (user + system) median ${f1(quantile(r.cpuMs, 0.5))} ms`,
    });
  }
}

if (want("sim") && !quick) {
  // Goodput at full length: Llama 3's 54 days under each variant (bench/goodput.ts).
  const { benchGoodput } = await import("./goodput.ts");
  figures.push(...(await benchGoodput(log)));
}

if (want("dashboard")) {
  // The browser test's own measurement (Debian's chromium against a running reconciler).
  log("dashboard: the overview at 100,000 nodes in chromium…");
  const out = await testOutput("test/dashboard.test.ts", "100,000 nodes");
  const m = /overview at 100,000\+ nodes: (\d+) KB, rendered in (\d+) ms/.exec(out);
  if (m === null) throw new Error(`test/dashboard.test.ts printed no overview figure:\n${out}`);
  figures.push(
    {
      ...about("dashboard.100k.kb", Number(m[1]) < 200),
      value: Number(m[1]),
      unit: "KB",
    },
    {
      ...about("dashboard.100k.render", Number(m[2]) < 1000),
      value: Number(m[2]),
      unit: "ms",
    },
  );
}

if (want("kube") && !quick) {
  const { kubeFigures } = await import("./kube.ts");
  figures.push(...(await kubeFigures(log)));
}

console.log(`machine: ${machine}`);
console.log(table(figures, loadRecorded()));
if (args.includes("--record")) {
  record(figures, machine);
  await Bun.write(PERFORMANCE_PAGE, performancePage());
  log("recorded in bench/figures.json; docs/performance.md rendered from it");
}
