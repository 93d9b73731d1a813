// Synthetic NVML readings for the GPU checks' unit tests: a healthy H100 as the fake library
// reports it, which a test changes field by field.
import { nvmlErrorInfo, type NvmlErrorInfo, type Reading } from "../agent/nvml/errors.ts";
import type { DeviceSnapshot, FabricInfo, NvLinkInfo, NvmlSnapshot } from "../agent/nvml/types.ts";

export const ok = <T>(value: T): Reading<T> => ({ ok: true, value });
export const notSupported = (fn: string): Reading<never> => ({ ok: false, error: nvmlErrorInfo(3, fn) });
export const failedWith = (error: NvmlErrorInfo): Reading<never> => ({ ok: false, error });

const BUSES = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];

export function busIdOf(index: number): string {
  return `00000000:${(BUSES[index] ?? 0x10 + index).toString(16).toUpperCase().padStart(2, "0")}:00.0`;
}

function links(n: number): NvLinkInfo[] {
  return Array.from({ length: n }, (_, link) => ({
    link,
    active: true,
    counters: { replay: ok(0), recovery: ok(0), crcFlit: ok(0), crcData: ok(0) },
  }));
}

const FABRIC: FabricInfo = {
  version: 3,
  fn: "nvmlDeviceGetGpuFabricInfoV",
  state: 3,
  stateName: "completed",
  status: 0,
  statusName: "SUCCESS",
  cliqueId: 1,
  clusterUuid: "c0c1c2c3-c4c5-c6c7-c8c9-cacbcccdcecf",
  healthMask: 0,
  health: null,
  healthSummary: 1,
  healthSummaryName: "healthy",
};

/** A healthy GPU `index`, with `changes` applied on top. */
export function healthyDevice(index: number, changes: Partial<DeviceSnapshot> = {}): DeviceSnapshot {
  const busId = busIdOf(index);
  return {
    index,
    fatal: null,
    identity: ok({
      index,
      uuid: `GPU-${index}`,
      name: "NVIDIA H100 80GB HBM3",
      pciBusId: busId,
      pci: { busId, busIdNormalized: busId, domain: 0, bus: BUSES[index] ?? 0, device: 0, pciDeviceId: 0x233010de, pciSubSystemId: 0x16c110de },
      serial: null,
      memoryTotalBytes: 85_520_809_984,
    }),
    temperatureC: ok(34),
    thresholds: { shutdownC: ok(92), slowdownC: ok(89), memMaxC: ok(95), gpuMaxC: ok(87) },
    marginTemperatureC: ok(53),
    powerUsageMw: ok(71_000),
    powerLimitMw: ok(700_000),
    utilization: ok({ gpuPct: 0, memoryPct: 0 }),
    memory: ok({ totalBytes: 85_520_809_984, usedBytes: 0, freeBytes: 85_520_809_984, reservedBytes: 0, fn: "nvmlDeviceGetMemoryInfo_v2" }),
    ecc: { mode: ok({ current: true, pending: true }), volatile: ok({ corrected: 0, uncorrected: 0 }), aggregate: ok({ corrected: 0, uncorrected: 0 }) },
    retiredPages: notSupported("nvmlDeviceGetRetiredPages_v2"),
    remappedRows: ok({ correctable: 0, uncorrectable: 0, pending: false, failed: false }),
    clocksEventReasons: ok({ mask: 0x1, reasons: ["GpuIdle"], fn: "nvmlDeviceGetCurrentClocksEventReasons" }),
    nvlink: ok(links(18)),
    pcie: { currentGen: ok(5), currentWidth: ok(16), maxGen: ok(5), maxWidth: ok(16), gpuMaxGen: ok(5), replayCounter: ok(0), speedMbps: ok(32_000) },
    persistenceMode: ok(true),
    processes: ok([]),
    fabric: ok(FABRIC),
    fields: ok([]),
    recoveryAction: ok({ value: 0, name: "none" }),
    ...changes,
  };
}

export function fabricState(stateName: FabricInfo["stateName"], extra: Partial<FabricInfo> = {}): Reading<FabricInfo> {
  return ok({ ...FABRIC, stateName, ...extra });
}

/** A snapshot of `devices` taken at `at` (ms). */
export function snapshotOf(devices: DeviceSnapshot[], at: number): NvmlSnapshot {
  return { time: new Date(at).toISOString(), durationMs: 1, deviceCount: ok(devices.length), devices };
}
