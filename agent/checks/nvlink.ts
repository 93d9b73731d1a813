// NVLink: a link that is down while its siblings are up (a GPU with no active link has no NVLink
// in use: a PCIe-only SKU), and CRC / replay / recovery errors as a rate per link (from the
// counters, when the read includes them: the agent reads them once a minute).
import type { GpuFinding } from "./finding.ts";
import type { GpuCheck } from "./gpu-check.ts";

/** Errors per minute above which a link is degraded. */
export const NVLINK_ERRORS_PER_MINUTE = 100;

export const nvlink: GpuCheck = {
  name: "nvlink",
  tier: "full",
  evaluate(device, { at, label, memory }) {
    if (!device.nvlink.ok) return [];
    const links = device.nvlink.value;
    const out: GpuFinding[] = [];
    const down = links.filter((l) => !l.active).map((l) => l.link);
    if (down.length > 0 && down.length < links.length) {
      out.push({
        check: "nvlink",
        code: "link_down",
        severity: "unhealthy",
        action: "reset_gpu",
        message: `${label}: NVLink ${down.length === 1 ? "link" : "links"} ${down.join(", ")} inactive (${links.length - down.length} of ${links.length} up)`,
      });
    }
    for (const link of links) {
      if (!link.active) continue;
      const c = link.counters;
      let rate: number | undefined;
      if (c === null) {
        // Not read this time: the last rate stands until the counters are read again.
        rate = memory.kept(`link${link.link}:rate`);
      } else {
        let total = 0;
        for (const r of [c.replay, c.recovery, c.crcFlit, c.crcData]) if (r.ok) total += r.value;
        rate = memory.rate(`link${link.link}`, total, at, 60_000);
        memory.keep(`link${link.link}:rate`, rate);
      }
      if (rate !== undefined && rate > NVLINK_ERRORS_PER_MINUTE) {
        out.push({
          check: "nvlink",
          code: "errors",
          severity: "degraded",
          action: "none",
          message: `${label}: NVLink ${link.link} errors at ${Math.round(rate)}/min (limit ${NVLINK_ERRORS_PER_MINUTE}/min)`,
        });
      }
    }
    return out;
  },
};
