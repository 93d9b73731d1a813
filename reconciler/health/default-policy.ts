// The default policy, built from the Xid catalog: each Xid's repeat rule (`escalate`) as a CEL
// rule, tried after a policy file's rules, and the agent's non-Xid findings that mean an Xid.
// An event no rule matches is judged as the agent classified it, with its catalog entry's
// persistence (compiled-policy.ts: the fallback).
import { CHECK_XID_TWINS } from "../../schema/checks.ts";
import type { PolicyRule } from "../../schema/health-policy.ts";
import { XID_CATALOG, type XidCatalog } from "../../schema/xid-catalog.ts";
import { worsePersistence } from "./severity-order.ts";

/** A non-Xid finding that means what an Xid means: it takes that Xid's persistence from the catalog. */
export interface CheckXidEquivalent {
  readonly check: string;
  /** Absent: any code of the check. */
  readonly code?: string;
  readonly xid: number;
}

/** The agent's findings that have an Xid twin: from the check catalog (schema/checks.ts). */
export const CHECK_XID_EQUIVALENTS: readonly CheckXidEquivalent[] = CHECK_XID_TWINS;

/** A default rule: an ordinary rule, tagged with the Xid code it is about. */
export interface DefaultRule extends PolicyRule {
  readonly xid: string;
}

/**
 * The default policy, as data: the catalog's repeat rules as CEL rules (tried after the file's
 * rules, in code order), and the non-Xid findings mapped to an Xid. An event no rule matches is
 * judged as the agent classified it (severity, action), with the persistence of its catalog
 * entry (xid events and the equivalents above) or `transient`; an override in the policy's
 * `xid_overrides` that sets severity or action replaces the agent's for that code, and
 * `ignore: true` makes the code healthy.
 */
export interface DefaultPolicy {
  readonly rules: readonly DefaultRule[];
  readonly equivalents: readonly CheckXidEquivalent[];
}

/** `24h`, `90m`, `30s` or `1500ms`: a CEL duration literal for a window. */
function celDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The default policy for a catalog (the base one, or one with a policy's overrides applied). */
export function defaultPolicyFor(catalog: XidCatalog): DefaultPolicy {
  const rules: DefaultRule[] = [];
  const codes = [...catalog.entries.keys()].sort((a, b) => a - b);
  for (const code of codes) {
    const entry = catalog.entries.get(code)!;
    const rule = entry.escalate;
    if (!rule || entry.ignored) continue;
    const window = celDuration(rule.windowMs);
    rules.push(
      Object.freeze({
        name: `default/xid-${code}-repeated`,
        xid: String(code),
        when: `event.check == "xid" && event.code == "${code}" && count_events("xid", "${code}", duration("${window}")) >= ${rule.count}`,
        result: rule.severity,
        action: rule.action,
        // A repeat that escalates outlives the single occurrence: at least until the next boot.
        persistence: worsePersistence(entry.persistence, "reboot"),
        reason: `Xid ${code} (${entry.name}) ${rule.count} or more times within ${window} on this GPU (catalog repeat rule)`,
      }),
    );
  }
  return Object.freeze({ rules: Object.freeze(rules), equivalents: CHECK_XID_EQUIVALENTS });
}

/** The default policy of the base catalog. */
export const DEFAULT_POLICY: DefaultPolicy = defaultPolicyFor(XID_CATALOG);
