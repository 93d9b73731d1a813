// Pure decoding helpers: bit masks, enums and identifiers as NVML defines them.
import type { FabricHealth, FabricHealthSummary, FabricState, RecoveryActionName } from "./types.ts";

/** nvmlClocksEventReason bits (0x1..0x100). */
export const CLOCKS_EVENT_REASONS: readonly (readonly [number, string])[] = [
  [0x1, "GpuIdle"],
  [0x2, "ApplicationsClocksSetting"],
  [0x4, "SwPowerCap"],
  [0x8, "HwSlowdown"],
  [0x10, "SyncBoost"],
  [0x20, "SwThermalSlowdown"],
  [0x40, "HwThermalSlowdown"],
  [0x80, "HwPowerBrakeSlowdown"],
  [0x100, "DisplayClockSetting"],
];
/** HwSlowdown | HwThermalSlowdown | HwPowerBrakeSlowdown */
export const CLOCKS_EVENT_HW_MASK = 0xc8;

export function decodeBits(mask: number, table: readonly (readonly [number, string])[]): string[] {
  const names: string[] = [];
  let rest = mask;
  for (const [bit, name] of table) {
    if (mask & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest) names.push(`0x${(rest >>> 0).toString(16)}`);
  return names;
}

export function decodeClocksEventReasons(mask: number): string[] {
  return decodeBits(mask, CLOCKS_EVENT_REASONS);
}

/** nvmlEventType bits. */
export const EVENT_TYPES = {
  SingleBitEccError: 0x1,
  DoubleBitEccError: 0x2,
  PState: 0x4,
  XidCriticalError: 0x8,
  Clock: 0x10,
  PowerSourceChange: 0x80,
  MigConfigChange: 0x100,
  SingleBitEccErrorStorm: 0x200,
  DramRetirementEvent: 0x400,
  DramRetirementFailure: 0x800,
  NonFatalPoisonError: 0x1000,
  FatalPoisonError: 0x2000,
  GpuUnavailableError: 0x4000,
  GpuRecoveryAction: 0x8000,
} as const;

const EVENT_TYPE_TABLE = Object.entries(EVENT_TYPES).map(([name, bit]) => [bit, name] as const);

export function decodeEventTypes(mask: number): string[] {
  return decodeBits(mask, EVENT_TYPE_TABLE);
}

/**
 * What the monitor registers by default (ANDed with each GPU's supported types): Xid, ECC,
 * DRAM retirement, poison, GPU-unavailable and recovery-action events. PState and Clock are
 * left out: they fire constantly and carry no health information.
 */
export const DEFAULT_EVENT_MASK =
  EVENT_TYPES.XidCriticalError |
  EVENT_TYPES.SingleBitEccError |
  EVENT_TYPES.DoubleBitEccError |
  EVENT_TYPES.DramRetirementEvent |
  EVENT_TYPES.DramRetirementFailure |
  EVENT_TYPES.NonFatalPoisonError |
  EVENT_TYPES.FatalPoisonError |
  EVENT_TYPES.GpuUnavailableError |
  EVENT_TYPES.GpuRecoveryAction;

const FABRIC_STATES: readonly FabricState[] = ["not_supported", "not_started", "in_progress", "completed"];
export function fabricStateName(state: number): FabricState {
  return FABRIC_STATES[state] ?? "unknown";
}

const FABRIC_SUMMARIES: readonly FabricHealthSummary[] = ["not_supported", "healthy", "unhealthy", "limited_capacity"];
export function fabricHealthSummaryName(summary: number): FabricHealthSummary {
  return FABRIC_SUMMARIES[summary] ?? "unknown";
}

/** A 2-bit healthMask field: 1 TRUE, 2 FALSE, 0 not supported. */
function twoBit(mask: number, shift: number): boolean | null {
  const v = (mask >>> shift) & 0x3;
  return v === 1 ? true : v === 2 ? false : null;
}

export function decodeFabricHealthMask(mask: number): FabricHealth {
  return {
    degradedBandwidth: twoBit(mask, 0),
    routeRecoveryInProgress: twoBit(mask, 2),
    routeUnhealthy: twoBit(mask, 4),
    accessTimeoutRecovery: twoBit(mask, 6),
    incorrectConfiguration: (mask >>> 8) & 0xf,
    partitionAssigned: twoBit(mask, 12),
  };
}

/** NVML_FI_DEV_GET_GPU_RECOVERY_ACTION values. */
const RECOVERY_ACTIONS: readonly RecoveryActionName[] = [
  "none",
  "gpu_reset",
  "node_reboot",
  "drain_p2p",
  "drain_and_reset",
  "recover_imex_domain",
  "bus_reset",
  "system_reboot",
];
export function recoveryActionName(value: number): RecoveryActionName {
  return RECOVERY_ACTIONS[value] ?? "unknown";
}

/** 12040 → "12.4"; 13000 → "13.0". */
export function cudaVersionText(raw: number): string {
  return `${Math.floor(raw / 1000)}.${Math.floor((raw % 1000) / 10)}`;
}

/** Field ids (nvmlFieldValue_t.fieldId) the binding knows by name. */
export const FIELD = {
  ECC_SBE_VOL_TOTAL: 3,
  ECC_DBE_VOL_TOTAL: 4,
  ECC_SBE_AGG_TOTAL: 5,
  ECC_DBE_AGG_TOTAL: 6,
  RETIRED_SBE: 29,
  RETIRED_DBE: 30,
  RETIRED_PENDING: 31,
  NVLINK_LINK_COUNT: 91,
  PCIE_REPLAY_COUNTER: 94,
  REMAPPED_COR: 142,
  REMAPPED_UNC: 143,
  REMAPPED_PENDING: 144,
  REMAPPED_FAILURE: 145,
  NVLINK_ERROR_DL_REPLAY: 161,
  NVLINK_ERROR_DL_RECOVERY: 162,
  NVLINK_ERROR_DL_CRC: 163,
  NVLINK_GET_STATE: 165,
  GET_GPU_RECOVERY_ACTION: 230,
} as const;

/** The per-GPU batch read with one nvmlDeviceGetFieldValues call per poll. */
export const DEFAULT_FIELD_IDS: readonly number[] = [
  FIELD.ECC_SBE_VOL_TOTAL,
  FIELD.ECC_DBE_VOL_TOTAL,
  FIELD.ECC_SBE_AGG_TOTAL,
  FIELD.ECC_DBE_AGG_TOTAL,
  FIELD.RETIRED_SBE,
  FIELD.RETIRED_DBE,
  FIELD.RETIRED_PENDING,
  FIELD.NVLINK_LINK_COUNT,
  FIELD.PCIE_REPLAY_COUNTER,
  FIELD.REMAPPED_COR,
  FIELD.REMAPPED_UNC,
  FIELD.REMAPPED_PENDING,
  FIELD.REMAPPED_FAILURE,
  FIELD.GET_GPU_RECOVERY_ACTION,
];

/** Formats 16 bytes as a UUID string. */
export function formatUuidBytes(bytes: Uint8Array): string {
  const h = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
