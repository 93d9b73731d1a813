// Loading a policy file: parse the YAML, validate it (schema/health-policy.ts), compile it, and
// report every problem with its key path and line. A file in upstream Navarch's format is
// handed to upstream-policy.ts.
import { isScalar } from "yaml";
import { validateHealthPolicy } from "../../schema/health-policy.ts";
import { isUpstreamPolicy } from "../../schema/upstream.ts";
import { XID_CATALOG, type XidCatalog } from "../../schema/xid-catalog.ts";
import { YamlSource, readTextFile, sortProblems, type Problem } from "../config/yaml-source.ts";
import { celIssue, compilePolicy, type PolicyCompileIssue } from "./compile-policy.ts";
import { compileWhen } from "./compile-when.ts";
import type { HealthPolicy } from "./policy-evaluation.ts";
import { compileUpstreamPolicy } from "./upstream-policy.ts";

export type PolicyLoadResult = { ok: true; policy: HealthPolicy; warnings: string[] } | { ok: false; problems: Problem[] };

/**
 * Parses, validates and compiles policy text; `source` names it (usually the file path). Every
 * problem is reported with its key path and line; a policy with any problem is rejected whole.
 * A file in upstream Navarch's format (`version`, rules with `condition`) is mapped onto ours
 * (upstream-policy.ts), with one warning saying so.
 */
export function parsePolicy(text: string, source: string, options: { catalog?: XidCatalog } = {}): PolicyLoadResult {
  // An empty file is the default policy only.
  const parsed = YamlSource.parse(text, {});
  if (!parsed.ok) return parsed;
  const yaml = parsed.source;
  const raw = yaml.raw;
  if (isUpstreamPolicy(raw)) {
    // Upstream Navarch's format (version, metadata, rules with `condition`), mapped onto ours.
    const upstream = compileUpstreamPolicy(raw, source, options.catalog ?? XID_CATALOG);
    if (!upstream.ok) return { ok: false, problems: sortProblems(upstream.issues.map((issue) => toProblem(issue, yaml))) };
    return { ok: true, policy: upstream.policy, warnings: [...yaml.warnings(source), upstream.warning] };
  }
  const validated = validateHealthPolicy(raw, options.catalog);
  const issues: PolicyCompileIssue[] = validated.ok ? [] : validated.issues;
  if (validated.ok) {
    const compiled = compilePolicy(validated.policy, source);
    if (compiled.ok) return { ok: true, policy: compiled.policy, warnings: yaml.warnings(source) };
    issues.push(...compiled.issues);
  } else {
    // Report bad CEL alongside the shape problems (one run shows everything).
    const rules = typeof raw === "object" && raw !== null && "rules" in raw && Array.isArray(raw.rules) ? (raw.rules as unknown[]) : [];
    rules.forEach((rule, index) => {
      const when = typeof rule === "object" && rule !== null && "when" in rule ? rule.when : undefined;
      if (typeof when !== "string" || when.trim() === "" || issues.some((i) => i.path === `rules[${index}].when`)) return;
      const compiled = compileWhen(when);
      if (!compiled.ok) issues.push(celIssue(index, when, compiled.problem));
    });
  }
  return { ok: false, problems: sortProblems(issues.map((issue) => toProblem(issue, yaml))) };
}

/** Reads `path` and parses it; an unreadable file is a problem naming the OS reason. */
export async function loadPolicyFile(path: string, options: { catalog?: XidCatalog } = {}): Promise<PolicyLoadResult> {
  const read = await readTextFile(path);
  return read.ok ? parsePolicy(read.text, path, options) : read;
}

function toProblem(issue: PolicyCompileIssue, yaml: YamlSource): Problem {
  const keys = issue.keys ?? [];
  const problem = yaml.problemAt(issue.path, keys, issue.message);
  // A one-line plain scalar is the expression verbatim: point at the CEL error itself.
  const { node } = yaml.nodeAt(keys);
  if (issue.cel && problem.column !== undefined && isScalar(node) && node.type === "PLAIN" && typeof node.value === "string" && !node.value.includes("\n")) {
    problem.column += issue.cel.column - 1;
  }
  return problem;
}
