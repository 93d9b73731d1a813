// The health policy file (`server.health_policy_path`): ordered rules whose conditions are
// CEL expressions over a health event and the node's recent history, plus per-Xid overrides
// of the catalog. This file is the format only (valibot, like schema/config.ts); the CEL
// environment (reconciler/health/cel-environment.ts), the compiler (compile-policy.ts) and the
// evaluator (policy-evaluation.ts) live in reconciler/health/, whose policy-file.ts loads a file
// and reports every problem with its key path (`rules[3].when`, `xid_overrides["79"].severity`).
//
//   rules:                       # optional; evaluated in order, the first match decides
//     - name: repeated-xid-13    # unique; letters, digits, '.', '_' or '-'
//       when: event.check == "xid" && event.code == "13" && count_events("xid", "13", duration("24h")) >= 3
//       result: unhealthy        # healthy | degraded | unhealthy
//       action: contact_support  # optional; default: the event's own action ("none" for healthy)
//       persistence: reboot      # optional: fatal | reboot | transient; default: the Xid catalog's
//                                #   for xid events (and findings mapped to an Xid), else transient
//       reason: Xid 13 keeps coming back on this GPU   # optional; default: the rule name + the event message
//   xid_overrides:               # optional; exactly the catalog's format (applyXidOverrides)
//     "94": { ignore: true }
//
// An event no rule matches falls through to the default policy (the catalog's repeat rules,
// then the event as the agent classified it with the catalog's persistence): see
// DEFAULT_POLICY in reconciler/health/default-policy.ts.
//
// `unhealthy_threshold` is NOT a policy key: it is per pool (`pools[].health.unhealthy_threshold`,
// default 2) and applies to the node verdict, not to single events. It is the number of
// consecutive failed health evaluations (an evaluation that finds at least one open finding
// whose result is `unhealthy`) before the node is declared unhealthy; until then the node is
// degraded (Suspect). A finding that is both `unhealthy` and `fatal` skips the count. See
// `nodeVerdict` in reconciler/health/node-verdict.ts.
import * as v from "valibot";
import { isRecord, oneOf, show, reportDuplicateRuleNames, strict } from "./shapes.ts";
import { ACTIONS, SEVERITIES, formatIssuePath, type RecommendedAction, type Severity } from "./wire.ts";
import { applyXidOverrides, XID_CATALOG, XID_PERSISTENCES, XidOverrideError, type XidCatalog, type XidPersistence } from "./xid-catalog.ts";

/** Longest `when` expression accepted (a policy is configuration, not a program). */
export const MAX_WHEN_LENGTH = 4096;
/** Most rules one policy file may hold. */
export const MAX_RULES = 500;

export const RULE_KEYS = ["name", "when", "result", "action", "persistence", "reason"] as const;
export const POLICY_KEYS = ["rules", "xid_overrides"] as const;

/** One rule as written (normalised: absent optionals stay absent; defaults are applied per event). */
export interface PolicyRule {
  name: string;
  /** A CEL expression of type bool (compiled and type-checked by reconciler/health/compile-when.ts). */
  when: string;
  result: Severity;
  action?: RecommendedAction;
  persistence?: XidPersistence;
  reason?: string;
}

/** The file as validated by `HealthPolicySchema` (before the overrides are applied). */
export interface HealthPolicyFile {
  rules: PolicyRule[];
  /** The raw `xid_overrides` mapping; `validateHealthPolicy` applies it to the catalog. */
  xid_overrides?: unknown;
}

/** A validated policy: its rules plus the Xid catalog with the file's overrides applied. */
export interface HealthPolicyDocument {
  rules: readonly PolicyRule[];
  catalog: XidCatalog;
}

// ───────────────────────────── the schema ─────────────────────────────

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const RuleName = v.custom<string>(
  (x) => typeof x === "string" && RULE_NAME.test(x),
  (issue) => `expected a rule name (1–63 letters, digits, '.', '_' or '-', starting with a letter or digit), got ${show(issue.input)}`,
);

const When = v.custom<string>(
  (x) => typeof x === "string" && x.trim() !== "" && x.length <= MAX_WHEN_LENGTH,
  (issue) =>
    typeof issue.input === "string"
      ? issue.input.trim() === ""
        ? "expected a CEL expression, got an empty string"
        : `expected a CEL expression of at most ${MAX_WHEN_LENGTH} characters, got ${issue.input.length}`
      : typeof issue.input === "boolean" || typeof issue.input === "number"
        ? `expected a CEL expression (a string; quote it: "${String(issue.input)}"), got ${show(issue.input)}`
        : `expected a CEL expression (a string), got ${show(issue.input)}`,
);

const Reason = v.custom<string>(
  (x) => typeof x === "string" && x.length <= 1024,
  (issue) => `expected a string of at most 1024 characters, got ${show(issue.input)}`,
);

const Rule: v.GenericSchema<unknown, PolicyRule> = v.pipe(
  strict(
    {
      name: RuleName,
      when: When,
      result: oneOf(SEVERITIES),
      action: v.optional(oneOf(ACTIONS)),
      persistence: v.optional(oneOf(XID_PERSISTENCES)),
      reason: v.optional(Reason),
    },
    { what: "a rule", listAllowed: true },
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const rule = dataset.value;
    if (rule.result === "healthy" && rule.action !== undefined && rule.action !== "none") {
      addIssue({
        message: `a healthy result takes no action (use "none" or leave it out), got ${show(rule.action)}`,
        path: [{ type: "object", origin: "value", input: rule, key: "action", value: rule.action }],
      });
    }
  }),
);

/** The policy file's shape. Rule names must be unique; `xid_overrides` is checked by `validateHealthPolicy`. */
export const HealthPolicySchema: v.GenericSchema<unknown, HealthPolicyFile> = v.pipe(
  strict(
    {
      rules: v.optional(
        v.pipe(
          v.array(Rule, (issue) => `expected a list of rules, got ${show(issue.input)}`),
          v.maxLength(MAX_RULES, (issue) => `expected at most ${MAX_RULES} rules, got ${issue.input.length}`),
        ),
        [],
      ),
      xid_overrides: v.optional(v.unknown()),
    },
    { what: "a health policy", listAllowed: true },
  ),
  v.rawCheck(({ dataset, addIssue }) => reportDuplicateRuleNames(dataset.value, addIssue)),
  v.transform((file) => ({ rules: file.rules ?? [], ...(file.xid_overrides !== undefined ? { xid_overrides: file.xid_overrides } : {}) })),
);

/** One problem in a policy file: its key path (`rules[3].result`, `xid_overrides["79"].severity`) and what is wrong. */
export interface PolicyIssue {
  path: string;
  message: string;
  /** The path as keys, where it is known (used to find the line in the YAML file). */
  keys?: readonly (string | number)[];
}

export type PolicyValidation = { ok: true; policy: HealthPolicyDocument } | { ok: false; issues: PolicyIssue[] };

/**
 * Validates a parsed policy document: the shape (every problem, each with its key path) and the
 * Xid overrides, applied to `base` with the catalog's own `applyXidOverrides` (so the paths and
 * messages are the catalog's). CEL is not looked at here (reconciler/health/compile-policy.ts compiles it).
 */
export function validateHealthPolicy(raw: unknown, base: XidCatalog = XID_CATALOG): PolicyValidation {
  if (raw === null || raw === undefined) raw = {};
  const issues: PolicyIssue[] = [];
  const parsed = v.safeParse(HealthPolicySchema, raw);
  if (!parsed.success) {
    for (const issue of parsed.issues) {
      const keys = (issue.path ?? []).map((item) => item.key as string | number);
      issues.push({ path: formatIssuePath(issue.path), message: issue.message, keys });
    }
  }
  // The overrides are checked even when the rules have problems, so one run reports everything.
  const overrides = isRecord(raw) ? raw.xid_overrides : undefined;
  let catalog = base;
  try {
    catalog = applyXidOverrides(overrides, base, { path: "xid_overrides" });
  } catch (error) {
    if (!(error instanceof XidOverrideError)) throw error;
    for (const issue of error.issues) {
      // `xid_overrides["79"].escalate.count` → keys, to find the line in the file.
      const match = /^xid_overrides\["([^"]*)"\]((?:\.\w+)*)$/.exec(issue.path);
      const keys = match ? ["xid_overrides", match[1]!, ...match[2]!.split(".").filter(Boolean)] : ["xid_overrides"];
      issues.push({ path: issue.path, message: issue.message, keys });
    }
  }
  if (!parsed.success || issues.length > 0) return { ok: false, issues };
  return { ok: true, policy: { rules: parsed.output.rules, catalog } };
}
