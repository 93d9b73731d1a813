// `navarch sim run SCENARIO.yaml [--seed N] [-o table|json|html] [--out FILE]` runs the real
// reconcile loop on virtual time against a scenario (reconciler/sim/engine.ts);
// `navarch sim validate FILE` checks a scenario and lists every problem by key path.
// Exit status: 0 ok (run: every check passed), 1 a check failed, 2 invalid scenario or usage.
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { formatProblems } from "../config/yaml-source.ts";
import { runScenario } from "../sim/engine.ts";
import { reportHtml } from "../sim/html.ts";
import { loadScenarioFile } from "../sim/load.ts";
import { reportTable } from "../sim/report.ts";
import type { CommandOutput } from "./config-check.ts";
import { SIM_USAGE, simHelp } from "./usage.ts";

export async function simCommand(args: string[], out: CommandOutput): Promise<number> {
  const help = simHelp(args);
  if (help !== undefined) {
    out.stdout(help);
    return 0;
  }
  const [verb, ...rest] = args;
  if (verb === "validate") return validate(rest, out);
  if (verb === "run") return run(rest, out);
  out.stderr(`${SIM_USAGE}\n`);
  return 2;
}

async function validate(args: string[], out: CommandOutput): Promise<number> {
  const file = args[0];
  if (args.length !== 1 || file === undefined || file.startsWith("-")) {
    out.stderr(`${SIM_USAGE}\n`);
    return 2;
  }
  const result = await loadScenarioFile(file);
  if (!result.ok) {
    for (const line of formatProblems(result.problems, file)) out.stderr(`${line}\n`);
    const n = result.problems.length;
    out.stderr(`${file}: ${n} problem${n === 1 ? "" : "s"}\n`);
    return 2;
  }
  for (const w of result.warnings) out.stderr(`warning: ${w}\n`);
  const s = result.scenario;
  const nodes = s.config.pools.reduce((a, p) => a + p.scaling.min_nodes, 0);
  const checks = s.events.filter((e) => e.kind === "assert").reduce((a, e) => a + (e.kind === "assert" ? e.checks.length : 0), 0);
  out.stdout(
    `${file} is valid: scenario ${s.name}, ${s.config.pools.length} pool(s), ${nodes} node(s) at start, ${s.events.length} event(s), ${checks} check(s)\n`,
  );
  return 0;
}

async function run(args: string[], out: CommandOutput): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        seed: { type: "string" },
        output: { type: "string", short: "o", default: "table" },
        out: { type: "string" },
        memory: { type: "boolean", default: false },
        verbose: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    out.stderr(`navarch sim: ${err instanceof Error ? err.message : String(err)}\n${SIM_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const file = positionals[0];
  if (positionals.length !== 1 || file === undefined) {
    out.stderr(`${SIM_USAGE}\n`);
    return 2;
  }
  const format = values.output;
  if (format !== "table" && format !== "json" && format !== "html") {
    out.stderr(`navarch sim: -o must be table, json or html, got ${JSON.stringify(format)}\n`);
    return 2;
  }
  let seed: number | undefined;
  if (values.seed !== undefined) {
    seed = Number(values.seed);
    if (!/^\d+$/.test(values.seed) || !Number.isSafeInteger(seed) || seed > 2 ** 32 - 1) {
      out.stderr(`navarch sim: --seed must be an integer from 0 to 4294967295, got ${JSON.stringify(values.seed)}\n`);
      return 2;
    }
  }
  const loaded = await loadScenarioFile(file);
  if (!loaded.ok) {
    for (const line of formatProblems(loaded.problems, file)) out.stderr(`${line}\n`);
    out.stderr(`${file}: ${loaded.problems.length} problem(s); nothing was run\n`);
    return 2;
  }
  for (const w of loaded.warnings) out.stderr(`warning: ${w}\n`);
  const { report, stats } = await runScenario(loaded.scenario, {
    ...(seed !== undefined ? { seed } : {}),
    ...(values.memory ? { database: "memory" as const } : {}),
    progress: (line) => out.stderr(`${line}\n`),
    ...(values.verbose ? { reconcilerLog: (line: string) => out.stderr(`${line}\n`) } : {}),
  });
  const text = format === "json" ? `${JSON.stringify(report, null, 2)}\n` : format === "html" ? reportHtml(report) : reportTable(report);
  if (values.out !== undefined) {
    await writeFile(values.out, text);
    out.stderr(`wrote ${values.out}\n`);
  } else out.stdout(text);
  const speed = stats.virtualMs / 3_600_000 / (stats.wallMs / 1000);
  out.stderr(
    `simulated ${report.scenario.duration} in ${(stats.wallMs / 1000).toFixed(1)} s wall (${speed.toFixed(1)} virtual hours per second); ` +
      `${stats.passes} reconcile passes, ${(stats.passWallMs / 1000).toFixed(1)} s in passes (max ${stats.maxPassMs.toFixed(0)} ms)\n`,
  );
  if (!report.result.ok) out.stderr(`${report.result.asserts_failed} check(s) failed\n`);
  return report.result.ok ? 0 : 1;
}
