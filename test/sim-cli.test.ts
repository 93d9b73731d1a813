// `navarch sim run`: the three outputs (table, JSON, self-contained HTML), the exit status
// (0 when every check holds, 1 when one fails), and the seed flag.
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { simCommand } from "../reconciler/cli/sim.ts";
import type { SimReport } from "../reconciler/sim/report.ts";
import { REPO_ROOT, tempDir } from "./support.ts";

const SCENARIO = `name: cli
duration: 30m
fleet:
  pools:
    - { name: p, provider: gcp, instance_type: a3-highgpu-8g, region: europe-west4, scaling: { min_nodes: 3, max_nodes: 3 } }
clouds:
  gcp: { launch_latency: 2m }
events:
  - { at: 5m, fault: { xid: 79, target: { node: p-1 } } }
  - at: end
    assert:
      - { incidents: { outcome: replaced }, equals: 1 }
      - { nodes: { state: ready }, equals: OK_COUNT }
`;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await simCommand(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
  return { code, stdout: out.join(""), stderr: err.join("") };
}

function scenarioFile(readyCount: number): string {
  const file = join(tempDir(), "cli.yaml");
  writeFileSync(file, SCENARIO.replace("OK_COUNT", String(readyCount)));
  return file;
}

describe("navarch sim run", () => {
  test("table output, exit 0 when every check holds", async () => {
    const r = await run(["run", scenarioFile(3)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("scenario cli (seed 1)");
    expect(r.stdout).toContain("fault → cordon");
    expect(r.stdout).toContain("passed: 2 checks");
    expect(r.stderr).toContain("virtual hours per second");
  });

  test("JSON to a file, exit 1 when a check fails", async () => {
    const out = join(tempDir(), "report.json");
    const r = await run(["run", scenarioFile(4), "-o", "json", "--out", out, "--seed", "9"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(readFileSync(out, "utf8")) as SimReport;
    expect(report.scenario.seed).toBe(9);
    expect(report.result).toEqual({ ok: false, asserts_passed: 1, asserts_failed: 1 });
    expect(report.summary.replacements.ready).toBe(1);
    expect(report.summary.fault_to_cordon?.count).toBe(1);
    expect(report.events.some((e) => e.kind === "fault" && e.node === "p-1")).toBe(true);
  });

  test("HTML: one self-contained page with inline SVG timelines", async () => {
    const r = await run(["run", join(REPO_ROOT, "scenarios", "queue-scaling.yaml"), "-o", "html"]);
    expect(r.code).toBe(0);
    const html = r.stdout;
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html.match(/<svg /g)?.length).toBeGreaterThanOrEqual(4);
    expect(html).toContain("queue autoscaler wants");
    expect(html).not.toMatch(/<script|<link |src="http|href="http/);
  });

  test("usage errors exit 2", async () => {
    expect((await run([])).code).toBe(2);
    expect((await run(["run"])).code).toBe(2);
    expect((await run(["run", scenarioFile(3), "-o", "xml"])).code).toBe(2);
    expect((await run(["run", scenarioFile(3), "--seed", "-1"])).code).toBe(2);
    expect((await run(["validate", join(tempDir(), "missing.yaml")])).code).toBe(2);
  });
});
