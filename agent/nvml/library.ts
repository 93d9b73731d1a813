// NvmlLibrary: one typed method per NVML call over a loaded library's bound functions (load.ts),
// with the out-parameters and struct buffers they share, and the NVML enum values their callers
// pass. Methods throw an NvmlError (see errors.ts) for every non-SUCCESS return; the readers in
// device.ts turn those into per-reading results. Synchronous: call it from a Worker (worker.ts)
// in the agent. Finding and opening the library is open.ts's.
import { normalizePciBusId } from "../pci.ts";
import { cudaVersionText, decodeClocksEventReasons, decodeFabricHealthMask, fabricHealthSummaryName, fabricStateName, formatUuidBytes } from "./decode.ts";
import { NVML_RETURN, nvmlError, nvmlReturnName, type NvmlError } from "./errors.ts";
import { LAYOUT, STRING_BUFFER, STRUCT_VERSIONS, allocStruct, type StructName } from "./layout.ts";
import { loadPath, type BoundFunction, type FFIArg, type NvmlBinding } from "./load.ts";
import type { FileIdentity } from "./private-copy.ts";
import { NVML_FUNCTIONS, type NvmlFunctionKey } from "./symbols.ts";
import type {
  ClocksEventReasons,
  ComputeProcess,
  DeviceHandle,
  EventSetHandle,
  FabricInfo,
  FieldValue,
  MemoryInfo,
  NvmlCapabilities,
  NvmlDevice,
  PciInfo,
  RemappedRows,
} from "./types.ts";

/** Told about every NVML call; the worker uses it to let the main-thread watchdog name a hung call. */
export interface CallObserver {
  enter(symbol: string, device: number | undefined): void;
  leave(): void;
}

const decoder = new TextDecoder();
function cString(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  const end = bytes.indexOf(0, offset);
  return decoder.decode(bytes.subarray(offset, end < 0 || end > offset + length ? offset + length : end));
}

function u64(view: DataView, offset: number): number {
  return Number(view.getBigUint64(offset, true));
}

/** nvmlMemoryErrorType_t / nvmlEccCounterType_t / nvmlMemoryLocation_t / threshold types. */
export const MEMORY_ERROR_TYPE = { corrected: 0, uncorrected: 1 } as const;
export const ECC_COUNTER_TYPE = { volatile: 0, aggregate: 1 } as const;
export const TEMPERATURE_THRESHOLD = { shutdown: 0, slowdown: 1, memMax: 2, gpuMax: 3 } as const;
export const PAGE_RETIREMENT_CAUSE = { multipleSbe: 0, dbe: 1 } as const;
export const NVLINK_ERROR_COUNTER = { replay: 0, recovery: 1, crcFlit: 2, crcData: 3, eccData: 4 } as const;

export interface NvmlEventData {
  device: DeviceHandle;
  eventType: number;
  eventData: number;
  gpuInstanceId: number;
  computeInstanceId: number;
}

export class NvmlLibrary {
  /** Which functions this driver exports, and under which symbol (the capability probe's result). */
  readonly capabilities: NvmlCapabilities;
  private readonly bound: Partial<Record<NvmlFunctionKey, BoundFunction>>;
  private readonly release: () => void;
  /** Set by the worker; told about each call so a watchdog can name a hung one. */
  observer: CallObserver | undefined;
  /** The file on disk this was loaded from, as it was then (a rewrite of it is a new driver to load). */
  file: FileIdentity | undefined;
  /** Why the file itself is mapped rather than a private copy (a rewrite of it would then crash the process); undefined when the copy is. */
  mappedInPlace: string | undefined;
  private closed = false;
  // Out-parameters and struct buffers, reused from call to call: every call is synchronous and its
  // result is copied out at once. A poll makes hundreds of calls; fresh buffers for each would be
  // garbage for the collector (and resident memory until it runs).
  private readonly u32Out = new Uint32Array(4);
  private readonly i32Out = new Int32Array(2);
  private readonly u64Out = new BigUint64Array(1);
  private readonly stringOut = new Uint8Array(Math.max(...Object.values(STRING_BUFFER)));
  private readonly structs = new Map<StructName, { bytes: Uint8Array; view: DataView }>();

  constructor(
    /** The path it was loaded from (as tried; a bare soname when found by the loader). */
    readonly path: string,
    binding: NvmlBinding,
  ) {
    this.bound = binding.bound;
    this.capabilities = binding.capabilities;
    this.release = binding.release;
    this.file = binding.file;
    this.mappedInPlace = binding.mappedInPlace;
  }

  /** Loads one path with no discovery and no nvmlInit (tests, tools). Throws when it cannot. */
  static load(path: string): NvmlLibrary {
    const r = loadPath(path);
    if (!r.ok) throw new Error(`${path}: ${r.reason}`);
    return new NvmlLibrary(path, r.binding);
  }

  /** A zeroed buffer for `name`, the same one every time. */
  private struct(name: StructName): { bytes: Uint8Array; view: DataView } {
    let s = this.structs.get(name);
    if (s === undefined) {
      s = allocStruct(name);
      this.structs.set(name, s);
    } else {
      s.bytes.fill(0);
    }
    return s;
  }

  has(key: NvmlFunctionKey): boolean {
    return this.bound[key] !== undefined;
  }

  /** The symbol a function resolved to, e.g. "nvmlEventSetWait_v2"; null when absent. */
  symbolOf(key: NvmlFunctionKey): string | null {
    return this.bound[key]?.symbol ?? null;
  }

  /** Calls an NVML function and returns its nvmlReturn_t. An escape hatch for tests and tools. */
  rawCall(key: NvmlFunctionKey, args: FFIArg[], device?: number): number {
    const fn = this.bound[key];
    if (!fn) return NVML_RETURN.FUNCTION_NOT_FOUND;
    if (this.closed) throw new Error("NVML library is closed");
    const observer = this.observer;
    observer?.enter(fn.symbol, device);
    try {
      return Number(fn.call(...args));
    } finally {
      observer?.leave();
    }
  }

  private check(key: NvmlFunctionKey, args: FFIArg[], device?: NvmlDevice, okCodes: readonly number[] = []): number {
    const code = this.rawCall(key, args, device?.index);
    if (code !== NVML_RETURN.SUCCESS && !okCodes.includes(code)) throw this.error(key, code, device);
    return code;
  }

  private error(key: NvmlFunctionKey, code: number, device?: NvmlDevice): NvmlError {
    const symbol = this.bound[key]?.symbol ?? NVML_FUNCTIONS[key].names[0] ?? key;
    const detail = code === NVML_RETURN.FUNCTION_NOT_FOUND && !this.bound[key] ? "not exported by this libnvidia-ml" : this.errorString(code);
    return nvmlError(code, symbol, { ...(device ? { device: device.index } : {}), detail });
  }

  /** Throws NvmlFunctionNotFoundError for a function this driver does not export. */
  private need(key: NvmlFunctionKey, device?: NvmlDevice): void {
    if (!this.bound[key]) throw this.error(key, NVML_RETURN.FUNCTION_NOT_FOUND, device);
  }

  errorString(code: number): string {
    const fn = this.bound.errorString;
    if (!fn || this.closed) return nvmlReturnName(code);
    try {
      const s = fn.call(code);
      return s === null || s === undefined ? nvmlReturnName(code) : String(s);
    } catch {
      return nvmlReturnName(code);
    }
  }

  // ---- lifecycle --------------------------------------------------------------------------

  init(): void {
    this.check("init", []);
  }

  shutdown(): void {
    this.check("shutdown", []);
  }

  /** Releases the bun:ffi handles (after shutdown). Further calls throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }

  // ---- system -----------------------------------------------------------------------------

  private string(key: NvmlFunctionKey, size: number, device?: NvmlDevice): string {
    const buf = this.stringOut.subarray(0, size).fill(0);
    this.check(key, device ? [device.handle, buf, size] : [buf, size], device);
    return cString(buf);
  }

  driverVersion(): string {
    return this.string("systemGetDriverVersion", STRING_BUFFER.systemDriverVersion);
  }

  nvmlVersion(): string {
    return this.string("systemGetNvmlVersion", STRING_BUFFER.systemNvmlVersion);
  }

  /** The CUDA version the driver supports, raw (e.g. 12040) and as text ("12.4"). */
  cudaDriverVersion(): { raw: number; version: string } {
    const out = this.i32Out;
    this.check("systemGetCudaDriverVersion", [out]);
    return { raw: out[0]!, version: cudaVersionText(out[0]!) };
  }

  // ---- enumeration ------------------------------------------------------------------------

  deviceCount(): number {
    const out = this.u32Out;
    this.check("deviceGetCount", [out]);
    return out[0]!;
  }

  device(index: number): NvmlDevice {
    const out = this.u64Out;
    const code = this.rawCall("deviceGetHandleByIndex", [index, out], index);
    if (code !== 0) throw this.error("deviceGetHandleByIndex", code, { index, handle: 0 as DeviceHandle });
    return { index, handle: Number(out[0]) as DeviceHandle };
  }

  /** Index is -1 until known (use deviceIndex()). */
  deviceByUuid(uuid: string): NvmlDevice {
    const out = this.u64Out;
    this.check("deviceGetHandleByUuid", [Buffer.from(`${uuid}\0`), out]);
    return { index: -1, handle: Number(out[0]) as DeviceHandle };
  }

  deviceByPciBusId(busId: string): NvmlDevice {
    const out = this.u64Out;
    this.check("deviceGetHandleByPciBusId", [Buffer.from(`${busId}\0`), out]);
    return { index: -1, handle: Number(out[0]) as DeviceHandle };
  }

  // ---- identity ---------------------------------------------------------------------------

  uuid(d: NvmlDevice): string {
    return this.string("deviceGetUuid", STRING_BUFFER.deviceUuid, d);
  }

  name(d: NvmlDevice): string {
    return this.string("deviceGetName", STRING_BUFFER.deviceName, d);
  }

  serial(d: NvmlDevice): string {
    return this.string("deviceGetSerial", STRING_BUFFER.deviceSerial, d);
  }

  pciInfo(d: NvmlDevice): PciInfo {
    const L = LAYOUT.nvmlPciInfo_t.fields;
    const { bytes, view } = this.struct("nvmlPciInfo_t");
    this.check("deviceGetPciInfo", [d.handle, bytes], d);
    const busId = cString(bytes, L.busId.offset, L.busId.size) || cString(bytes, L.busIdLegacy.offset, L.busIdLegacy.size);
    return {
      busId,
      busIdNormalized: normalizePciBusId(busId) ?? busId.toLowerCase(),
      domain: view.getUint32(L.domain.offset, true),
      bus: view.getUint32(L.bus.offset, true),
      device: view.getUint32(L.device.offset, true),
      pciDeviceId: view.getUint32(L.pciDeviceId.offset, true),
      pciSubSystemId: view.getUint32(L.pciSubSystemId.offset, true),
    };
  }

  deviceIndex(d: NvmlDevice): number {
    return this.u32("deviceGetIndex", d);
  }

  minorNumber(d: NvmlDevice): number {
    return this.u32("deviceGetMinorNumber", d);
  }

  private u32(key: NvmlFunctionKey, d: NvmlDevice): number {
    const out = this.u32Out;
    this.check(key, [d.handle, out], d);
    return out[0]!;
  }

  private u64(key: NvmlFunctionKey, d: NvmlDevice): number {
    const out = this.u64Out;
    this.check(key, [d.handle, out], d);
    return Number(out[0]);
  }

  // ---- memory, temperature, power, utilisation --------------------------------------------

  /** nvmlDeviceGetMemoryInfo_v2 (with reserved memory) when exported, else the v1 call. */
  memoryInfo(d: NvmlDevice): MemoryInfo {
    if (this.has("deviceGetMemoryInfoV2")) {
      const L = LAYOUT.nvmlMemory_v2_t.fields;
      const { bytes, view } = this.struct("nvmlMemory_v2_t");
      view.setUint32(L.version.offset, STRUCT_VERSIONS.nvmlMemory_v2, true);
      const code = this.rawCall("deviceGetMemoryInfoV2", [d.handle, bytes], d.index);
      if (code === 0) {
        return {
          totalBytes: u64(view, L.total.offset),
          usedBytes: u64(view, L.used.offset),
          freeBytes: u64(view, L.free.offset),
          reservedBytes: u64(view, L.reserved.offset),
          fn: this.symbolOf("deviceGetMemoryInfoV2")!,
        };
      }
      if (code !== NVML_RETURN.ARGUMENT_VERSION_MISMATCH && code !== NVML_RETURN.FUNCTION_NOT_FOUND) {
        throw this.error("deviceGetMemoryInfoV2", code, d);
      }
    }
    const L = LAYOUT.nvmlMemory_t.fields;
    const { bytes, view } = this.struct("nvmlMemory_t");
    this.check("deviceGetMemoryInfo", [d.handle, bytes], d);
    return {
      totalBytes: u64(view, L.total.offset),
      usedBytes: u64(view, L.used.offset),
      freeBytes: u64(view, L.free.offset),
      reservedBytes: null,
      fn: this.symbolOf("deviceGetMemoryInfo")!,
    };
  }

  /** GPU core temperature: nvmlDeviceGetTemperatureV (R570+) when exported, else the legacy call. */
  temperature(d: NvmlDevice): { celsius: number; fn: string } {
    if (this.has("deviceGetTemperatureV")) {
      const L = LAYOUT.nvmlTemperature_v1_t.fields;
      const { bytes, view } = this.struct("nvmlTemperature_v1_t");
      view.setUint32(L.version.offset, STRUCT_VERSIONS.nvmlTemperature_v1, true);
      view.setInt32(L.sensorType.offset, 0, true);
      const code = this.rawCall("deviceGetTemperatureV", [d.handle, bytes], d.index);
      if (code === 0) return { celsius: view.getInt32(L.temperature.offset, true), fn: this.symbolOf("deviceGetTemperatureV")! };
      if (code !== NVML_RETURN.ARGUMENT_VERSION_MISMATCH || !this.has("deviceGetTemperature")) {
        throw this.error("deviceGetTemperatureV", code, d);
      }
    }
    const out = this.u32Out;
    this.check("deviceGetTemperature", [d.handle, 0, out], d);
    return { celsius: out[0]!, fn: this.symbolOf("deviceGetTemperature")! };
  }

  temperatureThreshold(d: NvmlDevice, type: number): number {
    const out = this.u32Out;
    this.check("deviceGetTemperatureThreshold", [d.handle, type, out], d);
    return out[0]!;
  }

  /** Degrees below the slowdown point (R570+). */
  marginTemperature(d: NvmlDevice): number {
    this.need("deviceGetMarginTemperature", d);
    const L = LAYOUT.nvmlMarginTemperature_v1_t.fields;
    const { bytes, view } = this.struct("nvmlMarginTemperature_v1_t");
    view.setUint32(L.version.offset, STRUCT_VERSIONS.nvmlMarginTemperature_v1, true);
    this.check("deviceGetMarginTemperature", [d.handle, bytes], d);
    return view.getInt32(L.marginTemperature.offset, true);
  }

  powerUsageMw(d: NvmlDevice): number {
    return this.u32("deviceGetPowerUsage", d);
  }

  enforcedPowerLimitMw(d: NvmlDevice): number {
    return this.u32("deviceGetEnforcedPowerLimit", d);
  }

  powerManagementLimitMw(d: NvmlDevice): number {
    return this.u32("deviceGetPowerManagementLimit", d);
  }

  utilization(d: NvmlDevice): { gpuPct: number; memoryPct: number } {
    const L = LAYOUT.nvmlUtilization_t.fields;
    const { bytes, view } = this.struct("nvmlUtilization_t");
    this.check("deviceGetUtilizationRates", [d.handle, bytes], d);
    return { gpuPct: view.getUint32(L.gpu.offset, true), memoryPct: view.getUint32(L.memory.offset, true) };
  }

  // ---- ECC, remapping, retired pages ------------------------------------------------------

  eccMode(d: NvmlDevice): { current: boolean; pending: boolean } {
    const cur = this.i32Out.subarray(0, 1);
    const pend = this.i32Out.subarray(1, 2);
    this.check("deviceGetEccMode", [d.handle, cur, pend], d);
    return { current: cur[0] === 1, pending: pend[0] === 1 };
  }

  totalEccErrors(d: NvmlDevice, errorType: number, counterType: number): number {
    const out = this.u64Out;
    this.check("deviceGetTotalEccErrors", [d.handle, errorType, counterType, out], d);
    return Number(out[0]);
  }

  memoryErrorCounter(d: NvmlDevice, errorType: number, counterType: number, location: number): number {
    const out = this.u64Out;
    this.check("deviceGetMemoryErrorCounter", [d.handle, errorType, counterType, location, out], d);
    return Number(out[0]);
  }

  remappedRows(d: NvmlDevice): RemappedRows {
    const out = this.u32Out;
    const at = (i: number) => out.subarray(i, i + 1);
    this.check("deviceGetRemappedRows", [d.handle, at(0), at(1), at(2), at(3)], d);
    return { correctable: out[0]!, uncorrectable: out[1]!, pending: out[2] !== 0, failed: out[3] !== 0 };
  }

  /** Number of pages retired for a cause (0 multiple SBE, 1 DBE); pre-Ampere GPUs only. */
  retiredPageCount(d: NvmlDevice, cause: number): number {
    const count = this.u32Out;
    count[0] = 0; // in: the capacity of the (absent) address arrays
    const key: NvmlFunctionKey = this.has("deviceGetRetiredPagesV2") ? "deviceGetRetiredPagesV2" : "deviceGetRetiredPages";
    const args: FFIArg[] = key === "deviceGetRetiredPagesV2" ? [d.handle, cause, count, null, null] : [d.handle, cause, count, null];
    this.check(key, args, d, [NVML_RETURN.INSUFFICIENT_SIZE]);
    return count[0]!;
  }

  retiredPagesPending(d: NvmlDevice): boolean {
    const out = this.i32Out;
    this.check("deviceGetRetiredPagesPendingStatus", [d.handle, out], d);
    return out[0] === 1;
  }

  // ---- clocks -----------------------------------------------------------------------------

  /** nvmlDeviceGetCurrentClocksEventReasons (R535+), falling back to ...ThrottleReasons. */
  clocksEventReasons(d: NvmlDevice): ClocksEventReasons {
    let key: NvmlFunctionKey = "deviceGetCurrentClocksEventReasons";
    if (!this.has(key)) key = "deviceGetCurrentClocksThrottleReasons";
    const out = this.u64Out;
    const code = this.rawCall(key, [d.handle, out], d.index);
    if (code === NVML_RETURN.FUNCTION_NOT_FOUND && key === "deviceGetCurrentClocksEventReasons" && this.has("deviceGetCurrentClocksThrottleReasons")) {
      key = "deviceGetCurrentClocksThrottleReasons";
      this.check(key, [d.handle, out], d);
    } else if (code !== 0) {
      throw this.error(key, code, d);
    }
    const mask = Number(out[0]);
    return { mask, reasons: decodeClocksEventReasons(mask), fn: this.symbolOf(key)! };
  }

  // ---- NVLink, PCIe, persistence ----------------------------------------------------------

  nvLinkState(d: NvmlDevice, link: number): boolean {
    const out = this.i32Out;
    this.check("deviceGetNvLinkState", [d.handle, link, out], d);
    return out[0] === 1;
  }

  nvLinkErrorCounter(d: NvmlDevice, link: number, counter: number): number {
    const out = this.u64Out;
    this.check("deviceGetNvLinkErrorCounter", [d.handle, link, counter, out], d);
    return Number(out[0]);
  }

  pcieCurrentGeneration(d: NvmlDevice): number {
    return this.u32("deviceGetCurrPcieLinkGeneration", d);
  }
  pcieCurrentWidth(d: NvmlDevice): number {
    return this.u32("deviceGetCurrPcieLinkWidth", d);
  }
  pcieMaxGeneration(d: NvmlDevice): number {
    return this.u32("deviceGetMaxPcieLinkGeneration", d);
  }
  pcieMaxWidth(d: NvmlDevice): number {
    return this.u32("deviceGetMaxPcieLinkWidth", d);
  }
  pcieGpuMaxGeneration(d: NvmlDevice): number {
    this.need("deviceGetGpuMaxPcieLinkGeneration", d);
    return this.u32("deviceGetGpuMaxPcieLinkGeneration", d);
  }
  pcieReplayCounter(d: NvmlDevice): number {
    return this.u32("deviceGetPcieReplayCounter", d);
  }
  pcieSpeedMbps(d: NvmlDevice): number {
    this.need("deviceGetPcieSpeed", d);
    return this.u32("deviceGetPcieSpeed", d);
  }

  persistenceMode(d: NvmlDevice): boolean {
    const out = this.i32Out;
    this.check("deviceGetPersistenceMode", [d.handle, out], d);
    return out[0] === 1;
  }

  /** The compute processes on the GPU now (pid, GPU memory in bytes; null when NVML cannot tell). */
  computeProcesses(d: NvmlDevice): ComputeProcess[] {
    const symbol = this.symbolOf("deviceGetComputeRunningProcesses");
    const struct = symbol === "nvmlDeviceGetComputeRunningProcesses" ? "nvmlProcessInfo_v1_t" : "nvmlProcessInfo_v2_t";
    const L = LAYOUT[struct];
    // Processes can start between asking how many and reading them: retry with the new count.
    let capacity = 16;
    for (let attempt = 0; ; attempt++) {
      const count = new Uint32Array([capacity]);
      const bytes = new Uint8Array(L.size * capacity);
      const code = this.check("deviceGetComputeRunningProcesses", [d.handle, count, bytes], d, [NVML_RETURN.INSUFFICIENT_SIZE]);
      if (code === NVML_RETURN.INSUFFICIENT_SIZE && attempt < 3) {
        capacity = count[0]! + 8;
        continue;
      }
      if (code === NVML_RETURN.INSUFFICIENT_SIZE) throw this.error("deviceGetComputeRunningProcesses", code, d);
      const view = new DataView(bytes.buffer);
      const out: ComputeProcess[] = [];
      for (let i = 0; i < count[0]!; i++) {
        const base = i * L.size;
        const memory = view.getBigUint64(base + L.fields.usedGpuMemory.offset, true);
        // NVML_VALUE_NOT_AVAILABLE (all ones) where the memory cannot be read (e.g. without permission).
        out.push({ pid: view.getUint32(base + L.fields.pid.offset, true), usedGpuMemoryBytes: memory === 0xffffffffffffffffn ? null : Number(memory) });
      }
      return out;
    }
  }

  // ---- fabric -----------------------------------------------------------------------------

  /**
   * GPU fabric (NVSwitch / NVL) state: nvmlDeviceGetGpuFabricInfoV with v3, then v2 on
   * ARGUMENT_VERSION_MISMATCH, then the v1 nvmlDeviceGetGpuFabricInfo (R525+). Throws
   * NvmlFunctionNotFoundError when the driver has none of them.
   */
  fabricInfo(d: NvmlDevice): FabricInfo {
    if (this.has("deviceGetGpuFabricInfoV")) {
      for (const version of [3, 2] as const) {
        const struct = version === 3 ? "nvmlGpuFabricInfo_v3_t" : "nvmlGpuFabricInfo_v2_t";
        const L = LAYOUT[struct].fields;
        const { bytes, view } = this.struct(struct);
        view.setUint32(L.version.offset, version === 3 ? STRUCT_VERSIONS.nvmlGpuFabricInfo_v3 : STRUCT_VERSIONS.nvmlGpuFabricInfo_v2, true);
        const code = this.rawCall("deviceGetGpuFabricInfoV", [d.handle, bytes], d.index);
        if (code === NVML_RETURN.ARGUMENT_VERSION_MISMATCH) continue;
        if (code !== 0) throw this.error("deviceGetGpuFabricInfoV", code, d);
        const healthMask = view.getUint32(L.healthMask.offset, true);
        const summary = version === 3 ? view.getUint8(LAYOUT.nvmlGpuFabricInfo_v3_t.fields.healthSummary.offset) : null;
        return this.fabric(version, "deviceGetGpuFabricInfoV", bytes, view, L, healthMask, summary);
      }
    }
    if (this.has("deviceGetGpuFabricInfo")) {
      const L = LAYOUT.nvmlGpuFabricInfo_t.fields;
      const { bytes, view } = this.struct("nvmlGpuFabricInfo_t");
      this.check("deviceGetGpuFabricInfo", [d.handle, bytes], d);
      return this.fabric(1, "deviceGetGpuFabricInfo", bytes, view, L, null, null);
    }
    if (this.has("deviceGetGpuFabricInfoV")) throw this.error("deviceGetGpuFabricInfoV", NVML_RETURN.ARGUMENT_VERSION_MISMATCH, d);
    throw this.error("deviceGetGpuFabricInfo", NVML_RETURN.FUNCTION_NOT_FOUND, d);
  }

  private fabric(
    version: 1 | 2 | 3,
    key: NvmlFunctionKey,
    bytes: Uint8Array,
    view: DataView,
    L: { clusterUuid: { offset: number }; status: { offset: number }; cliqueId: { offset: number }; state: { offset: number } },
    healthMask: number | null,
    summary: number | null,
  ): FabricInfo {
    const state = view.getUint8(L.state.offset);
    const status = view.getInt32(L.status.offset, true);
    return {
      version,
      fn: this.symbolOf(key)!,
      state,
      stateName: fabricStateName(state),
      status,
      statusName: nvmlReturnName(status),
      cliqueId: view.getUint32(L.cliqueId.offset, true),
      clusterUuid: formatUuidBytes(bytes.subarray(L.clusterUuid.offset, L.clusterUuid.offset + 16)),
      healthMask,
      health: healthMask === null ? null : decodeFabricHealthMask(healthMask),
      healthSummary: summary,
      healthSummaryName: summary === null ? null : fabricHealthSummaryName(summary),
    };
  }

  // ---- field values -----------------------------------------------------------------------

  /** One nvmlDeviceGetFieldValues call; each entry carries its own return code. */
  fieldValues(d: NvmlDevice, requests: readonly (number | { fieldId: number; scopeId?: number })[]): FieldValue[] {
    if (requests.length === 0) return [];
    const size = LAYOUT.nvmlFieldValue_t.size;
    const L = LAYOUT.nvmlFieldValue_t.fields;
    const bytes = new Uint8Array(size * requests.length);
    const view = new DataView(bytes.buffer);
    requests.forEach((r, i) => {
      const { fieldId, scopeId = 0 } = typeof r === "number" ? { fieldId: r } : r;
      view.setUint32(i * size + L.fieldId.offset, fieldId, true);
      view.setUint32(i * size + L.scopeId.offset, scopeId, true);
    });
    this.check("deviceGetFieldValues", [d.handle, requests.length, bytes], d);
    const symbol = this.symbolOf("deviceGetFieldValues")!;
    return requests.map((_, i) => {
      const base = i * size;
      const fieldId = view.getUint32(base + L.fieldId.offset, true);
      const scopeId = view.getUint32(base + L.scopeId.offset, true);
      const valueType = view.getInt32(base + L.valueType.offset, true);
      const ret = view.getInt32(base + L.nvmlReturn.offset, true);
      const at = base + L.value.offset;
      let value: number;
      switch (valueType) {
        case 0:
          value = view.getFloat64(at, true);
          break;
        case 1:
          value = view.getUint32(at, true);
          break;
        case 2:
        case 3:
          value = Number(view.getBigUint64(at, true));
          break;
        case 4:
          value = Number(view.getBigInt64(at, true));
          break;
        case 5:
          value = view.getInt32(at, true);
          break;
        case 6:
          value = view.getUint16(at, true);
          break;
        default:
          value = Number(view.getBigUint64(at, true));
      }
      return {
        fieldId,
        scopeId,
        valueType,
        timestampUs: Number(view.getBigInt64(base + L.timestamp.offset, true)),
        value:
          ret === 0
            ? { ok: true as const, value }
            : { ok: false as const, error: nvmlError(ret, symbol, { device: d.index, detail: `field ${fieldId}: ${this.errorString(ret)}` }).info },
      };
    });
  }

  // ---- events -----------------------------------------------------------------------------

  supportedEventTypes(d: NvmlDevice): number {
    return this.u64("deviceGetSupportedEventTypes", d);
  }

  eventSetCreate(): EventSetHandle {
    const out = this.u64Out;
    this.check("eventSetCreate", [out]);
    return Number(out[0]) as EventSetHandle;
  }

  registerEvents(d: NvmlDevice, mask: number, set: EventSetHandle): void {
    this.check("deviceRegisterEvents", [d.handle, BigInt(mask), set], d);
  }

  /** One nvmlEventSetWait_v2 call. Returns null on TIMEOUT; throws NvmlError on anything else. */
  eventSetWait(set: EventSetHandle, timeoutMs: number): NvmlEventData | null {
    const L = LAYOUT.nvmlEventData_t.fields;
    const { bytes, view } = this.struct("nvmlEventData_t");
    const code = this.check("eventSetWait", [set, bytes, Math.max(0, Math.floor(timeoutMs))], undefined, [NVML_RETURN.TIMEOUT]);
    if (code === NVML_RETURN.TIMEOUT) return null;
    return {
      device: u64(view, L.device.offset) as DeviceHandle,
      eventType: u64(view, L.eventType.offset),
      eventData: u64(view, L.eventData.offset),
      gpuInstanceId: view.getUint32(L.gpuInstanceId.offset, true),
      computeInstanceId: view.getUint32(L.computeInstanceId.offset, true),
    };
  }

  eventSetFree(set: EventSetHandle): void {
    this.check("eventSetFree", [set]);
  }
}
