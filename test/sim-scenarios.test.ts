// Every scenario of the library (scenarios/*.yaml) runs through the simulator (the real
// reconcile loop on virtual time) and every check it states must hold. The known issues
// (scenarios/known-issues/) state the intended behaviour and are expected to fail until the
// reconciler is fixed; when one starts passing, its test fails: move it to the library.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { runScenario } from "../reconciler/sim/engine.ts";
import { loadScenarioFile } from "../reconciler/sim/load.ts";
import type { SimReport } from "../reconciler/sim/report.ts";
import { REPO_ROOT } from "./support.ts";

const LIBRARY = join(REPO_ROOT, "scenarios");
/** Scenarios too slow for the test command (minutes each); run them by hand. */
const SLOW = join(LIBRARY, "slow");
const yamlIn = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort();

async function run(path: string, overrides: { pass_every?: number } = {}): Promise<SimReport> {
  const loaded = await loadScenarioFile(path);
  if (!loaded.ok) throw new Error(`${path}: ${JSON.stringify(loaded.problems)}`);
  const scenario = loaded.scenario;
  if (overrides.pass_every !== undefined) scenario.sim.pass_every = overrides.pass_every;
  const { report } = await runScenario(scenario);
  return report;
}

function failures(report: SimReport): string[] {
  return report.asserts.filter((a) => !a.ok).map((a) => `at ${a.at / 1000} s: ${a.check} (actual ${a.actual})`);
}

describe("scenario library", () => {
  const files = yamlIn(LIBRARY);
  test("every scenario file validates (the slow known issues too)", async () => {
    const all = [LIBRARY, SLOW].flatMap((dir) => yamlIn(dir).map((f) => join(dir, f)));
    expect(all.length).toBeGreaterThan(files.length);
    for (const path of all) {
      const loaded = await loadScenarioFile(path);
      if (!loaded.ok) throw new Error(`${path}: ${JSON.stringify(loaded.problems)}`);
    }
  });

  test("covers what the issue asks for", () => {
    for (const name of ["steady-state", "single-fatal-xid", "breaker-burst", "capacity-failover", "restart-mid-replacement", "queue-scaling", "scheduled-midnight"]) {
      expect(files).toContain(`${name}.yaml`);
    }
  });

  for (const file of files) {
    test(
      file,
      async () => {
        const report = await run(join(LIBRARY, file));
        expect(report.asserts.length).toBeGreaterThan(0);
        expect(failures(report)).toEqual([]);
        expect(report.warnings).toEqual([]);
        expect(report.summary.leaked_instances).toBe(0);
      },
      60_000,
    );
  }
});

// The simulator runs a pass only when one can change something. A fixed cadence (a pass at
// least every 15 s of virtual time, closer to the real loop's) must reach the same outcomes.
describe("sparse passes reach what a fixed cadence reaches", () => {
  for (const file of ["single-fatal-xid.yaml", "breaker-burst.yaml", "restart-mid-replacement.yaml", "partition-freeze.yaml"]) {
    test(
      file,
      async () => {
        const dense = await run(join(LIBRARY, file), { pass_every: 15_000 });
        expect(failures(dense)).toEqual([]);
        const sparse = await run(join(LIBRARY, file));
        expect(dense.summary.reconciler.passes).toBeGreaterThan(sparse.summary.reconciler.passes);
        expect(sparse.summary.incidents).toEqual(dense.summary.incidents);
        expect(sparse.summary.nodes_at_end).toEqual(dense.summary.nodes_at_end);
      },
      60_000,
    );
  }
});

