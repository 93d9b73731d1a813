// The cause an incident is counted under when goodput is accounted (lost GPU-hours by cause): a
// bounded vocabulary, from the catalogs. A finding of an Xid takes the Xid catalog's category
// (`memory`, `pcie`, …); a finding of another check takes the category of the Xid it means the same
// as (its twin in the check catalog: NVML's GPU_IS_LOST is Xid 79, `pcie`), else the check's own
// name (`infiniband`, `gpu_count`). What no finding decided has a cause of its own: a human's
// maintenance, a scale-down, an agent gone silent, an agent that says unhealthy without a finding.
// Shared by the reconciler's lifecycle (which records it on the incident), its metrics (a label)
// and its report.
import { CHECK_NAMES, CHECK_XID_TWINS } from "./checks.ts";
import { XID_CATEGORIES, lookupXid } from "./xid-catalog.ts";

/** Causes that are no finding's. */
export const LIFECYCLE_CAUSES = ["maintenance", "scale_down", "no_heartbeat", "agent_unhealthy", "other"] as const;

/** Every cause, each once: the Xid categories, the other checks' names, the lifecycle's causes. */
export const FAULT_CAUSES: readonly string[] = Object.freeze([
  ...new Set<string>([...XID_CATEGORIES, ...CHECK_NAMES.filter((c) => c !== "xid"), ...LIFECYCLE_CAUSES]),
]);

const CAUSES: ReadonlySet<string> = new Set(FAULT_CAUSES);

export function isFaultCause(cause: string): boolean {
  return CAUSES.has(cause);
}

/** The cause of a finding (its check and code), from the catalogs; a check they lack is `other`. */
export function faultCause(check: string, code?: string | null): string {
  if (check === "xid") return code !== undefined && code !== null && /^\d{1,4}$/.test(code) ? lookupXid(Number(code)).category : "unknown";
  const twin = CHECK_XID_TWINS.find((t) => t.check === check && (t.code === undefined || t.code === code));
  if (twin !== undefined) return lookupXid(twin.xid).category;
  return CAUSES.has(check) ? check : "other";
}

/** A stored cause as a label value: one of FAULT_CAUSES, else `other` (an old row has none). */
export function causeLabel(cause: string | null | undefined): string {
  return cause !== null && cause !== undefined && CAUSES.has(cause) ? cause : "other";
}
