// The agent's side of the reconciler's requests, without a reconciler: its configuration file
// (checked, with the key path and line of each problem), the check runner (a check that passes,
// fails, hangs past its timeout with its whole process group killed, prints more than the
// bound, leaves a process behind), the refusal of anything its configuration does not define
// (with no process spawned), and a request run at most once, also across a restart.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAgentConfig, loadAgentConfig } from "../agent/config.ts";
import { OutputTail, runCheck, spawnDetached, type Spawner } from "../agent/check-runner.ts";
import { RequestHandler } from "../agent/requests.ts";
import type { AgentConfig } from "../schema/agent-config.ts";
import { MAX_REQUEST_OUTPUT, type RequestAnswer } from "../schema/wire.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Whether a process is alive (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

const check = (run: string | string[], timeoutMs = 10_000) => ({ run, timeout: timeoutMs });

describe("the agent's configuration file", () => {
  test("a valid file: checks by name, a command line or a program and its arguments, timeouts in ms", () => {
    const r = parseAgentConfig(
      "checks:\n  dcgm-diag:\n    run: dcgmi diag -r 2 -j\n    timeout: 10m\n  nccl-all-reduce:\n    run: [all_reduce_perf, -b, '8', -e, 4G]\n    timeout: 1h30m\n",
      "agent.yaml",
    );
    expect(r).toEqual({
      ok: true,
      source: "agent.yaml",
      config: {
        checks: {
          "dcgm-diag": { run: "dcgmi diag -r 2 -j", timeout: 600_000 },
          "nccl-all-reduce": { run: ["all_reduce_perf", "-b", "8", "-e", "4G"], timeout: 5_400_000 },
        },
      },
    });
  });

  test("every problem names the file, the key path and the line", () => {
    const r = parseAgentConfig(
      "checks:\n  dcgm-diag:\n    run: dcgmi diag\n    timeout: 2d\n  Bad Name:\n    run: x\n    timeout: 1m\n  typo:\n    runs: x\n    timeout: 1m\ncheck: {}\n",
      "/etc/navarch/agent.yaml",
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toEqual([
      '/etc/navarch/agent.yaml: checks.dcgm-diag.timeout: expected a duration from 1s to 24h, like 30s, 10m or 1h30m, got "2d" (line 4)',
      `/etc/navarch/agent.yaml: checks.Bad Name: "Bad Name" is not a check name: 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter (line 5)`,
      "/etc/navarch/agent.yaml: checks.typo.run: is required (line 9)",
      '/etc/navarch/agent.yaml: checks.typo.runs: unknown key "runs" (did you mean "run"?) (line 9)',
      '/etc/navarch/agent.yaml: check: unknown key "check" (did you mean "checks"?) (line 11)',
    ]);
  });

  test("a YAML syntax error, a command of two lines, and a list where a mapping belongs", () => {
    const syntax = parseAgentConfig("checks:\n  a: [\n", "a.yaml");
    expect(syntax.ok === false && syntax.problems[0]).toStartWith("a.yaml: YAML syntax error at line");
    const twoLines = parseAgentConfig('checks:\n  a:\n    run: "echo a\\nrm -rf /"\n    timeout: 1m\n', "a.yaml");
    expect(twoLines.ok === false && twoLines.problems[0]).toContain("a.yaml: checks.a.run: expected a command line (one line");
    expect(parseAgentConfig("checks: [a]\n", "a.yaml")).toEqual({
      ok: false,
      problems: ["a.yaml: checks: expected a mapping of check names to checks, got a list (line 1)"],
    });
  });

  test("--config must name a file that exists; the default path is read only when it exists; an empty file defines nothing", () => {
    const dir = tempDir();
    expect(loadAgentConfig(join(dir, "missing.yaml"))).toEqual({
      ok: false,
      problems: [`${join(dir, "missing.yaml")}: cannot read it: no such file (ENOENT)`],
    });
    expect(loadAgentConfig(undefined, join(dir, "missing.yaml"))).toEqual({ ok: true, config: { checks: {} }, source: undefined });
    writeFileSync(join(dir, "empty.yaml"), "");
    expect(loadAgentConfig(join(dir, "empty.yaml"))).toEqual({ ok: true, config: { checks: {} }, source: join(dir, "empty.yaml") });
  });

  test("navarch-node refuses to start with a configuration that has a problem (exit 2, every problem)", () => {
    const dir = tempDir();
    const file = join(dir, "agent.yaml");
    writeFileSync(file, "checks:\n  a:\n    run: /bin/true\n    timeout: forever\n");
    const r = Bun.spawnSync([BUN, join(REPO_ROOT, "agent/main.ts"), "--server", "127.0.0.1:1", "--config", file], {
      env: { PATH: "/usr/bin:/bin", NAVARCH_AUTH_TOKEN: "x".repeat(32), HOME: dir },
      stderr: "pipe",
      stdout: "pipe",
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toBe(
      `navarch-node: the agent configuration has a problem:\n  ${file}: checks.a.timeout: expected a duration from 1s to 24h, like 30s, 10m or 1h30m, got "forever" (line 4)\n`,
    );
  });
});

describe("the check runner", () => {
  test("a check that passes: exit 0, its output, how long it took", async () => {
    const r = await runCheck("ok", check("echo all good; echo on stderr >&2")).result;
    expect(r).toMatchObject({ state: "succeeded", exitCode: 0, outputCut: false });
    expect(r.output).toContain("all good\n");
    expect(r.output).toContain("on stderr\n");
    expect(r.outputBytes).toBe(r.output.length);
    expect(r.durationMs).toBeLessThan(5000);
  });

  test("a check that fails: its exit code; a list is run without a shell; a program that does not exist fails to start", async () => {
    expect(await runCheck("fail", check("echo broken; exit 3")).result).toMatchObject({ state: "failed", exitCode: 3, output: "broken\n" });
    expect(await runCheck("argv", check(["/bin/echo", "a;", "b", "$(id)"])).result).toMatchObject({ state: "succeeded", output: "a; b $(id)\n" });
    const missing = await runCheck("missing", check(["/nonexistent/dcgmi", "diag"])).result;
    expect(missing.state).toBe("failed");
    expect(missing.reason).toStartWith("check missing could not start /nonexistent/dcgmi: ");
  });

  test("a check that hangs past its timeout: timed out, its whole process group killed", async () => {
    const dir = tempDir();
    const pids = join(dir, "pids");
    const started = performance.now();
    const running = runCheck("hang", check(`sleep 300 & echo $! > ${pids}; (sleep 300 & wait) & echo $! >> ${pids}; echo hanging; wait`, 500), {
      graceMs: 2000,
    });
    const r = await running.result;
    expect(r).toMatchObject({ state: "timed_out", signal: "SIGTERM" });
    expect(r.reason).toBe("check hang ran past its timeout of 500ms; its process group was killed");
    expect(r.output).toBe("hanging\n");
    expect(performance.now() - started).toBeLessThan(5000);
    const children = readFileSync(pids, "utf8").trim().split("\n").map(Number);
    expect(children).toHaveLength(2);
    await waitFor("every process of the group gone", () => (children.every((p) => !alive(p)) ? true : undefined), 3000);
  });

  test("a group that ignores SIGTERM is killed with SIGKILL after the grace period", async () => {
    const dir = tempDir();
    const pids = join(dir, "pids");
    const started = performance.now();
    const r = await runCheck("stubborn", check(`trap '' TERM; sleep 300 & echo $! > ${pids}; while :; do sleep 0.1; done`, 300), { graceMs: 300 }).result;
    expect(r).toMatchObject({ state: "timed_out", signal: "SIGKILL" });
    expect(performance.now() - started).toBeLessThan(3000);
    const child = Number(readFileSync(pids, "utf8").trim());
    await waitFor("the ignoring child gone", () => (!alive(child) ? true : undefined), 3000);
  });

  test("a process a check leaves behind does not outlive it", async () => {
    const dir = tempDir();
    const pids = join(dir, "pids");
    const r = await runCheck("leaves", check(`sleep 300 > /dev/null 2>&1 & echo $! > ${pids}; echo done`)).result;
    expect(r).toMatchObject({ state: "succeeded", output: "done\n" });
    const child = Number(readFileSync(pids, "utf8").trim());
    await waitFor("the background process gone", () => (!alive(child) ? true : undefined), 3000);
  });

  test("output beyond the bound: the last 64 KiB are kept, cut on a character boundary, and how much there was", async () => {
    // 200,001 bytes: a line, then 2-byte characters, so the cut falls inside one, then a last line.
    const r = await runCheck(
      "loud",
      check(
        `printf 'first\\n'; head -c 100000 /dev/zero | tr '\\0' 'x'; i=0; while [ $i -lt 49995 ]; do printf 'é'; i=$((i+1)); done; printf '\\nlast line\\n'`,
      ),
    ).result;
    expect(r.state).toBe("succeeded");
    expect(r.outputCut).toBe(true);
    expect(r.outputBytes).toBe(6 + 100_000 + 49_995 * 2 + 11);
    expect(r.output.length).toBeLessThanOrEqual(MAX_REQUEST_OUTPUT);
    expect(Buffer.byteLength(r.output)).toBeLessThanOrEqual(MAX_REQUEST_OUTPUT);
    expect(r.output).toEndWith("é\nlast line\n");
    expect(r.output).not.toContain("first");
    expect(r.output).not.toContain("\ufffd");
    expect(r.output.isWellFormed()).toBe(true);
  });

  test("OutputTail: bytes that are not UTF-8 become U+FFFD; a cut keeps whole characters", () => {
    const tail = new OutputTail(8);
    tail.push(new TextEncoder().encode("abc€€€"));
    tail.push(new Uint8Array([0xff, 0x41]));
    const r = tail.result();
    expect(r).toEqual({ output: "€€\ufffdA", outputBytes: 14, outputCut: true });
  });

  test("a check never sees the agent's token", async () => {
    process.env.NAVARCH_AUTH_TOKEN = "secret-token-of-the-agent";
    cleanups.push(() => {
      delete process.env.NAVARCH_AUTH_TOKEN;
    });
    const r = await runCheck("env", check("env"), { env: { NAVARCH_CHECK: "env" } }).result;
    expect(r.output).toContain("NAVARCH_CHECK=env");
    expect(r.output).not.toContain("secret-token-of-the-agent");
  });
});

// ───────────────────────────── the handler ─────────────────────────────

const CONFIG: AgentConfig = {
  checks: {
    ok: check("echo fine"),
    count: check('echo run >> "$COUNT_FILE"; echo counted'),
    hang: check("echo started; sleep 300", 60_000),
  },
};

class FakeClient {
  readonly answers: { id: string; answer: RequestAnswer }[] = [];
  async answerRequest(_nodeId: string, id: string, answer: RequestAnswer) {
    this.answers.push({ id, answer });
    return { state: answer.state };
  }
  final(id: string): RequestAnswer | undefined {
    return this.answers.filter((a) => a.id === id && a.answer.state !== "running").at(-1)?.answer;
  }
}

function handler(stateDir: string, opts: { spawned?: string[][]; client?: FakeClient; config?: AgentConfig } = {}) {
  const client = opts.client ?? new FakeClient();
  const spawn: Spawner = (argv, env) => {
    opts.spawned?.push(argv);
    return spawnDetached(argv, env);
  };
  const log: string[] = [];
  const h = new RequestHandler({
    nodeId: "n1",
    client,
    config: opts.config ?? CONFIG,
    configSource: "/etc/navarch/agent.yaml",
    stateDir,
    log: (l) => log.push(l),
    spawn,
    graceMs: 200,
    retryMinMs: 10,
    retryMaxMs: 50,
  });
  return { h, client, log };
}

const req = (id: string, args: Record<string, unknown>, kind = "run_check", deadlineMs = 60_000) => ({
  id,
  kind,
  args,
  deadline: new Date(Date.now() + deadlineMs).toISOString(),
});

describe("requests: judged against the machine's configuration, run at most once", () => {
  test("a defined check runs: running, then succeeded with its output", async () => {
    const { h, client } = handler(tempDir());
    h.start();
    cleanups.push(() => h.stop());
    h.offer([req("req_00000001", { check: "ok" })]);
    const done = await waitFor("answered", () => client.final("req_00000001"));
    expect(done).toMatchObject({ state: "succeeded", exitCode: 0, output: "fine\n", outputCut: false, outputBytes: 5 });
    expect(client.answers[0]).toEqual({ id: "req_00000001", answer: { state: "running" } });
  });

  test("a check the configuration does not define is refused with the reason, and nothing is spawned", async () => {
    const spawned: string[][] = [];
    const dir = tempDir();
    const { h, client } = handler(dir, { spawned });
    h.start();
    cleanups.push(() => h.stop());
    h.offer([
      req("req_00000002", { check: "rm-rf" }),
      req("req_00000003", { check: "ok", argv: ["rm", "-rf", "/"] }),
      req("req_00000004", { check: "constructor" }),
      req("req_00000005", { command: "id" }),
      req("req_00000006", {}, "bundle"),
      req("req_00000007", {}, "format_disks"),
      req("req_00000008", { check: "ok" }, "run_check", -1000),
    ]);
    await waitFor("seven refusals", () => (client.answers.length === 7 ? true : undefined));
    const reason = (id: string) => client.final(id)?.reason;
    expect(client.answers.every((a) => a.answer.state === "refused")).toBe(true);
    expect(reason("req_00000002")).toBe("check rm-rf is not defined in this machine's configuration (/etc/navarch/agent.yaml defines ok, count, hang)");
    expect(reason("req_00000003")).toStartWith('args.argv: Invalid key: Expected never but received "argv"');
    expect(reason("req_00000004")).toStartWith("check constructor is not defined in this machine's configuration");
    expect(reason("req_00000005")).toStartWith("args.check: Invalid key");
    expect(reason("req_00000006")).toMatch(/^this agent \(navarch-node .*\) does not serve bundle requests yet$/);
    expect(reason("req_00000007")).toMatch(/^this agent \(navarch-node .*\) does not know format_disks requests$/);
    expect(reason("req_00000008")).toStartWith("its deadline (");
    expect(spawned).toEqual([]);
    // A refusal is remembered too: delivered again, it is neither judged nor answered again.
    h.offer([req("req_00000002", { check: "rm-rf" })]);
    await Bun.sleep(100);
    expect(client.answers).toHaveLength(7);
  });

  test("without a configuration file every request is refused, saying there is none", async () => {
    const spawned: string[][] = [];
    const client = new FakeClient();
    const h = new RequestHandler({
      nodeId: "n1",
      client,
      config: { checks: {} },
      configSource: undefined,
      stateDir: tempDir(),
      log: () => undefined,
      spawn: (argv, env) => {
        spawned.push(argv);
        return spawnDetached(argv, env);
      },
    });
    h.start();
    cleanups.push(() => h.stop());
    h.offer([req("req_00000009", { check: "dcgm-diag" })]);
    const answer = await waitFor("refused", () => client.final("req_00000009"));
    expect(answer).toEqual({
      state: "refused",
      reason: "check dcgm-diag is not defined in this machine's configuration (there is no /etc/navarch/agent.yaml)",
    });
    expect(spawned).toEqual([]);
  });

  test("a request delivered again (while it runs, after it ran, after a restart) runs once", async () => {
    const dir = tempDir();
    const countFile = join(dir, "count");
    process.env.COUNT_FILE = countFile;
    cleanups.push(() => {
      delete process.env.COUNT_FILE;
    });
    const spawned: string[][] = [];
    const first = handler(dir, { spawned });
    first.h.start();
    const r = req("req_0000000a", { check: "count" });
    first.h.offer([r]);
    first.h.offer([r]);
    await waitFor("answered", () => first.client.final("req_0000000a"));
    first.h.offer([r]);
    await first.h.stop();
    // A new agent over the same state directory: the journal knows it.
    const second = handler(dir, { spawned });
    second.h.start();
    cleanups.push(() => second.h.stop());
    second.h.offer([r, req("req_0000000b", { check: "count" })]);
    await waitFor("the new one answered", () => second.client.final("req_0000000b"));
    expect(readFileSync(countFile, "utf8")).toBe("run\nrun\n");
    expect(spawned).toHaveLength(2);
    expect(second.client.answers.map((a) => a.id)).not.toContain("req_0000000a");
  });

  test("an agent killed while a check ran: at the next start it is answered failed, its processes killed, and it never runs again", async () => {
    const dir = tempDir();
    const spawned: string[][] = [];
    const first = handler(dir, { spawned });
    first.h.start();
    cleanups.push(() => first.h.stop());
    first.h.offer([req("req_0000000c", { check: "hang" })]);
    await waitFor("running", () => first.client.answers.find((a) => a.answer.state === "running"));
    const journal = JSON.parse(readFileSync(join(dir, "requests.json"), "utf8")) as { entries: { id: string; state: string; pid?: number }[] };
    const entry = journal.entries.find((e) => e.id === "req_0000000c")!;
    expect(entry.state).toBe("started");
    expect(alive(entry.pid!)).toBe(true);
    // The first agent is "killed": it never stops its check. A second one starts over its state directory.
    const second = handler(dir, { spawned });
    second.h.start();
    cleanups.push(() => second.h.stop());
    const answer = await waitFor("answered after the restart", () => second.client.final("req_0000000c"));
    expect(answer).toEqual({ state: "failed", reason: "the agent stopped while it ran; a request is never run twice, so it was not run again" });
    await waitFor("the orphaned check killed", () => (!alive(entry.pid!) ? true : undefined), 3000);
    second.h.offer([req("req_0000000c", { check: "hang" })]);
    await Bun.sleep(100);
    expect(spawned).toHaveLength(1);
  });

  test("an answer the reconciler did not take is sent again, also after a restart", async () => {
    const dir = tempDir();
    let up = false;
    const client = new FakeClient();
    const flaky = {
      answerRequest: async (nodeId: string, id: string, answer: RequestAnswer) => {
        if (!up) {
          const { ReportError } = await import("../agent/reporter.ts");
          throw new ReportError("unreachable", 0, "unreachable");
        }
        return client.answerRequest(nodeId, id, answer);
      },
    };
    const first = new RequestHandler({
      nodeId: "n1",
      client: flaky,
      config: CONFIG,
      configSource: "x",
      stateDir: dir,
      log: () => undefined,
      retryMinMs: 10,
      retryMaxMs: 20,
    });
    first.start();
    first.offer([req("req_0000000d", { check: "ok" })]);
    await waitFor("finished in the journal", () => (readFileSync(join(dir, "requests.json"), "utf8").includes('"finished"') ? true : undefined));
    await first.stop();
    expect(client.answers).toEqual([]);
    up = true;
    const second = handler(dir, { client });
    second.h.start();
    cleanups.push(() => second.h.stop());
    expect(await waitFor("sent after the restart", () => client.final("req_0000000d"))).toMatchObject({ state: "succeeded", output: "fine\n" });
    await waitFor("acknowledged", () => (readFileSync(join(dir, "requests.json"), "utf8").includes('"sent":true') ? true : undefined));
  });

  test("at most 16 wait behind the one that runs; more are refused", async () => {
    const spawned: string[][] = [];
    const { h, client } = handler(tempDir(), { spawned });
    h.start();
    cleanups.push(() => h.stop());
    h.offer([req("req_10000000", { check: "hang" })]);
    await waitFor("running", () => client.answers.find((a) => a.answer.state === "running"));
    h.offer(Array.from({ length: 17 }, (_, i) => req(`req_2000${String(i).padStart(4, "0")}`, { check: "ok" })));
    const refused = await waitFor("the 17th refused", () => client.final("req_20000016"));
    expect(refused).toEqual({ state: "refused", reason: "16 requests already wait here (at most 16); ask again later" });
    expect(client.answers.filter((a) => a.answer.state === "refused")).toHaveLength(1);
    expect(spawned).toHaveLength(1);
  });

  test("a state directory that cannot be written: the request is refused, not run", async () => {
    const dir = join(tempDir(), "file-not-dir");
    writeFileSync(dir, "");
    const spawned: string[][] = [];
    const { h, client } = handler(join(dir, "state"), { spawned });
    h.start();
    cleanups.push(() => h.stop());
    h.offer([req("req_0000000e", { check: "ok" })]);
    const answer = await waitFor("refused", () => client.final("req_0000000e"));
    expect(answer.state).toBe("refused");
    expect(answer.reason).toContain("it cannot be recorded in the state directory before it runs");
    expect(spawned).toEqual([]);
    expect(existsSync(join(dir, "state"))).toBe(false);
  });
});
