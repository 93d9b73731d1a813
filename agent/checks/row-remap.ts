// Row remapping (Ampere and later): a failure means no spare rows are left and the memory cannot
// be repaired (replace); a pending remap takes effect at the next GPU reset.
import type { GpuCheck } from "./gpu-check.ts";

export const rowRemap: GpuCheck = {
  name: "row_remap",
  tier: "full",
  evaluate(device, { label }) {
    if (!device.remappedRows.ok) return [];
    const rows = device.remappedRows.value;
    if (rows.failed) {
      return [
        {
          check: "row_remap",
          code: "failed",
          severity: "unhealthy",
          action: "replace",
          message: `${label}: row remapping failed (no spare rows left); the GPU's memory cannot be repaired`,
        },
      ];
    }
    if (rows.pending) {
      return [
        {
          check: "row_remap",
          code: "pending",
          severity: "degraded",
          action: "reset_gpu",
          message: `${label}: a row remap is pending; it takes effect at the next GPU reset`,
        },
      ];
    }
    return [];
  },
};
