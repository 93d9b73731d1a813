// The agent's view of this machine's GPUs. Until the NVML binding (agent/nvml)
// lands, this only looks for libnvidia-ml and says plainly which paths it tried.
import { dlopen } from "bun:ffi";
import type { GpuSource } from "./agent.ts";

const DRIVER_PATHS = [
  "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
  "/usr/lib64/libnvidia-ml.so.1",
  "/usr/lib/libnvidia-ml.so.1",
  "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
  "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
];

export function openGpuSource(opts: { libraryPath?: string | undefined; log: (line: string) => void }): GpuSource {
  const tried = opts.libraryPath ? [opts.libraryPath] : DRIVER_PATHS;
  const reasons: string[] = [];
  for (const path of tried) {
    try {
      dlopen(path, { nvmlInit_v2: { args: [], returns: "i32" } }).close();
      reasons.push(`${path}: loads, but this agent version has no NVML binding yet`);
    } catch (err) {
      reasons.push(`${path}: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
    }
  }
  const error = `no usable NVML library (tried ${reasons.join("; ")})`;
  opts.log(`NVML unavailable: ${error}`);
  return {
    status: () => ({ available: false, error, triedPaths: tried }),
    driverVersion: () => undefined,
    cudaVersion: () => undefined,
    inventory: () => [],
    snapshot: async () => [],
    close: () => undefined,
  };
}
