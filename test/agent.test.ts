// The agent's reporting loop against a real reconciler: events pushed at once,
// spooled while the reconciler is down, and delivered exactly once, in order.
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { Agent, heartbeatIntervalMs } from "../agent/agent.ts";
import { HealthMonitor } from "../agent/health-monitor.ts";
import { toWireGpuSnapshot } from "../agent/nvml/index.ts";
import type { DeviceSnapshot } from "../agent/nvml/types.ts";
import { ReconcilerClient } from "../agent/reporter.ts";
import { redactUrl } from "../schema/url.ts";
import { Spool } from "../agent/spool.ts";
import { getNodeDetail } from "../reconciler/nodes/agent-reports.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { ERROR_CODES, GpuSnapshot, MAX_TIMER_MS, type HealthEvent } from "../schema/wire.ts";
import { BUN, REPO_ROOT, tempDir, waitFor } from "./support.ts";

process.env.NAVARCH_AGENT_TEST_TOKEN = "agent-test-token";
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function reconciler(dataDir: string, port = 0): Promise<Reconciler> {
  const rec = await startReconciler(
    {
      host: "127.0.0.1",
      port,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_AGENT_TEST_TOKEN",
      heartbeatIntervalSeconds: 1,
    },
    () => undefined,
  );
  return rec;
}

/** The agent's real health monitor, with no NVML library to load (these tests are about reporting). */
async function noGpus(): Promise<HealthMonitor> {
  const monitor = new HealthMonitor({ libraryPath: "/nonexistent/libnvidia-ml.so.1", kmsgPath: null, onFinding: () => undefined, log: () => undefined });
  await monitor.start();
  cleanups.push(() => monitor.close());
  return monitor;
}

async function agentFor(url: string, stateDir: string, nodeId = "agent-1") {
  const agent = new Agent({
    identity: { nodeId, hostname: "test-host", bootId: "boot-x", pool: "p" },
    client: new ReconcilerClient(url, "agent-test-token", 2000),
    spool: new Spool(stateDir),
    gpus: await noGpus(),
    log: () => undefined,
    retryMinMs: 50,
    retryMaxMs: 200,
  });
  agent.start();
  cleanups.push(() => agent.stop());
  return agent;
}

const finding = (i: number) => ({
  time: new Date().toISOString(),
  check: "xid",
  code: String(i),
  severity: "unhealthy" as const,
  action: "reset_gpu" as const,
  message: `fault ${i}`,
});

describe("agent reporting", () => {
  test("an event is pushed at once, not at the next heartbeat", async () => {
    const dataDir = tempDir();
    const rec = await reconciler(dataDir);
    cleanups.push(() => rec.stop());
    const agent = await agentFor(rec.url, join(dataDir, "agent"));
    await waitFor("registration", () => getNodeDetail(rec.store.db, "agent-1"));
    const sent = performance.now();
    agent.report(finding(79));
    await waitFor("event stored", async () => ((await getNodeDetail(rec.store.db, "agent-1"))?.events.length ? true : undefined), 900);
    expect(performance.now() - sent).toBeLessThan(900); // well inside the 1 s heartbeat
  });

  test("reconciler down: 50 events spooled, then delivered exactly once, in order", async () => {
    const dataDir = tempDir();
    let rec = await reconciler(dataDir);
    const port = Number(new URL(rec.url).port);
    const agent = await agentFor(rec.url, join(dataDir, "agent"));
    await waitFor("registration", () => getNodeDetail(rec.store.db, "agent-1"));
    await rec.stop();
    for (let i = 1; i <= 50; i++) agent.report(finding(i));
    await Bun.sleep(300); // a few failed attempts while it is down
    rec = await reconciler(dataDir, port);
    cleanups.push(() => rec.stop());
    const events = await waitFor(
      "all 50 events",
      async () => {
        const d = await getNodeDetail(rec.store.db, "agent-1", 1000);
        return d && d.events.length >= 50 ? d.events : undefined;
      },
      15_000,
    );
    const ascending = [...events].reverse();
    expect(ascending.map((e) => e.code)).toEqual(Array.from({ length: 50 }, (_, i) => String(i + 1)));
    expect(new Set(ascending.map((e) => e.seq)).size).toBe(50);
  }, 30_000);

  test("agent restart: the spool on disk is resent and the seq continues", async () => {
    const dataDir = tempDir();
    const rec = await reconciler(dataDir);
    cleanups.push(() => rec.stop());
    const stateDir = join(dataDir, "agent");
    // First agent life: one event delivered, then two written while unable to send.
    const spool = new Spool(stateDir);
    spool.append({ ...finding(1), bootId: "boot-x" });
    spool.append({ ...finding(2), bootId: "boot-x" });
    expect(new Spool(stateDir).id).toBe(spool.id);
    const agent = await agentFor(rec.url, stateDir);
    await waitFor("2 events", async () => ((await getNodeDetail(rec.store.db, "agent-1"))?.events.length === 2 ? true : undefined));
    const next = agent.report(finding(3));
    expect(next.seq).toBe(3);
    await waitFor("3 events", async () => ((await getNodeDetail(rec.store.db, "agent-1"))?.events.length === 3 ? true : undefined));
    // Stored is not yet acknowledged: the agent drops them from its spool once the answer arrives.
    await waitFor("an empty spool on disk", () => (new Spool(stateDir).size === 0 ? true : undefined));
  });

  test("a wiped state directory never reuses a seq the reconciler has", async () => {
    const dataDir = tempDir();
    const rec = await reconciler(dataDir);
    cleanups.push(() => rec.stop());
    const first = await agentFor(rec.url, join(dataDir, "agent-a"));
    first.report(finding(1));
    first.report(finding(2));
    await waitFor("2 events", async () => ((await getNodeDetail(rec.store.db, "agent-1"))?.events.length === 2 ? true : undefined));
    await first.stop();
    // Same node id, empty state directory; the event is found before it has registered.
    const second = await agentFor(rec.url, join(dataDir, "agent-b"));
    second.report(finding(3));
    const events = await waitFor("3 events", async () => {
      const d = await getNodeDetail(rec.store.db, "agent-1");
      return d?.events.length === 3 ? d.events : undefined;
    });
    expect(events.map((e) => [e.seq, e.code])).toEqual([
      [3, "3"],
      [2, "2"],
      [1, "1"],
    ]);
  });
});

describe("a reconciler that forgot", () => {
  test("restored from an older copy, it learns the agent's open findings again; closed ones are not re-sent", async () => {
    const dataDir = tempDir();
    let rec = await reconciler(dataDir);
    const port = Number(new URL(rec.url).port);
    const stateDir = join(dataDir, "agent");
    const monitor = await noGpus();
    const gpus = {
      status: () => monitor.status(),
      health: () => ({ checked: true, worst: "unhealthy" as const, openIncidents: 1 }),
      driverVersion: () => undefined,
      cudaVersion: () => undefined,
      inventory: () => [],
      snapshot: () => [],
      close: () => undefined,
    };
    const agent = new Agent({
      identity: { nodeId: "agent-1", hostname: "h", bootId: "boot-x" },
      client: new ReconcilerClient(rec.url, "agent-test-token", 2000),
      spool: new Spool(stateDir),
      gpus,
      log: () => undefined,
      retryMinMs: 50,
      retryMaxMs: 200,
    });
    agent.start();
    cleanups.push(() => agent.stop());
    await waitFor("registration", () => getNodeDetail(rec.store.db, "agent-1"));
    const copy = join(dataDir, "before.db");
    await rec.store.client.execute({ sql: "VACUUM INTO ?", args: [copy] });
    const fatal = agent.report({ check: "xid", code: "79", severity: "unhealthy", action: "replace", message: "Xid 79", time: new Date().toISOString() });
    agent.report({ check: "xid", code: "13", severity: "degraded", action: "none", message: "Xid 13", time: new Date().toISOString() });
    agent.report({ check: "xid", code: "13", severity: "healthy", action: "none", message: "Xid 13 cleared", time: new Date().toISOString() });
    await waitFor("3 events stored", async () => ((await getNodeDetail(rec.store.db, "agent-1"))?.events.length === 3 ? true : undefined));
    await waitFor("acknowledged", () => (new Spool(stateDir).size === 0 ? true : undefined));
    await rec.stop();
    const db = join(dataDir, "navarch.db");
    for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
    copyFileSync(copy, db);
    rec = await reconciler(dataDir, port);
    cleanups.push(() => rec.stop());
    // Its next heartbeat shows the reconciler holds less than it acknowledged: it registers again.
    const events = await waitFor(
      "the open finding back",
      async () => {
        const d = await getNodeDetail(rec.store.db, "agent-1");
        return d?.events.some((e) => e.code === "79") ? d.events : undefined;
      },
      10_000,
    );
    expect(events.map((e) => [e.seq, e.code, e.severity])).toEqual([[fatal.seq, "79", "unhealthy"]]);
  }, 30_000);
});

describe("agent timers", () => {
  test("the heartbeat interval is held to 1 s .. 1 h, whatever it is given", () => {
    expect(heartbeatIntervalMs(30)).toBe(30_000);
    expect(heartbeatIntervalMs(600 * 3600)).toBe(3_600_000);
    expect(heartbeatIntervalMs(Infinity)).toBe(3_600_000);
    expect(heartbeatIntervalMs(0)).toBe(1000);
    expect(heartbeatIntervalMs(-5)).toBe(1000);
    expect(heartbeatIntervalMs(NaN)).toBe(30_000);
  });

  test("a reconciler asking for heartbeats every 600 h is refused, and no timer past 2^31-1 ms is set", async () => {
    // A reconciler from before the config bounds, with heartbeat_interval: 600h.
    const asked = { register: 0, heartbeat: 0 };
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req) {
        const path = new URL(req.url).pathname;
        if (path === "/v1/register") {
          asked.register++;
          return Response.json({ nodeId: "agent-1", heartbeatIntervalSeconds: 600 * 3600, lastEventSeq: 0, sameSpool: false });
        }
        if (path === "/v1/heartbeat") {
          asked.heartbeat++;
          return Response.json({ heartbeatIntervalSeconds: 600 * 3600 });
        }
        return Response.json({ ackedSeq: 0, stored: 0 });
      },
    });
    cleanups.push(() => server.stop(true));
    const timers = spyOn(globalThis, "setTimeout");
    cleanups.push(() => timers.mockRestore());
    const logs: string[] = [];
    const agent = new Agent({
      identity: { nodeId: "agent-1", hostname: "test-host", bootId: "boot-x" },
      client: new ReconcilerClient(`http://127.0.0.1:${server.port}`, "agent-test-token", 2000),
      spool: new Spool(join(tempDir(), "agent")),
      gpus: await noGpus(),
      log: (line) => logs.push(line),
      retryMinMs: 50,
      retryMaxMs: 200,
    });
    agent.start();
    cleanups.push(() => agent.stop());
    await waitFor("the answer refused", () => (logs.some((l) => l.includes("heartbeatIntervalSeconds")) ? true : undefined), 5000);
    await Bun.sleep(500);
    expect(logs[0]).toContain(
      `POST http://127.0.0.1:${server.port}/v1/register: unexpected answer from the reconciler (heartbeatIntervalSeconds: must be a number from 1 to 3600 seconds, got 2160000)`,
    );
    const delays = timers.mock.calls.map((call) => Number(call[1] ?? 0));
    expect(delays.filter((ms) => !(ms <= MAX_TIMER_MS))).toEqual([]);
    // Backing off (retryMaxMs 200), not spinning on a timer that fires at once.
    expect(asked.register).toBeLessThan(20);
  });

  test("a flag that would overflow a timer is a usage error (64) naming the flag", async () => {
    const run = async (args: string[]) => {
      const proc = Bun.spawn(
        [
          BUN,
          join(REPO_ROOT, "agent/main.ts"),
          "--server",
          "127.0.0.1:1",
          "--kmsg-path",
          "none",
          "--nvml-library",
          "/nonexistent/libnvidia-ml.so.1",
          "--state-dir",
          tempDir(),
          ...args,
        ],
        {
          env: { ...process.env, NAVARCH_AUTH_TOKEN: "agent-test-token" },
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      // Without the bounds the agent would start and run on: stop it after a while.
      const timer = setTimeout(() => proc.kill(), 5000);
      const code = await proc.exited;
      clearTimeout(timer);
      return { code, stderr: await new Response(proc.stderr).text() };
    };
    const cases: [string[], string][] = [
      [["--poll-interval", "3000000"], '--poll-interval: expected seconds from 0.1 to 3600, got "3000000"'],
      [["--poll-interval", "0"], '--poll-interval: expected seconds from 0.1 to 3600, got "0"'],
      [["--nvml-deadline", "1e10"], '--nvml-deadline: expected seconds from 0.1 to 600, got "1e10"'],
      [["--expected-gpus", "65"], '--expected-gpus: expected a whole number from 1 to 64, got "65"'],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    results.forEach((r, i) => {
      expect(r.code).toBe(64);
      expect(r.stderr).toContain(cases[i]![1]);
    });
  }, 20_000);
});

describe("agent readings", () => {
  test("a reading outside its physical range is left out, so the heartbeat is still accepted", () => {
    const read = <T>(value: T) => ({ ok: true as const, value });
    // Only the fields toWireGpuSnapshot reads: a glitching sensor on every one of them.
    const device = {
      index: 3,
      temperatureC: read(4_294_967_295),
      powerUsageMw: read(4_294_967_295_000),
      utilization: read({ gpuPct: NaN, memoryPct: 0 }),
      memory: read({ usedBytes: 2 ** 64 }),
      ecc: { volatile: read({ uncorrected: 2 ** 60, corrected: 7 }) },
      clocksEventReasons: read({ mask: 2 ** 64 - 1 }),
      processes: read([{ pid: 4000, usedGpuMemoryBytes: null }]),
    } as unknown as DeviceSnapshot;
    const snapshot = toWireGpuSnapshot(device);
    expect(snapshot).toEqual({ index: 3, eccVolatileSbe: 7, processCount: 1 });
    expect(v.safeParse(GpuSnapshot, snapshot).success).toBe(true);
  });
});

/**
 * A stand-in for the reconciler (or for whatever sits in front of it), answering each call as
 * `answer` says; it records what it was asked and stores the events it accepts.
 */
function fakeServer(answer: (path: string, body: string) => Response | undefined | Promise<Response | undefined>) {
  const calls: { path: string; bytes: number }[] = [];
  const stored = new Map<number, HealthEvent>();
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = await req.text();
      calls.push({ path, bytes: body.length });
      const special = await answer(path, body);
      if (special) return special;
      if (path === "/v1/register") return Response.json({ nodeId: "agent-1", heartbeatIntervalSeconds: 1, lastEventSeq: 0, sameSpool: false });
      if (path === "/v1/heartbeat") return Response.json({ heartbeatIntervalSeconds: 1 });
      const events = (JSON.parse(body) as { events: HealthEvent[] }).events;
      for (const e of events) stored.set(e.seq, e);
      return Response.json({ ackedSeq: events.at(-1)!.seq, stored: events.length });
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}`, calls, stored, count: (path: string) => calls.filter((c) => c.path === path).length };
}

async function agentAgainst(url: string, logs: string[] = []) {
  const spool = new Spool(join(tempDir(), "agent"));
  const agent = new Agent({
    identity: { nodeId: "agent-1", hostname: "test-host", bootId: "boot-x" },
    client: new ReconcilerClient(url, "agent-test-token", 2000),
    spool,
    gpus: await noGpus(),
    log: (line) => logs.push(line),
    retryMinMs: 50,
    retryMaxMs: 200,
    heartbeatIntervalMs: 1000,
  });
  agent.start();
  cleanups.push(() => agent.stop());
  return { agent, spool, logs };
}

describe("never mute, never lose", () => {
  test("heartbeats never wait on events: a reconciler that never answers /v1/events still gets every heartbeat", async () => {
    const server = fakeServer(async (path) => {
      if (path === "/v1/events") await Bun.sleep(5000); // past the client's 2 s timeout, every time
      return undefined;
    });
    const { agent } = await agentAgainst(server.url);
    await waitFor("registered", () => (server.count("/v1/heartbeat") > 0 ? true : undefined));
    for (let i = 0; i < 5; i++) agent.report(finding(i));
    const before = server.count("/v1/heartbeat");
    await Bun.sleep(3500);
    expect(server.count("/v1/heartbeat") - before).toBeGreaterThanOrEqual(3);
    expect(server.stored.size).toBe(0);
  }, 15_000);

  test("a 413 splits the batch instead of retrying it: everything arrives through a proxy with a 64 KiB limit", async () => {
    let refused = 0;
    const server = fakeServer((path, body) => {
      if (path === "/v1/events" && body.length > 64 * 1024) {
        refused++;
        return new Response("<html>413 Request Entity Too Large</html>", { status: 413, headers: { "Content-Type": "text/html" } });
      }
      return undefined;
    });
    const { agent, spool } = await agentAgainst(server.url);
    for (let i = 1; i <= 100; i++) agent.report({ ...finding(i), message: `${i} ${"m".repeat(2000)}` });
    await waitFor("all 100 stored", () => (server.stored.size === 100 ? true : undefined), 10_000);
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThan(10);
    expect([...server.stored.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    await waitFor("acknowledged", () => (spool.size === 0 ? true : undefined));
  }, 15_000);

  test("one event too large for what is in between goes with its message cut short, not never", async () => {
    const server = fakeServer((path, body) => (path === "/v1/events" && body.length > 2048 ? new Response("too large", { status: 413 }) : undefined));
    const { agent } = await agentAgainst(server.url);
    agent.report({ ...finding(1), message: "x".repeat(4000) });
    await waitFor("stored", () => (server.stored.size === 1 ? true : undefined), 5000);
    expect(server.stored.get(1)!.message.length).toBeLessThanOrEqual(512);
    expect(server.stored.get(1)!.message).toEndWith("characters cut]");
  }, 10_000);

  test("the reconciler's 404 for an unknown node means register again; another 404 does not, and is logged once", async () => {
    let forget = true;
    const reconciler = fakeServer((path) => {
      if (path === "/v1/heartbeat" && forget) {
        forget = false;
        return Response.json({ error: "node agent-1 is not registered; register first", code: ERROR_CODES.unknownNode }, { status: 404 });
      }
      return undefined;
    });
    await agentAgainst(reconciler.url);
    await waitFor("registered twice", () => (reconciler.count("/v1/register") === 2 ? true : undefined), 5000);

    const proxy = fakeServer((path) => (path === "/v1/heartbeat" ? new Response("Not Found", { status: 404 }) : undefined));
    const { logs } = await agentAgainst(proxy.url);
    await waitFor("several heartbeats refused", () => (proxy.count("/v1/heartbeat") >= 5 ? true : undefined), 5000);
    expect(proxy.count("/v1/register")).toBe(1);
    const refusals = logs.filter((l) => l.includes("HTTP 404"));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toContain("not the reconciler's API (check --server)");
  }, 15_000);

  test("credentials in the server URL are used but never written", () => {
    expect(redactUrl("http://agent:s3cret@reconciler:50051/base")).toBe("http://reconciler:50051/base");
    expect(redactUrl("https://reconciler:50051")).toBe("https://reconciler:50051");
    const client = new ReconcilerClient("http://agent:s3cret@127.0.0.1:1", "t");
    expect(client.displayUrl).toBe("http://127.0.0.1:1");
  });
});
