// Goodput at full length: scenarios/llama3-54d.yaml (Meta's Llama 3 pre-training: one gang
// job on 2,048 nodes for 54 days, the paper's 466 interruptions) under each of its compare:
// variants. The figure is the wall time of the baseline's run (the simulator should do
// 2,048 nodes × 54 days in a minute); its notes and the log carry ETTR per variant and the
// comparison with the paper's table. The tests run the scenario's first day only.
import { join } from "node:path";
import { comparisonTable, runComparison } from "../reconciler/sim/compare.ts";
import { referenceLines } from "../reconciler/sim/goodput.ts";
import { loadScenarioFile } from "../reconciler/sim/load.ts";
import { about } from "./catalogue.ts";
import type { Figure } from "./figures.ts";

const SCENARIO = join(import.meta.dir, "..", "scenarios", "llama3-54d.yaml");

export async function benchGoodput(log: (s: string) => void): Promise<Figure[]> {
  const loaded = await loadScenarioFile(SCENARIO);
  if (!loaded.ok) throw new Error(`${SCENARIO}: ${JSON.stringify(loaded.problems)}`);
  log(`goodput: ${loaded.scenario.name}, ${loaded.scenario.compare.length} variants × 54 virtual days…`);
  const { comparison, stats } = await runComparison(loaded.scenario, {
    progress: log,
    variantProgress: (name, i, n) => log(`goodput: variant ${name} (${i + 1} of ${n})`),
  });
  const reference = comparison.variants[0]!.report.summary.goodput?.reference;
  if (reference !== undefined) log(referenceLines(reference).join("\n"));
  log(comparisonTable(comparison));
  const ettr = comparison.rows.find((r) => r.figure === "ETTR")!;
  const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)} %`);
  const base = stats[0]!;
  return [
    {
      ...about("sim.llama3.54d", base.wallMs / 1000 <= 60),
      value: base.wallMs / 1000,
      unit: "s",
      notes: `ETTR ${comparison.variants.map((v, i) => `${v.name} ${pct(ettr.values[i] ?? null)}`).join(", ")}; all ${stats.length} variants ${(stats.reduce((a, s) => a + s.wallMs, 0) / 1000).toFixed(0)} s`,
    },
    ...(reference === undefined
      ? []
      : [
          {
            label: "  … beside the paper's table",
            result: `${reference.total.actual} interruptions (paper ${reference.total.reference})`,
            notes: `${reference.ok ? "within" : "NOT within"} ${Math.round(reference.tolerance * 100)} % per cause; ${reference.unexpected_per_1000_node_hours.actual} unexpected per 1,000 node-h (paper ${reference.unexpected_per_1000_node_hours.reference}); ETTR ${pct(reference.ettr?.actual ?? null)} (paper > ${pct(reference.ettr?.reference ?? null)})`,
          },
        ]),
  ];
}
