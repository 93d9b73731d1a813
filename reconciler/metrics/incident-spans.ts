// The incident steps whose durations the metrics export as histograms (fault to cordon, cordon
// to drained, fault to replacement Ready, reboot to back), computed from the incidents table as
// a whole at each scrape: each completed step counted exactly once, however often it is scraped
// and across restarts.
import { poolLabel } from "./labels.ts";
import type { Row, RowQuery } from "./store-rows.ts";

/** Incident step durations (seconds): from seconds (automatic cordon) to hours (drains, slow providers). */
export const INCIDENT_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200];

/** The incident steps measured, as SQL over the incidents table. */
export const INCIDENT_SPANS: { name: string; help: string; from: string; to: string }[] = [
  {
    name: "navarch_incident_fault_to_cordon_seconds",
    help: "Time from a node's first unhealthy finding to its cordon, per completed cordon (from the incidents table)",
    from: "fault_at",
    to: "cordoned_at",
  },
  {
    name: "navarch_incident_cordon_to_drained_seconds",
    help: "Time from cordon to drained (or the drain deadline), per completed drain",
    from: "cordoned_at",
    to: "drained_at",
  },
  {
    name: "navarch_incident_fault_to_replacement_ready_seconds",
    help: "Time from the first unhealthy finding to the replacement node being Ready, per completed replacement",
    from: "fault_at",
    to: "replacement_ready_at",
  },
  {
    name: "navarch_incident_reboot_seconds",
    help: "Time from a remediation's reboot to the node back with a new boot, per completed reboot",
    from: "rebooted_at",
    to: "back_at",
  },
];

/** Per span, per pool: count, sum and cumulative bucket counts (b0, b1, …), keyed by the histogram's name. */
export async function incidentSpanRows(query: RowQuery): Promise<Map<string, Row[]>> {
  const histograms = new Map<string, Row[]>();
  const bucketSql = INCIDENT_BUCKETS.map((b, i) => `sum(case when d <= ${b} then 1 else 0 end) as b${i}`).join(", ");
  const spans = await Promise.all(
    INCIDENT_SPANS.map((s) =>
      query(
        `select pool, count(*) as n, coalesce(sum(d), 0) as s, ${bucketSql}
           from (select ${poolLabel("pool")} as pool, max(0, (${s.to} - ${s.from}) / 1000.0) as d from incidents where ${s.to} is not null and ${s.from} is not null)
           group by 1`,
      ),
    ),
  );
  INCIDENT_SPANS.forEach((s, i) => histograms.set(s.name, spans[i] ?? []));
  return histograms;
}
