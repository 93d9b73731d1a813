// Fewer GPUs than the machine should have: one fell off the bus or failed to initialise. The
// expected count is --expected-gpus, else the most GPUs seen since the agent started.
import type { Finding } from "./finding.ts";

export function gpuCount(count: number, expected: number): Finding[] {
  if (count >= expected) return [];
  return [
    {
      check: "gpu_count",
      code: "missing",
      severity: "unhealthy",
      action: "reboot",
      message: `${count} GPUs visible, ${expected} expected (a GPU has fallen off the bus or failed to initialise)`,
    },
  ];
}
