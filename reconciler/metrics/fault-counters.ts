// What went wrong, counted from the store's history: GPU Xid errors by code, failed provider
// calls by provider and operation, machines that were not brought up (SSH bootstrap failures,
// agents that did not register in time) beside those that were, and stored values that were
// not UTF-8 and were repaired.
import type { SnapshotCollectors } from "./collectors.ts";
import type { HistoryCounters } from "./history-counters.ts";
import { num, str } from "./store-rows.ts";

export function registerFaultCounters({ counter }: SnapshotCollectors, { xidCounts, quarantinedValues, registrationTimeouts }: HistoryCounters): void {
  counter("navarch_xid_errors_total", 'GPU Xid events reported by agents, by Xid code (codes outside the catalog are "other")', ["code"], (set) => {
    for (const [code, n] of xidCounts) set({ code }, n);
  });
  counter(
    "navarch_store_quarantined_values_total",
    "Stored values that were not UTF-8 (unreadable) and were repaired when the store opened; each one's bytes are in the audit log (text_quarantined)",
    [],
    (set) => set({}, quarantinedValues.n),
  );
  counter(
    "navarch_provider_errors_total",
    "Provider API calls that failed (every failed attempt), by provider and operation",
    ["provider", "operation"],
    (set, s) => {
      for (const r of s.providerErrors) if (num(r.n) > 0) set({ provider: str(r.provider), operation: str(r.kind) }, num(r.n));
    },
  );
  counter(
    "navarch_bootstrap_outcomes_total",
    "Bringing up machines: SSH bootstrap runs that succeeded or failed, and launched machines whose agent registered or did not within health.registration_timeout",
    ["outcome"],
    (set, s) => {
      set({ outcome: "succeeded" }, s.bootstrapRuns.get("succeeded") ?? 0);
      set({ outcome: "failed" }, s.bootstrapRuns.get("failed") ?? 0);
      set({ outcome: "registered" }, s.registered);
      set({ outcome: "registration_timeout" }, registrationTimeouts.n);
    },
  );
}
