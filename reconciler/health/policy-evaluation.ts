// A compiled health policy (HealthPolicy) and what it says about one health event:
//
//   evaluate(event, history, now) → { result, action, persistence, rule, reason }
//   the policy file's rules (CEL, first match wins) → the catalog's repeat rules → the event as
//   the agent classified it, with the catalog's persistence (default-policy.ts)
//
// The rules run in cel-environment.ts's environment, counting over history.ts's history;
// compile-policy.ts builds a HealthPolicy, findings.ts and node-verdict.ts judge the node from
// the evaluations.
import { celMap, isCelError, type CelInput, type CelMap } from "@bufbuild/cel";
import type { PolicyRule } from "../../schema/health-policy.ts";
import type { HealthEvent, RecommendedAction, Severity } from "../../schema/wire.ts";
import { lookupXid, type XidCatalog, type XidCatalogEntry, type XidPersistence } from "../../schema/xid-catalog.ts";
import { durationOf, timestampOf, whileEvaluating, type Bindings, type Program } from "./cel-environment.ts";
import { CHECK_XID_EQUIVALENTS, type DefaultPolicy } from "./default-policy.ts";
import { PreparedHistory, preparedFor, type PolicyHistoryRow } from "./history.ts";
import { normalize, type NormalizedEvent } from "./normalized-event.ts";

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

/** What `evaluate` says about one event. */
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

/** One rule, ready to run. */
export interface CompiledRule extends PolicyRule {
  readonly source: "policy" | "default";
  /** Default repeat rules apply to one Xid code only; evaluation skips them for other events. */
  readonly onlyXid?: string;
  readonly program: Program;
}

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
