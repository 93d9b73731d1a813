// Runs the GPU checks (gpu-check-list.ts) over NVML readings, tier by tier, with each check's memory of
// each GPU, and adds what only the whole node can tell: missing GPUs, the fabric manager, and
// GPUs NVML can no longer read. Returns every condition that holds now; the incident tracker
// turns them into events (a condition that stops holding is reported recovered).
import type { GpuIdentity } from "../../schema/wire.ts";
import type { DeviceSnapshot, NvmlSnapshot } from "../nvml/types.ts";
import { normalizePciBusId } from "../pci.ts";
import { fabricManager, type FabricManagerMemory } from "./fabric-manager.ts";
import type { Finding, GpuFinding } from "./finding.ts";
import type { CheckTier, GpuCheck } from "./gpu-check.ts";
import { gpuCount } from "./gpu-count.ts";
import { unreadableGpu } from "./gpu-lost.ts";
import { CheckMemory } from "./memory.ts";
import { GPU_CHECKS } from "./gpu-check-list.ts";

export interface GpuCheckRunnerOptions {
  /** GPUs this machine must have (--expected-gpus); else the most seen since the agent started. */
  expectedGpus?: number;
  fabricManagerGraceMs?: number;
  checks?: readonly GpuCheck[];
}

export function gpuIdentityOf(device: DeviceSnapshot): GpuIdentity | undefined {
  if (!device.identity.ok) return undefined;
  const id = device.identity.value;
  return { index: id.index, uuid: id.uuid, pciBusId: normalizePciBusId(id.pci.busId) ?? id.pci.busId };
}

interface KnownGpu {
  /** The identity reading it was made from: the fast tier passes the same one every second. */
  from: DeviceSnapshot["identity"];
  gpu: GpuIdentity;
  label: string;
}

export class GpuCheckRunner {
  private readonly checks: readonly GpuCheck[];
  /** Each check's memory of each GPU, by GPU index. */
  private readonly memories = new Map<GpuCheck, CheckMemory[]>();
  /** Each GPU index as last read, so a GPU that is lost is still named. */
  private readonly known = new Map<number, KnownGpu>();
  private readonly fabricManager: FabricManagerMemory = {};
  private maxDeviceCount = 0;

  constructor(private readonly options: GpuCheckRunnerOptions = {}) {
    this.checks = options.checks ?? GPU_CHECKS;
  }

  /** The full tier: every full check on every GPU, the GPU count and the fabric manager. */
  full(snapshot: NvmlSnapshot): Finding[] {
    const at = Date.parse(snapshot.time);
    const out: Finding[] = [];
    if (snapshot.deviceCount.ok) {
      const count = snapshot.deviceCount.value;
      this.maxDeviceCount = Math.max(this.maxDeviceCount, count);
      out.push(...gpuCount(count, this.options.expectedGpus ?? this.maxDeviceCount));
    }
    out.push(...fabricManager(snapshot.devices, at, this.fabricManager, this.options.fabricManagerGraceMs));
    for (const device of snapshot.devices) out.push(...this.device(device, "full", at));
    return out;
  }

  /** The fast tier: the fast checks, and every GPU NVML can no longer read. */
  fast(devices: readonly DeviceSnapshot[], at: number): Finding[] {
    return devices.flatMap((d) => this.device(d, "fast", at));
  }

  private device(device: DeviceSnapshot, tier: CheckTier, at: number): Finding[] {
    const known = this.identify(device);
    const gpu = known?.gpu;
    const label = known?.label ?? `GPU ${device.index}`;
    const withGpu = (f: GpuFinding): Finding => (gpu ? { ...f, gpu } : f);
    if (device.fatal) return tier === "fast" ? [withGpu(unreadableGpu(device.fatal, label))] : [];
    const out: Finding[] = [];
    for (const check of this.checks) {
      if (check.tier !== tier) continue;
      for (const f of check.evaluate(device, { at, label, memory: this.memory(check, device.index) })) out.push(withGpu(f));
    }
    return out;
  }

  private identify(device: DeviceSnapshot): KnownGpu | undefined {
    const last = this.known.get(device.index);
    if (last?.from === device.identity) return last;
    const gpu = gpuIdentityOf(device);
    if (gpu === undefined) return last;
    const known = { from: device.identity, gpu, label: `GPU ${device.index} (${gpu.pciBusId})` };
    this.known.set(device.index, known);
    return known;
  }

  private memory(check: GpuCheck, index: number): CheckMemory {
    let byGpu = this.memories.get(check);
    if (byGpu === undefined) {
      byGpu = [];
      this.memories.set(check, byGpu);
    }
    return (byGpu[index] ??= new CheckMemory());
  }
}
