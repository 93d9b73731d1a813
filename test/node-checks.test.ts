// The node checks that read sysfs, against fake sysfs trees: InfiniBand / RoCE ports
// (/sys/class/infiniband) and the driver's kernel module (/sys/module/nvidia/version); then both
// through the compiled agent's `check --once`, pointed at the trees with its flags.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { driverVersions, readKernelModuleVersion } from "../agent/checks/driver.ts";
import { InfinibandCheck, readInfinibandPorts } from "../agent/checks/infiniband.ts";
import { CompiledFleet } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { tempDir } from "./support.ts";

interface FakePort {
  state?: string;
  physState?: string;
  rate?: string;
  linkLayer?: string;
  counters?: Partial<Record<"symbol_error" | "link_downed" | "port_rcv_errors", number>>;
}

/** Writes (or rewrites) one port of a fake /sys/class/infiniband. */
function port(root: string, device: string, n: number, p: FakePort = {}): void {
  const dir = join(root, device, "ports", String(n));
  mkdirSync(join(dir, "counters"), { recursive: true });
  writeFileSync(join(dir, "state"), `${p.state ?? "4: ACTIVE"}\n`);
  writeFileSync(join(dir, "phys_state"), `${p.physState ?? "5: LinkUp"}\n`);
  writeFileSync(join(dir, "rate"), `${p.rate ?? "400 Gb/sec (4X NDR)"}\n`);
  writeFileSync(join(dir, "link_layer"), `${p.linkLayer ?? "InfiniBand"}\n`);
  const counters = { symbol_error: 0, link_downed: 0, port_rcv_errors: 0, ...p.counters };
  for (const [name, value] of Object.entries(counters)) writeFileSync(join(dir, "counters", name), `${value}\n`);
}

function fabric(ports: number): string {
  const root = tempDir("navarch-ib-");
  for (let i = 0; i < ports; i++) port(root, `mlx5_${i}`, 1);
  return root;
}

const T0 = Date.parse("2026-01-01T00:00:00Z");

describe("InfiniBand ports", () => {
  test("reads every port's state, rate, link layer and counters", () => {
    const root = fabric(2);
    port(root, "mlx5_1", 1, { linkLayer: "Ethernet", rate: "200 Gb/sec (4X HDR)", counters: { symbol_error: 7 } });
    expect(readInfinibandPorts(root)).toEqual([
      {
        name: "mlx5_0/1",
        state: "4: ACTIVE",
        physState: "5: LinkUp",
        rate: "400 Gb/sec (4X NDR)",
        rateGbps: 400,
        linkLayer: "InfiniBand",
        counters: { symbol_error: 0, link_downed: 0, port_rcv_errors: 0 },
      },
      {
        name: "mlx5_1/1",
        state: "4: ACTIVE",
        physState: "5: LinkUp",
        rate: "200 Gb/sec (4X HDR)",
        rateGbps: 200,
        linkLayer: "Ethernet",
        counters: { symbol_error: 7, link_downed: 0, port_rcv_errors: 0 },
      },
    ]);
    expect(readInfinibandPorts(join(root, "absent"))).toEqual([]);
  });

  test("healthy ports: nothing; a port that was up and went down: unhealthy, naming every such port", () => {
    const root = fabric(4);
    const check = new InfinibandCheck();
    expect(check.evaluate(readInfinibandPorts(root), T0)).toEqual([]);
    port(root, "mlx5_2", 1, { state: "1: DOWN", physState: "3: Disabled" });
    port(root, "mlx5_3", 1, { state: "2: INIT", physState: "5: LinkUp" });
    const found = check.evaluate(readInfinibandPorts(root), T0 + 10_000);
    expect(found).toEqual([
      {
        check: "infiniband",
        code: "port_down",
        severity: "unhealthy",
        action: "contact_support",
        message: "InfiniBand ports down after being up: mlx5_2/1 (1: DOWN, 3: Disabled), mlx5_3/1 (2: INIT, 5: LinkUp)",
      },
    ]);
  });

  test("a port never up (unused, no cable) is not a finding", () => {
    const root = fabric(1);
    port(root, "mlx5_1", 1, { state: "1: DOWN", physState: "2: Polling" });
    expect(new InfinibandCheck().evaluate(readInfinibandPorts(root), T0)).toEqual([]);
  });

  test("a port below the rate: the fastest seen, or the one configured", () => {
    const root = fabric(3);
    port(root, "mlx5_2", 1, { rate: "200 Gb/sec (4X HDR)" });
    expect(new InfinibandCheck().evaluate(readInfinibandPorts(root), T0)).toEqual([
      {
        check: "infiniband",
        code: "rate",
        severity: "degraded",
        action: "contact_support",
        message: "InfiniBand below the expected 400 Gb/sec: mlx5_2/1 at 200 Gb/sec (4X HDR)",
      },
    ]);
    expect(new InfinibandCheck({ expectedRateGbps: 200 }).evaluate(readInfinibandPorts(root), T0)).toEqual([]);
  });

  test("error counters as deltas: the link went down and up, symbol and receive errors above their rate", () => {
    const root = fabric(2);
    port(root, "mlx5_0", 1, { counters: { symbol_error: 1000, link_downed: 3, port_rcv_errors: 5 } });
    const check = new InfinibandCheck();
    expect(check.evaluate(readInfinibandPorts(root), T0)).toEqual([]); // totals from before the agent are history
    port(root, "mlx5_0", 1, { counters: { symbol_error: 1100, link_downed: 4, port_rcv_errors: 8 } });
    port(root, "mlx5_1", 1, { counters: { port_rcv_errors: 50 } });
    expect(check.evaluate(readInfinibandPorts(root), T0 + 60_000).map((f) => [f.code, f.message])).toEqual([
      ["link_downed", "InfiniBand link went down and up again: mlx5_0/1"],
      ["symbol_errors", "InfiniBand symbol errors above 10/min: mlx5_0/1 100/min"],
      ["rcv_errors", "InfiniBand receive errors above 10/min: mlx5_1/1 50/min"],
    ]);
    // Quiet again: the conditions clear.
    expect(check.evaluate(readInfinibandPorts(root), T0 + 120_000)).toEqual([]);
  });
});

describe("driver versions", () => {
  test("the kernel module against libnvidia-ml", () => {
    const sys = tempDir("navarch-sys-");
    expect(readKernelModuleVersion(sys)).toBeUndefined();
    mkdirSync(join(sys, "module", "nvidia"), { recursive: true });
    writeFileSync(join(sys, "module", "nvidia", "version"), "570.86.15\n");
    expect(readKernelModuleVersion(sys)).toBe("570.86.15");
    expect(driverVersions("570.86.15", "570.86.15")).toEqual([]);
    expect(driverVersions("580.95.05", "570.86.15")).toEqual([
      {
        check: "driver",
        code: "version_mismatch",
        severity: "unhealthy",
        action: "reboot",
        message: "the NVIDIA kernel module is 570.86.15 but libnvidia-ml is 580.95.05 (a driver upgrade without a reboot?)",
      },
    ]);
    expect(driverVersions(undefined, "570.86.15")).toEqual([]);
  });
});

describe("through the compiled agent", () => {
  let fleet: CompiledFleet;
  beforeAll(async () => {
    buildFakeNvml();
    fleet = await CompiledFleet.create();
  }, 240_000);

  test("check --once reports a down port and a driver mismatch from the trees it is pointed at", async () => {
    const ib = fabric(2);
    const sys = tempDir("navarch-sys-");
    mkdirSync(join(sys, "module", "nvidia"), { recursive: true });
    writeFileSync(join(sys, "module", "nvidia", "version"), "570.86.15\n");
    port(ib, "mlx5_1", 1, { rate: "100 Gb/sec (4X EDR)" });
    const r = await fleet.run(
      [
        fleet.navarchNode,
        "check",
        "--once",
        "-o",
        "json",
        "--nvml-library",
        FAKE_NVML.full,
        "--kmsg-path",
        "none",
        "--infiniband-dir",
        ib,
        "--sysfs-root",
        sys,
      ],
      { FAKE_NVML_STATE: "/dev/null" },
    );
    expect(r.code).toBe(2);
    const out = JSON.parse(r.stdout) as { findings: { check: string; code: string; severity: string }[] };
    expect(out.findings.map((f) => `${f.check}/${f.code}/${f.severity}`).sort()).toEqual(["driver/version_mismatch/unhealthy", "infiniband/rate/degraded"]);
  }, 30_000);
});
