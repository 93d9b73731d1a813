// Incidents on /metrics: those open per pool, how remediations ended (rebooted and back,
// rebooted then replaced, replaced), and the durations of their steps (incident-spans.ts).
import type { SnapshotCollectors } from "./collectors.ts";
import { INCIDENT_BUCKETS, INCIDENT_SPANS } from "./incident-spans.ts";
import { poolNames } from "./scrape-snapshot.ts";
import { num, str } from "./store-rows.ts";

export function registerIncidentMetrics({ gauge, counter, histogram }: SnapshotCollectors): void {
  gauge("navarch_incidents_open", "Open incidents (unhealthy episodes being handled) per pool", ["pool"], (g, s) => {
    for (const p of poolNames(s)) g.set({ pool: p }, 0);
    for (const r of s.openIncidents) g.set({ pool: str(r.pool) }, num(r.n));
  });
  counter(
    "navarch_remediations_total",
    "Health remediations that ended, by outcome: rebooted and back in service, rebooted and then replaced, or replaced",
    ["outcome"],
    (set, s) => {
      for (const outcome of ["rebooted_recovered", "rebooted_then_replaced", "replaced"])
        set({ outcome }, num(s.remediations.find((r) => str(r.outcome) === outcome)?.n));
    },
  );
  for (const span of INCIDENT_SPANS) histogram(span.name, span.help, INCIDENT_BUCKETS, (s) => s.histograms.get(span.name) ?? []);
}
