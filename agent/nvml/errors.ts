// NVML return codes → typed errors. Every failed NVML call becomes an NvmlError (thrown inside
// the binding) or an NvmlErrorInfo (the plain, structured-cloneable form carried in readings and
// across the worker boundary). Both carry the NVML function name.

/** nvmlReturn_t values (int32), from NVML's published API. */
export const NVML_RETURN = {
  SUCCESS: 0,
  UNINITIALIZED: 1,
  INVALID_ARGUMENT: 2,
  NOT_SUPPORTED: 3,
  NO_PERMISSION: 4,
  ALREADY_INITIALIZED: 5,
  NOT_FOUND: 6,
  INSUFFICIENT_SIZE: 7,
  INSUFFICIENT_POWER: 8,
  DRIVER_NOT_LOADED: 9,
  TIMEOUT: 10,
  IRQ_ISSUE: 11,
  LIBRARY_NOT_FOUND: 12,
  FUNCTION_NOT_FOUND: 13,
  CORRUPTED_INFOROM: 14,
  GPU_IS_LOST: 15,
  RESET_REQUIRED: 16,
  OPERATING_SYSTEM: 17,
  LIB_RM_VERSION_MISMATCH: 18,
  IN_USE: 19,
  MEMORY: 20,
  NO_DATA: 21,
  VGPU_ECC_NOT_SUPPORTED: 22,
  INSUFFICIENT_RESOURCES: 23,
  FREQ_NOT_SUPPORTED: 24,
  ARGUMENT_VERSION_MISMATCH: 25,
  DEPRECATED: 26,
  NOT_READY: 27,
  GPU_NOT_FOUND: 28,
  INVALID_STATE: 29,
  UNKNOWN: 999,
} as const;

export type NvmlReturnName = keyof typeof NVML_RETURN;

/** The error kinds the agent distinguishes. Codes without their own kind map to "unknown". */
export type NvmlErrorKind =
  | "uninitialized"
  | "invalid_argument"
  | "not_supported"
  | "no_permission"
  | "already_initialized"
  | "not_found"
  | "insufficient_size"
  | "insufficient_power"
  | "driver_not_loaded"
  | "timeout"
  | "irq_issue"
  | "library_not_found"
  | "function_not_found"
  | "corrupted_inforom"
  | "gpu_lost"
  | "reset_required"
  | "operating_system"
  | "lib_rm_version_mismatch"
  | "in_use"
  | "memory"
  | "no_data"
  | "insufficient_resources"
  | "argument_version_mismatch"
  | "deprecated"
  | "not_ready"
  | "gpu_not_found"
  | "invalid_state"
  | "unknown";

const KIND_BY_CODE: Readonly<Record<number, NvmlErrorKind>> = {
  1: "uninitialized",
  2: "invalid_argument",
  3: "not_supported",
  4: "no_permission",
  5: "already_initialized",
  6: "not_found",
  7: "insufficient_size",
  8: "insufficient_power",
  9: "driver_not_loaded",
  10: "timeout",
  11: "irq_issue",
  12: "library_not_found",
  13: "function_not_found",
  14: "corrupted_inforom",
  15: "gpu_lost",
  16: "reset_required",
  17: "operating_system",
  18: "lib_rm_version_mismatch",
  19: "in_use",
  20: "memory",
  21: "no_data",
  22: "not_supported",
  23: "insufficient_resources",
  24: "not_supported",
  25: "argument_version_mismatch",
  26: "deprecated",
  27: "not_ready",
  28: "gpu_not_found",
  29: "invalid_state",
};

const NAME_BY_CODE: ReadonlyMap<number, NvmlReturnName> = new Map(
  (Object.entries(NVML_RETURN) as [NvmlReturnName, number][]).map(([name, code]) => [code, name]),
);

export function nvmlErrorKind(code: number): NvmlErrorKind {
  return KIND_BY_CODE[code] ?? "unknown";
}

/** "GPU_IS_LOST" for 15; "UNKNOWN_<n>" for codes this binding does not know. */
export function nvmlReturnName(code: number): string {
  return NAME_BY_CODE.get(code) ?? `UNKNOWN_${code}`;
}

/** Kinds after which no further call to the device can succeed until a reset or reboot. */
export const DEVICE_FATAL_KINDS: ReadonlySet<NvmlErrorKind> = new Set(["gpu_lost", "reset_required"]);

/** Extra words for codes that an operator must act on. */
const HINTS: Partial<Record<NvmlErrorKind, string>> = {
  gpu_lost: "the GPU has fallen off the bus or is otherwise inaccessible",
  reset_required: "the GPU needs a reset or a reboot",
  lib_rm_version_mismatch: "libnvidia-ml and the loaded kernel driver differ (driver upgraded without a reboot?)",
  driver_not_loaded: "the NVIDIA kernel driver is not loaded",
  argument_version_mismatch: "the struct version passed is not supported by this driver",
};

/** The plain form of an NVML error: in readings, events and messages from the worker. */
export interface NvmlErrorInfo {
  kind: NvmlErrorKind;
  /** The nvmlReturn_t value (13 FUNCTION_NOT_FOUND also when the symbol is absent). */
  code: number;
  /** The nvmlReturn_t name, e.g. "GPU_IS_LOST". */
  name: string;
  /** The NVML function that failed, e.g. "nvmlDeviceGetRemappedRows". */
  fn: string;
  /** Index of the device the call was for, when it was for one. */
  device?: number;
  message: string;
}

export function nvmlErrorInfo(code: number, fn: string, options: { device?: number; detail?: string } = {}): NvmlErrorInfo {
  const kind = nvmlErrorKind(code);
  const name = nvmlReturnName(code);
  const on = options.device === undefined ? "" : ` (GPU ${options.device})`;
  const detail = options.detail ? `: ${options.detail}` : "";
  const hint = HINTS[kind] ? ` — ${HINTS[kind]}` : "";
  const info: NvmlErrorInfo = { kind, code, name, fn, message: `${fn}${on} failed: ${name} (${code})${detail}${hint}` };
  if (options.device !== undefined) info.device = options.device;
  return info;
}

/** Base class of every error the binding throws for an NVML return code. */
export class NvmlError extends Error {
  readonly kind: NvmlErrorKind;
  readonly code: number;
  readonly returnName: string;
  readonly fn: string;
  readonly device: number | undefined;
  constructor(readonly info: NvmlErrorInfo) {
    super(info.message);
    this.name = "NvmlError";
    this.kind = info.kind;
    this.code = info.code;
    this.returnName = info.name;
    this.fn = info.fn;
    this.device = info.device;
  }
}
export class NvmlNotSupportedError extends NvmlError {
  override readonly name = "NvmlNotSupportedError";
}
export class NvmlFunctionNotFoundError extends NvmlError {
  override readonly name = "NvmlFunctionNotFoundError";
}
export class NvmlGpuLostError extends NvmlError {
  override readonly name = "NvmlGpuLostError";
}
export class NvmlResetRequiredError extends NvmlError {
  override readonly name = "NvmlResetRequiredError";
}
export class NvmlVersionMismatchError extends NvmlError {
  override readonly name = "NvmlVersionMismatchError";
}
export class NvmlDriverNotLoadedError extends NvmlError {
  override readonly name = "NvmlDriverNotLoadedError";
}
export class NvmlArgumentVersionMismatchError extends NvmlError {
  override readonly name = "NvmlArgumentVersionMismatchError";
}
export class NvmlTimeoutError extends NvmlError {
  override readonly name = "NvmlTimeoutError";
}
export class NvmlUninitializedError extends NvmlError {
  override readonly name = "NvmlUninitializedError";
}

const CLASS_BY_KIND: Partial<Record<NvmlErrorKind, new (info: NvmlErrorInfo) => NvmlError>> = {
  not_supported: NvmlNotSupportedError,
  function_not_found: NvmlFunctionNotFoundError,
  gpu_lost: NvmlGpuLostError,
  reset_required: NvmlResetRequiredError,
  lib_rm_version_mismatch: NvmlVersionMismatchError,
  driver_not_loaded: NvmlDriverNotLoadedError,
  argument_version_mismatch: NvmlArgumentVersionMismatchError,
  timeout: NvmlTimeoutError,
  uninitialized: NvmlUninitializedError,
};

/** The typed error for an info: NvmlGpuLostError for 15, NvmlResetRequiredError for 16, … */
export function nvmlErrorFromInfo(info: NvmlErrorInfo): NvmlError {
  const Class = CLASS_BY_KIND[info.kind] ?? NvmlError;
  return new Class(info);
}

export function nvmlError(code: number, fn: string, options: { device?: number; detail?: string } = {}): NvmlError {
  return nvmlErrorFromInfo(nvmlErrorInfo(code, fn, options));
}

/** A reading: the value, or the typed error that prevented it. Plain data (structured-cloneable). */
export type Reading<T> = { ok: true; value: T } | { ok: false; error: NvmlErrorInfo };

export function ok<T>(value: T): Reading<T> {
  return { ok: true, value };
}

export function failed<T>(error: NvmlErrorInfo): Reading<T> {
  return { ok: false, error };
}

/** Runs `read`; an NvmlError becomes a failed reading, anything else (a bug) is rethrown. */
export function reading<T>(read: () => T): Reading<T> {
  try {
    return { ok: true, value: read() };
  } catch (err) {
    if (err instanceof NvmlError) return { ok: false, error: err.info };
    throw err;
  }
}

/** True when the reading failed only because the GPU or driver does not offer it. */
export function isUnsupported(r: Reading<unknown>): boolean {
  return !r.ok && (r.error.kind === "not_supported" || r.error.kind === "function_not_found");
}
