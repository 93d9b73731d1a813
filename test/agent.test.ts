// The agent's reporting loop against a real reconciler: events pushed at once,
// spooled while the reconciler is down, and delivered exactly once, in order.
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Agent } from "../agent/agent.ts";
import { HealthMonitor } from "../agent/health.ts";
import { ReconcilerClient } from "../agent/reporter.ts";
import { Spool } from "../agent/spool.ts";
import { getNodeDetail } from "../reconciler/fleet/registry.ts";
import { startReconciler, type Reconciler } from "../reconciler/serve.ts";
import { tempDir, waitFor } from "./support.ts";

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
    expect(new Spool(stateDir).size).toBe(0);
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
