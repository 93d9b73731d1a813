// The safety core through the compiled binaries, as the adversarial run found the holes:
// `navarch serve` with a local pool of compiled navarch-node agents on the fake
// libnvidia-ml. A config edit that shrinks a pool; a registration into a full pool and
// one that claims another pool; a database restored from an older backup after a GPU
// fell off the bus.
import { afterEach, describe, expect, test } from "bun:test";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LocalProvider } from "../reconciler/providers/local/provider.ts";
import { openStore } from "../reconciler/store/store.ts";
import { auditLog, operations } from "../schema/db.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface NodeView {
  id: string;
  state: string;
  origin: string;
  pool: string | null;
  provider: string | null;
  instanceType: string | null;
  replacementOf: string | null;
}

let fleet: CompiledFleet | undefined;
afterEach(async () => {
  if (fleet === undefined) return;
  // The reconciler first, so that it launches nothing after the list below.
  fleet.stop();
  const local = new LocalProvider({ nodesDir: join(fleet.dir, "local-nodes"), serverUrl: fleet.url, authToken: fleet.token, agentCommand: ["true"] });
  for (const i of await local.list({})) await local.terminate(i.id);
  fleet = undefined;
});

/** A fleet whose local nodes live outside the data directory (so the data directory can be replaced). */
async function start(min: number, max: number, health = ""): Promise<{ f: CompiledFleet; server: Proc }> {
  buildFakeNvml();
  const f = (fleet = await CompiledFleet.create());
  configure(f, min, max, health);
  const server = f.startServer();
  await f.waitReady();
  return { f, server };
}

function configure(f: CompiledFleet, min: number, max: number, health = "") {
  f.writeConfig(
    `  health_check_interval: 1s\nproviders:\n  local:\n    nvml_library: ${FAKE_NVML.full}\n    nodes_dir: ${join(f.dir, "local-nodes")}\npools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: ${min}\n      max_nodes: ${max}\n    health:\n      drain_timeout: 10s\n${health}`,
  );
}

async function restart(f: CompiledFleet, server: Proc): Promise<Proc> {
  server.kill("SIGTERM");
  await server.exited;
  const next = f.startServer();
  await f.waitReady();
  return next;
}

const list = async (f: CompiledFleet) => (await f.api<{ nodes: NodeView[] }>("/v1/nodes"))?.nodes ?? [];
const ready = async (f: CompiledFleet) => (await list(f)).filter((n) => n.state === "ready");

async function launches(f: CompiledFleet): Promise<number> {
  const store = await openStore({ url: `file:${join(f.dir, "data", "navarch.db")}` });
  const n = (await store.db.select().from(operations)).filter((o) => o.kind === "launch").length;
  store.close();
  return n;
}

describe("through the compiled binaries", () => {
  test("a pool at 3/3 restarted at 2/2 loses exactly one node, drained first; nothing is launched", async () => {
    const { f, server } = await start(3, 3);
    await waitFor("three ready nodes", async () => ((await ready(f)).length === 3 ? true : undefined), 60_000);
    configure(f, 2, 2);
    await restart(f, server);
    const deadline = Date.now() + 25_000;
    let fewest = 3;
    while (Date.now() < deadline) {
      fewest = Math.min(fewest, (await ready(f)).length);
      await Bun.sleep(200);
    }
    const nodes = await list(f);
    expect({
      fewest,
      ready: nodes.filter((n) => n.state === "ready").length,
      terminated: nodes.filter((n) => n.state === "terminated").length,
      total: nodes.length,
    }).toEqual({
      fewest: 2,
      ready: 2,
      terminated: 1,
      total: 3,
    });
    expect(await launches(f)).toBe(3);
    expect(f.output.get("navarch")).toContain("clamped to max_nodes 2: 3 → 2");
  }, 120_000);

  test("a machine nobody launched registers into the full pool: monitored, nothing removed; a node cannot move itself", async () => {
    const { f } = await start(2, 2);
    const [a] = await waitFor(
      "two ready nodes",
      async () => {
        const r = await ready(f);
        return r.length === 2 ? r : undefined;
      },
      60_000,
    );
    const register = (body: Record<string, unknown>) =>
      fetch(`${f.url}/v1/register`, {
        method: "POST",
        headers: { Authorization: `Bearer ${f.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({
          hostname: "h",
          agentVersion: "x",
          spoolId: "00000000-0000-4000-8000-00000000000a",
          nvml: { available: true },
          gpus: [],
          ...body,
        }),
      });
    expect((await register({ nodeId: "intruder", bootId: "b", pool: "gpu", provider: "local", instanceType: "local-4gpu" })).status).toBe(200);
    expect((await register({ nodeId: a!.id, bootId: "b2", pool: "elsewhere", provider: "aws", instanceType: "p5.48xlarge" })).status).toBe(200);
    await Bun.sleep(8_000);
    const nodes = await list(f);
    expect(nodes.find((n) => n.id === "intruder")).toMatchObject({ origin: "registered", pool: "gpu" });
    expect(nodes.find((n) => n.id === a!.id)).toMatchObject({ origin: "launched", pool: "gpu", provider: "local", instanceType: "local-4gpu" });
    expect(nodes.filter((n) => n.origin === "launched" && n.state !== "terminated")).toHaveLength(2);
    expect(nodes.filter((n) => n.state === "terminated" || n.state === "terminating")).toEqual([]);
    const table = await f.run([f.navarch, "nodes", "list", "-s", f.url], { NAVARCH_AUTH_TOKEN: f.token });
    expect(table.stdout).toMatch(/intruder\s+gpu\s+monitored/);
  }, 120_000);

  test("restored from a backup taken before a GPU fell off: the node never comes back into service, nothing healthy is replaced", async () => {
    // Held at once (no reboot rung, no replacement): what is tested is that the restore forgets nothing.
    const { f, server } = await start(2, 2, "      auto_replace: false\n      remediation: replace\n");
    const [victim] = await waitFor(
      "two ready nodes",
      async () => {
        const r = await ready(f);
        return r.length === 2 ? r : undefined;
      },
      60_000,
    );
    const backup = await f.run([f.navarch, "backup", join(f.dir, "before-the-fault.db"), "--config", "navarch.yaml"]);
    expect(backup).toMatchObject({ code: 0 });
    expect((await f.run([f.navarch, "fault", "inject", victim!.id, "--xid", "79", "--gpu", "1", "-s", f.url], { NAVARCH_AUTH_TOKEN: f.token })).code).toBe(0);
    await waitFor("the victim held", async () => ((await list(f)).find((n) => n.id === victim!.id)?.state === "held" ? true : undefined), 30_000);
    // Restore: stop serve, put the copy in place (and its stale WAL away), start again.
    server.kill("SIGTERM");
    await server.exited;
    const db = join(f.dir, "data", "navarch.db");
    for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
    copyFileSync(join(f.dir, "before-the-fault.db"), db);
    const restoredAt = Date.now();
    f.startServer();
    await f.waitReady();
    // The copy says ready; within a heartbeat the agent notices the reconciler forgot, re-sends
    // its open finding, and the node leaves service again.
    await waitFor(
      "the victim out of service again",
      async () => ((await list(f)).find((n) => n.id === victim!.id)?.state !== "ready" ? true : undefined),
      10_000,
    );
    const outAfterMs = Date.now() - restoredAt;
    await Bun.sleep(6_000);
    const nodes = await list(f);
    expect(nodes.find((n) => n.id === victim!.id)?.state).toBe("held");
    expect(nodes.filter((n) => n.id !== victim!.id).map((n) => n.state)).toEqual(["ready"]);
    expect(await launches(f)).toBe(2);
    const store = await openStore({ url: `file:${db}` });
    const backToReady = (await store.db.select().from(auditLog)).filter(
      (a) => a.target === victim!.id && a.at >= restoredAt && a.action === "transition" && (a.details as { to?: string }).to === "ready",
    );
    store.close();
    expect(backToReady).toEqual([]);
    console.log(`restored database: the broken node was out of service again ${outAfterMs} ms after the restart`);
    expect(f.output.get(victim!.id) ?? "").toBeDefined();
  }, 150_000);
});
