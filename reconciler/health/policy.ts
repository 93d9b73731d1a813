// The health policy: what one health event means for its GPU and node, and what the open
// findings mean for the node as a whole.
//
//   per event:  evaluate(event, history, now) → { result, action, persistence, rule, reason }
//               user rules (CEL, first match wins) → the catalog's repeat rules → the event as the
//               agent classified it, with the catalog's persistence (the DEFAULT policy)
//   per node:   trackFinding folds evaluations into open findings (plain data the caller stores);
//               nodeVerdict closes what recovered and combines the rest with unhealthy_threshold.
//
// The CEL environment is cel-environment.ts, its type checker cel-checker.ts, the history the
// count functions count over history.ts, the default policy default-policy.ts.
import { celMap, isCelError, type CelInput, type CelMap } from "@bufbuild/cel";
import { isScalar } from "yaml";
import { EDGE_CHECKS } from "../../schema/checks.ts";
import { validateHealthPolicy, type HealthPolicyDocument, type PolicyIssue, type PolicyRule } from "../../schema/health-policy.ts";
import { findingKey, type GpuIdentity, type HealthEvent, type RecommendedAction, type Severity } from "../../schema/wire.ts";
import { lookupXid, XID_CATALOG, type XidCatalog, type XidCatalogEntry, type XidPersistence } from "../../schema/xid-catalog.ts";
import { isUpstreamPolicy } from "../../schema/upstream.ts";
import { YamlSource, readTextFile, sortProblems, type Problem } from "../config/yaml-source.ts";
import { durationOf, timestampOf, whileEvaluating, type Bindings, type Program } from "./cel-environment.ts";
import { compileWhen, formatCelProblem, type CelProblem } from "./compile-when.ts";
import { CHECK_XID_EQUIVALENTS, defaultPolicyFor, type DefaultPolicy } from "./default-policy.ts";
import { PreparedHistory, preparedFor, type PolicyHistoryRow } from "./history.ts";
import { normalize, type NormalizedEvent } from "./normalized-event.ts";
import { SEVERITY_RANK, worsePersistence } from "./severity-order.ts";
import { compileUpstreamPolicy } from "./upstream-policy.ts";

// ───────────────────────────── public types ─────────────────────────────

/** The node an event came from, as the policy sees it. */
export interface PolicyNode {
  id: string;
  pool?: string | null;
  bootId: string;
}

/** What `evaluate` judges: one event of one node. */
export interface PolicyInput {
  event: HealthEvent;
  node: PolicyNode;
}

/** A rule whose `when` failed at run time (it is treated as not matching; the caller logs it). */
export interface RuleError {
  rule: string;
  message: string;
}

export interface PolicyEvaluation {
  result: Severity;
  action: RecommendedAction;
  persistence: XidPersistence;
  /** The deciding rule: a policy rule's name, or `default/…` for the default policy. */
  rule: string;
  reason: string;
  source: "policy" | "default";
  errors: RuleError[];
}

// ───────────────────────────── compiling ─────────────────────────────

/** One rule, ready to run. */
export interface CompiledRule extends PolicyRule {
  readonly source: "policy" | "default";
  /** Default repeat rules apply to one Xid code only; evaluation skips them for other events. */
  readonly onlyXid?: string;
  readonly program: Program;
}

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

function celIssue(index: number, when: string, problem: CelProblem): PolicyCompileIssue {
  return { path: `rules[${index}].when`, message: formatCelProblem(problem, when), keys: ["rules", index, "when"], cel: problem };
}

// ───────────────────────────── evaluating ─────────────────────────────

/** The catalog entry an event is about: its Xid, or the Xid its check is the twin of. */
function catalogEntryFor(event: NormalizedEvent, catalog: XidCatalog): XidCatalogEntry | undefined {
  if (event.check === "xid") return /^\d{1,6}$/.test(event.code) ? lookupXid(Number(event.code), catalog) : undefined;
  const twin = CHECK_XID_EQUIVALENTS.find((e) => e.check === event.check && (e.code === undefined || e.code === event.code));
  return twin ? lookupXid(twin.xid, catalog) : undefined;
}

/**
 * A CEL map over fixed fields. Bindings are handed to @bufbuild/cel as CelMaps, not plain objects:
 * a plain object is converted again by every rule that reads it (≈ 1 µs per rule and object).
 */
function record(fields: Record<string, CelInput>): CelMap {
  return celMap(new Map(Object.entries(fields)));
}

const NO_GPU = record({ index: -1n, uuid: "", pci_bus_id: "" });
const NO_ESCALATION = record({ count: 0n, window: durationOf(0), severity: "", action: "" });
const NO_XID = record({
  code: 0n,
  name: "",
  meaning: "",
  known: false,
  ignored: false,
  severity: "",
  action: "",
  persistence: "",
  category: "",
  app_caused: false,
  escalate: NO_ESCALATION,
});

function xidBinding(entry: XidCatalogEntry): CelMap {
  return record({
    code: BigInt(entry.code),
    name: entry.name,
    meaning: entry.meaning,
    known: entry.known,
    ignored: entry.ignored,
    severity: entry.severity,
    action: entry.action,
    persistence: entry.persistence,
    category: entry.category,
    app_caused: entry.appCaused,
    escalate: entry.escalate
      ? record({
          count: BigInt(entry.escalate.count),
          window: durationOf(entry.escalate.windowMs),
          severity: entry.escalate.severity,
          action: entry.escalate.action,
        })
      : NO_ESCALATION,
  });
}

/** A compiled health policy: the file's rules, then the default policy. Immutable; safe to share. */
export class HealthPolicy {
  private readonly xidBindings = new Map<number, CelMap>();

  constructor(
    readonly rules: readonly CompiledRule[],
    readonly defaultRules: readonly CompiledRule[],
    readonly defaults: DefaultPolicy,
    readonly catalog: XidCatalog,
    readonly source: string,
  ) {}

  /**
   * Judges one event. `history` is the node's rows of `health_events` (with or without this
   * event; a PreparedHistory saves re-indexing them per event); `now` is milliseconds since the
   * epoch. The first rule whose `when` is true decides; a rule whose `when` fails at run time is
   * skipped and reported in `errors`.
   */
  evaluate(input: PolicyInput, history: readonly PolicyHistoryRow[] | PreparedHistory, now: number): PolicyEvaluation {
    const event = normalize(input.event, now);
    const prepared = history instanceof PreparedHistory ? history : preparedFor(history);
    const entry = catalogEntryFor(event, this.catalog);
    const xidEntry = event.check === "xid" ? entry : undefined;
    const bindings: Bindings = {
      event: record({
        check: event.check,
        code: event.code,
        severity: event.severity,
        action: event.action,
        message: event.message,
        count: BigInt(event.count),
        seq: BigInt(event.seq),
        boot_id: event.bootId,
        time: timestampOf(event.time),
        gpu: event.gpu ? record({ index: BigInt(event.gpu.index), uuid: event.gpu.uuid, pci_bus_id: event.gpu.pciBusId }) : NO_GPU,
      }),
      node: record({ id: input.node.id, pool: input.node.pool ?? "", boot_id: input.node.bootId }),
      xid: xidEntry ? this.xidBindingFor(xidEntry) : NO_XID,
      now: timestampOf(now),
    };
    const errors: RuleError[] = [];
    const decided = whileEvaluating(event, prepared, () => {
      for (const rule of this.rules) {
        if (this.matches(rule, bindings, errors)) return this.fromRule(rule, event, entry);
      }
      for (const rule of this.defaultRules) {
        if (event.check !== "xid" || rule.onlyXid !== event.code) continue;
        if (this.matches(rule, bindings, errors)) return this.fromRule(rule, event, entry);
      }
      return undefined;
    });
    return { ...(decided ?? this.fallback(event, entry)), errors };
  }

  private xidBindingFor(entry: XidCatalogEntry) {
    let binding = this.xidBindings.get(entry.code);
    if (!binding) {
      binding = xidBinding(entry);
      this.xidBindings.set(entry.code, binding);
    }
    return binding;
  }

  private matches(rule: CompiledRule, bindings: Bindings, errors: RuleError[]): boolean {
    const out = rule.program(bindings);
    if (out === true) return true;
    if (isCelError(out)) errors.push({ rule: rule.name, message: out.message });
    else if (out !== false) errors.push({ rule: rule.name, message: `returned a ${typeof out}, not a bool` });
    return false;
  }

  private fromRule(rule: CompiledRule, event: NormalizedEvent, entry: XidCatalogEntry | undefined): Omit<PolicyEvaluation, "errors"> {
    return {
      result: rule.result,
      action: rule.action ?? (rule.result === "healthy" ? "none" : event.action),
      persistence: rule.persistence ?? entry?.persistence ?? "transient",
      rule: rule.name,
      reason: rule.reason ?? `${rule.name}: ${event.message}`,
      source: rule.source,
    };
  }

  /** No rule matched: the event as the agent classified it, with the catalog's persistence. */
  private fallback(event: NormalizedEvent, entry: XidCatalogEntry | undefined): Omit<PolicyEvaluation, "errors"> {
    const rule = event.check === "xid" ? `default/xid-${event.code}` : `default/${event.check}`;
    if (event.severity === "healthy") {
      return { result: "healthy", action: "none", persistence: "transient", rule, reason: event.message, source: "default" };
    }
    if (event.check === "xid" && entry?.ignored) {
      return { result: "healthy", action: "none", persistence: "transient", rule, reason: `Xid ${event.code} is ignored (xid_overrides)`, source: "default" };
    }
    const result = (event.check === "xid" ? entry?.override?.severity : undefined) ?? event.severity;
    const action = (event.check === "xid" ? entry?.override?.action : undefined) ?? (result === "healthy" ? "none" : event.action);
    return { result, action, persistence: entry?.persistence ?? "transient", rule, reason: event.message, source: "default" };
  }
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

// ───────────────────────────── findings and the node verdict ─────────────────────────────

/**
 * Checks whose findings are one-off occurrences (a kernel-log line, an NVML event): nothing ever
 * reports them cleared, so a transient one closes after `healthyDelayMs` without a repeat. Every
 * other check is a level condition, which the agent reports cleared with a `healthy` event; a
 * transient one closes `healthyDelayMs` after that. From the check catalog (schema/checks.ts).
 */
export { EDGE_CHECKS };

/** How long a transient finding must stay healthy (or quiet) before it closes. */
export const DEFAULT_HEALTHY_DELAY_MS = 10 * 60_000;

/** One open finding (incident) of a node: plain data the caller stores (e.g. as JSON). */
export interface OpenFinding {
  /** findingKey: which GPU, check and code. One open finding per key. */
  key: string;
  check: string;
  code?: string;
  gpu?: GpuIdentity;
  result: Exclude<Severity, "healthy">;
  action: RecommendedAction;
  persistence: XidPersistence;
  rule: string;
  reason: string;
  /** Boot of the latest failing event. */
  bootId: string;
  openedAt: number;
  /** Time of the latest failing event. */
  lastFailedAt: number;
  /** Time of a healthy event for this key after the latest failing one, if any. */
  recoveredAt?: number;
  /** See EDGE_CHECKS. */
  edge: boolean;
}

export type CloseReason = "new_boot" | "recovered" | "quiet";

export interface ClosedFinding {
  finding: OpenFinding;
  why: CloseReason;
  /** For the log: `Xid 13 on GPU 00000000:3B:00.0: recovered 10 min ago`. */
  message: string;
}

/**
 * Folds one evaluated event into the node's open findings (returns a new list; the input is not
 * changed). A failing result opens the finding or updates it (worst result and persistence win;
 * a recovery is forgotten); a healthy result marks an open finding of the same key recovered.
 */
export function trackFinding(open: readonly OpenFinding[], event: HealthEvent, evaluation: PolicyEvaluation): OpenFinding[] {
  const key = findingKey(event);
  const time = Date.parse(event.time);
  const index = open.findIndex((f) => f.key === key);
  const existing = index >= 0 ? open[index] : undefined;
  const out = [...open];
  if (evaluation.result === "healthy") {
    if (existing && time >= existing.lastFailedAt) out[index] = { ...existing, recoveredAt: time };
    return out;
  }
  if (existing) {
    const worse = SEVERITY_RANK[evaluation.result] >= SEVERITY_RANK[existing.result];
    const { recoveredAt: _recovered, ...rest } = existing;
    out[index] = {
      ...rest,
      result: worse ? evaluation.result : existing.result,
      action: worse ? evaluation.action : existing.action,
      rule: worse ? evaluation.rule : existing.rule,
      reason: worse ? evaluation.reason : existing.reason,
      persistence: worsePersistence(existing.persistence, evaluation.persistence),
      bootId: event.bootId,
      lastFailedAt: Math.max(existing.lastFailedAt, time),
    };
    return out;
  }
  const finding: OpenFinding = {
    key,
    check: event.check,
    result: evaluation.result,
    action: evaluation.action,
    persistence: evaluation.persistence,
    rule: evaluation.rule,
    reason: evaluation.reason,
    bootId: event.bootId,
    openedAt: time,
    lastFailedAt: time,
    edge: EDGE_CHECKS.has(event.check),
  };
  if (event.code !== undefined) finding.code = event.code;
  if (event.gpu) finding.gpu = event.gpu;
  out.push(finding);
  return out;
}

export interface CloseOptions {
  /** The node's current boot id. */
  bootId: string;
  now: number;
  healthyDelayMs?: number;
}

/**
 * Which open findings are closed now:
 * - fatal: never by itself (a human, or replacing the node, closes it);
 * - reboot: when the node's boot id is not the one the finding was last seen in;
 * - transient: on a new boot too (the new agent re-reports what still holds), or `healthyDelayMs`
 *   after a healthy event for it (level conditions) or after its last occurrence (EDGE_CHECKS).
 */
export function closeFindings(open: readonly OpenFinding[], options: CloseOptions): { open: OpenFinding[]; closed: ClosedFinding[] } {
  const delay = options.healthyDelayMs ?? DEFAULT_HEALTHY_DELAY_MS;
  const still: OpenFinding[] = [];
  const closed: ClosedFinding[] = [];
  for (const f of open) {
    const why = closeReason(f, options.bootId, options.now, delay);
    if (why === undefined) still.push(f);
    else closed.push({ finding: f, why, message: `${describeFinding(f)}: ${CLOSE_TEXT[why]}` });
  }
  return { open: still, closed };
}

const CLOSE_TEXT: Readonly<Record<CloseReason, string>> = {
  new_boot: "cleared by a new boot",
  recovered: "healthy for the healthy delay",
  quiet: "no repeat within the healthy delay",
};

function closeReason(f: OpenFinding, bootId: string, now: number, delay: number): CloseReason | undefined {
  // A fault whose own remedy is a reset or a reboot is judged again in the new boot: if it is
  // still there the agent finds it again. Other fatal faults never clear by themselves.
  if (f.bootId !== bootId && (f.persistence !== "fatal" || f.action === "reboot" || f.action === "reset_gpu")) return "new_boot";
  if (f.persistence === "fatal") return undefined;
  if (f.persistence === "reboot") return undefined;
  if (f.recoveredAt !== undefined && now - f.recoveredAt >= delay) return "recovered";
  if (f.edge && now - f.lastFailedAt >= delay) return "quiet";
  return undefined;
}

function describeFinding(f: OpenFinding): string {
  const what = f.check === "xid" ? `Xid ${f.code ?? "?"}` : f.code ? `${f.check} ${f.code}` : f.check;
  return f.gpu ? `${what} on GPU ${f.gpu.index} (${f.gpu.pciBusId || f.gpu.uuid})` : what;
}

/** What nodeVerdict needs carried from one evaluation to the next (the caller stores it). */
export interface NodeHealthState {
  /** Consecutive failed evaluations (an open finding with result unhealthy) up to and including the last one. */
  consecutiveFailures: number;
}

export interface NodeVerdictOptions extends CloseOptions, Partial<NodeHealthState> {
  /** The pool's `health.unhealthy_threshold` (≥ 1; the config default is 2). */
  unhealthyThreshold: number;
  /**
   * Whether this call is one of the periodic health evaluations (default true): only those move
   * the counter. Pass false for an extra look between them (say, right after an event arrived):
   * the verdict is computed with the stored count and the state comes back unchanged.
   */
  tick?: boolean;
}

export interface NodeVerdict {
  verdict: Severity;
  reason: string;
  /** An open finding is unhealthy and fatal: the node was declared unhealthy without the count. */
  fatal: boolean;
  /** The finding that decided (the worst one), if any. */
  decidedBy?: OpenFinding;
  open: OpenFinding[];
  closed: ClosedFinding[];
  state: NodeHealthState;
}

/**
 * The node's verdict from its open findings. First the findings that recovered are closed
 * (closeFindings); then, over what is left:
 * - an unhealthy finding with persistence fatal → unhealthy now;
 * - an unhealthy finding → a failed evaluation: the counter goes up by one, and the node is
 *   unhealthy once it reaches `unhealthyThreshold` (degraded before that: with the default 2,
 *   the first failed evaluation makes it degraded, the second in a row unhealthy);
 * - else a degraded finding → degraded (and the counter restarts at 0);
 * - else healthy (counter 0).
 * One call with `tick` (the default) is one evaluation: the reconcile loop makes one per node per
 * `server.health_check_interval`.
 */
export function nodeVerdict(openFindings: readonly OpenFinding[], options: NodeVerdictOptions): NodeVerdict {
  const threshold = options.unhealthyThreshold;
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`unhealthyThreshold must be a whole number ≥ 1, got ${threshold}`);
  const { open, closed } = closeFindings(openFindings, options);
  const previous = Math.max(0, options.consecutiveFailures ?? 0);
  const tick = options.tick ?? true;
  const worst = [...open].sort(
    (a, b) => Number(isFatal(b)) - Number(isFatal(a)) || SEVERITY_RANK[b.result] - SEVERITY_RANK[a.result] || b.lastFailedAt - a.lastFailedAt,
  )[0];
  const failed = worst?.result === "unhealthy";
  const failures = tick ? (failed ? previous + 1 : 0) : previous;
  const state: NodeHealthState = { consecutiveFailures: failures };
  const base = { open, closed, state };
  if (!worst) return { ...base, verdict: "healthy", reason: "no open findings", fatal: false };
  const what = `${describeFinding(worst)}: ${worst.reason}`;
  // A fatal fault is unhealthy at once: the threshold exists to ride out flaky signals, and a
  // fatal one (Xid 79, a failed row remap) does not flap. NVSentinel does the same: "a fatal
  // event that matches a CEL ruleset cordons immediately" (its fault-quarantine docs).
  if (isFatal(worst)) return { ...base, verdict: "unhealthy", reason: `fatal: ${what}`, fatal: true, decidedBy: worst };
  if (failed) {
    const verdict = failures >= threshold ? "unhealthy" : "degraded";
    return { ...base, verdict, reason: `${failures} of ${threshold} consecutive failed evaluations: ${what}`, fatal: false, decidedBy: worst };
  }
  return { ...base, verdict: "degraded", reason: what, fatal: false, decidedBy: worst };
}

function isFatal(f: OpenFinding): boolean {
  return f.result === "unhealthy" && f.persistence === "fatal";
}

// ───────────────────────────── policy files ─────────────────────────────

export type PolicyLoadResult = { ok: true; policy: HealthPolicy; warnings: string[] } | { ok: false; problems: Problem[] };

/**
 * Parses, validates and compiles policy text; `source` names it (usually the file path). Every
 * problem is reported with its key path and line; a policy with any problem is rejected whole.
 * A file in upstream Navarch's format (`version`, rules with `condition`) is mapped onto ours
 * (reconciler/health/upstream-policy.ts), with one warning saying so.
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
