// Driver versions: the kernel module that is loaded (/sys/module/nvidia/version) against the
// user-space libnvidia-ml in use. They differ after a driver upgrade without a reboot: NVML may
// still answer, but CUDA programs fail to start.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Finding } from "./finding.ts";

/** The loaded NVIDIA kernel module's version, or undefined (no module, or not readable). */
export function readKernelModuleVersion(sysfsRoot = "/sys"): string | undefined {
  try {
    const v = readFileSync(join(sysfsRoot, "module", "nvidia", "version"), "utf8").trim();
    return v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}

export function driverVersions(library: string | undefined, kernelModule: string | undefined): Finding[] {
  if (library === undefined || kernelModule === undefined || library === kernelModule) return [];
  return [
    {
      check: "driver",
      code: "version_mismatch",
      severity: "unhealthy",
      action: "reboot",
      message: `the NVIDIA kernel module is ${kernelModule} but libnvidia-ml is ${library} (a driver upgrade without a reboot?)`,
    },
  ];
}
