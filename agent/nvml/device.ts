// Typed readings of one GPU and of the whole system. Each reading is independent: a function
// that is not supported (or not exported) fails only its own reading. Only GPU_IS_LOST and
// RESET_REQUIRED stop the remaining calls to that GPU (they would all fail the same way, and a
// broken GPU should not be hammered); the skipped readings carry that same error.
import { DEFAULT_FIELD_IDS, FIELD, recoveryActionName } from "./decode.ts";
import { DEVICE_FATAL_KINDS, NvmlError, failed, nvmlErrorInfo, ok, reading, type NvmlErrorInfo, type Reading } from "./errors.ts";
import { ECC_COUNTER_TYPE, MEMORY_ERROR_TYPE, NVLINK_ERROR_COUNTER, PAGE_RETIREMENT_CAUSE, TEMPERATURE_THRESHOLD, type NvmlLibrary } from "./library.ts";
import type {
  DeviceIdentity,
  DeviceSnapshot,
  FieldValue,
  InventoryDevice,
  NvLinkInfo,
  NvmlDevice,
  NvmlInventory,
  NvmlSnapshot,
  RecoveryAction,
  SystemInfo,
} from "./types.ts";

export interface SnapshotOptions {
  /** Field ids for the one nvmlDeviceGetFieldValues batch per GPU (DEFAULT_FIELD_IDS). */
  fieldIds?: readonly number[];
  /** Upper bound on NVLink links probed per GPU; probing stops earlier at the first NOT_SUPPORTED / INVALID_ARGUMENT. */
  maxNvLinks?: number;
  /** Read the NVLink error counters (four calls per link; default true). Link states are always read. */
  nvlinkCounters?: boolean;
  /**
   * An earlier snapshot of the same GPUs: the readings that do not change while the driver runs
   * (identity, thresholds, power limit, ECC mode and aggregate counts, PCIe capabilities, page
   * retirement) are taken from it instead of read again; a third of the calls of a read.
   */
  steady?: readonly DeviceSnapshot[];
}

/** Reads one device, remembering the first fatal (lost / reset required) error. */
class DeviceReader {
  fatal: NvmlErrorInfo | null = null;

  read<T>(fn: () => T): Reading<T> {
    if (this.fatal) return failed(this.fatal);
    const r = reading(fn);
    if (!r.ok && DEVICE_FATAL_KINDS.has(r.error.kind)) this.fatal = r.error;
    return r;
  }

  /** For the optional parts of a composite reading: null when failed, but fatal errors propagate. */
  optional<T>(fn: () => T): T | null {
    try {
      return fn();
    } catch (err) {
      if (err instanceof NvmlError && !DEVICE_FATAL_KINDS.has(err.kind)) return null;
      throw err;
    }
  }
}

function readIdentityWith(lib: NvmlLibrary, dev: NvmlDevice, r: DeviceReader): DeviceIdentity {
  const uuid = lib.uuid(dev);
  const name = lib.name(dev);
  const pci = lib.pciInfo(dev);
  return {
    index: dev.index,
    uuid,
    name,
    pciBusId: pci.busIdNormalized,
    pci,
    serial: r.optional(() => lib.serial(dev)),
    memoryTotalBytes: r.optional(() => lib.memoryInfo(dev).totalBytes),
  };
}

/** UUID, name, PCI bus id (normalised), serial and memory total of one device. */
export function readIdentity(lib: NvmlLibrary, dev: NvmlDevice): Reading<DeviceIdentity> {
  const r = new DeviceReader();
  return r.read(() => readIdentityWith(lib, dev, r));
}

export function readSystemInfo(lib: NvmlLibrary): SystemInfo {
  return {
    driverVersion: reading(() => lib.driverVersion()),
    nvmlVersion: reading(() => lib.nvmlVersion()),
    cudaDriverVersion: reading(() => lib.cudaDriverVersion()),
  };
}

const isEnd = (err: unknown) => err instanceof NvmlError && (err.kind === "not_supported" || err.kind === "invalid_argument");

function readNvLinks(lib: NvmlLibrary, dev: NvmlDevice, r: DeviceReader, max: number, withCounters: boolean): NvLinkInfo[] {
  const links: NvLinkInfo[] = [];
  for (let link = 0; link < max; link++) {
    let active: boolean;
    try {
      active = lib.nvLinkState(dev, link);
    } catch (err) {
      // The number of links differs by generation (12, 18, 36…): stop at the first link that does not exist.
      if (link > 0 && isEnd(err)) break;
      throw err;
    }
    const counter = (c: number) => r.read(() => lib.nvLinkErrorCounter(dev, link, c));
    links.push({
      link,
      active,
      counters: withCounters
        ? {
            replay: counter(NVLINK_ERROR_COUNTER.replay),
            recovery: counter(NVLINK_ERROR_COUNTER.recovery),
            crcFlit: counter(NVLINK_ERROR_COUNTER.crcFlit),
            crcData: counter(NVLINK_ERROR_COUNTER.crcData),
          }
        : null,
    });
    if (r.fatal) throw new NvmlError(r.fatal);
  }
  return links;
}

function recoveryActionOf(fields: Reading<FieldValue[]>, dev: NvmlDevice): Reading<RecoveryAction> {
  if (!fields.ok) return fields;
  const f = fields.value.find((v) => v.fieldId === FIELD.GET_GPU_RECOVERY_ACTION);
  if (!f) {
    return failed(nvmlErrorInfo(3, "nvmlDeviceGetFieldValues", { device: dev.index, detail: "field 230 (GET_GPU_RECOVERY_ACTION) was not requested" }));
  }
  if (!f.value.ok) return f.value;
  return ok({ value: f.value.value, name: recoveryActionName(f.value.value) });
}

/** Every reading of one device. Never throws for an NVML error. */
export function readDeviceSnapshot(lib: NvmlLibrary, dev: NvmlDevice, options: SnapshotOptions = {}): DeviceSnapshot {
  const r = new DeviceReader();
  const was = options.steady?.find((d) => d.index === dev.index && d.fatal === null);
  // A steady reading from the earlier snapshot, else read now.
  const steady = <T>(pick: (d: DeviceSnapshot) => Reading<T>, read: () => T): Reading<T> => (was ? pick(was) : r.read(read));
  const identity = steady(
    (d) => d.identity,
    () => readIdentityWith(lib, dev, r),
  );
  const threshold = (pick: (t: DeviceSnapshot["thresholds"]) => Reading<number>, t: number) =>
    steady(
      (d) => pick(d.thresholds),
      () => lib.temperatureThreshold(dev, t),
    );
  const eccCounts = (counter: number) => () => ({
    corrected: lib.totalEccErrors(dev, MEMORY_ERROR_TYPE.corrected, counter),
    uncorrected: lib.totalEccErrors(dev, MEMORY_ERROR_TYPE.uncorrected, counter),
  });
  const snapshot: DeviceSnapshot = {
    index: dev.index,
    fatal: null,
    identity,
    temperatureC: r.read(() => lib.temperature(dev).celsius),
    thresholds: {
      shutdownC: threshold((t) => t.shutdownC, TEMPERATURE_THRESHOLD.shutdown),
      slowdownC: threshold((t) => t.slowdownC, TEMPERATURE_THRESHOLD.slowdown),
      memMaxC: threshold((t) => t.memMaxC, TEMPERATURE_THRESHOLD.memMax),
      gpuMaxC: threshold((t) => t.gpuMaxC, TEMPERATURE_THRESHOLD.gpuMax),
    },
    marginTemperatureC: r.read(() => lib.marginTemperature(dev)),
    powerUsageMw: r.read(() => lib.powerUsageMw(dev)),
    powerLimitMw: steady(
      (d) => d.powerLimitMw,
      () => lib.enforcedPowerLimitMw(dev),
    ),
    utilization: r.read(() => lib.utilization(dev)),
    memory: r.read(() => lib.memoryInfo(dev)),
    ecc: {
      mode: steady(
        (d) => d.ecc.mode,
        () => lib.eccMode(dev),
      ),
      volatile: r.read(eccCounts(ECC_COUNTER_TYPE.volatile)),
      aggregate: steady((d) => d.ecc.aggregate, eccCounts(ECC_COUNTER_TYPE.aggregate)),
    },
    retiredPages: steady(
      (d) => d.retiredPages,
      () => ({
        multipleSbe: lib.retiredPageCount(dev, PAGE_RETIREMENT_CAUSE.multipleSbe),
        dbe: lib.retiredPageCount(dev, PAGE_RETIREMENT_CAUSE.dbe),
        pending: r.optional(() => lib.retiredPagesPending(dev)),
      }),
    ),
    remappedRows: r.read(() => lib.remappedRows(dev)),
    clocksEventReasons: r.read(() => lib.clocksEventReasons(dev)),
    nvlink: r.read(() => readNvLinks(lib, dev, r, options.maxNvLinks ?? 64, options.nvlinkCounters ?? true)),
    pcie: {
      currentGen: steady(
        (d) => d.pcie.currentGen,
        () => lib.pcieCurrentGeneration(dev),
      ),
      currentWidth: r.read(() => lib.pcieCurrentWidth(dev)),
      maxGen: steady(
        (d) => d.pcie.maxGen,
        () => lib.pcieMaxGeneration(dev),
      ),
      maxWidth: steady(
        (d) => d.pcie.maxWidth,
        () => lib.pcieMaxWidth(dev),
      ),
      gpuMaxGen: steady(
        (d) => d.pcie.gpuMaxGen,
        () => lib.pcieGpuMaxGeneration(dev),
      ),
      replayCounter: r.read(() => lib.pcieReplayCounter(dev)),
      speedMbps: steady(
        (d) => d.pcie.speedMbps,
        () => lib.pcieSpeedMbps(dev),
      ),
    },
    persistenceMode: r.read(() => lib.persistenceMode(dev)),
    processes: r.read(() => lib.computeProcesses(dev)),
    fabric: r.read(() => lib.fabricInfo(dev)),
    fields: r.read(() => lib.fieldValues(dev, options.fieldIds ?? DEFAULT_FIELD_IDS)),
    recoveryAction: failed(nvmlErrorInfo(3, "nvmlDeviceGetFieldValues")),
  };
  snapshot.recoveryAction = recoveryActionOf(snapshot.fields, dev);
  // Readings taken before the fatal error keep what they read; the ones after carry the error.
  snapshot.fatal = r.fatal;
  return snapshot;
}

/**
 * The fast tier's readings (temperature, clock event reasons, and the thermal margin where the
 * slowdown threshold is not known) taken fresh, over the rest
 * of `last` (the device's latest full snapshot). A GPU lost since then shows as `fatal`.
 */
export function readFastReadings(lib: NvmlLibrary, dev: NvmlDevice, last: DeviceSnapshot): DeviceSnapshot {
  const r = new DeviceReader();
  const temperatureC = r.read(() => lib.temperature(dev).celsius);
  // The margin only adds something where the slowdown threshold cannot be read (it is the distance to it).
  const marginTemperatureC = last.thresholds.slowdownC.ok || !last.marginTemperatureC.ok ? last.marginTemperatureC : r.read(() => lib.marginTemperature(dev));
  const clocksEventReasons = r.read(() => lib.clocksEventReasons(dev));
  return { ...last, fatal: r.fatal, temperatureC, marginTemperatureC, clocksEventReasons };
}

/** A snapshot for a device that could not even be opened: every reading carries `error`. */
export function unreadableDevice(index: number, error: NvmlErrorInfo): DeviceSnapshot {
  const e = failed<never>(error);
  return {
    index,
    fatal: error,
    identity: e,
    temperatureC: e,
    thresholds: { shutdownC: e, slowdownC: e, memMaxC: e, gpuMaxC: e },
    marginTemperatureC: e,
    powerUsageMw: e,
    powerLimitMw: e,
    utilization: e,
    memory: e,
    ecc: { mode: e, volatile: e, aggregate: e },
    retiredPages: e,
    remappedRows: e,
    clocksEventReasons: e,
    nvlink: e,
    pcie: { currentGen: e, currentWidth: e, maxGen: e, maxWidth: e, gpuMaxGen: e, replayCounter: e, speedMbps: e },
    persistenceMode: e,
    processes: e,
    fabric: e,
    fields: e,
    recoveryAction: e,
  };
}

/** Every device's handle, enumerated afresh (a lost GPU may have dropped out of the count). */
export function enumerate(lib: NvmlLibrary): { count: Reading<number>; devices: Reading<NvmlDevice>[] } {
  const count = reading(() => lib.deviceCount());
  const devices: Reading<NvmlDevice>[] = [];
  if (count.ok) for (let i = 0; i < count.value; i++) devices.push(reading(() => lib.device(i)));
  return { count, devices };
}

/** All readings of all devices. */
export function readSnapshot(lib: NvmlLibrary, options: SnapshotOptions = {}): NvmlSnapshot {
  return readSnapshotAndHandles(lib, options).snapshot;
}

/** All readings of all devices, and the handle of each (null where none could be had), for later fast reads. */
export function readSnapshotAndHandles(lib: NvmlLibrary, options: SnapshotOptions = {}): { snapshot: NvmlSnapshot; handles: (NvmlDevice | null)[] } {
  const started = Date.now();
  const t0 = performance.now();
  const { count, devices } = enumerate(lib);
  const snapshots = devices.map((d, index) => (d.ok ? readDeviceSnapshot(lib, d.value, options) : unreadableDevice(index, d.error)));
  return {
    snapshot: { time: new Date(started).toISOString(), durationMs: performance.now() - t0, deviceCount: count, devices: snapshots },
    handles: devices.map((d) => (d.ok ? d.value : null)),
  };
}

/** Driver versions and every device's identity. */
export function readInventory(lib: NvmlLibrary): NvmlInventory {
  const { count, devices } = enumerate(lib);
  return {
    system: readSystemInfo(lib),
    deviceCount: count,
    devices: devices.map((d, index): InventoryDevice => ({ index, identity: d.ok ? readIdentity(lib, d.value) : d })),
  };
}
