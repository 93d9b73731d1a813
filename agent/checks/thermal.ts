// Temperature against the GPU's own thresholds (read at the full interval: they do not change),
// or its margin to the slowdown point (R570+) where the slowdown threshold cannot be read. A fast check: a GPU reaching its slowdown
// threshold is known within a second or two.
import { value, type GpuCheck } from "./gpu-check.ts";

export const thermal: GpuCheck = {
  name: "thermal",
  tier: "fast",
  evaluate(device, { label }) {
    const temp = value(device.temperatureC);
    if (temp === undefined) return [];
    const shutdown = value(device.thresholds.shutdownC);
    const slowdown = value(device.thresholds.slowdownC);
    const margin = value(device.marginTemperatureC);
    if (shutdown !== undefined && temp >= shutdown) {
      return [
        {
          check: "thermal",
          code: "shutdown",
          severity: "unhealthy",
          action: "contact_support",
          message: `${label}: ${temp}°C is at or above its shutdown threshold ${shutdown}°C`,
        },
      ];
    }
    // The margin (the distance to the slowdown point) is judged only where the threshold cannot be
    // read: the fast tier reads it only then, and a margin from the last full read would hold a
    // GPU that has cooled in "slowdown" until the next one.
    if (slowdown !== undefined ? temp >= slowdown : margin !== undefined && margin <= 0) {
      const at = slowdown !== undefined ? ` ${slowdown}°C` : ` (margin ${margin}°C)`;
      return [{ check: "thermal", code: "slowdown", severity: "degraded", action: "none", message: `${label}: ${temp}°C, at its slowdown threshold${at}` }];
    }
    return [];
  },
};
