// The operator CLI (reconciler/main.ts, as a process) against a running reconciler
// whose store a simulated fleet writes: tables and -o json|yaml for nodes, pools,
// incidents and events; events --follow; drain with progress; cordon/uncordon; and
// one clear line with a non-zero exit on every error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import YAML from "yaml";
import { actionCommand } from "../reconciler/cli/actions.ts";
import { CliError } from "../reconciler/cli/client.ts";
import { eventsCommand } from "../reconciler/cli/events.ts";
import { nodesCommand } from "../reconciler/cli/nodes.ts";
import { eq } from "drizzle-orm";
import { nodes, pools } from "../schema/db.ts";
import { POOLS_YAML, simFleet, type SimFleet } from "./browser/harness.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

let fleet: SimFleet;
let victim: string;

beforeAll(async () => {
  fleet = await simFleet(
    POOLS_YAML([
      { name: "train", min: 4, max: 6 },
      { name: "infer", min: 2, max: 3 },
    ]),
    "cli-test-token-0123456789",
  );
  await fleet.until("6 ready", async () => (await fleet.all()).filter((n) => n.state === "ready").length === 6);
  victim = (await fleet.all()).find((n) => n.pool === "train" && n.state === "ready")!.id;
  await fleet.agents.xid(victim, 79, 2);
  await fleet.step();
  await fleet.step();
}, 30_000);
afterAll(() => fleet.stop());

type Result = { code: number; stdout: string; stderr: string };

/**
 * The CLI in this process (fast): the commands main.ts dispatches to, with its error
 * handling (a CliError is one line and its exit code; a bad flag exits 2).
 */
async function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  let stdout = "";
  const write = (s: string) => void (stdout += s);
  const [command, ...rest] = args;
  // The commands read NAVARCH_SERVER and NAVARCH_AUTH_TOKEN before their first await:
  // set them for that synchronous start only, so calls running side by side do not mix.
  const saved = { NAVARCH_SERVER: process.env.NAVARCH_SERVER, NAVARCH_AUTH_TOKEN: process.env.NAVARCH_AUTH_TOKEN };
  Object.assign(process.env, { NAVARCH_SERVER: fleet.url, NAVARCH_AUTH_TOKEN: fleet.token, ...env });
  let running: Promise<number>;
  try {
    running =
      command === "nodes"
        ? nodesCommand(rest, write)
        : command === "events"
          ? eventsCommand(rest, write)
          : actionCommand(command ?? "", rest, write, { pollMs: 100 });
  } catch (err) {
    running = Promise.reject(err);
  } finally {
    for (const [k, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[k];
      else process.env[k] = value;
    }
  }
  try {
    return { code: await running, stdout, stderr: "" };
  } catch (err) {
    if (err instanceof CliError) return { code: err.exitCode, stdout, stderr: `navarch: ${err.message}\n` };
    if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))
      return { code: 2, stdout, stderr: `navarch: ${err.message}\n` };
    throw err;
  }
}

/**
 * The real thing: reconciler/main.ts as a process (slower: used where main.ts itself matters),
 * from an empty directory by default: never from the repository, where `npm start` may have
 * left a demo's ./data/auth-token for the CLI to find.
 */
async function navarch(args: string[], env: Record<string, string> = {}, cwd = tempDir("navarch-cli-cwd-")): Promise<Result> {
  const proc = Bun.spawn([BUN, join(REPO_ROOT, "reconciler/main.ts"), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", NAVARCH_SERVER: fleet.url, NAVARCH_AUTH_TOKEN: fleet.token, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

/** A failure: the exit code, and exactly one line on stderr that contains `text`. */
function oneLine(r: { code: number; stderr: string; stdout: string }, code: number, text: string) {
  expect(r.code).toBe(code);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toStartWith("navarch: ");
  expect(lines[0]).toContain(text);
  expect(r.stdout).toBe("");
}

describe("navarch CLI", () => {
  test("nodes list: table, json, yaml, and --unhealthy says which and why", async () => {
    const [table, json, yaml, unhealthy] = await Promise.all([
      cli(["nodes", "list"]),
      cli(["nodes", "list", "-o", "json"]),
      cli(["nodes", "list", "-o", "yaml", "--pool", "infer"]),
      cli(["nodes", "list", "--unhealthy"]),
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout.split("\n")[0]).toMatch(/^NODE\s+POOL\s+KIND\s+STATE\s+HEALTH\s+NVML\s+LAST HEARTBEAT\s+IN STATE\s+REASON$/);
    expect(table.stdout).toMatch(/ago/);
    const nodes = (JSON.parse(json.stdout) as { nodes: { id: string; state: string }[] }).nodes;
    expect(nodes.length).toBeGreaterThanOrEqual(6);
    expect((YAML.parse(yaml.stdout) as { nodes: { pool: string }[] }).nodes.every((n) => n.pool === "infer")).toBe(true);
    expect(unhealthy.stdout).toContain(victim);
    // Why (the incident's reason) and what Navarch is doing about it (its status).
    expect(unhealthy.stdout).toContain("Xid 79");
    expect(unhealthy.stdout).toMatch(/Xid 79 .*— (cordoned|draining|drained|replacing)/);
    expect(unhealthy.stdout.trim().split("\n")).toHaveLength(2);
  });

  test("nodes get: GPUs, the incident with the time each step took, what was done", async () => {
    const [table, json] = await Promise.all([cli(["nodes", "get", victim]), cli(["nodes", "get", victim, "-o", "json"])]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`Node:        ${victim}`);
    expect(table.stdout).toContain("NVIDIA H100 80GB HBM3");
    expect(table.stdout).toMatch(/took:\s+fault→cordon \d+s/);
    expect(table.stdout).toMatch(/transition\s+ready → cordoned/);
    expect(table.stdout).toContain("Bootstrap:");
    const body = JSON.parse(json.stdout) as { node: { id: string }; incidents: { durations: { faultToCordonMs: number } }[]; actions: unknown[] };
    expect(body.node.id).toBe(victim);
    expect(body.incidents[0]!.durations.faultToCordonMs).toBeGreaterThanOrEqual(0);
    expect(body.actions.length).toBeGreaterThan(0);
  });

  test("pools list and get: sizes, autoscaler decisions with reasons, refusals", async () => {
    const [list, get, yaml] = await Promise.all([cli(["pools", "list"]), cli(["pools", "get", "train"]), cli(["pools", "get", "infer", "-o", "yaml"])]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^POOL\s+SIZE\s+MIN\s+MAX\s+MONITORED\s+HEALTHY\s+UNHEALTHY/);
    expect(list.stdout).toMatch(/train\s+\d+\s+4\s+6/);
    expect(get.stdout).toContain("Autoscaler decisions:");
    expect(get.stdout).toMatch(/scale\s+0 → 4: no autoscaler; clamped to min_nodes/);
    expect(get.stdout).toContain(victim);
    expect((YAML.parse(yaml.stdout) as { summary: { minNodes: number } }).summary.minNodes).toBe(2);
  });

  test("pools list and get say a pool is held because its machines do not register; pools resume lifts the hold", async () => {
    // The hold as the loop writes it after three machines of `infer` did not register.
    const hold =
      "the last 3 machines did not register within 15m; no machine of this pool has registered yet; raise health.registration_timeout or check the bootstrap";
    await fleet.rec.store.db
      .update(pools)
      .set({ registrationFailures: 3, registrationFailedAt: fleet.now(), registrationHold: hold, registrationHeldAt: fleet.now() })
      .where(eq(pools.name, "infer"));
    const [list, get] = await Promise.all([navarch(["pools", "list"]), navarch(["pools", "get", "infer"])]);
    expect(list.stdout).toMatch(/\ninfer .* held since \S+ ago: the last 3 machines did not/);
    expect(get.stdout).toMatch(/\nHeld: {8}since \S+ ago: the last 3 machines did not register within 15m; .* \(navarch pools resume infer\)\n/);
    const resumed = await navarch(["pools", "resume", "infer"]);
    expect(resumed.code).toBe(0);
    const [row] = await fleet.rec.store.db.select().from(pools).where(eq(pools.name, "infer"));
    expect(row).toMatchObject({ registrationFailures: 0, registrationHold: null, registrationHeldAt: null, paused: false });
    expect((await navarch(["pools", "get", "infer"])).stdout).not.toContain("Held:");
  });

  test("report: the machines that never served, per pool and provider, with their GPU-hours", async () => {
    // A machine launched an hour ago and terminated 30 minutes later without ever entering service.
    const at = fleet.now();
    await fleet.rec.store.db.insert(nodes).values({
      id: "train-neverserved",
      origin: "launched",
      pool: "train",
      provider: "local",
      instanceType: "local-8gpu",
      instanceName: "sim-never",
      state: "terminated",
      stateReason: "agent did not register within 15m",
      stateChangedAt: at - 30 * 60_000,
      launchedAt: at - 60 * 60_000,
      gpuCount: 8,
      updatedAt: at,
    });
    const [table, json, bad] = await Promise.all([
      navarch(["report"]),
      navarch(["report", "--since", "7d", "-o", "json"]),
      navarch(["report", "--since", "yesterday"]),
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("Machines that never served (launched and terminated without entering service):");
    expect(table.stdout).toMatch(/\ntrain\s+local\s+1\s+0\.5\s+4\.0\n/);
    expect((JSON.parse(json.stdout) as { neverServed: unknown }).neverServed).toEqual({
      pools: [{ pool: "train", provider: "local", machines: 1, machineHours: 0.5, gpuHours: 4, gpusUnknown: 0 }],
      total: { machines: 1, machineHours: 0.5, gpuHours: 4 },
    });
    oneLine(bad, 2, "--since: expected a duration like 10m, 2h, 3d or an ISO-8601 time");
  });

  test("incidents: what is wrong, what Navarch is doing, how long each step took", async () => {
    const [table, json] = await Promise.all([cli(["incidents"]), cli(["incidents", "--open", "-o", "json"])]);
    expect(table.stdout).toMatch(/^ID\s+NODE\s+POOL\s+FAULT\s+FAULT→CORDON\s+CORDON→DRAINED/);
    expect(table.stdout).toContain(victim);
    const open = (JSON.parse(json.stdout) as { incidents: { nodeId: string; closedAt: null }[] }).incidents;
    expect(open.map((i) => i.nodeId)).toContain(victim);
  });

  test("events: filters by severity, node, pool and time; json", async () => {
    const [bad, byNode, json, none] = await Promise.all([
      navarch(["events", "--severity", "unhealthy"]),
      cli(["events", "--node", victim, "--since", "2026-11-20T00:00:00Z"]),
      cli(["events", "--pool", "train", "-o", "json"]),
      cli(["events", "--pool", "infer"]),
    ]);
    expect(bad.stdout).toMatch(/^TIME\s+AGE\s+NODE\s+POOL\s+CHECK\s+CODE\s+SEVERITY\s+GPU\s+MESSAGE/);
    expect(bad.stdout).toContain("Xid 79");
    expect(byNode.stdout).toContain(victim);
    expect((JSON.parse(json.stdout) as { events: { code: string }[] }).events.map((e) => e.code)).toContain("79");
    expect(none.stdout.trim()).toBe("No events.");
  });

  test("events --follow prints new events as they arrive, once each", async () => {
    const ctl = new AbortController();
    let out = "";
    const saved = process.env.NAVARCH_AUTH_TOKEN;
    process.env.NAVARCH_AUTH_TOKEN = fleet.token;
    const running = eventsCommand(["--follow", "--pool", "infer", "-o", "json", "-s", fleet.url], (s) => (out += s), { signal: ctl.signal, pollMs: 50 });
    const other = (await fleet.all()).find((n) => n.pool === "infer" && n.state === "ready")!.id;
    await Bun.sleep(150);
    await fleet.agents.event(other, { check: "thermal", severity: "degraded", action: "none", message: "GPU 0 at 88 C" });
    await fleet.agents.event(victim, { check: "thermal", severity: "degraded", action: "none", message: "not this pool" });
    await fleet.agents.event(other, { check: "thermal", severity: "healthy", action: "none", message: "GPU 0 cooled down" });
    await waitFor("both infer events followed", () => (out.includes("cooled down") ? true : undefined), 5000);
    await Bun.sleep(200);
    ctl.abort();
    expect(await running).toBe(0);
    if (saved === undefined) delete process.env.NAVARCH_AUTH_TOKEN;
    else process.env.NAVARCH_AUTH_TOKEN = saved;
    const lines = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { message: string; nodeId: string });
    expect(lines.map((l) => l.message)).toEqual(["GPU 0 at 88 C", "GPU 0 cooled down"]);
  });

  test("drain shows progress until the node is drained; cordon and uncordon", async () => {
    const node = (await fleet.all()).find((n) => n.pool === "infer" && n.state === "ready")!.id;
    // Work on its GPUs: with no scheduler, a node is drained once its GPUs are idle.
    fleet.agents.setUtilization(node, 60);
    await fleet.step();
    const draining = cli(["drain", node, "--deadline", "600", "--reason", "maintenance"]);
    await waitFor("drain requested", async () => ((await fleet.node(node)).state === "draining" ? true : undefined), 10_000);
    await fleet.step();
    await waitFor("drain progress", async () => ((await fleet.node(node)).stateReason?.includes("GPUs still busy") ? true : undefined), 10_000);
    await Bun.sleep(300);
    fleet.agents.setUtilization(node, 0);
    await fleet.step();
    const r = await draining;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("drain requested (deadline 10m 0s)");
    expect(r.stdout).toMatch(/^\[\s+\d+s\] /m);
    expect(r.stdout).toMatch(/draining: 8 of 8 GPUs still busy/);
    expect(r.stdout).toMatch(/held: drained \(all GPUs idle\)/);
    expect(r.stdout).toMatch(/drained in \d+s; now held/);
    const un = await cli(["uncordon", node]);
    expect(un.code).toBe(0);
    expect(un.stdout.trim()).toBe(`${node}: uncordon requested`);
    const co = await cli(["cordon", node, "--reason", "cables", "-o", "json"]);
    expect(JSON.parse(co.stdout)).toMatchObject({ ok: true });
    expect((await fleet.node(node)).state).toBe("cordoned");
    expect((await cli(["uncordon", node])).code).toBe(0);
    // The audit log names who did it, also where the environment has no USER (Bun's userInfo() then says "unknown").
    const bare = await navarch(["cordon", node, "--reason", "cables"], { USER: "", LOGNAME: "" });
    expect(bare.code).toBe(0);
    const timeline = JSON.parse((await cli(["nodes", "get", node, "-o", "json"])).stdout);
    const actors = (timeline.actions as { actor: string; action: string }[])
      .filter((a) => a.action === "cordon" || a.action === "uncordon")
      .map((a) => a.actor);
    expect(actors.length).toBeGreaterThanOrEqual(3);
    for (const a of actors) expect(a).not.toMatch(/unknown/);
    expect((await cli(["uncordon", node])).code).toBe(0);
  }, 20_000);

  test("without NAVARCH_AUTH_TOKEN the CLI uses the token `serve` generated in ./data of its working directory", async () => {
    const dir = tempDir("navarch-cli-data-");
    mkdirSync(join(dir, "data"));
    writeFileSync(join(dir, "data", "auth-token"), `${fleet.token}\n`, { mode: 0o600 });
    const listed = await navarch(["pools", "list"], { NAVARCH_AUTH_TOKEN: "" }, dir);
    expect(listed).toMatchObject({ code: 0 });
    expect(listed.stdout).toContain("train");
  }, 20_000);

  test("options before the command work as after it: navarch -s URL -o json nodes list", async () => {
    const before = await navarch(["-s", fleet.url, "-o", "json", "nodes", "list"], { NAVARCH_SERVER: "http://127.0.0.1:1" });
    expect(before).toMatchObject({ code: 0 });
    expect(JSON.parse(before.stdout).nodes.length).toBeGreaterThan(0);
    const equals = await navarch([`--server=${fleet.url}`, "pools", "list"], { NAVARCH_SERVER: "http://127.0.0.1:1" });
    expect(equals).toMatchObject({ code: 0 });
    expect(equals.stdout).toContain("train");
    oneLine(await navarch(["-s"]), 2, "option -s needs a value");
  }, 20_000);

  test("--help on every command prints its usage and exits 0", async () => {
    const top = await navarch(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("--data-dir");
    const commands = [...new Set([...top.stdout.matchAll(/^  navarch ([\w|-]+)/gm)].flatMap((m) => (m[1] as string).split("|")))].filter(
      (c) => c !== "COMMAND",
    );
    expect(commands).toEqual(
      expect.arrayContaining([
        "serve",
        "demo",
        "config",
        "backup",
        "sim",
        "nodes",
        "events",
        "cordon",
        "drain",
        "reboot",
        "pools",
        "breaker",
        "incidents",
        "fault",
        "report",
      ]),
    );
    const answers = await Promise.all(commands.map(async (c) => ({ c, r: await navarch([c, "--help"]) })));
    for (const { c, r } of answers) {
      expect({ c, code: r.code, stderr: r.stderr }).toEqual({ c, code: 0, stderr: "" });
      expect(r.stdout).toContain(c === "version" ? "navarch" : c);
    }
    for (const args of [
      ["config", "check", "--help"],
      ["config", "migrate", "--help"],
      ["sim", "run", "--help"],
    ]) {
      expect((await navarch(args)).code).toBe(0);
    }
  }, 60_000);

  test("every error is one line and a non-zero exit", async () => {
    // As processes: what main.ts prints and exits with.
    const [unknown, wrongToken, unreachable, badFormat] = await Promise.all([
      navarch(["nodes", "get", "no-such-node"]),
      navarch(["nodes", "list"], { NAVARCH_AUTH_TOKEN: "wrong" }),
      navarch(["pools", "list", "-s", "127.0.0.1:1"]),
      navarch(["incidents", "-o", "xml"]),
    ]);
    const [noToken, scale, badSeverity, badState, notCordoned, badFlag] = await Promise.all([
      navarch(["events"], { NAVARCH_AUTH_TOKEN: "" }),
      cli(["pools", "scale", "train", "8"]), // --nodes N, not a bare number
      cli(["events", "--severity", "bad"]),
      cli(["nodes", "list", "--state", "sleeping"]),
      cli(["uncordon", (await fleet.all()).find((n) => n.state === "ready")!.id]),
      cli(["events", "--bogus"]),
    ]);
    oneLine(badFlag, 2, "--bogus");
    oneLine(unknown, 1, "node no-such-node not found");
    oneLine(wrongToken, 1, "refused the token (HTTP 401)");
    oneLine(unreachable, 1, "cannot reach the reconciler at http://127.0.0.1:1");
    oneLine(badFormat, 2, "-o: expected table, json or yaml");
    oneLine(noToken, 1, "NAVARCH_AUTH_TOKEN is not set");
    oneLine(scale, 2, "usage: navarch pools list | get POOL | pause POOL [--reason TEXT] | resume POOL | scale POOL --nodes N");
    oneLine(badSeverity, 2, "--severity: expected healthy, degraded, unhealthy");
    oneLine(badState, 2, "--state: expected one of");
    oneLine(notCordoned, 1, "only a cordoned, draining or held node can be uncordoned");
  }, 20_000);
});
