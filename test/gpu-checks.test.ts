// Every GPU check (agent/checks/, listed in gpu-check-list.ts) over synthetic readings: what it finds,
// what it does not, and what it remembers between evaluations. Then the runner: tiers, GPUs NVML
// can no longer read, missing GPUs and the fabric manager.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { GpuFinding } from "../agent/checks/finding.ts";
import type { GpuCheck } from "../agent/checks/gpu-check.ts";
import { clocks } from "../agent/checks/clocks.ts";
import { ecc } from "../agent/checks/ecc.ts";
import { fabric } from "../agent/checks/fabric.ts";
import { FABRIC_MANAGER_GRACE_MS, fabricManager } from "../agent/checks/fabric-manager.ts";
import { LOST_GPU_ACTION, unreadableGpu } from "../agent/checks/gpu-lost.ts";
import { CheckMemory } from "../agent/checks/memory.ts";
import { nvlink } from "../agent/checks/nvlink.ts";
import { pcie } from "../agent/checks/pcie.ts";
import { persistenceMode } from "../agent/checks/persistence-mode.ts";
import { recoveryAction } from "../agent/checks/recovery-action.ts";
import { GPU_CHECKS } from "../agent/checks/gpu-check-list.ts";
import { retiredPages } from "../agent/checks/retired-pages.ts";
import { rowRemap } from "../agent/checks/row-remap.ts";
import { GpuCheckRunner } from "../agent/checks/run.ts";
import { thermal } from "../agent/checks/thermal.ts";
import { nvmlErrorInfo } from "../agent/nvml/errors.ts";
import type { DeviceSnapshot } from "../agent/nvml/types.ts";
import { CHECKS } from "../schema/checks.ts";
import { lookupXid } from "../schema/xid-catalog.ts";
import { REPO_ROOT } from "./support.ts";
import { busIdOf, fabricState, failedWith, healthyDevice, notSupported, ok, snapshotOf } from "./synthetic-gpu.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

/** Runs one check over a sequence of readings of GPU 0 (one memory), returning each evaluation's findings. */
function evaluate(check: GpuCheck, ...steps: { at?: number; device: DeviceSnapshot }[]): GpuFinding[][] {
  const memory = new CheckMemory();
  return steps.map((s, i) => check.evaluate(s.device, { at: s.at ?? T0 + i * 10_000, label: "GPU 0 (00000000:18:00.0)", memory }));
}
const once = (check: GpuCheck, changes: Partial<DeviceSnapshot>) => evaluate(check, { device: healthyDevice(0, changes) })[0]!;
const codes = (findings: GpuFinding[]) => findings.map((f) => `${f.check}/${f.code}/${f.severity}`);

describe("the registry", () => {
  test("a healthy GPU: no check finds anything", () => {
    for (const check of GPU_CHECKS) expect([check.name, once(check, {})]).toEqual([check.name, []]);
  });

  test("every check module under agent/checks is in the registry, and every check is in the catalog", async () => {
    const dir = join(REPO_ROOT, "agent/checks");
    const modules: GpuCheck[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
      const mod = (await import(join(dir, file))) as Record<string, unknown>;
      for (const value of Object.values(mod)) {
        if (typeof value === "object" && value !== null && "evaluate" in value && "tier" in value && "name" in value) modules.push(value as GpuCheck);
      }
    }
    expect(modules.map((m) => m.name).sort()).toEqual(GPU_CHECKS.map((c) => c.name).sort());
    for (const check of GPU_CHECKS) expect(Object.hasOwn(CHECKS, check.name)).toBe(true);
  });

  test("the fast tier is temperature and clocks: cheap readings, every second", () => {
    expect(GPU_CHECKS.filter((c) => c.tier === "fast").map((c) => c.name)).toEqual(["thermal", "clocks"]);
  });
});

describe("recovery_action", () => {
  test("the driver's verdict, verbatim", () => {
    expect(codes(once(recoveryAction, { recoveryAction: ok({ value: 2, name: "node_reboot" }) }))).toEqual(["recovery_action/node_reboot/unhealthy"]);
    expect(once(recoveryAction, { recoveryAction: ok({ value: 5, name: "drain_p2p" }) })[0]).toMatchObject({ severity: "degraded", action: "restart_app" });
    expect(once(recoveryAction, { recoveryAction: notSupported("nvmlDeviceGetFieldValues") })).toEqual([]);
  });
});

describe("ecc", () => {
  test("any uncorrectable error is unhealthy", () => {
    expect(
      once(ecc, {
        ecc: { mode: ok({ current: true, pending: true }), volatile: ok({ corrected: 0, uncorrected: 3 }), aggregate: ok({ corrected: 0, uncorrected: 3 }) },
      })[0],
    ).toMatchObject({
      check: "ecc",
      code: "dbe",
      severity: "unhealthy",
      action: "reset_gpu",
      message: "GPU 0 (00000000:18:00.0): 3 uncorrectable (double-bit) ECC errors since the last reset",
    });
  });

  test("corrected errors count as a rate, not a total", () => {
    const withSbe = (corrected: number) =>
      healthyDevice(0, {
        ecc: { mode: ok({ current: true, pending: true }), volatile: ok({ corrected, uncorrected: 0 }), aggregate: ok({ corrected, uncorrected: 0 }) },
      });
    const [first, slow, fast] = evaluate(
      ecc,
      { at: T0, device: withSbe(50_000) },
      { at: T0 + 3_600_000, device: withSbe(50_500) },
      { at: T0 + 3_960_000, device: withSbe(51_000) },
    );
    expect(first).toEqual([]); // a large total on the first reading is history, not a rate
    expect(slow).toEqual([]); // 500/h
    expect(codes(fast!)).toEqual(["ecc/sbe_rate/degraded"]); // 500 in 6 min: 5000/h
  });
});

describe("row_remap and retired_pages", () => {
  test("a failed remap is unhealthy and asks for a replacement; a pending one a reset", () => {
    expect(once(rowRemap, { remappedRows: ok({ correctable: 0, uncorrectable: 4, pending: false, failed: true }) })[0]).toMatchObject({
      code: "failed",
      severity: "unhealthy",
      action: "replace",
    });
    expect(once(rowRemap, { remappedRows: ok({ correctable: 0, uncorrectable: 1, pending: true, failed: false }) })[0]).toMatchObject({
      code: "pending",
      severity: "degraded",
      action: "reset_gpu",
    });
  });

  test("page retirement speaks only for GPUs that do not remap rows", () => {
    const pending = ok({ multipleSbe: 1, dbe: 2, pending: true });
    expect(codes(once(retiredPages, { remappedRows: notSupported("nvmlDeviceGetRemappedRows"), retiredPages: pending }))).toEqual([
      "retired_pages/pending/degraded",
    ]);
    expect(once(retiredPages, { retiredPages: pending })).toEqual([]);
  });
});

describe("thermal", () => {
  test("at the slowdown threshold: degraded; at shutdown: unhealthy", () => {
    expect(codes(once(thermal, { temperatureC: ok(89) }))).toEqual(["thermal/slowdown/degraded"]);
    expect(codes(once(thermal, { temperatureC: ok(92) }))).toEqual(["thermal/shutdown/unhealthy"]);
    expect(once(thermal, { temperatureC: ok(88) })).toEqual([]);
  });

  test("a margin at or below 0 is the slowdown point, whatever the thresholds say", () => {
    expect(
      once(thermal, {
        temperatureC: ok(80),
        marginTemperatureC: ok(0),
        thresholds: { shutdownC: ok(92), slowdownC: notSupported("x"), memMaxC: ok(95), gpuMaxC: ok(87) },
      })[0]!.message,
    ).toBe("GPU 0 (00000000:18:00.0): 80°C, at its slowdown threshold (margin 0°C)");
  });

  test("with a readable slowdown threshold the margin is not judged: a GPU cooled below it clears at once", () => {
    // The fast tier reads the margin only where the threshold is unknown, so here it is the
    // full tier's reading from while the GPU was hot; it must not hold the condition open.
    const cooled = { temperatureC: ok(34), marginTemperatureC: ok(-3) };
    expect(once(thermal, cooled)).toEqual([]);
    expect(once(thermal, { temperatureC: ok(89), marginTemperatureC: ok(53) })[0]!.message).toBe(
      "GPU 0 (00000000:18:00.0): 89°C, at its slowdown threshold 89°C",
    );
  });

  test("no temperature, no verdict", () => {
    expect(once(thermal, { temperatureC: notSupported("nvmlDeviceGetTemperatureV") })).toEqual([]);
  });
});

describe("clocks", () => {
  const withMask = (mask: number) => healthyDevice(0, { clocksEventReasons: ok({ mask, reasons: [], fn: "nvmlDeviceGetCurrentClocksEventReasons" }) });

  test("HW slowdown in most samples over the window, never on one sample", () => {
    const steps = Array.from({ length: 6 }, (_, i) => ({ at: T0 + i * 1000, device: withMask(0x8) }));
    const results = evaluate(clocks, ...steps);
    expect(results.slice(0, 4).flat()).toEqual([]); // fewer than 5 samples: no verdict
    expect(codes(results[4]!)).toEqual(["clocks/hw_slowdown/degraded"]);
    expect(results[5]![0]!.message).toContain("(now: HwSlowdown)");
  });

  test("below 60 % of the samples: nothing; samples older than 10 minutes no longer count", () => {
    const mixed = [0x8, 0x1, 0x1, 0x8, 0x1, 0x1].map((mask, i) => ({ at: T0 + i * 1000, device: withMask(mask) }));
    expect(evaluate(clocks, ...mixed).flat()).toEqual([]);
    const memory = new CheckMemory();
    const ctx = (at: number) => ({ at, label: "GPU 0", memory });
    for (let i = 0; i < 10; i++) clocks.evaluate(withMask(0x8), ctx(T0 + i * 1000));
    // Eleven minutes of idle clocks later, the old slowdown is out of the window.
    for (let i = 0; i < 5; i++) expect(clocks.evaluate(withMask(0x1), ctx(T0 + 11 * 60_000 + i * 1000))).toEqual([]);
  });
});

describe("nvlink", () => {
  const withLinks = (states: boolean[], errors = 0) =>
    healthyDevice(0, {
      nvlink: ok(states.map((active, link) => ({ link, active, counters: { replay: ok(errors), recovery: ok(0), crcFlit: ok(0), crcData: ok(0) } }))),
    });

  test("a link down while others are up is unhealthy; a GPU with no active link has no NVLink in use", () => {
    expect(once(nvlink, { nvlink: withLinks([true, false, true, false]).nvlink })[0]).toMatchObject({
      code: "link_down",
      severity: "unhealthy",
      message: "GPU 0 (00000000:18:00.0): NVLink links 1, 3 inactive (2 of 4 up)",
    });
    expect(once(nvlink, { nvlink: withLinks([false, false]).nvlink })).toEqual([]);
  });

  test("errors as a rate per link; reads without the counters keep the last verdict", () => {
    const noCounters = healthyDevice(0, { nvlink: ok([{ link: 0, active: true, counters: null }]) });
    const [first, quiet, high, stillHigh] = evaluate(
      nvlink,
      { at: T0, device: withLinks([true], 0) },
      { at: T0 + 10_000, device: noCounters },
      { at: T0 + 60_000, device: withLinks([true], 500) },
      { at: T0 + 70_000, device: noCounters },
    );
    expect([first, quiet]).toEqual([[], []]);
    expect(high![0]).toMatchObject({ code: "errors", message: "GPU 0 (00000000:18:00.0): NVLink 0 errors at 500/min (limit 100/min)" });
    expect(stillHigh).toEqual(high!);
  });
});

describe("pcie", () => {
  test("a narrow link counts only while the GPU is busy", () => {
    const narrow = { ...healthyDevice(0).pcie, currentWidth: ok(8) };
    expect(once(pcie, { pcie: narrow })).toEqual([]);
    expect(codes(once(pcie, { pcie: narrow, utilization: ok({ gpuPct: 90, memoryPct: 10 }) }))).toEqual(["pcie/width/degraded"]);
  });

  test("replays as a rate", () => {
    const replays = (n: number) => healthyDevice(0, { pcie: { ...healthyDevice(0).pcie, replayCounter: ok(n) } });
    const [, second] = evaluate(pcie, { at: T0, device: replays(10) }, { at: T0 + 60_000, device: replays(100) });
    expect(codes(second!)).toEqual(["pcie/replays/degraded"]);
  });
});

describe("fabric", () => {
  test("a finished registration that failed is unhealthy; the health summary is reported", () => {
    expect(codes(once(fabric, { fabric: fabricState("completed", { status: 27, statusName: "NOT_READY" }) }))).toEqual([
      "fabric/registration_failed/unhealthy",
    ]);
    expect(codes(once(fabric, { fabric: fabricState("completed", { healthSummaryName: "limited_capacity" }) }))).toEqual(["fabric/limited_capacity/degraded"]);
    // Still registering is the fabric manager's business (node-wide, with a grace period).
    expect(once(fabric, { fabric: fabricState("in_progress") })).toEqual([]);
    expect(once(fabric, { fabric: notSupported("nvmlDeviceGetGpuFabricInfoV") })).toEqual([]);
  });
});

describe("persistence_mode", () => {
  test("off is degraded, with the fix in the message", () => {
    expect(once(persistenceMode, { persistenceMode: ok(false) })[0]!.message).toContain("enable nvidia-persistenced");
  });
});

describe("the fabric manager (node-wide)", () => {
  const devices = (state: "not_started" | "in_progress" | "completed", n = 8) =>
    Array.from({ length: n }, (_, i) => healthyDevice(i, { fabric: fabricState(state) }));

  test("no GPU registered past the grace period: the fabric manager is not running", () => {
    const memory = {};
    expect(fabricManager(devices("not_started"), T0, memory)).toEqual([]);
    expect(fabricManager(devices("not_started"), T0 + FABRIC_MANAGER_GRACE_MS - 1, memory)).toEqual([]);
    expect(fabricManager(devices("not_started"), T0 + FABRIC_MANAGER_GRACE_MS, memory)[0]).toMatchObject({
      check: "fabric_manager",
      code: "not_running",
      severity: "unhealthy",
    });
    expect(fabricManager(devices("completed"), T0 + FABRIC_MANAGER_GRACE_MS + 1, memory)).toEqual([]);
  });

  test("some GPUs still registering past the grace period: stalled; not an NVSwitch system: nothing", () => {
    const memory = {};
    const mixed = [...devices("completed", 6), ...devices("in_progress", 2)];
    fabricManager(mixed, T0, memory);
    expect(fabricManager(mixed, T0 + FABRIC_MANAGER_GRACE_MS, memory)[0]).toMatchObject({
      code: "stalled",
      severity: "degraded",
      message: "2 of 8 GPUs still registering with the NVLink fabric after 5 min",
    });
    const pcieOnly = Array.from({ length: 8 }, (_, i) => healthyDevice(i, { fabric: fabricState("not_supported") }));
    expect(fabricManager(pcieOnly, T0 + 10 * FABRIC_MANAGER_GRACE_MS, {})).toEqual([]);
  });
});

describe("the runner", () => {
  test("the full tier runs the full checks, the fast tier the fast ones; findings name their GPU", () => {
    const runner = new GpuCheckRunner();
    const hot = healthyDevice(3, { temperatureC: ok(90), persistenceMode: ok(false) });
    const snapshot = snapshotOf([0, 1, 2].map((i) => healthyDevice(i)).concat(hot), T0);
    expect(runner.full(snapshot).map((f) => `${f.check}@${f.gpu?.index}`)).toEqual(["persistence_mode@3"]);
    expect(runner.fast(snapshot.devices, T0).map((f) => `${f.check}@${f.gpu?.index}`)).toEqual(["thermal@3"]);
    expect(runner.fast(snapshot.devices, T0)[0]!.gpu).toEqual({ index: 3, uuid: "GPU-3", pciBusId: busIdOf(3) });
  });

  test("a lost GPU is named from its last identity, reported by the fast tier, and nothing else is judged on it", () => {
    const runner = new GpuCheckRunner();
    runner.full(snapshotOf([healthyDevice(0), healthyDevice(1)], T0));
    const lost = nvmlErrorInfo(15, "nvmlDeviceGetTemperatureV", { device: 1 });
    const gone = healthyDevice(1, { fatal: lost, identity: failedWith(lost), temperatureC: failedWith(lost), persistenceMode: ok(false) });
    expect(runner.full(snapshotOf([healthyDevice(0), gone], T0 + 1000))).toEqual([]);
    const found = runner.fast([healthyDevice(0), gone], T0 + 1000);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ check: "gpu_lost", code: "lost", severity: "unhealthy", gpu: { index: 1, pciBusId: busIdOf(1) } });
    expect(unreadableGpu(nvmlErrorInfo(16, "f"), "GPU 1").check).toBe("reset_required");
  });

  test("a lost GPU's action is Xid 79's", () => {
    expect(LOST_GPU_ACTION).toBe(lookupXid(79).action);
  });

  test("fewer GPUs than the most seen, or than expected, is unhealthy", () => {
    const runner = new GpuCheckRunner();
    expect(
      runner.full(
        snapshotOf(
          [0, 1, 2, 3].map((i) => healthyDevice(i)),
          T0,
        ),
      ),
    ).toEqual([]);
    expect(
      runner.full(
        snapshotOf(
          [0, 1, 2].map((i) => healthyDevice(i)),
          T0 + 1000,
        ),
      )[0],
    ).toMatchObject({ check: "gpu_count", code: "missing", message: "3 GPUs visible, 4 expected (a GPU has fallen off the bus or failed to initialise)" });
    expect(new GpuCheckRunner({ expectedGpus: 8 }).full(snapshotOf([healthyDevice(0)], T0))[0]).toMatchObject({ check: "gpu_count" });
  });

  test("each check remembers each GPU separately", () => {
    const runner = new GpuCheckRunner();
    const sbe = (i: number, corrected: number) =>
      healthyDevice(i, {
        ecc: { mode: ok({ current: true, pending: true }), volatile: ok({ corrected, uncorrected: 0 }), aggregate: ok({ corrected, uncorrected: 0 }) },
      });
    runner.full(snapshotOf([sbe(0, 0), sbe(1, 0)], T0));
    const later = runner.full(snapshotOf([sbe(0, 10_000), sbe(1, 0)], T0 + 3_600_000));
    expect(later.map((f) => `${f.code}@${f.gpu?.index}`)).toEqual(["sbe_rate@0"]);
  });
});
