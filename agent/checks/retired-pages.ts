// Page retirement, the pre-Ampere form of row remapping: a pending retirement needs a GPU reset.
// GPUs that remap rows do not retire pages (their answer is NOT_SUPPORTED), so only one of the
// two checks ever speaks for a GPU.
import type { GpuCheck } from "./gpu-check.ts";

export const retiredPages: GpuCheck = {
  name: "retired_pages",
  tier: "full",
  evaluate(device, { label }) {
    if (device.remappedRows.ok || !device.retiredPages.ok || !device.retiredPages.value.pending) return [];
    const p = device.retiredPages.value;
    return [
      {
        check: "retired_pages",
        code: "pending",
        severity: "degraded",
        action: "reset_gpu",
        message: `${label}: page retirement pending (${p.dbe} DBE, ${p.multipleSbe} multi-SBE pages)`,
      },
    ];
  },
};
