// Every scenario of the library (scenarios/*.yaml) runs through the simulator (the real
// reconcile loop on virtual time) and every check it states must hold; every autoscaler
// docs/configuration.md documents has a scenario asserting its pool's size. The known issues
// (scenarios/known-issues/) state the intended behaviour and are expected to fail until the
// reconciler is fixed; when one starts passing, its test fails: move it to the library.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runScenario } from "../reconciler/sim/engine.ts";
import { loadScenarioFile } from "../reconciler/sim/load.ts";
import type { SimReport } from "../reconciler/sim/report.ts";
import { AUTOSCALER_TYPES } from "../schema/config.ts";
import { REPO_ROOT } from "./support.ts";

const LIBRARY = join(REPO_ROOT, "scenarios");
/** Scenarios too slow for the test command (minutes each); run them by hand. */
const SLOW = join(LIBRARY, "slow");
/**
 * Library scenarios of benchmark length: test/sim-goodput.test.ts runs them cut short
 * (`--duration`), `npm run bench` at their full length.
 */
const BENCH_LENGTH = new Set(["llama3-54d.yaml"]);
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
    for (const name of [
      "steady-state",
      "single-fatal-xid",
      "breaker-burst",
      "capacity-failover",
      "restart-mid-replacement",
      "queue-scaling",
      "scheduled-midnight",
    ]) {
      expect(files).toContain(`${name}.yaml`);
    }
  });

  test("every documented autoscaler has a scenario that asserts its pool's size through the real loop", async () => {
    // docs/configuration.md's `scaling.autoscaler` row names each autoscaler as `type` followed by its keys.
    const row = readFileSync(join(REPO_ROOT, "docs/configuration.md"), "utf8")
      .split("\n")
      .find((l) => l.startsWith("| `scaling.autoscaler` |"));
    expect(row).toBeDefined();
    const documented = [...row!.matchAll(/`([a-z]+)` \(/g)].map((m) => m[1]!);
    expect([...documented].sort()).toEqual([...AUTOSCALER_TYPES].sort());
    const covered = new Map<string, string[]>();
    for (const file of files) {
      const loaded = await loadScenarioFile(join(LIBRARY, file));
      if (!loaded.ok) throw new Error(`${file}: ${JSON.stringify(loaded.problems)}`);
      const { config, events } = loaded.scenario;
      const sized = new Set(
        events.flatMap((e) =>
          e.kind === "assert" ? e.checks.flatMap((c) => (c.metric.kind === "nodes" && c.metric.pool !== undefined ? [c.metric.pool] : [])) : [],
        ),
      );
      for (const p of config.pools) {
        const type = p.scaling.autoscaler?.type;
        if (type !== undefined && sized.has(p.name)) covered.set(type, [...(covered.get(type) ?? []), `${file} (pool ${p.name})`]);
      }
    }
    for (const type of documented)
      expect(covered.get(type), `no scenario in scenarios/ asserts the size of a pool scaled by the ${type} autoscaler`).toBeDefined();
  });

  for (const file of files.filter((f) => !BENCH_LENGTH.has(f))) {
    test(file, async () => {
      const report = await run(join(LIBRARY, file));
      expect(report.asserts.length).toBeGreaterThan(0);
      expect(failures(report)).toEqual([]);
      expect(report.warnings).toEqual([]);
      expect(report.summary.leaked_instances).toBe(0);
    }, 60_000);
  }
});

// The simulator runs a pass only when one can change something. A fixed cadence (a pass at
// least every 15 s of virtual time, closer to the real loop's) must reach the same outcomes.
describe("sparse passes reach what a fixed cadence reaches", () => {
  for (const file of ["single-fatal-xid.yaml", "breaker-burst.yaml", "restart-mid-replacement.yaml", "partition-freeze.yaml"]) {
    test(file, async () => {
      const dense = await run(join(LIBRARY, file), { pass_every: 15_000 });
      expect(failures(dense)).toEqual([]);
      const sparse = await run(join(LIBRARY, file));
      expect(dense.summary.reconciler.passes).toBeGreaterThan(sparse.summary.reconciler.passes);
      expect(sparse.summary.incidents).toEqual(dense.summary.incidents);
      expect(sparse.summary.nodes_at_end).toEqual(dense.summary.nodes_at_end);
    }, 60_000);
  }
});
