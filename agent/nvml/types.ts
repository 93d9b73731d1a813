// Result types of the NVML binding. Everything here is plain data: it crosses the Worker
// boundary by structured clone and serialises to JSON unchanged (no bigint, no classes).
import type { NvmlErrorInfo, Reading } from "./errors.ts";

/** An opaque nvmlDevice_t (a pointer value). */
export type DeviceHandle = number & { readonly __nvmlDeviceHandle: unique symbol };
/** An opaque nvmlEventSet_t (a pointer value). */
export type EventSetHandle = number & { readonly __nvmlEventSetHandle: unique symbol };

/** A device handle together with the enumeration index it was obtained for. */
export interface NvmlDevice {
  readonly index: number;
  readonly handle: DeviceHandle;
}

/** Which symbols the loaded library exports, and which name each binding function resolved to. */
export interface NvmlCapabilities {
  /** Every symbol name probed → whether the library exports it. */
  symbols: Record<string, boolean>;
  /** Binding function → the symbol it calls (versioned name or fallback), or null when absent. */
  functions: Record<string, string | null>;
}

export interface PciInfo {
  /** As NVML reports it, e.g. "00000000:18:00.0". */
  busId: string;
  /** Normalised to NVML's form, e.g. "00000000:18:00.0" (agent/pci.ts: the kmsg join key). */
  busIdNormalized: string;
  domain: number;
  bus: number;
  device: number;
  pciDeviceId: number;
  pciSubSystemId: number;
}

export interface DeviceIdentity {
  index: number;
  uuid: string;
  name: string;
  /** Normalised PCI bus id, e.g. "00000000:18:00.0". */
  pciBusId: string;
  pci: PciInfo;
  serial: string | null;
  memoryTotalBytes: number | null;
}

export interface SystemInfo {
  driverVersion: Reading<string>;
  nvmlVersion: Reading<string>;
  /** e.g. { raw: 12040, version: "12.4" } */
  cudaDriverVersion: Reading<{ raw: number; version: string }>;
}

export interface MemoryInfo {
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** Only from nvmlDeviceGetMemoryInfo_v2 (R515+); null from the v1 call. */
  reservedBytes: number | null;
  fn: string;
}

export interface TemperatureThresholds {
  shutdownC: Reading<number>;
  slowdownC: Reading<number>;
  memMaxC: Reading<number>;
  /** "max operating" GPU temperature */
  gpuMaxC: Reading<number>;
}

export interface EccCounts {
  corrected: number;
  uncorrected: number;
}

export interface EccInfo {
  mode: Reading<{ current: boolean; pending: boolean }>;
  volatile: Reading<EccCounts>;
  aggregate: Reading<EccCounts>;
}

export interface RetiredPages {
  multipleSbe: number;
  dbe: number;
  pending: boolean | null;
}

export interface RemappedRows {
  correctable: number;
  uncorrectable: number;
  pending: boolean;
  failed: boolean;
}

export interface ClocksEventReasons {
  mask: number;
  /** Decoded bit names, e.g. ["HwSlowdown", "HwThermalSlowdown"]. */
  reasons: string[];
  /** nvmlDeviceGetCurrentClocksEventReasons, or the ...ThrottleReasons fallback. */
  fn: string;
}

export interface NvLinkCounters {
  replay: Reading<number>;
  recovery: Reading<number>;
  crcFlit: Reading<number>;
  crcData: Reading<number>;
}

export interface NvLinkInfo {
  link: number;
  active: boolean;
  /** Null when this read left the error counters out (the agent reads them once a minute). */
  counters: NvLinkCounters | null;
}

export interface PcieInfo {
  currentGen: Reading<number>;
  currentWidth: Reading<number>;
  maxGen: Reading<number>;
  maxWidth: Reading<number>;
  /** The GPU's own capability (R525+), independent of the slot. */
  gpuMaxGen: Reading<number>;
  replayCounter: Reading<number>;
  speedMbps: Reading<number>;
}

export type FabricState = "not_supported" | "not_started" | "in_progress" | "completed" | "unknown";
export type FabricHealthSummary = "not_supported" | "healthy" | "unhealthy" | "limited_capacity" | "unknown";

/** healthMask decoded: true = the condition holds (bad, except partitionAssigned); null = not supported. */
export interface FabricHealth {
  degradedBandwidth: boolean | null;
  routeRecoveryInProgress: boolean | null;
  routeUnhealthy: boolean | null;
  accessTimeoutRecovery: boolean | null;
  /** 4-bit field: 0 not supported, 1 none (good), other values name the misconfiguration. */
  incorrectConfiguration: number;
  partitionAssigned: boolean | null;
}

export interface FabricInfo {
  /** 3 or 2 from nvmlDeviceGetGpuFabricInfoV, 1 from the older nvmlDeviceGetGpuFabricInfo. */
  version: 1 | 2 | 3;
  fn: string;
  state: number;
  stateName: FabricState;
  /** An nvmlReturn_t: 0 when fabric registration succeeded. */
  status: number;
  statusName: string;
  cliqueId: number;
  clusterUuid: string;
  healthMask: number | null;
  health: FabricHealth | null;
  healthSummary: number | null;
  healthSummaryName: FabricHealthSummary | null;
}

export interface ComputeProcess {
  pid: number;
  usedGpuMemoryBytes: number | null;
}

export interface FieldValue {
  fieldId: number;
  scopeId: number;
  /** nvmlValueType_t: 0 double, 1 uint, 2 ulong, 3 ull, 4 sll, 5 sint, 6 ushort */
  valueType: number;
  timestampUs: number;
  value: Reading<number>;
}

export type RecoveryActionName =
  | "none"
  | "gpu_reset"
  | "node_reboot"
  | "drain_p2p"
  | "drain_and_reset"
  | "recover_imex_domain"
  | "bus_reset"
  | "system_reboot"
  | "unknown";

export interface RecoveryAction {
  value: number;
  name: RecoveryActionName;
}

/** All readings of one GPU. A reading that is not supported does not affect the others. */
export interface DeviceSnapshot {
  index: number;
  /**
   * Set when the GPU answered GPU_IS_LOST or RESET_REQUIRED (or no handle could be had): the
   * remaining readings were not attempted and carry this same error.
   */
  fatal: NvmlErrorInfo | null;
  identity: Reading<DeviceIdentity>;
  temperatureC: Reading<number>;
  thresholds: TemperatureThresholds;
  marginTemperatureC: Reading<number>;
  powerUsageMw: Reading<number>;
  powerLimitMw: Reading<number>;
  utilization: Reading<{ gpuPct: number; memoryPct: number }>;
  memory: Reading<MemoryInfo>;
  ecc: EccInfo;
  retiredPages: Reading<RetiredPages>;
  remappedRows: Reading<RemappedRows>;
  clocksEventReasons: Reading<ClocksEventReasons>;
  nvlink: Reading<NvLinkInfo[]>;
  pcie: PcieInfo;
  persistenceMode: Reading<boolean>;
  /** Compute processes on the GPU (nvmlDeviceGetComputeRunningProcesses _v3, _v2 or v1). */
  processes: Reading<ComputeProcess[]>;
  fabric: Reading<FabricInfo>;
  fields: Reading<FieldValue[]>;
  /** NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (field 230, R570+): the driver's own verdict. */
  recoveryAction: Reading<RecoveryAction>;
}

export interface NvmlSnapshot {
  /** ISO time the snapshot started. */
  time: string;
  durationMs: number;
  deviceCount: Reading<number>;
  devices: DeviceSnapshot[];
}

export interface InventoryDevice {
  index: number;
  identity: Reading<DeviceIdentity>;
}

export interface NvmlInventory {
  system: SystemInfo;
  deviceCount: Reading<number>;
  devices: InventoryDevice[];
}

/** One event from nvmlEventSetWait_v2. */
export interface NvmlEvent {
  /** Per-monitor sequence number, from 1. */
  seq: number;
  time: string;
  deviceIndex: number | null;
  uuid: string | null;
  pciBusId: string | null;
  /** The event type bit(s), e.g. 0x8 for XidCriticalError. */
  eventType: number;
  eventTypeNames: string[];
  /** eventData: the Xid for XidCriticalError (999 = unknown Xid), usually 0 for other types. */
  data: number;
  /** Set for XidCriticalError events only. */
  xid: number | null;
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
}

/** A device's registration in the event set. */
export interface EventRegistration {
  index: number;
  uuid: string | null;
  requestedMask: number;
  supportedMask: number | null;
  registeredMask: number;
  error: NvmlErrorInfo | null;
}

/** nvmlEventSetWait_v2 failed with something other than TIMEOUT (e.g. GPU_IS_LOST). */
export interface NvmlEventLoopError {
  time: string;
  error: NvmlErrorInfo;
  /** What the event worker does next. */
  action: "recreate_event_set";
  retryInMs: number;
}
