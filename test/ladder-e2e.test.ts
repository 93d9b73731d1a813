// The remediation ladder through the compiled binaries: `navarch serve` with a local pool
// of compiled navarch-node agents on the fake libnvidia-ml, where a reboot restarts the
// agent with a new boot id. Xid 79 (the catalog recommends a reboot): cordoned, drained,
// rebooted and back in service with no new machine, with the reconciler killed (-9) at
// the drain and again during the reboot; the same fault again within the reboot window:
// replaced.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { LocalProvider } from "../reconciler/providers/local/provider.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface NodeView {
  id: string;
  state: string;
  bootId: string | null;
  incidentId: number | null;
  replacementOf: string | null;
}
interface IncidentView {
  nodeId: string;
  outcome: string | null;
  remedy: string | null;
  rebootedAt: number | null;
  backAt: number | null;
}

let fleet: CompiledFleet;
let server: Proc;
const nodesDir = () => join(fleet.dir, "local-nodes");
const list = async () => (await fleet.api<{ nodes: NodeView[] }>("/v1/nodes"))?.nodes ?? [];
const node = async (id: string) => (await list()).find((n) => n.id === id);
const cli = (...args: string[]) => fleet.run([fleet.navarch, ...args, "-s", fleet.url], { NAVARCH_AUTH_TOKEN: fleet.token });
const boots = (id: string) => (JSON.parse(readFileSync(join(nodesDir(), id, "instance.json"), "utf8")) as { boots?: number }).boots ?? 0;

async function killAndRestart(when: string): Promise<void> {
  server.kill("SIGKILL");
  await server.exited;
  server = fleet.startServer();
  await fleet.waitReady();
  console.log(`reconciler killed -9 ${when}, restarted`);
}

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    `  health_check_interval: 1s\nproviders:\n  local:\n    nvml_library: ${FAKE_NVML.full}\n    nodes_dir: ${join(fleet.dir, "local-nodes")}\npools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: 2\n      max_nodes: 2\n    health:\n      drain_timeout: 30s\n      reboot_timeout: 2m\n`,
  );
  server = fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  // The reconciler first, so that it launches nothing after the list below.
  fleet.stop();
  const local = new LocalProvider({ nodesDir: nodesDir(), serverUrl: fleet.url, authToken: fleet.token, agentCommand: ["true"] });
  for (const i of await local.list({})) await local.terminate(i.id);
});

describe("the remediation ladder with compiled binaries", () => {
  let victim: NodeView;

  test("Xid 79: cordoned, drained, rebooted, back in service with no new machine, through two kill -9", async () => {
    const ready = await waitFor(
      "two ready nodes",
      async () => {
        const r = (await list()).filter((n) => n.state === "ready");
        return r.length === 2 ? r : undefined;
      },
      60_000,
    );
    victim = ready[0]!;
    const started = Date.now();
    expect((await cli("fault", "inject", victim.id, "--xid", "79", "--gpu", "2")).code).toBe(0);
    await waitFor(
      "draining or further",
      async () => (["draining", "rebooting", "validating"].includes((await node(victim.id))?.state ?? "") ? true : undefined),
      20_000,
    );
    await killAndRestart("while the node drains or reboots");
    await waitFor(
      "rebooting or back",
      async () => (["rebooting", "validating", "ready"].includes((await node(victim.id))?.state ?? "") ? true : undefined),
      30_000,
    );
    if ((await node(victim.id))?.state === "rebooting") await killAndRestart("while the machine reboots");
    const back = await waitFor(
      "the same node back in service",
      async () => {
        const n = await node(victim.id);
        return n?.state === "ready" && n.incidentId === null ? n : undefined;
      },
      60_000,
    );
    console.log(`Xid 79 → back in service after a reboot: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(back.bootId).not.toBe(victim.bootId);
    expect(boots(victim.id)).toBe(1); // one reboot, however many times the reconciler was killed
    expect(readdirSync(nodesDir(), { withFileTypes: true }).filter((d) => d.isDirectory())).toHaveLength(2); // no new machine
    const incident = (await fleet.api<{ incidents: IncidentView[] }>("/v1/incidents"))!.incidents.find((i) => i.nodeId === victim.id)!;
    expect(incident).toMatchObject({ outcome: "rebooted", remedy: "reboot" });
    expect(incident.backAt! - incident.rebootedAt!).toBeGreaterThanOrEqual(0);
    const text = await cli("incidents");
    expect(text.stdout).toContain("rebooted");
  }, 180_000);

  test("the fault again within the reboot window: replaced, not rebooted", async () => {
    expect((await cli("fault", "inject", victim.id, "--xid", "79", "--gpu", "0")).code).toBe(0);
    const replacement = await waitFor(
      "a ready replacement",
      async () => (await list()).find((n) => n.replacementOf === victim.id && n.state === "ready"),
      60_000,
    );
    expect(replacement.id).not.toBe(victim.id);
    expect((await node(victim.id))?.state).toBe("terminated");
    expect(boots(victim.id)).toBe(1);
  }, 120_000);
});
