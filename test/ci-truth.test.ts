// The README's test command (what CI runs) must fail when a test fails, and pass only
// when every test passed: run on two one-test files, one failing, one passing.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "./support.ts";

async function testCommand(file: string): Promise<{ code: number; last: string }> {
  const proc = Bun.spawn(["sh", join(REPO_ROOT, "scripts/test.sh"), file], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const [code, out] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
  return { code, last: out.trim().split("\n").at(-1) ?? "" };
}

describe("the test command", () => {
  test("exits non-zero and says so when a test fails", async () => {
    expect(await testCommand("./test/fixtures/ci/failing.check.ts")).toEqual({ code: 1, last: "0 passed, 1 failed" });
  }, 60_000);

  test("exits 0 when every test passed", async () => {
    expect(await testCommand("./test/fixtures/ci/passing.check.ts")).toEqual({ code: 0, last: "1 passed, 0 failed" });
  }, 60_000);
});
