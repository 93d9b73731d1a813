// Compiling a validated policy document into a HealthPolicy: every `when` of its rules and of
// the default repeat rules for its catalog, all or nothing. Also the policy used when no file
// is configured: the default policy alone, compiled once.
import type { HealthPolicyDocument, PolicyIssue } from "../../schema/health-policy.ts";
import { XID_CATALOG } from "../../schema/xid-catalog.ts";
import { compileWhen, formatCelProblem, type CelProblem } from "./compile-when.ts";
import { defaultPolicyFor } from "./default-policy.ts";
import { HealthPolicy, type CompiledRule } from "./policy-evaluation.ts";

/** A policy issue; a CEL one also carries its position inside the expression. */
export interface PolicyCompileIssue extends PolicyIssue {
  cel?: CelProblem;
}

export type CompileResult = { ok: true; policy: HealthPolicy } | { ok: false; issues: PolicyCompileIssue[] };

/**
 * Compiles a validated policy document: every `when` of the file's rules and of the default
 * repeat rules (derived from the document's catalog, so overrides of `escalate` apply). All or
 * nothing: one bad expression and no policy is returned.
 */
export function compilePolicy(doc: HealthPolicyDocument, source = "(policy)"): CompileResult {
  const issues: PolicyCompileIssue[] = [];
  const rules: CompiledRule[] = [];
  doc.rules.forEach((rule, index) => {
    const compiled = compileWhen(rule.when);
    if (compiled.ok) rules.push({ ...rule, source: "policy", program: compiled.program });
    else issues.push(celIssue(index, rule.when, compiled.problem));
  });
  const defaults = defaultPolicyFor(doc.catalog);
  const defaultRules: CompiledRule[] = [];
  for (const rule of defaults.rules) {
    const compiled = compileWhen(rule.when);
    // The default rules are generated from the catalog: one that does not compile is our bug.
    if (!compiled.ok) throw new Error(`default rule ${rule.name} does not compile: ${formatCelProblem(compiled.problem, rule.when)}`);
    defaultRules.push({ ...rule, source: "default", onlyXid: rule.xid, program: compiled.program });
  }
  if (issues.length > 0) return { ok: false, issues };
  return { ok: true, policy: new HealthPolicy(rules, defaultRules, defaults, doc.catalog, source) };
}

/** A CEL problem in `rules[index].when`, as a policy issue. */
export function celIssue(index: number, when: string, problem: CelProblem): PolicyCompileIssue {
  return { path: `rules[${index}].when`, message: formatCelProblem(problem, when), keys: ["rules", index, "when"], cel: problem };
}
let defaultCompiled: HealthPolicy | undefined;

/** The policy used when `server.health_policy_path` is not set: the default policy alone. */
export function defaultHealthPolicy(): HealthPolicy {
  if (!defaultCompiled) {
    const compiled = compilePolicy({ rules: [], catalog: XID_CATALOG }, "(default policy)");
    if (!compiled.ok) throw new Error("the default policy does not compile");
    defaultCompiled = compiled.policy;
  }
  return defaultCompiled;
}
