// Persistence mode off: every process start re-initialises the GPUs (slow starts, and NVML calls
// that take seconds). Degraded, with the fix in the message.
import type { GpuCheck } from "./gpu-check.ts";

export const persistenceMode: GpuCheck = {
  name: "persistence_mode",
  tier: "full",
  evaluate(device, { label }) {
    if (!device.persistenceMode.ok || device.persistenceMode.value) return [];
    return [
      {
        check: "persistence_mode",
        code: "disabled",
        severity: "degraded",
        action: "none",
        message: `${label}: persistence mode is off (GPUs re-initialise for every process; enable nvidia-persistenced)`,
      },
    ];
  },
};
