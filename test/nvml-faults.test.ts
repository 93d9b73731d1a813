// Every fault mode of the fake, observed through the binding's typed results.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  NVML_RETURN,
  NvmlError,
  NvmlGpuLostError,
  NvmlResetRequiredError,
  STRUCT_VERSIONS,
  decodeFabricHealthMask,
  nvmlError,
  nvmlErrorFromInfo,
  nvmlErrorInfo,
  nvmlErrorKind,
  openNvml,
  readDeviceSnapshot,
  readSnapshot,
  startNvmlMonitor,
  toWireGpuInfo,
  toWireGpuSnapshot,
  type DeviceSnapshot,
  type NvmlLibrary,
  type Reading,
} from "../agent/nvml/index.ts";
import { GpuInfo, GpuSnapshot } from "../schema/wire.ts";
import * as v from "valibot";
import { readFastReadings } from "../agent/nvml/device.ts";
import { FAKE_NVML, FakeNvml } from "./fake-nvml/control.ts";
import { tempDir } from "./support.ts";

let fake: FakeNvml;
let lib: NvmlLibrary;

beforeAll(() => {
  fake = new FakeNvml();
  fake.reset();
  const r = openNvml({ libraryPath: FAKE_NVML.full, explicitOnly: true });
  if (!r.ok) throw new Error(r.message);
  lib = r.library;
});
afterEach(() => fake.reset());
afterAll(() => {
  lib.shutdown();
  lib.close();
});

const device = (i: number): DeviceSnapshot => readDeviceSnapshot(lib, lib.device(i));
function value<T>(r: Reading<T>): T {
  if (!r.ok) throw new Error(`reading failed: ${r.error.message}`);
  return r.value;
}

describe("healthy defaults", () => {
  test("every reading of a healthy GPU succeeds (retired pages are pre-Ampere only)", () => {
    const d = device(0);
    expect(d.fatal).toBeNull();
    const failedReadings = Object.entries(d).filter(([, r]) => typeof r === "object" && r !== null && "ok" in r && r.ok === false);
    expect(failedReadings.map(([k]) => k)).toEqual(["retiredPages"]);
    expect(d.retiredPages).toMatchObject({ ok: false, error: { kind: "not_supported" } });
    expect(value(d.identity)).toMatchObject({ uuid: "GPU-8f0a1c2d-be00-4e6f-9a7b-fa4e00000000", pciBusId: "00000000:18:00.0", serial: "1650220001000" });
    expect(value(d.thresholds.slowdownC)).toBe(89);
    expect(value(d.thresholds.shutdownC)).toBe(92);
    expect(value(d.thresholds.gpuMaxC)).toBe(87);
    expect(value(d.powerLimitMw)).toBe(700000);
    expect(value(d.nvlink)).toHaveLength(18);
    expect(value(d.persistenceMode)).toBe(true);
    expect(value(d.fabric)).toMatchObject({ version: 3, stateName: "completed", statusName: "SUCCESS", healthSummaryName: "healthy" });
    expect(value(d.recoveryAction)).toEqual({ value: 0, name: "none" });
    expect(value(d.pcie.currentGen)).toBe(5);
    expect(value(d.pcie.speedMbps)).toBe(32000);
  });

  test("wire mapping validates against schema/wire.ts", () => {
    const d = device(1);
    expect(v.parse(GpuInfo, toWireGpuInfo(value(d.identity)))).toMatchObject({ index: 1, pciBusId: "00000000:2A:00.0" });
    expect(v.parse(GpuSnapshot, toWireGpuSnapshot(d))).toEqual({
      index: 1,
      temperatureC: 34,
      powerW: 71,
      utilizationPct: 0,
      memoryUsedBytes: 0,
      eccVolatileDbe: 0,
      eccVolatileSbe: 0,
      clocksEventReasons: 1,
      processCount: 0,
    });
  });
});

describe("fault modes", () => {
  test("GPU lost: 15 on every call for that GPU, the others unaffected, calls stop after the first", () => {
    fake.setLost(2, true);
    const before = fake.callCount("*");
    const s = readSnapshot(lib);
    expect(s.devices).toHaveLength(4);
    const d = s.devices[2]!;
    expect(d.fatal).toMatchObject({ kind: "gpu_lost", code: 15, name: "GPU_IS_LOST", device: 2 });
    expect(d.temperatureC).toMatchObject({ ok: false, error: { kind: "gpu_lost" } });
    expect(d.pcie.replayCounter).toMatchObject({ ok: false, error: { kind: "gpu_lost" } });
    expect(nvmlErrorFromInfo(d.fatal!)).toBeInstanceOf(NvmlGpuLostError);
    expect(s.devices[1]!.fatal).toBeNull();
    expect(s.devices[3]!.temperatureC.ok).toBe(true);
    // a healthy GPU costs ~100 calls; the lost one only its first
    const perHealthy = (fake.callCount("*") - before - 2) / 3;
    expect(perHealthy).toBeGreaterThan(50);
    expect(() => lib.powerUsageMw(lib.device(2))).toThrow(NvmlGpuLostError);
  });

  test("GPU lost and hidden: fewer handles from GetCount", () => {
    fake.command("lost 1 on hide");
    const s = readSnapshot(lib);
    expect(s.deviceCount).toEqual({ ok: true, value: 3 });
    expect(s.devices.map((d) => value(d.identity).pciBusId)).toEqual(["00000000:18:00.0", "00000000:3A:00.0", "00000000:5D:00.0"]);
  });

  test("RESET_REQUIRED (16) on every call", () => {
    fake.setResetRequired(3, true);
    const d = device(3);
    expect(d.fatal).toMatchObject({ kind: "reset_required", code: 16 });
    expect(d.fields).toMatchObject({ ok: false, error: { kind: "reset_required" } });
    expect(nvmlErrorFromInfo(d.fatal!)).toBeInstanceOf(NvmlResetRequiredError);
  });

  test("a per-function override: device 3 nvmlDeviceGetRemappedRows returns 15", () => {
    fake.command("ret 3 nvmlDeviceGetRemappedRows 15");
    const d = device(3);
    expect(d.remappedRows).toMatchObject({ ok: false, error: { kind: "gpu_lost", fn: "nvmlDeviceGetRemappedRows", device: 3 } });
    expect(d.fatal?.fn).toBe("nvmlDeviceGetRemappedRows");
    expect(device(2).remappedRows.ok).toBe(true);
  });

  test("NOT_SUPPORTED on one function does not break the others", () => {
    fake.setReturn(0, "nvmlDeviceGetPowerUsage", NVML_RETURN.NOT_SUPPORTED);
    fake.setReturn(0, "nvmlDeviceGetNvLinkState", NVML_RETURN.NOT_SUPPORTED);
    const d = device(0);
    expect(d.powerUsageMw).toMatchObject({ ok: false, error: { kind: "not_supported", fn: "nvmlDeviceGetPowerUsage", device: 0 } });
    expect(d.nvlink).toMatchObject({ ok: false, error: { kind: "not_supported" } });
    expect(d.fatal).toBeNull();
    expect(value(d.powerLimitMw)).toBe(700000);
    expect(value(d.temperatureC)).toBe(34);
    expect(value(device(1).powerUsageMw)).toBe(71000);
    expect(toWireGpuSnapshot(d).powerW).toBeUndefined();
  });

  test("every return code maps to its kind, carrying the function name", () => {
    const expected: [number, string][] = [
      [1, "uninitialized"],
      [2, "invalid_argument"],
      [3, "not_supported"],
      [4, "no_permission"],
      [6, "not_found"],
      [7, "insufficient_size"],
      [9, "driver_not_loaded"],
      [10, "timeout"],
      [12, "library_not_found"],
      [13, "function_not_found"],
      [14, "corrupted_inforom"],
      [15, "gpu_lost"],
      [16, "reset_required"],
      [17, "operating_system"],
      [18, "lib_rm_version_mismatch"],
      [19, "in_use"],
      [20, "memory"],
      [21, "no_data"],
      [25, "argument_version_mismatch"],
      [26, "deprecated"],
      [27, "not_ready"],
      [28, "gpu_not_found"],
      [29, "invalid_state"],
      [999, "unknown"],
      [4242, "unknown"],
    ];
    for (const [code, kind] of expected) {
      fake.setReturn(1, "nvmlDeviceGetUtilizationRates", code);
      const r = device(1).utilization;
      expect([code, r.ok ? "ok" : r.error.kind, r.ok ? "" : r.error.fn]).toEqual([code, kind, "nvmlDeviceGetUtilizationRates"]);
      expect(nvmlErrorKind(code)).toBe(kind as ReturnType<typeof nvmlErrorKind>);
    }
    const e = nvmlError(15, "nvmlDeviceGetCount_v2");
    expect(e).toBeInstanceOf(NvmlError);
    expect(e.message).toContain("nvmlDeviceGetCount_v2");
    expect(e.returnName).toBe("GPU_IS_LOST");
  });

  test("ARGUMENT_VERSION_MISMATCH (25): a wrong struct version is rejected; the binding retries older versions", () => {
    // wrong version through the raw call
    const buf = new Uint8Array(40);
    new DataView(buf.buffer).setUint32(0, STRUCT_VERSIONS.nvmlMemory_v2 + 1, true);
    const code = lib.rawCall("deviceGetMemoryInfoV2", [lib.device(0).handle, buf]);
    expect(nvmlErrorKind(code)).toBe("argument_version_mismatch");
    // a driver that only knows fabric v2 (R550): v3 → 25 → v2
    fake.command("fabricversion 2");
    expect(value(device(0).fabric)).toMatchObject({ version: 2, fn: "nvmlDeviceGetGpuFabricInfoV", healthSummary: null, healthSummaryName: null });
    // V answers 25 for every version: the v1 call
    fake.setReturn(-1, "nvmlDeviceGetGpuFabricInfoV", 25);
    expect(value(device(0).fabric)).toMatchObject({ version: 1, fn: "nvmlDeviceGetGpuFabricInfo" });
    // memory info v2 rejected: falls back to v1
    fake.setReturn(-1, "nvmlDeviceGetMemoryInfo_v2", 25);
    expect(value(device(0).memory)).toMatchObject({ fn: "nvmlDeviceGetMemoryInfo", reservedBytes: null });
    // no fallback for the margin temperature: the typed error
    fake.setReturn(0, "nvmlDeviceGetMarginTemperature", 25);
    expect(device(0).marginTemperatureC).toMatchObject({ ok: false, error: { kind: "argument_version_mismatch", code: 25 } });
  });

  test("DBE/SBE counters, volatile and aggregate, in the readings, the field batch and the wire", () => {
    fake.setEcc(0, { sbeVolatile: 5, dbeVolatile: 2, sbeAggregate: 100, dbeAggregate: 3 });
    const d = device(0);
    expect(value(d.ecc.volatile)).toEqual({ corrected: 5, uncorrected: 2 });
    expect(value(d.ecc.aggregate)).toEqual({ corrected: 100, uncorrected: 3 });
    const fields = value(d.fields);
    expect(fields.filter((f) => f.fieldId >= 3 && f.fieldId <= 6).map((f) => value(f.value))).toEqual([5, 2, 100, 3]);
    expect(toWireGpuSnapshot(d)).toMatchObject({ eccVolatileDbe: 2, eccVolatileSbe: 5 });
    fake.command("eccmode 1 off");
    expect(device(1).ecc.volatile).toMatchObject({ ok: false, error: { kind: "not_supported" } });
    expect(value(device(1).ecc.mode)).toEqual({ current: false, pending: false });
  });

  test("row remapping pending and failed; retired pages on a pre-Ampere GPU", () => {
    fake.setRemap(1, { correctable: 0, uncorrectable: 3, pending: true, failed: true });
    expect(value(device(1).remappedRows)).toEqual({ correctable: 0, uncorrectable: 3, pending: true, failed: true });
    const f = value(device(1).fields);
    expect(f.filter((x) => x.fieldId >= 142 && x.fieldId <= 145).map((x) => value(x.value))).toEqual([0, 3, 1, 1]);
    fake.command("retired 2 2 1 1; remap 2 unsupported");
    const d = device(2);
    expect(value(d.retiredPages)).toEqual({ multipleSbe: 2, dbe: 1, pending: true });
    expect(d.remappedRows).toMatchObject({ ok: false, error: { kind: "not_supported" } });
  });

  test("clock event reason bits, temperature above the thresholds", () => {
    fake.setClockReasons(0, 0x48);
    fake.setTemperature(0, 95);
    const d = device(0);
    expect(value(d.clocksEventReasons)).toEqual({ mask: 0x48, reasons: ["HwSlowdown", "HwThermalSlowdown"], fn: "nvmlDeviceGetCurrentClocksEventReasons" });
    expect(value(d.temperatureC)).toBeGreaterThan(value(d.thresholds.slowdownC));
    expect(value(d.temperatureC)).toBeGreaterThan(value(d.thresholds.shutdownC));
    expect(value(d.marginTemperatureC)).toBe(87 - 95);
    fake.command("threshold 0 memmax -1");
    expect(device(0).thresholds.memMaxC).toMatchObject({ ok: false, error: { kind: "not_supported" } });
  });

  test("NVLink: inactive links, error counters, link count, no NVLink", () => {
    fake.setNvlink(0, 3, false);
    fake.command("nvlinks 0 12; nvlinkerr 0 5 replay 7; nvlinkerr 0 5 crcflit 100; nvlinks 1 0");
    const links = value(device(0).nvlink);
    expect(links).toHaveLength(12);
    expect(links.filter((l) => !l.active).map((l) => l.link)).toEqual([3]);
    expect(links[5]!.counters?.replay).toEqual({ ok: true, value: 7 });
    expect(links[5]!.counters?.crcFlit).toEqual({ ok: true, value: 100 });
    expect(device(1).nvlink).toMatchObject({ ok: false, error: { kind: "not_supported", fn: "nvmlDeviceGetNvLinkState" } });
    // Without the counters (the agent reads them once a minute): states only, a fifth of the calls.
    const calls = fake.callCount("nvmlDeviceGetNvLinkErrorCounter");
    const states = value(readDeviceSnapshot(lib, lib.device(0), { nvlinkCounters: false }).nvlink);
    expect(states.map((l) => [l.active, l.counters])).toEqual(links.map((l) => [l.active, null]));
    expect(fake.callCount("nvmlDeviceGetNvLinkErrorCounter")).toBe(calls);
  });

  test("PCIe link below max, replay counter, persistence off", () => {
    fake.command("pcie 0 3 8 5 16; replay 0 42; persistence 0 off");
    const d = device(0);
    expect([d.pcie.currentGen, d.pcie.currentWidth, d.pcie.maxGen, d.pcie.maxWidth].map(value)).toEqual([3, 8, 5, 16]);
    expect(value(d.pcie.replayCounter)).toBe(42);
    expect(value(d.persistenceMode)).toBe(false);
  });

  test("the fast tier reads temperature and clock reasons fresh, the margin only where the slowdown threshold is unknown", () => {
    const dev = lib.device(0);
    const full = readDeviceSnapshot(lib, dev);
    fake.command("temp 0 88; clocks 0 0x8");
    const margins = fake.callCount("nvmlDeviceGetMarginTemperature");
    const fast = readFastReadings(lib, dev, full);
    expect([value(fast.temperatureC), value(fast.clocksEventReasons).mask]).toEqual([88, 8]);
    expect(fake.callCount("nvmlDeviceGetMarginTemperature")).toBe(margins);
    expect(fast.persistenceMode).toBe(full.persistenceMode); // the rest is the full read's
    fake.command("threshold 0 slowdown -1");
    const noThreshold = readDeviceSnapshot(lib, dev);
    fake.command("temp 0 90");
    expect(value(readFastReadings(lib, dev, noThreshold).marginTemperatureC)).toBe(87 - 90);
  });

  test("with an earlier snapshot, what does not change is carried, what the checks and heartbeats need is read", () => {
    const dev = lib.device(2);
    const first = readDeviceSnapshot(lib, dev);
    fake.command("temp 2 71; ecc 2 5 0; pcie 2 5 8 5 16; replay 2 9; threshold 2 slowdown 80");
    const counts = () =>
      ["nvmlDeviceGetUUID", "nvmlDeviceGetTemperatureThreshold", "nvmlDeviceGetMaxPcieLinkWidth", "nvmlDeviceGetRetiredPages_v2"].map((f) => fake.callCount(f));
    const before = counts();
    const next = readDeviceSnapshot(lib, dev, { steady: [first] });
    expect(counts()).toEqual(before);
    expect([value(next.temperatureC), value(next.ecc.volatile).corrected, value(next.pcie.currentWidth), value(next.pcie.replayCounter)]).toEqual([
      71, 5, 8, 9,
    ]);
    expect(next.identity).toBe(first.identity);
    expect(value(next.thresholds.slowdownC)).toBe(89); // carried: thresholds are read once a minute
    // A GPU that was lost is read in full.
    const lostFirst = { ...first, fatal: nvmlErrorInfo(15, "nvmlDeviceGetUUID") };
    readDeviceSnapshot(lib, dev, { steady: [lostFirst] });
    expect(counts()[0]).toBe(before[0]! + 1);
  });

  test("compute processes: none, then 3, then more than the first buffer holds (_v3)", () => {
    expect(lib.symbolOf("deviceGetComputeRunningProcesses")).toBe("nvmlDeviceGetComputeRunningProcesses_v3");
    expect(value(device(0).processes)).toEqual([]);
    fake.command("procs 0 3 2147483648");
    expect(value(device(0).processes)).toEqual([4000, 4001, 4002].map((pid) => ({ pid, usedGpuMemoryBytes: 2 ** 31 })));
    fake.command("procs 1 40");
    expect(value(device(1).processes).map((p) => p.pid)).toEqual(Array.from({ length: 40 }, (_, i) => 4000 + i));
    expect(toWireGpuSnapshot(device(1)).processCount).toBe(40);
  });

  test("compute processes through _v2 (r470)", () => {
    // The control handle first: the binding then uses that loaded instance (a library it loads
    // itself is a private copy, with state of its own: agent/nvml/private-copy.ts).
    const old = new FakeNvml(FAKE_NVML.r470);
    const r = openNvml({ libraryPath: FAKE_NVML.r470, explicitOnly: true, init: false });
    if (!r.ok) throw new Error(r.message);
    try {
      old.command("procs 2 2 4096");
      expect(r.library.symbolOf("deviceGetComputeRunningProcesses")).toBe("nvmlDeviceGetComputeRunningProcesses_v2");
      r.library.init();
      expect(value(readDeviceSnapshot(r.library, r.library.device(2)).processes)).toEqual([
        { pid: 4000, usedGpuMemoryBytes: 4096 },
        { pid: 4001, usedGpuMemoryBytes: 4096 },
      ]);
    } finally {
      old.reset();
      r.library.shutdown();
      r.library.close();
    }
  });

  test("fabric not completed, health mask bits, unhealthy summary", () => {
    const mask = 1 | (2 << 2) | (1 << 4) | (2 << 6) | (2 << 8) | (1 << 12);
    fake.command(`fabric 0 2 ${NVML_RETURN.NOT_READY} ${mask} 2 7`);
    expect(value(device(0).fabric)).toMatchObject({
      version: 3,
      state: 2,
      stateName: "in_progress",
      status: 27,
      statusName: "NOT_READY",
      cliqueId: 7,
      healthMask: mask,
      health: {
        degradedBandwidth: true,
        routeRecoveryInProgress: false,
        routeUnhealthy: true,
        accessTimeoutRecovery: false,
        incorrectConfiguration: 2,
        partitionAssigned: true,
      },
      healthSummary: 2,
      healthSummaryName: "unhealthy",
    });
    expect(decodeFabricHealthMask(0)).toMatchObject({ degradedBandwidth: null, incorrectConfiguration: 0 });
    fake.command("fabric 1 unsupported");
    expect(device(1).fabric).toMatchObject({ ok: false, error: { kind: "not_supported" } });
  });

  test("recovery-action field (230), and a per-field failure leaves the batch intact", () => {
    fake.command("recovery 0 2; fieldret 0 94 3");
    fake.setField(1, 230, 4);
    const d = device(0);
    expect(value(d.recoveryAction)).toEqual({ value: 2, name: "node_reboot" });
    const fields = value(d.fields);
    expect(fields.find((f) => f.fieldId === 94)!.value).toMatchObject({ ok: false, error: { kind: "not_supported" } });
    expect(fields.filter((f) => f.value.ok)).toHaveLength(fields.length - 4); // 94 + retired 29–31 (Hopper)
    expect(value(device(1).recoveryAction)).toEqual({ value: 4, name: "drain_and_reset" });
  });

  test("strings that do not fit: INSUFFICIENT_SIZE is typed, not truncated", () => {
    fake.command(`name 0 "${"X".repeat(96)}"`);
    expect(device(0).identity).toMatchObject({ ok: false, error: { kind: "insufficient_size", fn: "nvmlDeviceGetName" } });
  });
});

describe("through the monitor (worker)", () => {
  test("faults set on the main thread are seen by the worker's snapshot", async () => {
    fake.command("temp 1 99; lost 3 on; ecc 0 0 1");
    const m = await startNvmlMonitor({ libraryPath: FAKE_NVML.full, explicitOnly: true, events: false });
    try {
      const s = await m.snapshot();
      expect(s.devices[1]!.temperatureC).toEqual({ ok: true, value: 99 });
      expect(s.devices[3]!.fatal?.kind).toBe("gpu_lost");
      expect(toWireGpuSnapshot(s.devices[0]!).eccVolatileDbe).toBe(1);
      expect(s.durationMs).toBeLessThan(1000);
    } finally {
      await m.close();
    }
  });
});

describe("state file and helpers", () => {
  test("a state file applies; bad lines are reported and skipped", () => {
    const dir = tempDir();
    const path = join(dir, "state");
    writeFileSync(path, `# two B200s\ncount 2\nname * "NVIDIA B200"\ntemp 1 61 # hot\nbogus line\npci 1 00000000:1B:00.0\n`);
    expect(() => fake.loadState(path)).toThrow();
    const s = readSnapshot(lib);
    expect(s.devices.map((d) => value(d.identity).name)).toEqual(["NVIDIA B200", "NVIDIA B200"]);
    expect(value(s.devices[1]!.temperatureC)).toBe(61);
    expect(value(s.devices[1]!.identity).pciBusId).toBe("00000000:1B:00.0");
  });
});
