// The health policy: what one health event means for its GPU and node, and what the open
// findings mean for the node as a whole.
//
//   per event:  evaluate(event, history, now) → { result, action, persistence, rule, reason }
//               user rules (CEL, first match wins) → the catalog's repeat rules → the event as the
//               agent classified it, with the catalog's persistence (the DEFAULT policy)
//   per node:   trackFinding folds evaluations into open findings (plain data the caller stores);
//               nodeVerdict closes what recovered and combines the rest with unhealthy_threshold.
//
// CEL is @bufbuild/cel (parse + plan + evaluate). Its 0.6 release ships no usable type checker
// (the one inside only handles constants and identifiers, and is not exported), so the static
// check at load time is done here, over the parsed AST, against the declared environment below
// and the overloads @bufbuild/cel itself registers: undeclared variables, unknown fields, unknown
// functions, wrong argument types (including `event.code == 13`: code is a string) and a `when`
// that is not a bool are all load-time errors naming `rules[i].when` and the position.
//
// The environment a `when` expression sees:
//   event   check, code ("" when none), severity, action, message, count (int, ≥ 1), seq (int),
//           boot_id, time (timestamp), gpu { index (int, -1 when the event is not about one GPU),
//           uuid, pci_bus_id }
//   node    id, pool ("" when none), boot_id
//   xid     the catalog entry (with the policy's overrides) for an xid event's code: code (int), name,
//           meaning, known, ignored, severity, action, persistence, category, app_caused,
//           escalate { count (int, 0 = no repeat rule), window (duration), severity, action };
//           for any other event every field is empty ("", 0, false)
//   now     the evaluation time (timestamp)
//   count_events(check, code, window)       occurrences on the event's GPU (node-level events: on no
//                                           GPU) in (event.time - window, event.time], the event included
//   count_events_node(check, code, window)  the same over every GPU of the node
//   (code "*" matches any code.) An occurrence is counted from the rows' cumulative `count`: a
//   finding the agent deduplicated into one row with count 500 is 500 occurrences; healthy
//   (recovery) rows are not occurrences.
import { CelScalar, celEnv, celFunc, celMap, isCelError, mapType, objectType, parse, plan, type CelInput, type CelMap, type CelType } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { isScalar } from "yaml";
import { CHECK_XID_TWINS, EDGE_CHECKS } from "../../schema/checks.ts";
import { closestMatch } from "../../schema/shapes.ts";
import type { healthEvents } from "../../schema/db.ts";
import { validateHealthPolicy, type HealthPolicyDocument, type PolicyIssue, type PolicyRule } from "../../schema/health-policy.ts";
import { ACTIONS, findingKey, type GpuIdentity, type HealthEvent, type RecommendedAction, type Severity } from "../../schema/wire.ts";
import { lookupXid, XID_CATALOG, type XidCatalog, type XidCatalogEntry, type XidPersistence } from "../../schema/xid-catalog.ts";
import { isUpstreamPolicy } from "../../schema/upstream.ts";
import { YamlSource, readTextFile, sortProblems, type Problem } from "../config/yaml-source.ts";
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

/** The history the policy sees: rows of the `health_events` table (the node's own, any order). */
export type PolicyHistoryRow = Pick<
  typeof healthEvents.$inferSelect,
  "seq" | "bootId" | "time" | "check" | "code" | "severity" | "gpuIndex" | "gpuUuid" | "gpuPciBusId" | "count"
>;

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

// ───────────────────────────── the CEL environment ─────────────────────────────

const TIMESTAMP_TYPE = objectType("google.protobuf.Timestamp");
const DURATION_TYPE = objectType("google.protobuf.Duration");

interface TimestampValue {
  readonly $typeName: "google.protobuf.Timestamp";
  seconds: bigint;
  nanos: number;
}
interface DurationValue {
  readonly $typeName: "google.protobuf.Duration";
  seconds: bigint;
  nanos: number;
}

function timestampOf(ms: number): TimestampValue {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
function durationOf(ms: number): DurationValue {
  const seconds = Math.trunc(ms / 1000);
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** Milliseconds of a CEL duration value (what count_events receives). */
function durationMs(value: { readonly message: unknown }): number {
  const m = value.message;
  if (typeof m !== "object" || m === null) return 0;
  const seconds = "seconds" in m && typeof m.seconds === "bigint" ? Number(m.seconds) : 0;
  const nanos = "nanos" in m && typeof m.nanos === "number" ? m.nanos : 0;
  return seconds * 1000 + nanos / 1e6;
}

/** The event being evaluated and its history, for the count functions (evaluation is synchronous). */
let active: { event: NormalizedEvent; history: PreparedHistory } | undefined;

const COUNT_EVENTS = celFunc("count_events", [CelScalar.STRING, CelScalar.STRING, DURATION_TYPE], CelScalar.INT, (check, code, window) =>
  active ? BigInt(countOccurrences(active.event, active.history, active.event.gpuKey, check, code, durationMs(window))) : 0n,
);
const COUNT_EVENTS_NODE = celFunc("count_events_node", [CelScalar.STRING, CelScalar.STRING, DURATION_TYPE], CelScalar.INT, (check, code, window) =>
  active ? BigInt(countOccurrences(active.event, active.history, ANY_GPU, check, code, durationMs(window))) : 0n,
);

const VARIABLES = {
  event: mapType(CelScalar.STRING, CelScalar.DYN),
  node: mapType(CelScalar.STRING, CelScalar.DYN),
  xid: mapType(CelScalar.STRING, CelScalar.DYN),
  now: TIMESTAMP_TYPE,
} as const;

/** CEL's standard library, its strings extension (lowerAscii, split, replace, …) and ours. */
const ENV = celEnv({ variables: VARIABLES, funcs: [...strings, COUNT_EVENTS, COUNT_EVENTS_NODE] });

type Program = ReturnType<typeof plan<typeof VARIABLES>>;
type Bindings = Parameters<Program>[0];
type Expr = ReturnType<typeof parse>["expr"];

// ───────────────────────────── static types (the checker's view) ─────────────────────────────

type ScalarKind = "dyn" | "bool" | "int" | "uint" | "double" | "string" | "bytes" | "null" | "timestamp" | "duration" | "type";
type StaticType =
  | { readonly kind: ScalarKind }
  | { readonly kind: "list"; readonly elem: StaticType }
  | { readonly kind: "map"; readonly key: StaticType; readonly value: StaticType }
  | { readonly kind: "object"; readonly name: string; readonly fields: Readonly<Record<string, StaticType>> };

const T = {
  dyn: { kind: "dyn" },
  bool: { kind: "bool" },
  int: { kind: "int" },
  uint: { kind: "uint" },
  double: { kind: "double" },
  string: { kind: "string" },
  bytes: { kind: "bytes" },
  null: { kind: "null" },
  timestamp: { kind: "timestamp" },
  duration: { kind: "duration" },
  type: { kind: "type" },
} as const satisfies Record<ScalarKind, StaticType>;

const object = (name: string, fields: Record<string, StaticType>): StaticType => ({ kind: "object", name, fields });

const EVENT_TYPE = object("event", {
  check: T.string,
  code: T.string,
  severity: T.string,
  action: T.string,
  message: T.string,
  count: T.int,
  seq: T.int,
  boot_id: T.string,
  time: T.timestamp,
  gpu: object("event.gpu", { index: T.int, uuid: T.string, pci_bus_id: T.string }),
});
const NODE_TYPE = object("node", { id: T.string, pool: T.string, boot_id: T.string });
const XID_TYPE = object("xid", {
  code: T.int,
  name: T.string,
  meaning: T.string,
  known: T.bool,
  ignored: T.bool,
  severity: T.string,
  action: T.string,
  persistence: T.string,
  category: T.string,
  app_caused: T.bool,
  escalate: object("xid.escalate", { count: T.int, window: T.duration, severity: T.string, action: T.string }),
});

/** Every variable a `when` expression may name. */
export const POLICY_VARIABLES: Readonly<Record<string, StaticType>> = { event: EVENT_TYPE, node: NODE_TYPE, xid: XID_TYPE, now: T.timestamp };

/** Type names usable as values (`type(x) == int`). */
const TYPE_NAMES = new Set(["bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type", "dyn"]);

/** Argument names for the messages about our own functions. */
const SIGNATURE_HINTS: Readonly<Record<string, string>> = {
  count_events: 'count_events(check: string, code: string, window: duration), e.g. count_events("xid", "13", duration("24h"))',
  count_events_node: "count_events_node(check: string, code: string, window: duration)",
};

function fromCelType(t: CelType): StaticType {
  switch (t.kind) {
    case "scalar":
      return t.scalar === "null_type" ? T.null : T[t.scalar];
    case "list":
      return { kind: "list", elem: fromCelType(t.element) };
    case "map":
      return { kind: "map", key: fromCelType(t.key), value: fromCelType(t.value) };
    case "object":
      if (t.name === "google.protobuf.Timestamp") return T.timestamp;
      if (t.name === "google.protobuf.Duration") return T.duration;
      return object(t.name, {});
  }
}

interface Overload {
  target?: StaticType;
  args: StaticType[];
  result: StaticType;
}

/** Every function @bufbuild/cel will run in ENV (its standard library and ours), by name. */
const OVERLOADS: ReadonlyMap<string, Overload[]> = (() => {
  const map = new Map<string, Overload[]>();
  for (const f of ENV.funcs) {
    const overload: Overload = { args: f.arguments.map(fromCelType), result: fromCelType(f.result) };
    if (f.target) overload.target = fromCelType(f.target);
    const list = map.get(f.name) ?? [];
    list.push(overload);
    map.set(f.name, list);
  }
  return map;
})();

const FUNCTION_NAMES = [...OVERLOADS.keys()].filter((name) => /^[a-z]/i.test(name));

function typeName(t: StaticType): string {
  switch (t.kind) {
    case "list":
      return `list(${typeName(t.elem)})`;
    case "map":
      return `map(${typeName(t.key)}, ${typeName(t.value)})`;
    case "object":
      return t.name;
    default:
      return t.kind;
  }
}

function sameType(a: StaticType, b: StaticType): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "list" && b.kind === "list") return sameType(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return sameType(a.key, b.key) && sameType(a.value, b.value);
  if (a.kind === "object" && b.kind === "object") return a.name === b.name;
  return true;
}

/** Can a value of type `arg` be passed where `param` is declared? */
function assignable(param: StaticType, arg: StaticType): boolean {
  if (param.kind === "dyn" || arg.kind === "dyn") return true;
  if (param.kind !== arg.kind) return false;
  if (param.kind === "list" && arg.kind === "list") return assignable(param.elem, arg.elem);
  if (param.kind === "map" && arg.kind === "map") return assignable(param.key, arg.key) && assignable(param.value, arg.value);
  if (param.kind === "object" && arg.kind === "object") return param.name === arg.name;
  return true;
}

const NUMERIC = new Set(["int", "uint", "double"]);

/** May `a == b` be asked? (Same type, or either dyn/null, or both numbers, as in cel-go.) */
function comparable(a: StaticType, b: StaticType): boolean {
  if (a.kind === "dyn" || b.kind === "dyn" || a.kind === "null" || b.kind === "null") return true;
  if (NUMERIC.has(a.kind) && NUMERIC.has(b.kind)) return true;
  if (a.kind === "list" && b.kind === "list") return comparable(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return comparable(a.key, b.key) && comparable(a.value, b.value);
  return sameType(a, b);
}

function join(a: StaticType, b: StaticType): StaticType {
  return sameType(a, b) ? a : T.dyn;
}

const isBool = (t: StaticType) => t.kind === "bool" || t.kind === "dyn";

class CheckError extends Error {
  constructor(
    message: string,
    readonly exprId: bigint,
  ) {
    super(message);
  }
}

function noOverload(fn: string, target: StaticType | undefined, args: readonly StaticType[], id: bigint, hint = ""): CheckError {
  const applied = `${target ? `${typeName(target)}.` : ""}(${args.map(typeName).join(", ")})`;
  return new CheckError(`found no matching overload for '${fn}' applied to '${applied}'${hint}`, id);
}

/** Static checking of one parsed expression against POLICY_VARIABLES and OVERLOADS. */
class Checker {
  private readonly scopes: Map<string, StaticType>[] = [];

  check(expr: Expr): StaticType {
    const k = expr.exprKind;
    switch (k.case) {
      case "constExpr":
        return this.constant(k.value.constantKind.case, expr.id);
      case "identExpr":
        return this.ident(k.value.name, expr.id);
      case "selectExpr": {
        const operand = k.value.operand;
        if (!operand) throw new CheckError("field selection without an operand", expr.id);
        const field = this.field(this.check(operand), k.value.field, expr.id);
        return k.value.testOnly ? T.bool : field;
      }
      case "callExpr":
        return this.call(k.value.function, k.value.target, k.value.args, expr.id);
      case "listExpr": {
        const elems = k.value.elements.map((e) => this.check(e));
        return { kind: "list", elem: elems.reduce<StaticType | undefined>((acc, t) => (acc ? join(acc, t) : t), undefined) ?? T.dyn };
      }
      case "structExpr": {
        if (k.value.messageName !== "") throw new CheckError(`unknown message type '${k.value.messageName}' (a policy can build maps, not messages)`, expr.id);
        let key: StaticType | undefined;
        let value: StaticType | undefined;
        for (const entry of k.value.entries) {
          if (entry.keyKind.case !== "mapKey" || !entry.value) throw new CheckError("malformed map literal", entry.id);
          const kt = this.check(entry.keyKind.value);
          const vt = this.check(entry.value);
          key = key ? join(key, kt) : kt;
          value = value ? join(value, vt) : vt;
        }
        return { kind: "map", key: key ?? T.dyn, value: value ?? T.dyn };
      }
      case "comprehensionExpr": {
        const c = k.value;
        if (!c.iterRange || !c.accuInit || !c.loopCondition || !c.loopStep || !c.result) throw new CheckError("malformed comprehension", expr.id);
        const range = this.check(c.iterRange);
        let first: StaticType;
        let second: StaticType;
        if (range.kind === "list") [first, second] = c.iterVar2 ? [T.int, range.elem] : [range.elem, T.dyn];
        else if (range.kind === "map") [first, second] = [range.key, range.value];
        else if (range.kind === "dyn") [first, second] = [T.dyn, T.dyn];
        else throw new CheckError(`cannot iterate over a value of type ${typeName(range)}`, c.iterRange.id);
        const accu = this.check(c.accuInit);
        this.scopes.push(new Map([[c.accuVar, accu]]));
        const iter = new Map([[c.iterVar, first]]);
        if (c.iterVar2) iter.set(c.iterVar2, second);
        this.scopes.push(iter);
        const condition = this.check(c.loopCondition);
        if (!isBool(condition)) throw new CheckError(`a loop condition must be a bool, got ${typeName(condition)}`, c.loopCondition.id);
        this.check(c.loopStep);
        this.scopes.pop();
        const result = this.check(c.result);
        this.scopes.pop();
        return result;
      }
      default:
        throw new CheckError("empty expression", expr.id);
    }
  }

  private constant(kind: string | undefined, id: bigint): StaticType {
    switch (kind) {
      case "boolValue":
        return T.bool;
      case "int64Value":
        return T.int;
      case "uint64Value":
        return T.uint;
      case "doubleValue":
        return T.double;
      case "stringValue":
        return T.string;
      case "bytesValue":
        return T.bytes;
      case "nullValue":
        return T.null;
      case "durationValue":
        return T.duration;
      case "timestampValue":
        return T.timestamp;
      default:
        throw new CheckError(`unsupported constant (${kind ?? "none"})`, id);
    }
  }

  private ident(name: string, id: bigint): StaticType {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const t = this.scopes[i]!.get(name);
      if (t) return t;
    }
    const global = POLICY_VARIABLES[name];
    if (global) return global;
    if (TYPE_NAMES.has(name)) return T.type;
    const names = [...Object.keys(POLICY_VARIABLES), ...this.scopes.flatMap((s) => [...s.keys()].filter((n) => !n.startsWith("@")))];
    const guess = closestMatch(name, names);
    const hint = guess === undefined ? "" : ` (did you mean '${guess}'?)`;
    throw new CheckError(`undeclared reference to '${name}'${hint}; the variables are ${Object.keys(POLICY_VARIABLES).join(", ")}`, id);
  }

  private field(operand: StaticType, field: string, id: bigint): StaticType {
    if (operand.kind === "dyn") return T.dyn;
    if (operand.kind === "map") {
      if (!assignable(operand.key, T.string)) throw new CheckError(`cannot select field '${field}' from ${typeName(operand)}`, id);
      return operand.value;
    }
    if (operand.kind === "object") {
      const t = operand.fields[field];
      if (t) return t;
      const names = Object.keys(operand.fields);
      const guess = closestMatch(field, names);
      const hint = guess === undefined ? "" : `; did you mean '${guess}'?`;
      throw new CheckError(`${operand.name} has no field '${field}' (its fields: ${names.join(", ")}${hint})`, id);
    }
    throw new CheckError(`cannot select field '${field}' from a value of type ${typeName(operand)}`, id);
  }

  private call(fn: string, targetExpr: Expr | undefined, argExprs: readonly Expr[], id: bigint): StaticType {
    const target = targetExpr ? this.check(targetExpr) : undefined;
    const args = argExprs.map((a) => this.check(a));
    const [a, b, c] = args;
    switch (fn) {
      case "_&&_":
      case "_||_":
        if (args.length !== 2 || !args.every(isBool)) throw noOverload(fn, undefined, args, id);
        return T.bool;
      case "!_":
      case "@not_strictly_false":
        if (args.length !== 1 || !isBool(a!)) throw noOverload(fn, undefined, args, id);
        return T.bool;
      case "_?_:_":
        if (args.length !== 3 || !isBool(a!)) throw noOverload(fn, undefined, args, id);
        return join(b!, c!);
      case "_==_":
      case "_!=_":
        if (args.length !== 2 || !comparable(a!, b!)) {
          const stringVsNumber = args.length === 2 && [a!.kind, b!.kind].includes("string") && args.some((t) => NUMERIC.has(t.kind));
          throw noOverload(fn, undefined, args, id, stringVsNumber ? " (a string is never equal to a number: quote the number)" : "");
        }
        return T.bool;
      case "_[_]":
        if (args.length !== 2) throw noOverload(fn, undefined, args, id);
        if (a!.kind === "dyn") return T.dyn;
        if (a!.kind === "list" && (b!.kind === "int" || b!.kind === "uint" || b!.kind === "dyn")) return a!.elem;
        if (a!.kind === "map" && comparable(a!.key, b!)) return a!.value;
        throw noOverload("_[_]", undefined, args, id, ` (${typeName(a!)} cannot be indexed by ${typeName(b!)})`);
      case "@in":
        if (args.length !== 2) throw noOverload(fn, undefined, args, id);
        if (b!.kind === "dyn" || (b!.kind === "list" && comparable(a!, b!.elem)) || (b!.kind === "map" && comparable(a!, b!.key))) return T.bool;
        throw noOverload("@in", undefined, args, id);
    }
    const group = OVERLOADS.get(fn);
    if (!group) {
      const guess = closestMatch(fn, FUNCTION_NAMES);
      const hint = guess === undefined ? "" : ` (did you mean '${guess}'?)`;
      throw new CheckError(`undeclared reference to function '${fn}'${hint}`, id);
    }
    const matches = group.filter(
      (o) =>
        (o.target === undefined) === (target === undefined) &&
        (o.target === undefined || target === undefined || assignable(o.target, target)) &&
        o.args.length === args.length &&
        o.args.every((p, i) => assignable(p, args[i]!)),
    );
    if (matches.length === 0) {
      const hint = SIGNATURE_HINTS[fn];
      throw noOverload(fn, target, args, id, hint ? ` (expected ${hint})` : "");
    }
    return matches.map((o) => o.result).reduce(join);
  }
}

// ───────────────────────────── compiling ─────────────────────────────

/** One rule, ready to run. */
export interface CompiledRule extends PolicyRule {
  readonly source: "policy" | "default";
  /** Default repeat rules apply to one Xid code only; evaluation skips them for other events. */
  readonly onlyXid?: string;
  readonly program: Program;
}

/** A CEL problem in one expression: 1-based position inside the expression text. */
export interface CelProblem {
  kind: "syntax" | "type";
  message: string;
  line: number;
  column: number;
}

/** Compiles one `when` expression: parse, static check (it must be a bool), plan. */
export function compileWhen(when: string): { ok: true; program: Program } | { ok: false; problem: CelProblem } {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(when);
  } catch (error) {
    const location = syntaxLocation(error);
    const raw = error instanceof Error ? error.message : String(error);
    const message = location?.rawMessage ?? raw.replace(/^<input>:\d+:\d+: /, "");
    return { ok: false, problem: { kind: "syntax", message, line: location?.line ?? 1, column: location?.column ?? 1 } };
  }
  try {
    const type = new Checker().check(parsed.expr);
    if (!isBool(type)) {
      return { ok: false, problem: { kind: "type", message: `must be a bool expression, but its type is ${typeName(type)}`, line: 1, column: 1 } };
    }
  } catch (error) {
    if (!(error instanceof CheckError)) throw error;
    const offset = parsed.sourceInfo?.positions[error.exprId.toString()] ?? 0;
    return { ok: false, problem: { kind: "type", message: error.message, ...lineColumn(when, offset) } };
  }
  try {
    return { ok: true, program: plan(ENV, parsed) };
  } catch (error) {
    return { ok: false, problem: { kind: "type", message: error instanceof Error ? error.message : String(error), line: 1, column: 1 } };
  }
}

function syntaxLocation(error: unknown): { line: number; column: number; rawMessage?: string } | undefined {
  if (typeof error !== "object" || error === null || !("location" in error)) return undefined;
  const location = error.location;
  if (typeof location !== "object" || location === null || !("start" in location)) return undefined;
  const start = location.start;
  if (typeof start !== "object" || start === null || !("line" in start) || !("column" in start)) return undefined;
  if (typeof start.line !== "number" || typeof start.column !== "number") return undefined;
  const rawMessage = "rawMessage" in error && typeof error.rawMessage === "string" ? error.rawMessage : undefined;
  return rawMessage === undefined ? { line: start.line, column: start.column } : { line: start.line, column: start.column, rawMessage };
}

/** 1-based line and column of a code-unit offset (CEL positions are offsets into the text). */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - (before.lastIndexOf("\n") + 1) + 1 };
}

/** `at column 13` for one-line expressions, `at line 2, column 5` otherwise. */
export function formatCelProblem(problem: CelProblem, when: string): string {
  const where = when.includes("\n") ? `line ${problem.line}, column ${problem.column}` : `column ${problem.column}`;
  return `CEL ${problem.kind} error at ${where}: ${problem.message}`;
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

// ───────────────────────────── history ─────────────────────────────

/** Scope key for "any GPU of the node" (count_events_node). */
const ANY_GPU = "\u0001any";

/** The identity count_events uses for "the same GPU": PCI bus id, else UUID, else index ("" = no GPU). */
function gpuKeyOf(pci: string | null | undefined, uuid: string | null | undefined, index: number | null | undefined): string {
  // The agent normalises PCI bus ids (agent/pci.ts), so they compare as they are.
  if (pci) return pci;
  if (uuid) return uuid;
  return index === null || index === undefined ? "" : `#${index}`;
}

interface Series {
  times: number[];
  /** cumulative[i] = occurrences of entries 0..i-1 (length times.length + 1). */
  cumulative: number[];
}

/**
 * A node's history, indexed lazily for count_events: each distinct (GPU, check, code) query scans
 * the rows once and is then answered by binary search. Build one per node and reuse it for every
 * event judged against the same rows; `evaluate` makes a throwaway one when given plain rows.
 * The rows must not change while it is in use.
 */
export class PreparedHistory {
  private seqs: Set<number> | undefined;
  private readonly series = new Map<string, Series>();

  constructor(private readonly rows: readonly PolicyHistoryRow[]) {}

  has(seq: number): boolean {
    this.seqs ??= new Set(this.rows.map((r) => r.seq));
    return this.seqs.has(seq);
  }

  /** Occurrences in (from, to] for one scope (a GPU key or ANY_GPU), check and code ("*": any). */
  count(scope: string, check: string, code: string, from: number, to: number): number {
    const key = seriesKey(scope, check, code);
    let s = this.series.get(key);
    if (!s) {
      s = this.build(scope, check, code);
      this.series.set(key, s);
    }
    return s.cumulative[upperBound(s.times, to)]! - s.cumulative[upperBound(s.times, from)]!;
  }

  /** The cumulative count of the latest row of the chain (boot, GPU, check, code) before `seq` (0 when none). */
  previousCount(bootId: string, gpu: string, check: string, code: string, seq: number): number {
    let best = -Infinity;
    let count = 0;
    for (const r of this.rows) {
      if (r.seq >= seq || r.seq <= best || r.check !== check || (r.code ?? "") !== code || r.bootId !== bootId || r.severity === "healthy") continue;
      if (gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex) !== gpu) continue;
      best = r.seq;
      count = Math.max(1, r.count);
    }
    return count;
  }

  private build(scope: string, check: string, code: string): Series {
    const rows = this.rows;
    const matched: PolicyHistoryRow[] = [];
    let repeats = false;
    for (const r of rows) {
      if (r.check !== check || r.severity === "healthy" || (code !== "*" && (r.code ?? "") !== code)) continue;
      if (scope !== ANY_GPU && gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex) !== scope) continue;
      matched.push(r);
      if (r.count > 1) repeats = true;
    }
    const n = new Array<number>(matched.length).fill(1);
    if (repeats) {
      // Cumulative counts: a row adds its growth over the previous row of its incident chain
      // (boot, GPU, code; the check is fixed here), taken in seq order.
      const order = inOrder(matched, (r) => r.seq);
      const last = new Map<string, Map<string, Map<string, number>>>();
      for (const i of order) {
        const r = matched[i]!;
        const gpu = gpuKeyOf(r.gpuPciBusId, r.gpuUuid, r.gpuIndex);
        const rowCode = r.code ?? "";
        let byGpu = last.get(r.bootId);
        if (!byGpu) last.set(r.bootId, (byGpu = new Map()));
        let byCode = byGpu.get(gpu);
        if (!byCode) byGpu.set(gpu, (byCode = new Map()));
        const count = Math.max(1, r.count);
        n[i] = added(byCode.get(rowCode) ?? 0, count);
        byCode.set(rowCode, count);
      }
    }
    const order = inOrder(matched, (r) => r.time);
    const times = new Array<number>(order.length);
    const cumulative = new Array<number>(order.length + 1);
    cumulative[0] = 0;
    order.forEach((i, k) => {
      times[k] = matched[i]!.time;
      cumulative[k + 1] = cumulative[k]! + n[i]!;
    });
    return { times, cumulative };
  }
}

/** Indexes of `items` in ascending `key` order (no sort when they already are: rows come from the DB in order). */
function inOrder<T>(items: readonly T[], key: (item: T) => number): number[] {
  const order = items.map((_, i) => i);
  for (let i = 1; i < items.length; i++) {
    if (key(items[i]!) < key(items[i - 1]!)) return order.sort((a, b) => key(items[a]!) - key(items[b]!));
  }
  return order;
}

/**
 * The index of a plain rows array, reused while the same array is passed again unchanged in
 * length and last seq (the event log is append-only, so rows are never edited in place): judging
 * a batch of events against one history array indexes it once.
 */
const preparedCache = new WeakMap<readonly PolicyHistoryRow[], { length: number; lastSeq: number | undefined; prepared: PreparedHistory }>();
function preparedFor(rows: readonly PolicyHistoryRow[]): PreparedHistory {
  const lastSeq = rows.at(-1)?.seq;
  const cached = preparedCache.get(rows);
  if (cached && cached.length === rows.length && cached.lastSeq === lastSeq) return cached.prepared;
  const prepared = new PreparedHistory(rows);
  preparedCache.set(rows, { length: rows.length, lastSeq, prepared });
  return prepared;
}

function seriesKey(scope: string, check: string, code: string): string {
  return `${scope}\u0000${check}\u0000${code}`;
}

/** Occurrences a row adds to its chain: the growth of the cumulative count, or a new incident. */
function added(previous: number, count: number): number {
  return count > previous ? count - previous : count;
}

/** Number of entries ≤ value in an ascending array. */
function upperBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function countOccurrences(event: NormalizedEvent, history: PreparedHistory, scope: string, check: string, code: string, windowMs: number): number {
  if (!(windowMs > 0)) return 0;
  const to = event.time;
  const from = to - windowMs;
  let n = history.count(scope, check, code, from, to);
  // The event itself, when the caller judges it before (or without) storing it.
  if (event.severity !== "healthy" && event.check === check && (code === "*" || event.code === code) && (scope === ANY_GPU || scope === event.gpuKey)) {
    if (!history.has(event.seq)) {
      const previous = event.count > 1 ? history.previousCount(event.bootId, event.gpuKey, event.check, event.code, event.seq) : 0;
      n += added(previous, event.count);
    }
  }
  return n;
}

// ───────────────────────────── the default policy (from the Xid catalog) ─────────────────────────────

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

const PERSISTENCE_RANK: Readonly<Record<XidPersistence, number>> = { transient: 0, reboot: 1, fatal: 2 };
const SEVERITY_RANK: Readonly<Record<Severity, number>> = { healthy: 0, degraded: 1, unhealthy: 2 };

function worsePersistence(a: XidPersistence, b: XidPersistence): XidPersistence {
  return PERSISTENCE_RANK[a] >= PERSISTENCE_RANK[b] ? a : b;
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

// ───────────────────────────── evaluating ─────────────────────────────

interface NormalizedEvent {
  seq: number;
  bootId: string;
  time: number;
  check: string;
  code: string;
  severity: Severity;
  action: RecommendedAction;
  gpu?: GpuIdentity;
  gpuKey: string;
  message: string;
  count: number;
}

function normalize(event: HealthEvent, now: number): NormalizedEvent {
  const time = Date.parse(event.time);
  const out: NormalizedEvent = {
    seq: event.seq,
    bootId: event.bootId,
    time: Number.isFinite(time) ? time : now,
    check: event.check,
    code: event.code ?? "",
    severity: event.severity,
    action: event.action,
    gpuKey: gpuKeyOf(event.gpu?.pciBusId, event.gpu?.uuid, event.gpu?.index),
    message: event.message,
    count: Math.max(1, event.count ?? 1),
  };
  if (event.gpu) out.gpu = event.gpu;
  return out;
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
    const outer = active;
    active = { event, history: prepared };
    try {
      for (const rule of this.rules) {
        if (this.matches(rule, bindings, errors)) return { ...this.fromRule(rule, event, entry), errors };
      }
      for (const rule of this.defaultRules) {
        if (event.check !== "xid" || rule.onlyXid !== event.code) continue;
        if (this.matches(rule, bindings, errors)) return { ...this.fromRule(rule, event, entry), errors };
      }
    } finally {
      active = outer;
    }
    return { ...this.fallback(event, entry), errors };
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

function isAction(value: string): value is RecommendedAction {
  return (ACTIONS as readonly string[]).includes(value);
}

/** A stored row back as the wire event (for the level-triggered loop, which re-reads rows). */
export function eventFromRow(row: typeof healthEvents.$inferSelect): HealthEvent {
  const event: HealthEvent = {
    seq: row.seq,
    time: new Date(row.time).toISOString(),
    bootId: row.bootId,
    check: row.check,
    severity: row.severity,
    // The column is plain text: a value this version does not know is the most careful action.
    action: isAction(row.action) ? row.action : "contact_support",
    message: row.message,
  };
  if (row.code !== null) event.code = row.code;
  if (row.count > 1) event.count = row.count;
  if (row.gpuIndex !== null) event.gpu = { index: row.gpuIndex, uuid: row.gpuUuid ?? "", pciBusId: row.gpuPciBusId ?? "" };
  return event;
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
