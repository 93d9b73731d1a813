// The NVIDIA fabric manager, judged from what the GPUs say about their NVLink fabric registration
// (NVSwitch systems only: elsewhere the state is not supported). No GPU registered: the fabric
// manager is not running, and CUDA cannot start on this node. Some GPUs still registering: it is
// stuck. Both only after a grace period, since registration takes a while after boot.
import type { DeviceSnapshot } from "../nvml/types.ts";
import type { Finding } from "./finding.ts";

export const FABRIC_MANAGER_GRACE_MS = 5 * 60_000;

/** Since when the current not-yet-registered condition has held (the caller keeps it between polls). */
export interface FabricManagerMemory {
  condition?: "not_running" | "stalled";
  since?: number;
}

export function fabricManager(devices: readonly DeviceSnapshot[], at: number, memory: FabricManagerMemory, graceMs = FABRIC_MANAGER_GRACE_MS): Finding[] {
  const states = devices.flatMap((d) => (d.fabric.ok && d.fabric.value.stateName !== "not_supported" ? [d.fabric.value.stateName] : []));
  const waiting = states.filter((s) => s !== "completed").length;
  const condition = states.length === 0 || waiting === 0 ? undefined : states.every((s) => s === "not_started") ? "not_running" : "stalled";
  if (condition !== memory.condition) {
    memory.condition = condition;
    memory.since = at;
  }
  if (condition === undefined || at - (memory.since ?? at) < graceMs) return [];
  const minutes = Math.round((at - memory.since!) / 60_000);
  if (condition === "not_running") {
    return [
      {
        check: "fabric_manager",
        code: "not_running",
        severity: "unhealthy",
        action: "reboot",
        message: `no GPU has registered with the NVLink fabric for ${minutes} min: the NVIDIA fabric manager is not running (start nvidia-fabricmanager)`,
      },
    ];
  }
  return [
    {
      check: "fabric_manager",
      code: "stalled",
      severity: "degraded",
      action: "none",
      message: `${waiting} of ${states.length} GPUs still registering with the NVLink fabric after ${minutes} min`,
    },
  ];
}
