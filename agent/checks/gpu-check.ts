// The shape of a GPU check: a module exporting one of these, listed in gpu-check-list.ts. A check
// is a function from one GPU's readings (and what it remembered last time) to the conditions that
// hold now; the runner adds the GPU's identity and turns the findings into incidents.
import type { CheckName } from "../../schema/checks.ts";
import type { DeviceSnapshot } from "../nvml/types.ts";
import type { GpuFinding } from "./finding.ts";
import type { CheckMemory } from "./memory.ts";

/**
 * fast: evaluated every second, on the readings the fast tier takes fresh (temperature, clock
 * event reasons, the thermal margin: nvml/device.ts readFastReadings) over the rest of the last
 * full read; full: everything else, at the agent's poll interval.
 */
export type CheckTier = "fast" | "full";

export interface GpuCheckContext {
  /** When the readings were taken (ms since the epoch). */
  at: number;
  /** How messages name the GPU: "GPU 3 (00000000:5D:00.0)". */
  label: string;
  /** This check's memory of this GPU. */
  memory: CheckMemory;
}

export interface GpuCheck {
  readonly name: CheckName;
  readonly tier: CheckTier;
  /** Every condition that holds now (an empty list: healthy). Never throws for a failed reading. */
  evaluate(device: DeviceSnapshot, ctx: GpuCheckContext): GpuFinding[];
}

/** The value of a reading, or undefined when it failed. */
export function value<T>(r: { ok: true; value: T } | { ok: false }): T | undefined {
  return r.ok ? r.value : undefined;
}
