// Simulator speed: the real reconcile loop over N nodes for 24 virtual hours with
// realistic fault rates (chaos at 0.5 faults per 1,000 node-hours, the default Xid mix,
// some faults correlated by rack, a steady workload), against a libSQL file.
//   bun run bench/sim.ts [--nodes 1000,10000] [--hours 24] [--rate 0.5] [--memory]
// Fault rates for reference: Meta's Llama 3 training (16,384 H100s, 54 days) saw 419
// unexpected interruptions, about 0.16 per 1,000 node-hours of 8-GPU nodes; Meta's RSC
// clusters report roughly 1 per 1,000 node-hours. 0.5 sits between the two.
import { parseScenario } from "../reconciler/sim/load.ts";
import { runScenario } from "../reconciler/sim/engine.ts";
import type { SimStats } from "../reconciler/sim/report.ts";

/** The benchmark fleet: one pool of `nodes` H100 machines, realistic faults, a workload. */
export function benchScenario(nodes: number, hours: number, rate: number): string {
  return `
name: bench-${nodes}
duration: ${hours}h
fleet:
  nodes_per_rack: 16
  pools:
    - name: fleet
      provider: aws
      instance_type: p5.48xlarge
      region: us-east-1
      zones: [us-east-1a, us-east-1b, us-east-1c]
      scaling: { min_nodes: ${nodes}, max_nodes: ${nodes} }
      health: { drain_timeout: 15m }
clouds:
  aws: { launch_latency: 8m, launch_jitter: 4m, error_rate: 0.01 }
workload:
  drain_grace: 1m
  pools:
    fleet: { gpus_per_job: 8, job_duration: 8h, arrivals_per_hour: ${Math.max(1, Math.round(nodes / 8))}, initial_jobs: ${Math.round(nodes * 0.8)} }
chaos:
  failure_rate: ${rate}
  correlation: { scope: rack, probability: 0.1, nodes: 3 }
`;
}

export interface SimBenchResult {
  nodes: number;
  hours: number;
  stats: SimStats;
  faults: number;
  replacements: number;
}

export async function benchSim(
  nodes: number,
  hours = 24,
  rate = 0.5,
  log: (s: string) => void = () => undefined,
  database: "file" | "memory" = "file",
): Promise<SimBenchResult> {
  const loaded = parseScenario(benchScenario(nodes, hours, rate), "bench");
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const { report, stats } = await runScenario(loaded.scenario, { progress: log, database });
  return { nodes, hours, stats, faults: report.summary.faults.total, replacements: report.summary.replacements.ready };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const sizes = (opt("nodes") ?? "1000,10000").split(",").map(Number);
  const hours = Number(opt("hours") ?? 24);
  const rate = Number(opt("rate") ?? 0.5);
  const database = args.includes("--memory") ? "memory" : "file";
  for (const n of sizes) {
    const r = await benchSim(n, hours, rate, (s) => process.stderr.write(`${s}\n`), database);
    const s = r.stats;
    console.log(
      `${n} nodes × ${hours} h (${database}, ${rate} faults/1,000 node-h): ${(s.wallMs / 1000).toFixed(1)} s wall, ${(hours / (s.wallMs / 1000)).toFixed(2)} virtual h/s; ` +
        `${s.passes} passes (${(s.passWallMs / 1000).toFixed(1)} s, max ${s.maxPassMs.toFixed(0)} ms); ${r.faults} faults, ${r.replacements} replacements; cpu ${(s.cpuMs / 1000).toFixed(1)} s; ` +
        Object.entries(s.phasesMs)
          .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
          .join(", "),
    );
  }
}
