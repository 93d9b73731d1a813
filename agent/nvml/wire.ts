// From binding results to the shared wire types (schema/wire.ts). The reconciler refuses
// a heartbeat with any number out of its range, so a reading out of range is left out
// here: one glitching sensor must not cost the node its heartbeats.
import { READING_RANGES, withinRange } from "../../schema/reading-ranges.ts";
import type { GpuInfo, GpuSnapshot } from "../../schema/wire.ts";
import { textPrefix } from "../../schema/text.ts";
import type { DeviceIdentity, DeviceSnapshot, NvmlInventory } from "./types.ts";

const text = (s: string) => textPrefix(s, 256);
const count = (n: number) => (Number.isSafeInteger(Math.floor(n)) && n >= 0 ? Math.floor(n) : undefined);

export function toWireGpuInfo(identity: DeviceIdentity): GpuInfo {
  const info: GpuInfo = { index: identity.index, uuid: text(identity.uuid), pciBusId: text(identity.pciBusId), name: text(identity.name) };
  const memory = identity.memoryTotalBytes === null ? undefined : count(identity.memoryTotalBytes);
  if (memory !== undefined) info.memoryTotalBytes = memory;
  return info;
}

/** The GPUs whose identity could be read (the others are reported through events/status). */
export function toWireGpus(inventory: NvmlInventory): GpuInfo[] {
  return inventory.devices.flatMap((d) => (d.identity.ok ? [toWireGpuInfo(d.identity.value)] : []));
}

/** The heartbeat's point-in-time readings; readings that failed are left out. */
export function toWireGpuSnapshot(d: DeviceSnapshot): GpuSnapshot {
  const s: GpuSnapshot = { index: d.index };
  if (d.temperatureC.ok) s.temperatureC = withinRange(d.temperatureC.value, READING_RANGES.temperatureC);
  if (d.powerUsageMw.ok) s.powerW = withinRange(d.powerUsageMw.value / 1000, READING_RANGES.powerW);
  if (d.utilization.ok) s.utilizationPct = withinRange(Math.min(100, Math.max(0, d.utilization.value.gpuPct)), READING_RANGES.utilizationPct);
  if (d.memory.ok) s.memoryUsedBytes = count(d.memory.value.usedBytes);
  if (d.ecc.volatile.ok) {
    s.eccVolatileDbe = count(d.ecc.volatile.value.uncorrected);
    s.eccVolatileSbe = count(d.ecc.volatile.value.corrected);
  }
  if (d.clocksEventReasons.ok) s.clocksEventReasons = count(d.clocksEventReasons.value.mask);
  if (d.processes.ok) s.processCount = d.processes.value.length;
  for (const k of Object.keys(s) as (keyof GpuSnapshot)[]) if (s[k] === undefined) delete s[k];
  return s;
}
