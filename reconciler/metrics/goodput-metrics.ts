// Goodput on /metrics: the GPU-hours lost while nodes were out of service, by cause, pool and
// provider, and the seconds they were out, by rung of the remediation ladder and pool (folded
// from the audit log by reconciler/goodput/ledger.ts; outages still open count up to the scrape).
// Label values stay bounded: causes are the catalog's classes (schema/fault-causes.ts), rungs a
// fixed list, and a pool the store does not know (a monitored node's agent's word) is "".
import { causeLabel } from "../../schema/fault-causes.ts";
import type { SnapshotCollectors } from "./collectors.ts";
import { str } from "./store-rows.ts";

export function registerGoodputMetrics({ counter }: SnapshotCollectors): void {
  counter(
    "navarch_gpu_hours_lost_total",
    "GPU-hours of nodes out of service (cordoned, draining, rebooting, held, lost, being replaced) after they had served, by cause (the incident's fault class, maintenance, scale_down, no_heartbeat), pool and provider; an outage still open counts up to now",
    ["cause", "pool", "provider"],
    (set, s) => {
      const pools = new Set(s.pools.map((p) => str(p.name)));
      const sums = new Map<string, { cause: string; pool: string; provider: string; value: number }>();
      for (const r of s.goodput.lost) {
        const labels = { cause: causeLabel(r.cause), pool: pools.has(r.pool) ? r.pool : "", provider: r.provider };
        const key = `${labels.cause}/${labels.pool}/${labels.provider}`;
        const sum = sums.get(key) ?? { ...labels, value: 0 };
        sum.value += r.gpuHours;
        sums.set(key, sum);
      }
      for (const { value, ...labels } of sums.values()) set(labels, value);
    },
  );
  counter(
    "navarch_node_unavailable_seconds_total",
    "Seconds nodes that had served were out of service, by rung (quarantine, drain, reboot, replace, terminate, held, lost) and pool; an outage still open counts up to now",
    ["rung", "pool"],
    (set, s) => {
      const pools = new Set(s.pools.map((p) => str(p.name)));
      const sums = new Map<string, { rung: string; pool: string; value: number }>();
      for (const r of s.goodput.unavailable) {
        const labels = { rung: r.rung, pool: pools.has(r.pool) ? r.pool : "" };
        const key = `${labels.rung}/${labels.pool}`;
        const sum = sums.get(key) ?? { ...labels, value: 0 };
        sum.value += r.seconds;
        sums.set(key, sum);
      }
      for (const { value, ...labels } of sums.values()) set(labels, value);
    },
  );
}
