// The main story with the compiled binaries and real processes: `navarch serve`
// brings a local pool up as navarch-node processes with fake GPUs; `navarch fault
// inject NODE --xid 79` breaks one; the reconciler cordons, drains, terminates and
// replaces it, and the replacement becomes Ready. Operator actions work through
// the CLI, and a human's uncordon cancels the reconciler's incident.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CompiledFleet } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface Node {
  id: string;
  state: string;
  replacementOf: string | null;
  incidentId: number | null;
  cordonedBy: string | null;
  stateReason: string | null;
}

let fleet: CompiledFleet;
const list = async () => (await fleet.api<{ nodes: Node[] }>("/v1/nodes"))?.nodes ?? [];
const cli = (...args: string[]) => fleet.run([fleet.navarch, ...args, "-s", fleet.url], { NAVARCH_AUTH_TOKEN: fleet.token });

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    `  health_check_interval: 2s\nproviders:\n  local:\n    nvml_library: ${FAKE_NVML.full}\npools:\n  - name: gpu\n    provider: local\n    instance_type: local-4gpu\n    region: local\n    scaling:\n      min_nodes: 2\n      max_nodes: 3\n    health:\n      drain_timeout: 30s\n      remediation: replace\n`,
  );
  fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  // The local nodes are detached processes: terminate them through the provider's records.
  await fleet.terminateLocalNodes();
  fleet.stop();
});

describe("the main story with compiled binaries", () => {
  test("the pool comes up; an injected Xid 79 gets the node replaced", async () => {
    const ready = await waitFor(
      "two ready nodes",
      async () => {
        const nodes = (await list()).filter((n) => n.state === "ready");
        return nodes.length === 2 ? nodes : undefined;
      },
      30_000,
    );
    const victim = ready[0]!;
    const injected = await cli("fault", "inject", victim.id, "--xid", "79", "--gpu", "2");
    expect(injected).toMatchObject({ code: 0 });
    const replacement = await waitFor(
      "a ready replacement",
      async () => (await list()).find((n) => n.replacementOf === victim.id && n.state === "ready"),
      30_000,
    );
    const old = (await list()).find((n) => n.id === victim.id);
    expect(old?.state).toBe("terminated");
    const incidents = await cli("incidents");
    expect(incidents.stdout).toContain(victim.id);
    const inc = (await fleet.api<{
      incidents: {
        nodeId: string;
        outcome: string;
        cordonedAt: number;
        drainedAt: number;
        terminatedAt: number;
        replacementReadyAt: number;
        faultAt: number;
      }[];
    }>("/v1/incidents"))!.incidents.find((i) => i.nodeId === victim.id);
    expect(inc?.outcome).toBe("replaced");
    expect(inc!.cordonedAt - inc!.faultAt).toBeLessThan(5000);
    expect(replacement.id).not.toBe(victim.id);
    expect((await list()).filter((n) => n.state === "ready")).toHaveLength(2);
  }, 90_000);

  test("operators cordon and uncordon from the CLI; a human's uncordon cancels the incident", async () => {
    const [node] = (await list()).filter((n) => n.state === "ready");
    expect((await cli("cordon", node!.id, "--reason", "checking cables")).code).toBe(0);
    await waitFor("cordoned", async () => ((await list()).find((n) => n.id === node!.id)?.state === "cordoned" ? true : undefined));
    // Our loop never uncordons a human's cordon.
    await Bun.sleep(2500);
    expect((await list()).find((n) => n.id === node!.id)).toMatchObject({ state: "cordoned", cordonedBy: expect.stringContaining("human:") });
    expect((await cli("uncordon", node!.id)).code).toBe(0);
    await waitFor("ready again", async () => ((await list()).find((n) => n.id === node!.id)?.state === "ready" ? true : undefined));

    const bad = await cli("uncordon", node!.id);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("only a cordoned, draining or held node can be uncordoned");
    const unknown = await cli("cordon", "no-such-node");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("not found");
  }, 60_000);
});
