// Formatting and linting are part of the test suite: Biome (biome.json) must have nothing to say.
// Fix with: node_modules/.bin/biome format --write .
import { expect, test } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "./support.ts";

test("biome format finds nothing to change", () => {
  const proc = Bun.spawnSync([join(REPO_ROOT, "node_modules/.bin/biome"), "format", "--max-diagnostics=20", "."], {
    cwd: REPO_ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = proc.stdout.toString() + proc.stderr.toString();
  if (proc.exitCode !== 0) console.error(output);
  expect(proc.exitCode).toBe(0);
}, 60_000);

// The linter's rules (biome.json) are the ones that catch bugs: import cycles, unused code,
// optional chains that can throw. Fix with the file and line it names.
test("biome lint finds nothing", () => {
  const proc = Bun.spawnSync([join(REPO_ROOT, "node_modules/.bin/biome"), "lint", "--max-diagnostics=20", "."], {
    cwd: REPO_ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = proc.stdout.toString() + proc.stderr.toString();
  if (proc.exitCode !== 0) console.error(output);
  expect(proc.exitCode).toBe(0);
}, 60_000);
