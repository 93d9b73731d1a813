// Figures that a test measures with real parts the bench does not start itself (chromium, a
// kube-apiserver with KWOK): the bench runs that test and reads what it prints.
import { REPO_ROOT } from "../test/support.ts";

/** Runs one test file (tests whose name matches `filter`) and returns what it printed; a failing test still prints its figures. */
export async function testOutput(file: string, filter: string, env: Record<string, string> = {}): Promise<string> {
  const proc = Bun.spawn([process.execPath, "test", file, "-t", filter], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const text = `${out}${err}`;
  if (code !== 0) process.stderr.write(`${file} failed (exit ${code}); its figures are still read:\n${text.split("\n").slice(-30).join("\n")}\n`);
  return text;
}
