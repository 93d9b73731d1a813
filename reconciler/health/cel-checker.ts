// The static type checker for `when` expressions. @bufbuild/cel 0.6 ships no usable type
// checker (the one inside only handles constants and identifiers, and is not exported), so
// the check at load time is done here, over the parsed AST, against the declared environment
// below (the variables of cel-environment.ts, field by field) and the overloads @bufbuild/cel
// itself registers in ENV: undeclared variables, unknown fields, unknown functions, wrong
// argument types (including `event.code == 13`: code is a string) and a `when` that is not a
// bool are all load-time errors (compile-when.ts places them in the text).
import type { CelType, parse } from "@bufbuild/cel";
import { closestMatch } from "../../schema/shapes.ts";
import { ENV } from "./cel-environment.ts";

/** A parsed expression (what Checker.check walks). */
type Expr = ReturnType<typeof parse>["expr"];

type ScalarKind = "dyn" | "bool" | "int" | "uint" | "double" | "string" | "bytes" | "null" | "timestamp" | "duration" | "type";
export type StaticType =
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
const POLICY_VARIABLES: Readonly<Record<string, StaticType>> = { event: EVENT_TYPE, node: NODE_TYPE, xid: XID_TYPE, now: T.timestamp };

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

export function typeName(t: StaticType): string {
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

export const isBool = (t: StaticType) => t.kind === "bool" || t.kind === "dyn";

/** A type error at one node of the expression (its id finds the position in the text). */
export class CheckError extends Error {
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
export class Checker {
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
