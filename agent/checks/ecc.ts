// ECC: any uncorrectable (double-bit) error since the last reset makes the GPU untrustworthy;
// corrected errors only matter as a rate (memory wearing out), never as a total.
import type { GpuFinding } from "./finding.ts";
import type { GpuCheck } from "./gpu-check.ts";

/** Corrected errors per hour above which memory is degrading. */
export const SBE_PER_HOUR = 1000;

export const ecc: GpuCheck = {
  name: "ecc",
  tier: "full",
  evaluate(device, { at, label, memory }) {
    if (!device.ecc.volatile.ok) return [];
    const { uncorrected, corrected } = device.ecc.volatile.value;
    const out: GpuFinding[] = [];
    if (uncorrected > 0) {
      out.push({
        check: "ecc",
        code: "dbe",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: ${uncorrected} uncorrectable (double-bit) ECC errors since the last reset`,
      });
    }
    const rate = memory.rate("sbe", corrected, at, 3_600_000);
    if (rate !== undefined && rate > SBE_PER_HOUR) {
      out.push({
        check: "ecc",
        code: "sbe_rate",
        severity: "degraded",
        action: "none",
        message: `${label}: corrected ECC errors at ${Math.round(rate)}/h (limit ${SBE_PER_HOUR}/h)`,
      });
    }
    return out;
  },
};
