// One GPU's NVLink fabric (NVSwitch systems): a registration the fabric manager finished with an
// error, and the driver's health summary. Registration that has not finished is the fabric
// manager's business and is judged for the whole node (fabric-manager.ts).
import type { GpuFinding } from "./finding.ts";
import type { GpuCheck } from "./gpu-check.ts";

export const fabric: GpuCheck = {
  name: "fabric",
  tier: "full",
  evaluate(device, { label }) {
    if (!device.fabric.ok || device.fabric.value.stateName === "not_supported") return [];
    const f = device.fabric.value;
    const out: GpuFinding[] = [];
    if (f.stateName === "completed" && f.status !== 0) {
      out.push({
        check: "fabric",
        code: "registration_failed",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: NVLink fabric registration failed (${f.statusName})`,
      });
    }
    if (f.healthSummaryName === "unhealthy" || f.healthSummaryName === "limited_capacity") {
      const unhealthy = f.healthSummaryName === "unhealthy";
      out.push({
        check: "fabric",
        code: f.healthSummaryName,
        severity: unhealthy ? "unhealthy" : "degraded",
        action: unhealthy ? "reset_gpu" : "none",
        message: `${label}: fabric health ${f.healthSummaryName.replaceAll("_", " ")}`,
      });
    }
    return out;
  },
};
