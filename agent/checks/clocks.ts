// Hardware clock slowdown (HW slowdown, thermal or power brake): degraded when it holds in most
// samples over ten minutes, so one throttled sample is never a verdict. A fast check: sampled
// every second.
import { CLOCKS_EVENT_HW_MASK, decodeClocksEventReasons } from "../nvml/decode.ts";
import type { GpuCheck } from "./gpu-check.ts";

export const CLOCKS_WINDOW = {
  windowMs: 10 * 60_000,
  /** Fewer samples than this are no verdict. */
  minSamples: 5,
  /** Share of samples with a hardware reason. */
  share: 0.6,
} as const;

export const clocks: GpuCheck = {
  name: "clocks",
  tier: "fast",
  evaluate(device, { at, label, memory }) {
    if (!device.clocksEventReasons.ok) return [];
    const mask = device.clocksEventReasons.value.mask;
    const samples = memory.window("hw", CLOCKS_WINDOW.windowMs);
    samples.push(at, (mask & CLOCKS_EVENT_HW_MASK) !== 0);
    if (samples.size < CLOCKS_WINDOW.minSamples || samples.share < CLOCKS_WINDOW.share) return [];
    const reasons = decodeClocksEventReasons(mask & CLOCKS_EVENT_HW_MASK);
    return [
      {
        check: "clocks",
        code: "hw_slowdown",
        severity: "degraded",
        action: "none",
        message: `${label}: hardware clock slowdown in ${Math.round(samples.share * 100)}% of ${samples.size} samples over 10 min${reasons.length ? ` (now: ${reasons.join(", ")})` : ""}`,
      },
    ];
  },
};
