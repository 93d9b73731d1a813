// The driver's own verdict (NVML field 230, R570+), reported verbatim: it knows better than any
// threshold what the GPU needs.
import type { RecommendedAction, Severity } from "../../schema/wire.ts";
import type { RecoveryActionName } from "../nvml/types.ts";
import type { GpuCheck } from "./gpu-check.ts";

const VERDICTS: Record<Exclude<RecoveryActionName, "none">, { severity: Severity; action: RecommendedAction }> = {
  gpu_reset: { severity: "unhealthy", action: "reset_gpu" },
  bus_reset: { severity: "unhealthy", action: "reset_gpu" },
  drain_and_reset: { severity: "unhealthy", action: "reset_gpu" },
  drain_p2p: { severity: "degraded", action: "restart_app" },
  node_reboot: { severity: "unhealthy", action: "reboot" },
  system_reboot: { severity: "unhealthy", action: "reboot" },
  recover_imex_domain: { severity: "unhealthy", action: "contact_support" },
  unknown: { severity: "degraded", action: "contact_support" },
};

export const recoveryAction: GpuCheck = {
  name: "recovery_action",
  tier: "full",
  evaluate(device, { label }) {
    if (!device.recoveryAction.ok || device.recoveryAction.value.name === "none") return [];
    const name = device.recoveryAction.value.name;
    return [{ check: "recovery_action", code: name, ...VERDICTS[name], message: `${label}: the driver asks for ${name.replaceAll("_", " ")}` }];
  },
};
