// What an adversarial run did to the compiled agent, each now a test: a full or
// read-only state directory, a backlog larger than the reconciler's body limit, a
// truncated libnvidia-ml, an outage long enough for the back-off to grow, a server
// that is not the reconciler (and credentials in --server), and a GPU crossing its
// slowdown threshold at the default poll interval. The agent must keep heartbeating,
// lose no fault, and say what is wrong.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, closeSync, copyFileSync, mkdirSync, openSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface StoredEvent {
  seq: number;
  check: string;
  code: string | null;
  severity: string;
  gpuIndex: number | null;
  message: string;
  receivedAt: number;
}
interface Detail {
  node: { nvmlAvailable: boolean; nvmlError: string | null; agentHealth: string | null; lastHeartbeatAt: number };
  events: StoredEvent[];
}

let fleet: CompiledFleet;
let server: Proc;
const GPUS = 8;

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig();
  server = fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(() => fleet.stop());

const detail = (id: string) => fleet.api<Detail>(`/v1/nodes/${id}?events=1000`);
const stateDirOf = (nodeId: string) => join(fleet.dir, "agents", nodeId);

function startFakeAgent(nodeId: string, extra: string[] = []) {
  const dir = join(fleet.dir, `${nodeId}-nvml`);
  mkdirSync(dir, { recursive: true });
  const state = join(dir, "nvml-state");
  writeFileSync(state, `count ${GPUS}\n`);
  const control = join(dir, "nvml-control");
  const proc = fleet.startAgent(nodeId, ["--nvml-library", FAKE_NVML.full, "--kmsg-path", "none", ...extra], {
    FAKE_NVML_STATE: state,
    FAKE_NVML_CONTROL: control,
  });
  return { proc, inject: (line: string) => appendFileSync(control, `${line}\n`) };
}

async function eventMatching(nodeId: string, pred: (e: StoredEvent) => boolean, what: string, timeoutMs = 10_000): Promise<StoredEvent> {
  return waitFor(`${nodeId}: ${what}`, async () => (await detail(nodeId))?.events.find(pred), timeoutMs);
}

async function checked(nodeId: string): Promise<Detail> {
  return waitFor(
    `${nodeId} registered and checked`,
    async () => {
      const d = await detail(nodeId);
      return d?.node.agentHealth ? d : undefined;
    },
    20_000,
  );
}

function run(cmd: string[]): number {
  try {
    return Bun.spawnSync(cmd, { stdout: "ignore", stderr: "ignore" }).exitCode;
  } catch {
    return -1;
  }
}

/** Writes zeros until the filesystem is full. */
function fill(path: string): void {
  const fd = openSync(path, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if (!(err instanceof Error && "code" in err && err.code === "ENOSPC")) throw err;
  } finally {
    closeSync(fd);
  }
}

describe("an unwritable state directory loses no fault and keeps the agent alive", () => {
  test("full (a 2 MiB tmpfs): the Xid arrives, and so does 'event spool unwritable'", async () => {
    const nodeId = "spool-full";
    const dir = stateDirOf(nodeId);
    mkdirSync(dir, { recursive: true });
    if (run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir]) !== 0) {
      console.warn("skipped: cannot mount a tmpfs here (needs root)");
      return;
    }
    try {
      const a = startFakeAgent(nodeId);
      await checked(nodeId);
      fill(join(dir, "filler"));
      a.inject("xid 2 79");
      const xid = await eventMatching(nodeId, (e) => e.check === "xid" && e.code === "79", "Xid 79 despite the full disk");
      expect(xid.gpuIndex).toBe(2);
      const spool = await eventMatching(nodeId, (e) => e.check === "spool", "the spool finding");
      expect(spool.severity).toBe("degraded");
      expect(spool.message).toContain("event spool unwritable");
      expect(spool.message).toMatch(/ENOSPC|no space/i);
      expect(a.proc.exitCode).toBeNull();
      // Room again: the events reach the disk and the finding clears.
      rmSync(join(dir, "filler"));
      await eventMatching(nodeId, (e) => e.check === "spool" && e.severity === "healthy", "the spool finding cleared", 20_000);
      a.proc.kill("SIGKILL");
      await a.proc.exited;
    } finally {
      run(["umount", "-l", dir]);
    }
  }, 60_000);

  test("read-only (chattr +i before the first event): the Xid arrives and the agent lives", async () => {
    const nodeId = "spool-immutable";
    const a = startFakeAgent(nodeId);
    await checked(nodeId);
    const dir = stateDirOf(nodeId);
    if (run(["chattr", "+i", dir]) !== 0) {
      console.warn("skipped: chattr +i is not supported here");
      a.proc.kill("SIGKILL");
      return;
    }
    try {
      a.inject("xid 5 48");
      const xid = await eventMatching(nodeId, (e) => e.check === "xid" && e.code === "48", "Xid 48 despite the immutable directory");
      expect(xid.gpuIndex).toBe(5);
      const spool = await eventMatching(nodeId, (e) => e.check === "spool", "the spool finding");
      expect(spool.message).toContain("event spool unwritable");
      const beat = (await detail(nodeId))!.node.lastHeartbeatAt;
      await waitFor("a heartbeat after the failure", async () => (((await detail(nodeId))?.node.lastHeartbeatAt ?? 0) > beat ? true : undefined), 5000);
      expect(a.proc.exitCode).toBeNull();
    } finally {
      run(["chattr", "-i", dir]);
      a.proc.kill("SIGKILL");
    }
  }, 60_000);
});

describe("a backlog larger than the body limit", () => {
  test("300 spooled events of 4 KB each all arrive, and heartbeats are sent while they do", async () => {
    const nodeId = "backlog";
    const dir = stateDirOf(nodeId);
    mkdirSync(dir, { recursive: true });
    // What an agent left behind after a long outage: 300 events, about 1.3 MB.
    const lines: string[] = [];
    for (let seq = 1; seq <= 300; seq++) {
      lines.push(
        JSON.stringify({
          seq,
          time: new Date().toISOString(),
          bootId: "boot-before",
          check: "xid",
          code: String(seq),
          severity: "degraded",
          action: "none",
          message: `Xid ${seq} ${"x".repeat(4000)}`,
        }),
      );
    }
    writeFileSync(join(dir, "events.jsonl"), `${lines.join("\n")}\n`);
    expect(statSync(join(dir, "events.jsonl")).size).toBeGreaterThan(1024 * 1024);
    const a = startFakeAgent(nodeId);
    await waitFor("a heartbeat", async () => ((await detail(nodeId))?.node.lastHeartbeatAt ? true : undefined), 15_000);
    const events = await waitFor(
      "all 300 events",
      async () => {
        const d = await detail(nodeId);
        const xids = d?.events.filter((e) => e.check === "xid") ?? [];
        return xids.length >= 300 ? xids : undefined;
      },
      30_000,
    );
    expect(new Set(events.map((e) => e.code)).size).toBe(300);
    a.proc.kill("SIGKILL");
  }, 60_000);
});

describe("a bad libnvidia-ml is a finding, not a crash", () => {
  test("truncated: check --once exits 3 with 'NVML unavailable', the daemon registers and reports it", async () => {
    const lib = join(fleet.dir, "truncated", "libnvidia-ml.so.1");
    mkdirSync(join(lib, ".."), { recursive: true });
    copyFileSync(FAKE_NVML.full, lib);
    truncateSync(lib, 20_000);
    const once = await fleet.run([fleet.navarchNode, "check", "--once", "--nvml-library", lib, "--kmsg-path", "none"]);
    expect(once.code).toBe(3);
    expect(once.stdout).toContain("GPUs cannot be read");
    expect(once.stdout).toContain(lib);
    expect(once.stdout + once.stderr).toMatch(/truncated|extends past the end/);

    const proc = fleet.startAgent("bad-lib", ["--nvml-library", lib, "--kmsg-path", "none"]);
    const d = await waitFor("registered", async () => ((await detail("bad-lib"))?.node.lastHeartbeatAt ? await detail("bad-lib") : undefined), 15_000);
    expect(d.node.nvmlAvailable).toBe(false);
    expect(d.node.nvmlError).toContain(lib);
    const finding = await eventMatching("bad-lib", (e) => e.check === "nvml" && e.code === "unusable", "the finding");
    expect(finding.message).toContain("truncated");
    expect(proc.exitCode).toBeNull();
    proc.kill("SIGKILL");
  }, 30_000);
});

describe("after an outage", () => {
  test("events spooled during a 20 s outage arrive within 5 s of the reconciler's return", async () => {
    const nodeId = "outage";
    const a = startFakeAgent(nodeId);
    await checked(nodeId);
    server.kill("SIGTERM");
    await server.exited;
    for (let i = 0; i < 20; i++) {
      a.inject(`xid ${i % GPUS} ${[13, 31, 43][Math.floor(i / GPUS)]}`);
      await Bun.sleep(10);
    }
    await Bun.sleep(20_000);
    server = fleet.startServer();
    await fleet.waitReady();
    const back = Date.now();
    await waitFor("20 Xid events", async () => ((await detail(nodeId))?.events.filter((e) => e.check === "xid").length === 20 ? true : undefined), 10_000);
    expect(Date.now() - back).toBeLessThan(5000);
    a.proc.kill("SIGKILL");
  }, 60_000);
});

describe("a server that is not the reconciler", () => {
  test("a 404 without the reconciler's error body is logged once, and credentials in --server never are", async () => {
    let calls = 0;
    const proxy = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => {
        calls++;
        return new Response("<html>404 Not Found</html>", { status: 404, headers: { "Content-Type": "text/html" } });
      },
    });
    try {
      const proc = fleet.start(
        "proxied",
        [
          fleet.navarchNode,
          "--server",
          `http://agent:s3cr3t-pw@127.0.0.1:${proxy.port}/navarch`,
          "--node-id",
          "proxied",
          "--state-dir",
          stateDirOf("proxied"),
          "--kmsg-path",
          "none",
          "--nvml-library",
          "/nonexistent/libnvidia-ml.so.1",
        ],
        { NAVARCH_AUTH_TOKEN: fleet.token },
      );
      await waitFor("several attempts", () => (calls >= 4 ? true : undefined), 15_000);
      proc.kill("SIGTERM");
      await proc.exited;
      const log = fleet.output.get("proxied") ?? "";
      expect(log).not.toContain("s3cr3t");
      expect(log).not.toContain("does not know this node");
      const lines = log.split("\n").filter((l) => l.includes("HTTP 404"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("not the reconciler's API");
      expect(lines[0]).toContain(`http://127.0.0.1:${proxy.port}/navarch`);
    } finally {
      proxy.stop(true);
    }
  }, 30_000);
});

describe("a GPU crossing its slowdown threshold", () => {
  test("is known at the reconciler within 2 s at the default poll interval", async () => {
    const nodeId = "slowdown";
    const a = startFakeAgent(nodeId);
    await checked(nodeId);
    await Bun.sleep(1500); // mid-interval, wherever the polls stand
    const at = Date.now();
    a.inject("temp 3 90");
    const e = await eventMatching(nodeId, (e) => e.check === "thermal" && e.code === "slowdown", "thermal slowdown", 15_000);
    expect(e.gpuIndex).toBe(3);
    expect(e.receivedAt - at).toBeLessThan(2000);
    a.proc.kill("SIGKILL");
  }, 40_000);
});
