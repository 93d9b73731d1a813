// Every NVML function the binding calls: its candidate symbol names (versioned name first,
// then fallbacks, as go-nvml's updateVersionedSymbols does) and its C signature for bun:ffi.
// CORE functions must resolve or the library is rejected; every other one is looked up with dlsym
// and recorded in the capability map.
import { FFIType } from "bun:ffi";

export interface NvmlFunctionSpec {
  /** Candidate symbol names, preferred first. */
  readonly names: readonly string[];
  readonly args: readonly FFIType[];
  readonly returns: FFIType;
  /** The library is not NVML (or too old) without it. */
  readonly core?: boolean;
  /** First driver branch that exports the preferred name (documentation only: never gated on). */
  readonly since?: number;
}

const { i32, u32, u64, ptr, cstring } = FFIType;
const fn = (names: string[], args: FFIType[], extra: { core?: boolean; since?: number; returns?: FFIType } = {}): NvmlFunctionSpec => ({
  names,
  args,
  returns: extra.returns ?? i32,
  ...(extra.core ? { core: true } : {}),
  ...(extra.since ? { since: extra.since } : {}),
});

export const NVML_FUNCTIONS = {
  init: fn(["nvmlInit_v2", "nvmlInit"], [], { core: true }),
  shutdown: fn(["nvmlShutdown"], [], { core: true }),
  errorString: fn(["nvmlErrorString"], [i32], { core: true, returns: cstring }),
  systemGetDriverVersion: fn(["nvmlSystemGetDriverVersion"], [ptr, u32]),
  systemGetNvmlVersion: fn(["nvmlSystemGetNVMLVersion"], [ptr, u32]),
  systemGetCudaDriverVersion: fn(["nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"], [ptr]),

  deviceGetCount: fn(["nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"], [ptr], { core: true }),
  deviceGetHandleByIndex: fn(["nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"], [u32, ptr], { core: true }),
  deviceGetHandleByUuid: fn(["nvmlDeviceGetHandleByUUID"], [ptr, ptr]),
  deviceGetHandleByPciBusId: fn(["nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetHandleByPciBusId"], [ptr, ptr]),
  deviceGetUuid: fn(["nvmlDeviceGetUUID"], [ptr, ptr, u32], { core: true }),
  deviceGetName: fn(["nvmlDeviceGetName"], [ptr, ptr, u32]),
  deviceGetSerial: fn(["nvmlDeviceGetSerial"], [ptr, ptr, u32]),
  deviceGetPciInfo: fn(["nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"], [ptr, ptr]),
  deviceGetIndex: fn(["nvmlDeviceGetIndex"], [ptr, ptr]),
  deviceGetMinorNumber: fn(["nvmlDeviceGetMinorNumber"], [ptr, ptr]),

  deviceGetMemoryInfoV2: fn(["nvmlDeviceGetMemoryInfo_v2"], [ptr, ptr], { since: 515 }),
  deviceGetMemoryInfo: fn(["nvmlDeviceGetMemoryInfo"], [ptr, ptr]),

  deviceGetTemperatureV: fn(["nvmlDeviceGetTemperatureV"], [ptr, ptr], { since: 570 }),
  deviceGetTemperature: fn(["nvmlDeviceGetTemperature"], [ptr, i32, ptr]),
  deviceGetTemperatureThreshold: fn(["nvmlDeviceGetTemperatureThreshold"], [ptr, i32, ptr]),
  deviceGetMarginTemperature: fn(["nvmlDeviceGetMarginTemperature"], [ptr, ptr], { since: 570 }),

  deviceGetPowerUsage: fn(["nvmlDeviceGetPowerUsage"], [ptr, ptr]),
  deviceGetEnforcedPowerLimit: fn(["nvmlDeviceGetEnforcedPowerLimit"], [ptr, ptr]),
  deviceGetPowerManagementLimit: fn(["nvmlDeviceGetPowerManagementLimit"], [ptr, ptr]),
  deviceGetUtilizationRates: fn(["nvmlDeviceGetUtilizationRates"], [ptr, ptr]),

  deviceGetEccMode: fn(["nvmlDeviceGetEccMode"], [ptr, ptr, ptr]),
  deviceGetTotalEccErrors: fn(["nvmlDeviceGetTotalEccErrors"], [ptr, i32, i32, ptr]),
  deviceGetMemoryErrorCounter: fn(["nvmlDeviceGetMemoryErrorCounter"], [ptr, i32, i32, i32, ptr]),
  deviceGetRemappedRows: fn(["nvmlDeviceGetRemappedRows"], [ptr, ptr, ptr, ptr, ptr]),
  deviceGetRetiredPagesV2: fn(["nvmlDeviceGetRetiredPages_v2"], [ptr, i32, ptr, ptr, ptr]),
  deviceGetRetiredPages: fn(["nvmlDeviceGetRetiredPages"], [ptr, i32, ptr, ptr]),
  deviceGetRetiredPagesPendingStatus: fn(["nvmlDeviceGetRetiredPagesPendingStatus"], [ptr, ptr]),

  deviceGetCurrentClocksEventReasons: fn(["nvmlDeviceGetCurrentClocksEventReasons"], [ptr, ptr], { since: 535 }),
  deviceGetCurrentClocksThrottleReasons: fn(["nvmlDeviceGetCurrentClocksThrottleReasons"], [ptr, ptr]),

  deviceGetNvLinkState: fn(["nvmlDeviceGetNvLinkState"], [ptr, u32, ptr]),
  deviceGetNvLinkErrorCounter: fn(["nvmlDeviceGetNvLinkErrorCounter"], [ptr, u32, i32, ptr]),

  deviceGetCurrPcieLinkGeneration: fn(["nvmlDeviceGetCurrPcieLinkGeneration"], [ptr, ptr]),
  deviceGetCurrPcieLinkWidth: fn(["nvmlDeviceGetCurrPcieLinkWidth"], [ptr, ptr]),
  deviceGetMaxPcieLinkGeneration: fn(["nvmlDeviceGetMaxPcieLinkGeneration"], [ptr, ptr]),
  deviceGetMaxPcieLinkWidth: fn(["nvmlDeviceGetMaxPcieLinkWidth"], [ptr, ptr]),
  deviceGetGpuMaxPcieLinkGeneration: fn(["nvmlDeviceGetGpuMaxPcieLinkGeneration"], [ptr, ptr], { since: 525 }),
  deviceGetPcieReplayCounter: fn(["nvmlDeviceGetPcieReplayCounter"], [ptr, ptr]),
  deviceGetPcieSpeed: fn(["nvmlDeviceGetPcieSpeed"], [ptr, ptr], { since: 515 }),

  deviceGetPersistenceMode: fn(["nvmlDeviceGetPersistenceMode"], [ptr, ptr]),
  // _v3 (R510+) and _v2 (R470+) fill nvmlProcessInfo_v2_t; the unversioned one nvmlProcessInfo_v1_t.
  deviceGetComputeRunningProcesses: fn(
    ["nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses"],
    [ptr, ptr, ptr],
  ),
  deviceGetGpuFabricInfoV: fn(["nvmlDeviceGetGpuFabricInfoV"], [ptr, ptr], { since: 550 }),
  deviceGetGpuFabricInfo: fn(["nvmlDeviceGetGpuFabricInfo"], [ptr, ptr], { since: 525 }),
  deviceGetFieldValues: fn(["nvmlDeviceGetFieldValues"], [ptr, i32, ptr]),

  eventSetCreate: fn(["nvmlEventSetCreate"], [ptr]),
  deviceGetSupportedEventTypes: fn(["nvmlDeviceGetSupportedEventTypes"], [ptr, ptr]),
  deviceRegisterEvents: fn(["nvmlDeviceRegisterEvents"], [ptr, u64, ptr]),
  eventSetWait: fn(["nvmlEventSetWait_v2", "nvmlEventSetWait"], [ptr, ptr, u32]),
  eventSetFree: fn(["nvmlEventSetFree"], [ptr]),
} as const satisfies Record<string, NvmlFunctionSpec>;

export type NvmlFunctionKey = keyof typeof NVML_FUNCTIONS;

export const NVML_FUNCTION_KEYS = Object.keys(NVML_FUNCTIONS) as NvmlFunctionKey[];

/** Every symbol name the binding may probe, in a fixed order (indices are used by the watchdog). */
export const ALL_SYMBOLS: readonly string[] = [...new Set(NVML_FUNCTION_KEYS.flatMap((k) => NVML_FUNCTIONS[k].names))];

const SYMBOL_INDEX = new Map(ALL_SYMBOLS.map((s, i) => [s, i]));
export function symbolIndex(symbol: string): number {
  return SYMBOL_INDEX.get(symbol) ?? -1;
}
