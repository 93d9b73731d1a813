// Label values the metrics may carry, each bounded: a check of the catalog, an Xid code of the
// catalog, a rail, a pool the store knows. Anything else an agent or a row says becomes
// "other" (or ""), so that no label grows a series per made-up name.
import { isCheckName } from "../../schema/checks.ts";
import { lookupXid } from "../../schema/xid-catalog.ts";

/**
 * The `check` label of an agent's event: a check of the catalog, else "other". Agents name
 * their checks; a counter labelled with whatever they send would grow a series per name.
 */
export function checkLabel(check: string): string {
  return isCheckName(check) ? check : "other";
}

/** The `code` label of an Xid event: a code of the catalog, else "other". */
export function xidLabel(code: string): string {
  if (!/^\d{1,4}$/.test(code)) return "other";
  return lookupXid(Number(code)).known ? String(Number(code)) : "other";
}

/** The safety rails, the `rail` label's values (any other is "other"). */
export const RAILS = [
  "dry_run",
  "paused",
  "unhealthy_budget",
  "in_flight_pool",
  "in_flight_fleet",
  "cordon_rate",
  "breaker",
  "partition_freeze",
  "max_attempts",
];

/**
 * A row's pool as a label value (SQL over `column`): the pool when it is one the store knows
 * (configured, or a GpuPool resource), else "". A monitored node's pool is what its agent said;
 * as a label it would be agent text, and a series per made-up name.
 */
export const poolLabel = (column: string) => `(case when ${column} in (select name from pools) then ${column} else '' end)`;
