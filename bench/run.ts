// `npm run bench`: runs the project's benchmarks and prints a table.
//   bun run bench/run.ts [agent] [--quick]
import { benchAgent } from "./agent.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.filter((a) => !a.startsWith("--"));
const want = (name: string) => only.length === 0 || only.includes(name);
const log = (s: string) => process.stderr.write(`${s}\n`);
const rows: [string, string, string][] = [];

if (want("agent")) {
  const r = await benchAgent({ injections: 200, idleSeconds: quick ? 10 : 60, log });
  const f = (n: number) => n.toFixed(1);
  rows.push(
    ["Xid injected → event stored, p50", `${f(r.latencyMs.p50)} ms`, `${r.injections} injections`],
    ["Xid injected → event stored, p99", `${f(r.latencyMs.p99)} ms`, `goal < 100 ms (max ${f(r.latencyMs.max)} ms)`],
    ["agent RSS, 8 fake GPUs", `${f(r.rssMiB.max)} MiB max`, `start ${f(r.rssMiB.start)}, end ${f(r.rssMiB.end)}; goal < 48 MiB`],
    ["agent CPU, default polling", `${r.cpuPercentOfOneCore.toFixed(2)} % of a core`, `over ${r.idleSeconds} s; idle sleep baseline ${r.baselineCpuPercent.toFixed(2)} %; goal < 1 %`],
  );
}

const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ["benchmark", "result", "notes"][i]!.length));
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ");
console.log(line(["benchmark", "result", "notes"]));
for (const r of rows) console.log(line(r));
