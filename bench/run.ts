// `npm run bench`: runs the project's benchmarks and prints a table.
//   bun run bench/run.ts [agent|reconciler|ingest|metrics|sim] [--quick] [--soak]
import { benchAgent } from "./agent.ts";
import { benchIngest, benchPass } from "./reconciler.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.filter((a) => !a.startsWith("--"));
const want = (name: string) => only.length === 0 || only.includes(name);
const log = (s: string) => process.stderr.write(`${s}\n`);
const rows: [string, string, string][] = [];
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

if (want("agent")) {
  // `--soak`: a 10-minute window, to see whether the agent's memory keeps growing.
  const soak = args.includes("--soak");
  const r = await benchAgent({ windowSeconds: soak ? 600 : quick ? 20 : 60, injections: 200, slowdownTrials: quick ? 3 : 10, skipOutage: quick, log });
  const f = (n: number) => n.toFixed(1);
  const ratio = r.agent.max / r.minimal.max;
  rows.push(
    [
      "agent RSS, 8 fake GPUs, default settings",
      `${f(r.agent.max)} MiB max`,
      `start ${f(r.agent.start)}, end ${f(r.agent.end)}, ${r.agent.slopePer10Min >= 0 ? "+" : ""}${f(r.agent.slopePer10Min)} MiB per 10 min over ${r.windowSeconds} s; goal ≤ 40 MiB, flat`,
    ],
    [
      "minimal Bun program (bun:ffi + fetch), same run",
      `${f(r.minimal.max)} MiB max`,
      `agent / minimal = ${ratio.toFixed(2)}; its CPU ${r.minimal.cpuPercentOfOneCore.toFixed(3)} %`,
    ],
    ["agent memory report (SIGUSR1)", r.memoryReport.replace(/^memory: /, ""), ""],
    ["agent CPU, default settings", `${r.agent.cpuPercentOfOneCore.toFixed(3)} % of a core`, `over ${r.windowSeconds} s; goal ≤ 0.1 %`],
    [
      "slowdown threshold crossed → reconciler has it",
      `p50 ${Math.round(quantile(r.slowdownMs, 0.5))} ms, max ${Math.round(r.slowdownMs.at(-1) ?? NaN)} ms`,
      `${r.slowdownMs.length} trials at random points of the second; goal < 2 s`,
    ],
    [
      "Xid injected → event stored",
      `p50 ${f(r.latencyMs.p50)} ms, p99 ${f(r.latencyMs.p99)} ms`,
      `${r.latencyMs.injections} injections, max ${f(r.latencyMs.max)} ms; goal p99 < 100 ms`,
    ],
    ...(r.recoveryMs === null
      ? []
      : ([["spooled events after a 20 s outage", `${(r.recoveryMs / 1000).toFixed(1)} s after the reconciler is back`, "16 events; goal < 5 s"]] as [
          string,
          string,
          string,
        ][])),
  );
}

if (want("reconciler")) {
  const f = (n: number) => n.toFixed(1);
  const base = await benchPass(100);
  log("reconcile pass: seeding 10,000 nodes…");
  const ten = await benchPass(10_000);
  rows.push(
    ["reconcile pass, 100 ready nodes (baseline)", `${f(base.medianMs)} ms`, `median of 5; max ${f(base.maxMs)} ms`],
    [
      "reconcile pass, 10,000 ready nodes",
      `${f(ten.medianMs)} ms`,
      `median of 5; max ${f(ten.maxMs)} ms; ${f(ten.medianMs / base.medianMs)}× the baseline; goal < 200 ms`,
    ],
  );
  if (!quick) {
    log("reconcile pass: seeding 50,000 nodes…");
    const fifty = await benchPass(50_000, 3);
    rows.push(["reconcile pass, 50,000 ready nodes", `${f(fifty.medianMs)} ms`, `median of 3; max ${f(fifty.maxMs)} ms`]);
    log("reconcile pass: seeding 100,000 nodes…");
    const hundred = await benchPass(100_000, 3);
    rows.push([
      "reconcile pass, 100,000 ready nodes",
      `${f(hundred.medianMs)} ms`,
      `median of 3; max ${f(hundred.maxMs)} ms; ${f(hundred.medianMs / ten.medianMs)}× the 10,000-node pass; goal ≤ 1 s`,
    ]);
  }
  log("heartbeat ingest: 10,000 nodes…");
  const ingest = await benchIngest(10_000, quick ? 5_000 : 20_000);
  rows.push(
    [
      "heartbeat ingest, 10,000 nodes, 8 GPUs each",
      `${Math.round(ingest.perSecond)} /s`,
      `${ingest.heartbeats} heartbeats from 32 clients in the same process; goal 2,000/s`,
    ],
    ["heartbeat latency", `p50 ${f(ingest.p50Ms)} ms, p99 ${f(ingest.p99Ms)} ms`, "goal p99 < 50 ms"],
    ["reconciler memory per node", `${f(ingest.rssPerNodeKiB)} KiB`, "RSS growth after seeding 10,000 nodes with 8 GPUs each"],
  );
}

if (want("ingest")) {
  // From outside the process: k6 (its own process, built into a cache outside the repo) against
  // the compiled reconciler, every node with its own credential; the in-process figure is above.
  const { benchIngestExternal } = await import("./ingest.ts");
  for (const rate of quick ? [2000] : [2000, 5000, 10_000]) {
    log(`heartbeat ingest with k6: 10,000 nodes at ${rate}/s…`);
    const r = await benchIngestExternal({ nodes: 10_000, rate, seconds: quick ? 10 : 20, log });
    rows.push([
      `heartbeat ingest (k6, own process), asked ${rate.toLocaleString("en-US")}/s`,
      `${Math.round(r.perSecond)} /s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(0)} ms`,
      `${r.dropped} dropped; reconciler ${r.reconcilerCpu.toFixed(0)} % of a core, k6 ${r.loadToolCpu.toFixed(0)} %; ${r.meanGroup.toFixed(1)} requests per transaction; goal 10,000/s, p99 ≤ 50 ms`,
    ]);
  }
}

if (want("metrics")) {
  const { benchScrape } = await import("./metrics.ts");
  for (const nodes of quick ? [10_000] : [10_000, 100_000]) {
    log(`/metrics scrape: seeding ${nodes.toLocaleString("en-US")} nodes…`);
    const [on, auto] = await benchScrape(nodes, ["on", "auto"]);
    for (const r of [on!, auto!]) {
      rows.push([
        `/metrics scrape, ${nodes.toLocaleString("en-US")} nodes × 8 GPUs, metrics_per_gpu: ${r.perGpu}`,
        `${r.medianMs.toFixed(0)} ms`,
        `${(r.bytes / 1e6).toFixed(1)} MB, ${r.series.toLocaleString("en-US")} samples${r === auto ? `; ${(r.medianMs / on!.medianMs).toFixed(2)}× the per-GPU scrape; goal < 1 s` : ""}`,
      ]);
    }
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
      ];
  for (const [nodes, rate] of runs) {
    log(`simulator: ${nodes} nodes × 24 h at ${rate} faults per 1,000 node-hours…`);
    const r = await benchSim(nodes, 24, rate, log);
    const s = r.stats;
    rows.push([
      `simulator, ${nodes.toLocaleString("en-US")} nodes × 24 virtual h, ${rate} faults/1,000 node-h`,
      `${(s.wallMs / 1000).toFixed(1)} s wall`,
      `${(24 / (s.wallMs / 1000)).toFixed(2)} virtual h/s; CPU ${(s.cpuMs / 1000).toFixed(1)} s; ${s.passes} passes (${(s.passWallMs / 1000).toFixed(1)} s); ${r.faults} faults${nodes === 10_000 ? "; goal < 60 s on 2 cores" : ""}`,
    ]);
  }
}

const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ["benchmark", "result", "notes"][i]!.length));
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ");
console.log(line(["benchmark", "result", "notes"]));
for (const r of rows) console.log(line(r));
