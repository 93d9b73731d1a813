// Running Schemathesis (installed by ensure-schemathesis.sh) against a reconciler's own
// /openapi.json, as test/schemathesis.test.ts and test/fuzz-strings.test.ts do.
import { join } from "node:path";
import { REPO_ROOT, tempDir } from "../support.ts";

const ENSURE = join(REPO_ROOT, "test/schemathesis/ensure-schemathesis.sh");
/** The settings every run shares (schemathesis.toml: one event of the never-ending /v1/watch is enough). */
const CONFIG = join(REPO_ROOT, "test/schemathesis/schemathesis.toml");

/** Installs Schemathesis when missing; the path of its `st` command. */
export function ensureSchemathesis(): string {
  const ensure = Bun.spawnSync(["sh", ENSURE], { stdout: "pipe", stderr: "pipe" });
  if (ensure.exitCode !== 0) throw new Error(`test/schemathesis/ensure-schemathesis.sh failed (${ensure.exitCode}): ${ensure.stderr.toString()}`);
  return ensure.stdout.toString().trim().split("\n").at(-1) ?? "";
}

export interface SchemathesisOptions {
  /** The reconciler's base URL. */
  url: string;
  token: string;
  phases: string;
  examples: number;
  seed: number;
  /** Only these checks (default: every one). */
  checks?: string;
  /** More environment (hooks: PYTHONPATH and SCHEMATHESIS_HOOKS). */
  env?: Record<string, string>;
}

/** One run, with its whole output; `generated`: the cases it made. */
export async function runSchemathesis(st: string, o: SchemathesisOptions): Promise<{ code: number; output: string; generated: number; seconds: number }> {
  const reports = tempDir("navarch-schemathesis-");
  const started = performance.now();
  const proc = Bun.spawn(
    [
      st,
      "--config-file",
      CONFIG,
      "--no-color",
      "run",
      `${o.url}/openapi.json`,
      "--header",
      `Authorization: Bearer ${o.token}`,
      "--phases",
      o.phases,
      ...(o.checks === undefined ? [] : ["--checks", o.checks]),
      "--max-examples",
      String(o.examples),
      "--seed",
      String(o.seed),
      // One worker: two have tripped a race inside Hypothesis ("Inconsistent results" while describing a lambda).
      "--workers",
      "1",
      "--request-timeout",
      "10",
      "--report-dir",
      reports,
    ],
    // Its caches (.schemathesis, .hypothesis) go in the temp directory, not the repository.
    { cwd: reports, stdout: "pipe", stderr: "pipe", env: { ...process.env, SCHEMATHESIS_HOOKS: "", NO_COLOR: "1", ...o.env } },
  );
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const output = `${out}${err}`;
  return { code, output, generated: Number(/(\d+) generated/.exec(output)?.[1] ?? 0), seconds: (performance.now() - started) / 1000 };
}
