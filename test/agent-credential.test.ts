// The agent's side of bootstrap credentials, against a real reconciler: it registers once
// with a one-time bootstrap token, keeps the credential it gets back (mode 0600, in its
// state directory) and uses it for every later call, also after a restart; a credential
// the reconciler no longer knows sends it back to the token it was started with.
import { afterEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent } from "../agent/agent.ts";
import { HealthMonitor } from "../agent/health-monitor.ts";
import { ReconcilerClient } from "../agent/reporter.ts";
import { Spool } from "../agent/spool.ts";
import { hashToken, mintBootstrapToken } from "../reconciler/auth/credentials.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { bootstrapTokens, nodeCredentials, nodes } from "../schema/db.ts";
import { tempDir, waitFor } from "./support.ts";

process.env.NAVARCH_CREDENTIAL_TEST_TOKEN = "credential-test-admin-token";
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function reconciler(): Promise<Reconciler> {
  const dataDir = tempDir();
  const rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_CREDENTIAL_TEST_TOKEN",
      heartbeatIntervalSeconds: 1,
    },
    () => undefined,
  );
  cleanups.push(() => rec.stop());
  return rec;
}

async function startAgent(url: string, token: string, stateDir: string, nodeId: string) {
  const monitor = new HealthMonitor({ libraryPath: "/nonexistent/libnvidia-ml.so.1", kmsgPath: null, onFinding: () => undefined, log: () => undefined });
  await monitor.start();
  const lines: string[] = [];
  const client = new ReconcilerClient(url, token, 2000);
  const agent = new Agent({
    identity: { nodeId, hostname: "h", bootId: "boot-1" },
    client,
    spool: new Spool(stateDir),
    gpus: monitor,
    log: (l) => lines.push(l),
    retryMinMs: 50,
    retryMaxMs: 200,
    credentialFile: join(stateDir, "node-token"),
  });
  agent.start();
  const stop = async () => {
    await agent.stop();
    monitor.close();
  };
  cleanups.push(stop);
  return { agent, client, lines, stop };
}

const heartbeatOf = async (rec: Reconciler, id: string) => (await rec.store.db.select().from(nodes).where(eq(nodes.id, id)))[0]?.lastHeartbeatAt ?? 0;

describe("agent credentials", () => {
  test("registers once with its bootstrap token, then reports with its own credential, also after a restart", async () => {
    const rec = await reconciler();
    const { token } = await mintBootstrapToken(rec.store.db, "cred-1", { at: Date.now(), ttlMs: 60_000, createdBy: "test" });
    const stateDir = join(tempDir(), "state");
    const a = await startAgent(rec.url, token, stateDir, "cred-1");
    await waitFor("registered with its credential", () => (a.agent.usingNodeCredential ? true : undefined));
    const file = join(stateDir, "node-token");
    expect((statSync(file).mode & 0o777).toString(8)).toBe("600");
    const credential = readFileSync(file, "utf8").trim();
    // Stored hashed, never in plain text; the bootstrap token is spent.
    const [row] = await rec.store.db.select().from(nodeCredentials).where(eq(nodeCredentials.nodeId, "cred-1"));
    expect(row?.tokenHash).toBe(hashToken(credential));
    const [spent] = await rec.store.db
      .select()
      .from(bootstrapTokens)
      .where(eq(bootstrapTokens.tokenHash, hashToken(token)));
    expect(spent?.usedAt).not.toBeNull();
    const beat = await heartbeatOf(rec, "cred-1");
    await waitFor("a heartbeat with the credential", async () => ((await heartbeatOf(rec, "cred-1")) > beat ? true : undefined), 5000);
    expect(a.lines.join("\n")).not.toContain(token);
    expect(a.lines.join("\n")).not.toContain(credential);
    await a.stop();

    // Restarted with the same (spent) bootstrap token: the kept credential is what it sends.
    const b = await startAgent(rec.url, token, stateDir, "cred-1");
    expect(b.agent.usingNodeCredential).toBe(true);
    const before = await heartbeatOf(rec, "cred-1");
    await waitFor("heartbeats after the restart", async () => ((await heartbeatOf(rec, "cred-1")) > before ? true : undefined), 5000);
    expect(b.lines.join("\n")).toContain("registered as cred-1");
    expect(b.lines.join("\n")).not.toContain("401");
  }, 30_000);

  test("a credential the reconciler does not know sends the agent back to the token it was started with", async () => {
    const rec = await reconciler();
    const stateDir = join(tempDir(), "state");
    Bun.spawnSync(["mkdir", "-p", stateDir]);
    writeFileSync(join(stateDir, "node-token"), "a-credential-from-another-database-0123456789\n", { mode: 0o600 });
    const a = await startAgent(rec.url, "credential-test-admin-token", stateDir, "cred-2");
    expect(a.agent.usingNodeCredential).toBe(true);
    await waitFor("registered with the admin token", async () => ((await heartbeatOf(rec, "cred-2")) > 0 ? true : undefined), 5000);
    expect(a.agent.usingNodeCredential).toBe(false);
    expect(a.lines.join("\n")).toContain("the reconciler refused this node's credential");
  }, 30_000);
});
