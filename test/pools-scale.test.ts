// The seed's Pattern 2 ("Navarch only provisions nodes when explicitly requested") through the
// compiled binaries: `navarch pools scale POOL --nodes N` sets the size of a pool without an
// autoscaler; the pool goes there and stays there through a reconciler restart and a
// replacement; the request is audited; what is outside the bounds, or a pool whose autoscaler
// decides its size, is refused with the reason.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface Node {
  id: string;
  pool: string;
  state: string;
  replacementOf: string | null;
}

let fleet: CompiledFleet;
let server: Proc;
const nodes = async () => (await fleet.api<{ nodes: Node[] }>("/v1/nodes"))?.nodes ?? [];
const live = async (pool: string) => (await nodes()).filter((n) => n.pool === pool && !["terminated", "failed", "terminating"].includes(n.state));
const ready = async (pool: string) => (await live(pool)).filter((n) => n.state === "ready");
const cli = (...args: string[]) => fleet.run([fleet.navarch, ...args, "-s", fleet.url], { NAVARCH_AUTH_TOKEN: fleet.token, NAVARCH_ACTOR: "alice@ops" });

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  const pool = (name: string, extra: string) =>
    `  - name: ${name}\n    provider: local\n    instance_type: local-2gpu\n    region: local\n    health:\n      drain_timeout: 10s\n      remediation: replace\n${extra}`;
  fleet.writeConfig(
    `  health_check_interval: 2s\n  autoscale_interval: 1s\nproviders:\n  local:\n    nvml_library: ${FAKE_NVML.full}\npools:\n` +
      // The seed's Pattern 2: bounds, no autoscaler.
      pool("manual", "    scaling:\n      min_nodes: 0\n      max_nodes: 3\n      cooldown_period: 1h\n") +
      pool("auto", "    scaling:\n      min_nodes: 0\n      max_nodes: 2\n      autoscaler:\n        type: reactive\n"),
  );
  server = fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(async () => {
  await fleet.terminateLocalNodes();
  fleet.stop();
});

describe("navarch pools scale", () => {
  test("refuses what it cannot hold, with the reason", async () => {
    const outside = await cli("pools", "scale", "manual", "--nodes", "4");
    expect(outside.code).toBe(1);
    expect(outside.stderr).toContain("pool manual: 4 nodes is outside scaling.min_nodes..max_nodes (0..3); change the bounds first");
    const autoscaled = await cli("pools", "scale", "auto", "--nodes", "1");
    expect(autoscaled.code).toBe(1);
    expect(autoscaled.stderr).toContain("pool auto has a reactive autoscaler, which decides its size");
    for (const bad of ["-1", "two", "1.5"]) {
      const r = await cli("pools", "scale", "manual", `--nodes=${bad}`);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--nodes: expected a whole number of nodes from 0 to 100000");
    }
    expect((await cli("pools", "scale", "nowhere", "--nodes", "1")).stderr).toContain("pool nowhere not found");
    expect(await live("manual")).toEqual([]);
  });

  test("sets the size; it holds through a restart and a replacement; audited", async () => {
    const asked = await cli("pools", "scale", "manual", "--nodes", "2", "--reason", "a training run");
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stdout).toContain("pool manual: scaling to 2 nodes");
    await waitFor("two ready nodes in manual", async () => ((await ready("manual")).length === 2 ? true : undefined), 45_000);
    const first = (await nodes()).filter((n) => n.pool === "manual").map((n) => n.id);
    expect(first).toHaveLength(2);
    const list = await cli("pools", "list");
    expect(list.stdout).toMatch(/manual\s+2\s+0\s+3\s/);
    expect((await cli("pools", "get", "manual")).stdout).toContain("Autoscaler:  none: held at 2, requested by alice@ops");

    // A restart: the request is in the database; nothing more is launched, nothing removed.
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    server = fleet.startServer();
    await fleet.waitReady();
    await Bun.sleep(4000); // several passes and autoscale intervals
    expect((await nodes()).filter((n) => n.pool === "manual").map((n) => n.id)).toEqual(first);
    expect(await ready("manual")).toHaveLength(2);

    // A replacement keeps the size: the broken node goes, one node comes in its place.
    const victim = first[0]!;
    expect((await cli("fault", "inject", victim, "--xid", "79")).code).toBe(0);
    const replacement = await waitFor(
      "a ready replacement",
      async () => (await nodes()).find((n) => n.replacementOf === victim && n.state === "ready"),
      60_000,
    );
    await waitFor("the victim terminated", async () => ((await nodes()).find((n) => n.id === victim)?.state === "terminated" ? true : undefined), 30_000);
    await Bun.sleep(3000);
    expect((await live("manual")).map((n) => n.id).sort()).toEqual([first[1]!, replacement.id].sort());
    expect((await nodes()).filter((n) => n.pool === "manual")).toHaveLength(3); // two launched for the request, one replacement

    const audit = await fleet.api<{ audit: { actor: string; action: string; target: string; details: Record<string, unknown> }[] }>("/v1/audit?limit=1000");
    expect(audit!.audit.filter((a) => a.action === "scale_request")).toEqual([
      expect.objectContaining({ actor: "alice@ops", target: "pool:manual", details: { from: null, to: 2, reason: "a training run" } }),
    ]);
    expect(
      audit!.audit.some((a) => a.action === "scale" && a.target === "pool:manual" && String(a.details.reason).includes("2 nodes requested by alice@ops")),
    ).toBe(true);

    // Down again, on request: cooldown_period (1h here) does not hold back what an operator asked for.
    expect((await cli("pools", "scale", "manual", "--nodes", "1")).code).toBe(0);
    await waitFor("one node left in manual", async () => ((await live("manual")).length === 1 ? true : undefined), 45_000);
  }, 240_000);
});
