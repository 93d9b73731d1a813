// A GPU NVML can no longer read: lost (fallen off the bus, the same verdict as Xid 79), needing a
// reset, or unreadable for another reason. Nothing else can be judged on such a GPU.
import type { RecommendedAction } from "../../schema/wire.ts";
import type { NvmlErrorInfo } from "../nvml/errors.ts";
import type { GpuFinding } from "./finding.ts";

/**
 * Xid 79's action in the Xid catalog, written out so the NVML worker need not load the catalog
 * (test/gpu-checks.test.ts holds the two together; the reconciler judges gpu_lost as Xid 79).
 */
export const LOST_GPU_ACTION: RecommendedAction = "reboot";

export function unreadableGpu(error: NvmlErrorInfo, label: string): GpuFinding {
  if (error.kind === "gpu_lost") {
    return {
      check: "gpu_lost",
      code: "lost",
      severity: "unhealthy",
      action: LOST_GPU_ACTION,
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
