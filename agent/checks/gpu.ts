// Level checks over NVML snapshots: each poll's readings become the set of
// conditions that hold right now (one Finding each). Rates and "sustained"
// judgements keep a little state between polls (GpuCheckState), so one bad
// sample is never a verdict. Pure: time comes in as an argument.
//
// Thresholds follow gpu-health.md (§1, §7): the driver's own verdicts first
// (recovery action, fabric health summary, row-remap pending/failed), then
// windows and rates (HW slowdown in ≥ 60% of samples over 10 min; counter deltas,
// never absolute values).
import type { GpuIdentity, RecommendedAction, Severity } from "../../schema/wire.ts";
import { lookupXid } from "../../schema/xid-catalog.ts";
import { CLOCKS_EVENT_HW_MASK, decodeClocksEventReasons } from "../nvml/decode.ts";
import type { NvmlErrorInfo, Reading } from "../nvml/errors.ts";
import type { DeviceSnapshot, NvmlSnapshot, RecoveryActionName } from "../nvml/types.ts";
import { normalizePciBusId } from "../pci.ts";

/** One condition found on this node, before the agent adds seq, boot id and time. */
export interface Finding {
  check: string;
  /**
   * Level findings always carry one: with the GPU and check it identifies the condition, so
   * its "healthy" (recovered) event closes the same finding on the reconciler.
   */
  code?: string;
  severity: Severity;
  action: RecommendedAction;
  gpu?: GpuIdentity;
  message: string;
  /** Occurrences so far, when more than one (set by the incident tracker). */
  count?: number;
  /** A GPU named only by its bus id (a kernel-log line for a GPU NVML does not list). */
  pciBusId?: string;
}

export const CHECK_WINDOWS = {
  /** HW slowdown must hold in this share of samples over the window to count. */
  clocksWindowMs: 10 * 60_000,
  clocksMinSamples: 5,
  clocksShare: 0.6,
  /** Corrected ECC errors per hour above which memory is degrading. */
  sbePerHour: 1000,
  /** NVLink CRC/replay/recovery errors per minute above which a link is degraded. */
  nvlinkErrorsPerMinute: 100,
  /** PCIe replays per minute above which the link is degraded. */
  pcieReplaysPerMinute: 50,
} as const;

interface CounterSample {
  at: number;
  value: number;
}

/** What the checks remember between polls (per GPU index). */
export class GpuCheckState {
  /** Most GPUs seen in one snapshot since the agent started (this boot). */
  maxDeviceCount = 0;
  readonly clockSamples = new Map<number, { at: number; hw: boolean }[]>();
  readonly counters = new Map<string, CounterSample>();
  /** Identity of each GPU index as last read, so a GPU that is lost is still named. */
  readonly identities = new Map<number, GpuIdentity>();

  /** Rate per `perMs` since the previous sample of this counter; undefined on the first. */
  rate(key: string, value: number, at: number, perMs: number): number | undefined {
    const prev = this.counters.get(key);
    this.counters.set(key, { at, value });
    if (prev === undefined || at <= prev.at) return undefined;
    // A counter that went down was reset (GPU reset, driver reload): start over.
    if (value < prev.value) return undefined;
    return ((value - prev.value) * perMs) / (at - prev.at);
  }
}

export interface CheckOptions {
  /** GPUs this machine must have (from --expected-gpus or the instance type); else the most seen. */
  expectedGpus?: number;
}

/** Evaluates one snapshot; returns every condition that holds now. */
export function evaluateSnapshot(snapshot: NvmlSnapshot, state: GpuCheckState, options: CheckOptions = {}): Finding[] {
  const at = Date.parse(snapshot.time);
  const findings: Finding[] = [];
  const count = snapshot.deviceCount.ok ? snapshot.deviceCount.value : undefined;
  if (count !== undefined) state.maxDeviceCount = Math.max(state.maxDeviceCount, count);
  const expected = options.expectedGpus ?? state.maxDeviceCount;
  if (count !== undefined && count < expected) {
    findings.push({
      check: "gpu_count",
      code: "missing",
      severity: "unhealthy",
      action: "reboot",
      message: `${count} GPUs visible, ${expected} expected (a GPU has fallen off the bus or failed to initialise)`,
    });
  }
  for (const device of snapshot.devices) findings.push(...evaluateDevice(device, state, at));
  return findings;
}

export function gpuIdentityOf(device: DeviceSnapshot): GpuIdentity | undefined {
  if (!device.identity.ok) return undefined;
  const id = device.identity.value;
  return { index: id.index, uuid: id.uuid, pciBusId: normalizePciBusId(id.pci.busId) ?? id.pci.busId };
}

function evaluateDevice(device: DeviceSnapshot, state: GpuCheckState, at: number): Finding[] {
  const read = gpuIdentityOf(device);
  if (read) state.identities.set(device.index, read);
  const gpu = read ?? state.identities.get(device.index);
  const label = `GPU ${device.index}${gpu ? ` (${gpu.pciBusId})` : ""}`;
  const out: Finding[] = [];
  const add = (f: Omit<Finding, "gpu">) => out.push(gpu ? { ...f, gpu } : f);

  if (device.fatal) {
    add(fatalFinding(device.fatal, label));
    return out; // nothing else can be read from a lost GPU
  }

  // The driver's own verdict (R570+): report it verbatim.
  if (device.recoveryAction.ok && device.recoveryAction.value.name !== "none") {
    const { severity, action } = RECOVERY_ACTIONS[device.recoveryAction.value.name];
    add({
      check: "recovery_action",
      code: device.recoveryAction.value.name,
      severity,
      action,
      message: `${label}: the driver asks for ${device.recoveryAction.value.name.replaceAll("_", " ")}`,
    });
  }

  if (device.ecc.volatile.ok) {
    const { uncorrected, corrected } = device.ecc.volatile.value;
    if (uncorrected > 0) {
      add({
        check: "ecc",
        code: "dbe",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: ${uncorrected} uncorrectable (double-bit) ECC errors since the last reset`,
      });
    }
    const sbeRate = state.rate(`sbe:${device.index}`, corrected, at, 3_600_000);
    if (sbeRate !== undefined && sbeRate > CHECK_WINDOWS.sbePerHour) {
      add({
        check: "ecc",
        code: "sbe_rate",
        severity: "degraded",
        action: "none",
        message: `${label}: corrected ECC errors at ${Math.round(sbeRate)}/h (limit ${CHECK_WINDOWS.sbePerHour}/h)`,
      });
    }
  }

  if (device.remappedRows.ok) {
    const rows = device.remappedRows.value;
    if (rows.failed) {
      add({
        check: "row_remap",
        code: "failed",
        severity: "unhealthy",
        action: "replace",
        message: `${label}: row remapping failed (no spare rows left); the GPU's memory cannot be repaired`,
      });
    } else if (rows.pending) {
      add({
        check: "row_remap",
        code: "pending",
        severity: "degraded",
        action: "reset_gpu",
        message: `${label}: a row remap is pending; it takes effect at the next GPU reset`,
      });
    }
  } else if (device.retiredPages.ok && device.retiredPages.value.pending) {
    // Pre-Ampere GPUs retire pages instead of remapping rows.
    add({
      check: "retired_pages",
      code: "pending",
      severity: "degraded",
      action: "reset_gpu",
      message: `${label}: page retirement pending (${device.retiredPages.value.dbe} DBE, ${device.retiredPages.value.multipleSbe} multi-SBE pages)`,
    });
  }

  const temp = device.temperatureC.ok ? device.temperatureC.value : undefined;
  if (temp !== undefined) {
    const shutdown = reading(device.thresholds.shutdownC);
    const slowdown = reading(device.thresholds.slowdownC);
    const margin = reading(device.marginTemperatureC);
    if (shutdown !== undefined && temp >= shutdown) {
      add({
        check: "thermal",
        code: "shutdown",
        severity: "unhealthy",
        action: "contact_support",
        message: `${label}: ${temp}°C is at or above its shutdown threshold ${shutdown}°C`,
      });
    } else if ((slowdown !== undefined && temp >= slowdown) || (margin !== undefined && margin <= 0)) {
      add({
        check: "thermal",
        code: "slowdown",
        severity: "degraded",
        action: "none",
        message: `${label}: ${temp}°C, at its slowdown threshold${slowdown !== undefined ? ` ${slowdown}°C` : ""}${margin !== undefined ? ` (margin ${margin}°C)` : ""}`,
      });
    }
  }

  if (device.clocksEventReasons.ok) {
    const mask = device.clocksEventReasons.value.mask;
    const samples = state.clockSamples.get(device.index) ?? [];
    samples.push({ at, hw: (mask & CLOCKS_EVENT_HW_MASK) !== 0 });
    while (samples.length > 0 && samples[0]!.at < at - CHECK_WINDOWS.clocksWindowMs) samples.shift();
    state.clockSamples.set(device.index, samples);
    const hwShare = samples.filter((s) => s.hw).length / samples.length;
    if (samples.length >= CHECK_WINDOWS.clocksMinSamples && hwShare >= CHECK_WINDOWS.clocksShare) {
      const reasons = decodeClocksEventReasons(mask & CLOCKS_EVENT_HW_MASK);
      add({
        check: "clocks",
        code: "hw_slowdown",
        severity: "degraded",
        action: "none",
        message: `${label}: hardware clock slowdown in ${Math.round(hwShare * 100)}% of samples over ${samples.length} polls${reasons.length ? ` (now: ${reasons.join(", ")})` : ""}`,
      });
    }
  }

  if (device.nvlink.ok) {
    const links = device.nvlink.value;
    const down = links.filter((l) => !l.active).map((l) => l.link);
    // A GPU with no active link has no NVLink in use (PCIe-only SKU): nothing is down.
    if (down.length > 0 && down.length < links.length) {
      add({
        check: "nvlink",
        code: "link_down",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: NVLink ${down.length === 1 ? "link" : "links"} ${down.join(", ")} inactive (${links.length - down.length} of ${links.length} up)`,
      });
    }
    for (const link of links) {
      if (!link.active) continue;
      const total = ["replay", "recovery", "crcFlit", "crcData"]
        .map((k) => reading(link.counters[k as keyof typeof link.counters]) ?? 0)
        .reduce((a, b) => a + b, 0);
      const rate = state.rate(`nvlink:${device.index}:${link.link}`, total, at, 60_000);
      if (rate !== undefined && rate > CHECK_WINDOWS.nvlinkErrorsPerMinute) {
        add({
          check: "nvlink",
          code: "errors",
          severity: "degraded",
          action: "none",
          message: `${label}: NVLink ${link.link} errors at ${Math.round(rate)}/min (limit ${CHECK_WINDOWS.nvlinkErrorsPerMinute}/min)`,
        });
      }
    }
  }

  const pcie = device.pcie;
  const width = reading(pcie.currentWidth);
  const maxWidth = reading(pcie.maxWidth);
  // Links train down at idle on some platforms; only judge width while the GPU is busy.
  const busy = device.utilization.ok && device.utilization.value.gpuPct > 0;
  if (busy && width !== undefined && maxWidth !== undefined && width < maxWidth) {
    add({
      check: "pcie",
      code: "width",
      severity: "degraded",
      action: "none",
      message: `${label}: PCIe link x${width}, capable of x${maxWidth}`,
    });
  }
  const replays = reading(pcie.replayCounter);
  if (replays !== undefined) {
    const rate = state.rate(`pcie:${device.index}`, replays, at, 60_000);
    if (rate !== undefined && rate > CHECK_WINDOWS.pcieReplaysPerMinute) {
      add({
        check: "pcie",
        code: "replays",
        severity: "degraded",
        action: "none",
        message: `${label}: PCIe replays at ${Math.round(rate)}/min (limit ${CHECK_WINDOWS.pcieReplaysPerMinute}/min)`,
      });
    }
  }

  if (device.fabric.ok && device.fabric.value.stateName !== "not_supported") {
    const f = device.fabric.value;
    if (f.stateName === "completed" && f.status !== 0) {
      add({
        check: "fabric",
        code: "registration_failed",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: NVLink fabric registration failed (${f.statusName})`,
      });
    } else if (f.stateName !== "completed") {
      add({
        check: "fabric",
        code: f.stateName,
        severity: "degraded",
        action: "none",
        message: `${label}: NVLink fabric registration ${f.stateName.replaceAll("_", " ")}`,
      });
    }
    if (f.healthSummaryName === "unhealthy" || f.healthSummaryName === "limited_capacity") {
      add({
        check: "fabric",
        code: f.healthSummaryName,
        severity: f.healthSummaryName === "unhealthy" ? "unhealthy" : "degraded",
        action: f.healthSummaryName === "unhealthy" ? "reset_gpu" : "none",
        message: `${label}: fabric health ${f.healthSummaryName.replaceAll("_", " ")}`,
      });
    }
  }

  if (device.persistenceMode.ok && !device.persistenceMode.value) {
    add({
      check: "persistence_mode",
      code: "disabled",
      severity: "degraded",
      action: "none",
      message: `${label}: persistence mode is off (GPUs re-initialise for every process; enable nvidia-persistenced)`,
    });
  }
  return out;
}

const RECOVERY_ACTIONS: Record<Exclude<RecoveryActionName, "none">, { severity: Severity; action: RecommendedAction }> = {
  gpu_reset: { severity: "unhealthy", action: "reset_gpu" },
  bus_reset: { severity: "unhealthy", action: "reset_gpu" },
  drain_and_reset: { severity: "unhealthy", action: "reset_gpu" },
  drain_p2p: { severity: "degraded", action: "restart_app" },
  node_reboot: { severity: "unhealthy", action: "reboot" },
  system_reboot: { severity: "unhealthy", action: "reboot" },
  recover_imex_domain: { severity: "unhealthy", action: "contact_support" },
  unknown: { severity: "degraded", action: "contact_support" },
};

function fatalFinding(error: NvmlErrorInfo, label: string): Omit<Finding, "gpu"> {
  if (error.kind === "gpu_lost") {
    // The same verdict as Xid 79 (fallen off the bus), from the catalog.
    const xid79 = lookupXid(79);
    return {
      check: "gpu_lost",
      code: "lost",
      severity: "unhealthy",
      action: xid79.action,
      message: `${label}: GPU is lost (${error.fn} returned ${error.name}); it has fallen off the bus`,
    };
  }
  if (error.kind === "reset_required") {
    return {
      check: "reset_required",
      code: "required",
      severity: "unhealthy",
      action: "reset_gpu",
      message: `${label}: the GPU needs a reset (${error.fn} returned ${error.name})`,
    };
  }
  return {
    check: "gpu_unreadable",
    code: error.name,
    severity: "unhealthy",
    action: "reboot",
    message: `${label}: cannot be read (${error.fn} returned ${error.name})`,
  };
}

function reading<T>(r: Reading<T>): T | undefined {
  return r.ok ? r.value : undefined;
}
