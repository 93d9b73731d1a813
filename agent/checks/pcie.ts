// PCIe: a link narrower than it can be (judged only while the GPU is busy: links train down at
// idle on some platforms), and replays as a rate.
import type { GpuFinding } from "./finding.ts";
import { value, type GpuCheck } from "./gpu-check.ts";

/** Replays per minute above which the link is degraded. */
export const PCIE_REPLAYS_PER_MINUTE = 50;

export const pcie: GpuCheck = {
  name: "pcie",
  tier: "full",
  evaluate(device, { at, label, memory }) {
    const out: GpuFinding[] = [];
    const width = value(device.pcie.currentWidth);
    const maxWidth = value(device.pcie.maxWidth);
    const busy = device.utilization.ok && device.utilization.value.gpuPct > 0;
    if (busy && width !== undefined && maxWidth !== undefined && width < maxWidth) {
      out.push({ check: "pcie", code: "width", severity: "degraded", action: "none", message: `${label}: PCIe link x${width}, capable of x${maxWidth}` });
    }
    const replays = value(device.pcie.replayCounter);
    const rate = replays === undefined ? undefined : memory.rate("replays", replays, at, 60_000);
    if (rate !== undefined && rate > PCIE_REPLAYS_PER_MINUTE) {
      out.push({
        check: "pcie",
        code: "replays",
        severity: "degraded",
        action: "none",
        message: `${label}: PCIe replays at ${Math.round(rate)}/min (limit ${PCIE_REPLAYS_PER_MINUTE}/min)`,
      });
    }
    return out;
  },
};
