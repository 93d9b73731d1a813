// Upstream Navarch's health policy, mapped onto ours. Upstream's rules are CEL over one
// `event` map as its agent reported it (event_type, system, gpu_index, gpu_uuid, message,
// timestamp, metrics such as xid_code); ours see the agent's findings (check, code, …). Each
// upstream rule becomes one of our rules whose `when` rebuilds upstream's view of the event and
// runs the upstream condition, unchanged, over it:
//
//   event.severity != "healthy" && (<an event upstream's agent reported>) &&
//   [{"event_type": …, "metrics": {"xid_code": …}, …}].all(event, (<the condition>))
//
// The comprehension variable `event` shadows ours inside the condition, so the text the
// operator wrote runs as written; a field the view lacks is a run-time error, which skips the
// rule, as it did upstream. Recovery events (severity healthy) never reach upstream's rules:
// upstream's agent sent none, and a `degraded` rule matching one would keep a finding open.
//
// Which findings have an upstream view (UPSTREAM_EVENT_VIEWS): Xid events, and the findings
// that mean an Xid (GPU lost = 79, row-remap failure = 64, row remap pending = 63, as in
// CHECK_XID_EQUIVALENTS), ECC double-bit errors, NVLink and PCIe. Everything else the agent
// finds (thermal by the GPU's own thresholds, SBE rates, fabric, the NVML watchdog, …) carries
// no reading upstream's rules test (a temperature, an SBE count) and goes to the default
// policy: upstream's closing `condition: "true"` → healthy must not call a GPU at its
// shutdown temperature healthy.
import * as v from "valibot";
import type { HealthPolicyDocument } from "../../schema/health-policy.ts";
import { formatIssuePath } from "../../schema/wire.ts";
import { UpstreamPolicySchema, type UpstreamPolicyFile } from "../../schema/upstream.ts";
import type { XidCatalog } from "../../schema/xid-catalog.ts";
import { compilePolicy, type PolicyCompileIssue } from "./compile-policy.ts";
import { compileWhen, formatCelProblem, type CelProblem } from "./compile-when.ts";
import { CHECK_XID_EQUIVALENTS } from "./default-policy.ts";
import type { HealthPolicy } from "./policy-evaluation.ts";

/** How one kind of finding looks to upstream's rules. */
interface UpstreamEventView {
  /** Our check, and its code when only one code maps (absent: any code). */
  readonly check: string;
  readonly code?: string;
  readonly eventType: string;
  readonly system: string;
  /** The Xid it means: a fixed code, "own" for an Xid event's own code, absent for none. */
  readonly xid?: number | "own";
}

/** The findings upstream's rules judge, and how each looks to them. */
const UPSTREAM_EVENT_VIEWS: readonly UpstreamEventView[] = Object.freeze([
  { check: "xid", eventType: "xid", system: "DCGM_HEALTH_WATCH_DRIVER", xid: "own" },
  ...CHECK_XID_EQUIVALENTS.filter((e) => e.check !== "ecc").map(
    (e): UpstreamEventView => ({
      check: e.check,
      ...(e.code !== undefined ? { code: e.code } : {}),
      eventType: "xid",
      system: "DCGM_HEALTH_WATCH_DRIVER",
      xid: e.xid,
    }),
  ),
  // The agent's uncorrectable-ECC finding; upstream reported these as their own event type.
  { check: "ecc", code: "dbe", eventType: "ecc_dbe", system: "DCGM_HEALTH_WATCH_MEM" },
  { check: "nvlink", eventType: "nvlink", system: "DCGM_HEALTH_WATCH_NVLINK" },
  { check: "pcie", eventType: "pcie", system: "DCGM_HEALTH_WATCH_PCIE" },
]);

const quote = (s: string) => JSON.stringify(s);

function matches(view: UpstreamEventView): string {
  // An Xid event whose code is not a number has no xid_code to show.
  if (view.xid === "own") return `(event.check == ${quote(view.check)} && event.code.matches("^[0-9]{1,6}$"))`;
  return view.code === undefined ? `event.check == ${quote(view.check)}` : `(event.check == ${quote(view.check)} && event.code == ${quote(view.code)})`;
}

/** `c1 ? v1 : c2 ? v2 : … : last`, over the views. */
function chain(list: readonly UpstreamEventView[], value: (view: UpstreamEventView) => string, otherwise: string): string {
  return list.reduceRight((rest, view) => `${matches(view)} ? ${value(view)} : ${rest}`, otherwise);
}

/**
 * What comes before the condition: the findings upstream's rules judge, then upstream's
 * `event` map built from ours (only evaluated where the first part holds).
 */
function upstreamPrefix(): string {
  const all = UPSTREAM_EVENT_VIEWS;
  const xids = all.filter((view) => view.xid !== undefined);
  const xidCode = chain(xids, (view) => (view.xid === "own" ? "int(event.code)" : String(view.xid)), "0");
  const applies = `event.severity != "healthy" && (${all.map(matches).join(" || ")})`;
  const event = [
    `"event_type": ${chain(all, (view) => quote(view.eventType), '"unknown"')}`,
    `"system": ${chain(all, (view) => quote(view.system), '"DCGM_HEALTH_WATCH_UNKNOWN"')}`,
    `"gpu_index": event.gpu.index`,
    `"gpu_uuid": event.gpu.uuid`,
    `"message": event.message`,
    `"timestamp": string(event.time)`,
    `"metrics": (${xids.map(matches).join(" || ")}) ? {"xid_code": ${xidCode}} : {}`,
  ].join(", ");
  return `${applies} && [{${event}}].all(event, (`;
}

const PREFIX = upstreamPrefix();

/** Our `when` for one upstream condition; the condition starts on its second line. */
export function whenForCondition(condition: string): string {
  return `${PREFIX}\n${condition}\n))`;
}

/** A problem found in the generated `when`, placed back into the condition the operator wrote. */
function inCondition(problem: CelProblem, condition: string): CelProblem {
  const lines = condition.split("\n");
  const line = problem.line - 1;
  if (line >= 1 && line <= lines.length) return { ...problem, line };
  // Past the condition (an unclosed bracket found at our closing one): its end.
  return { ...problem, line: lines.length, column: lines.at(-1)!.length + 1 };
}

export type UpstreamPolicyResult = { ok: true; policy: HealthPolicy; file: UpstreamPolicyFile; warning: string } | { ok: false; issues: PolicyCompileIssue[] };

/**
 * Validates and compiles a policy in upstream's format; every problem names its key path
 * (`rules[2].condition`, with the position inside the condition for CEL errors).
 */
export function compileUpstreamPolicy(raw: unknown, source: string, catalog: XidCatalog): UpstreamPolicyResult {
  const parsed = v.safeParse(UpstreamPolicySchema, raw);
  const issues: PolicyCompileIssue[] = [];
  if (!parsed.success) {
    for (const issue of parsed.issues) {
      issues.push({ path: formatIssuePath(issue.path), message: issue.message, keys: (issue.path ?? []).map((item) => item.key as string | number) });
    }
  }
  // CEL syntax is checked on the condition alone, so positions are exact even when the shape has problems.
  const rawRules = typeof raw === "object" && raw !== null && "rules" in raw && Array.isArray(raw.rules) ? (raw.rules as unknown[]) : [];
  rawRules.forEach((rule, index) => {
    const condition = typeof rule === "object" && rule !== null && "condition" in rule ? rule.condition : undefined;
    if (typeof condition !== "string" || condition.trim() === "" || issues.some((i) => i.path === `rules[${index}].condition`)) return;
    const alone = compileWhen(condition);
    if (!alone.ok && alone.problem.kind === "syntax") issues.push(conditionIssue(index, condition, alone.problem));
  });
  if (!parsed.success || issues.length > 0) return { ok: false, issues };

  const file = parsed.output;
  const doc: HealthPolicyDocument = {
    rules: file.rules.map((rule) => ({ name: rule.name, when: whenForCondition(rule.condition), result: rule.result })),
    catalog,
  };
  const compiled = compilePolicy(doc, source);
  if (!compiled.ok) {
    return {
      ok: false,
      issues: compiled.issues.map((issue) => {
        const index = Number(/^rules\[(\d+)\]/.exec(issue.path)?.[1]);
        const condition = file.rules[index]?.condition;
        if (condition === undefined || issue.cel === undefined) return issue;
        return conditionIssue(index, condition, inCondition(issue.cel, condition));
      }),
    };
  }
  const named = file.metadata?.name ? ` "${file.metadata.name}"` : "";
  const warning =
    `${source}: upstream Navarch's health policy format${named} (${file.rules.length} rule${file.rules.length === 1 ? "" : "s"}): ` +
    "its rules judge Xid events (GPU lost as Xid 79, row remap as 63/64), ECC double-bit errors, NVLink and PCIe as upstream's agent reported them; " +
    "every other finding (thermal, SBE rate, fabric, the NVML watchdog, …) is judged by the default policy";
  return { ok: true, policy: compiled.policy, file, warning };
}

function conditionIssue(index: number, condition: string, problem: CelProblem): PolicyCompileIssue {
  return { path: `rules[${index}].condition`, message: formatCelProblem(problem, condition), keys: ["rules", index, "condition"], cel: problem };
}
