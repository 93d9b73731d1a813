// Seeded randomized runs of the real reconcile loop (test/randomized/run.ts): ≥ 500 seeds,
// spread over one child process per core. NAVARCH_RANDOM_RUNS and NAVARCH_RANDOM_FIRST_SEED
// change the range; NAVARCH_RANDOM_TRACE=1 with one run prints every pass (for a failing seed).
import { describe, expect, test } from "bun:test";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { noneExercised, PASSES, run, type Exercised } from "./randomized/run.ts";
import { BUN, REPO_ROOT } from "./support.ts";

const RUNS = Number(process.env.NAVARCH_RANDOM_RUNS ?? 500);
const FIRST_SEED = Number(process.env.NAVARCH_RANDOM_FIRST_SEED ?? 1);

async function inChildren(): Promise<{ violations: string[]; exercised: Exercised }> {
  const children = Math.max(1, Math.min(availableParallelism(), Math.ceil(RUNS / 50)));
  const per = Math.ceil(RUNS / children);
  const results = await Promise.all(
    Array.from({ length: children }, async (_, i) => {
      const from = FIRST_SEED + i * per;
      const to = Math.min(FIRST_SEED + RUNS - 1, from + per - 1);
      const proc = Bun.spawn([BUN, join(REPO_ROOT, "test/randomized/child.ts"), String(from), String(to)], { stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      if (code !== 0) throw new Error(`seeds ${from}–${to} exited ${code}: ${err.slice(-2000)}`);
      return JSON.parse(out.trim().split("\n").at(-1)!) as { violations: string[]; exercised: Exercised };
    }),
  );
  const exercised = noneExercised();
  for (const r of results) for (const k of Object.keys(exercised) as (keyof Exercised)[]) exercised[k] += r.exercised[k];
  return { violations: results.flatMap((r) => r.violations), exercised };
}

describe("randomized runs of the reconcile loop", () => {
  test(`${RUNS} seeded runs of ${PASSES} passes: the invariants hold after every pass`, async () => {
    const { violations, exercised } = RUNS === 1 ? await run(FIRST_SEED) : await inChildren();
    expect(violations.slice(0, 20)).toEqual([]);
    console.log(`randomized runs exercised: ${JSON.stringify(exercised)}`);
    if (RUNS >= 100) for (const [what, n] of Object.entries(exercised)) expect({ what, exercised: n > 0 }).toEqual({ what, exercised: true });
  }, 1_200_000);
});
