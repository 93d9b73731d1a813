// Type checking is part of the test suite: strict tsc over the whole project.
import { expect, test } from "bun:test";
import { BUN, REPO_ROOT } from "./support.ts";

test("tsc --noEmit (strict) reports no errors", () => {
  const proc = Bun.spawnSync([BUN, "x", "tsc", "--noEmit", "-p", "."], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const output = proc.stdout.toString() + proc.stderr.toString();
  if (proc.exitCode !== 0) console.error(output);
  expect(output.trim()).toBe("");
  expect(proc.exitCode).toBe(0);
}, 180_000);
