// Navarch's NVML binding (bun:ffi over libnvidia-ml.so.1). See README.md in this directory.
//
// Main-thread API (never blocks: every NVML call runs in a Worker):
export { startNvmlMonitor, NvmlUnresponsiveError } from "./monitor.ts";
export { startReloadingNvmlMonitor } from "./reloading.ts";
export type { NvmlMonitor, NvmlMonitorOptions, NvmlOpenFailure } from "./monitor.ts";
export type { NvmlHang, CallInProgress } from "./watchdog.ts";
// The watchdog pieces, for other code that runs blocking calls in a worker:
export { CallWatchdog, SharedCallTracker, createTrackerBuffer, callInProgress } from "./watchdog.ts";
// Result types and wire mapping:
export type * from "./types.ts";
export { toWireGpuInfo, toWireGpus, toWireGpuSnapshot } from "./wire.ts";
// Errors:
export {
  NVML_RETURN,
  DEVICE_FATAL_KINDS,
  NvmlError,
  NvmlNotSupportedError,
  NvmlFunctionNotFoundError,
  NvmlGpuLostError,
  NvmlResetRequiredError,
  NvmlVersionMismatchError,
  NvmlDriverNotLoadedError,
  NvmlArgumentVersionMismatchError,
  NvmlTimeoutError,
  NvmlUninitializedError,
  nvmlError,
  nvmlErrorInfo,
  nvmlErrorFromInfo,
  nvmlErrorKind,
  nvmlReturnName,
  reading,
  isUnsupported,
} from "./errors.ts";
export type { NvmlErrorInfo, NvmlErrorKind, NvmlReturnName, Reading } from "./errors.ts";
// Decoding helpers and constants:
export * from "./decode.ts";
// Synchronous layer (for workers, tools and tests; blocks the calling thread):
export { NvmlLibrary } from "./library.ts";
export type { CallObserver, NvmlEventData } from "./library.ts";
export { openNvml } from "./open.ts";
export type { LoadAttempt, LoadOutcome, NvmlOpenResult } from "./open.ts";
export { nvmlLibraryCandidates, NVML_SONAME } from "./discovery.ts";
export type { LibraryCandidate, NvmlDiscoveryOptions } from "./discovery.ts";
export { readSnapshot, readInventory, readDeviceSnapshot, readIdentity, readSystemInfo, enumerate } from "./device.ts";
export type { SnapshotOptions } from "./device.ts";
export { LAYOUT, STRUCT_VERSIONS, structVersion } from "./layout.ts";
export { NVML_FUNCTIONS, ALL_SYMBOLS } from "./symbols.ts";
// The worker module, for `bun build --compile` (must be an extra entrypoint):
export { NVML_WORKER_URL, NVML_WORKER_ENTRYPOINT, IS_COMPILED } from "./worker-url.ts";
