// A fast yes for the common case of a valibot schema: `accepts(schema)` returns a predicate
// that is true only for values the schema accepts as they are (what v.parse would return is
// equal to the value), built once from the schema's own description. It answers false for
// anything it is unsure of (an unknown key, a default, a transformation, a schema kind it does
// not know), and the caller then runs valibot itself, which stays the one definition and
// writes every error message. Why: valibot builds a dataset object per value and per object
// key; a heartbeat of 8 GPUs (about 90 values) takes 9.0 µs to parse that way and 3.8 µs this
// way, and at 10,000 heartbeats/s the API's event loop shares 2 cores with everything else.
//
// Schema kinds (strictObject, object, array, optional, …) are walked here, with valibot's
// own type tests. A pipe's validation actions are tested by their public `requirement`, the
// test their own `~run` makes, for the kinds a heartbeat is made of (minValue, regex, check,
// …), and through their `~run` for any other; test/accept.test.ts holds the two to agreement.
import type * as v from "valibot";

export type Accepts = (value: unknown) => boolean;

type AnySchema = v.GenericSchema & {
  readonly pipe?: readonly (v.GenericSchema | v.PipeAction<unknown, unknown, v.BaseIssue<unknown>>)[];
  readonly entries?: Readonly<Record<string, AnySchema>>;
  readonly item?: AnySchema;
  readonly wrapped?: AnySchema;
  readonly default?: unknown;
  readonly options?: readonly unknown[];
  readonly literal?: unknown;
  readonly getter?: (input: unknown) => AnySchema;
};

type Action = { kind: string; "~run"(dataset: { typed: boolean; value: unknown; issues?: unknown }, config: v.Config<v.BaseIssue<unknown>>): unknown };

const compiled = new WeakMap<object, Accepts | null>();
const NO: Accepts = () => false;
const CONFIG = { abortPipeEarly: true } as const;

/** The predicate for `schema`, or undefined when the schema has a part it cannot judge (then always use valibot). */
export function accepts(schema: v.GenericSchema): Accepts | undefined {
  return compile(schema as AnySchema) ?? undefined;
}

function compile(schema: AnySchema): Accepts | null {
  const known = compiled.get(schema);
  if (known !== undefined) return known;
  compiled.set(schema, null); // a cycle (through lazy) is judged by valibot
  const built = build(schema);
  compiled.set(schema, built);
  return built;
}

function build(schema: AnySchema): Accepts | null {
  if (schema.async) return null;
  if (schema.pipe !== undefined && schema.pipe.length > 0 && schema.pipe[0] !== schema) return buildPipe(schema.pipe);
  switch (schema.type) {
    case "string":
      return (x) => typeof x === "string";
    case "number":
      return (x) => typeof x === "number" && !Number.isNaN(x);
    case "boolean":
      return (x) => typeof x === "boolean";
    case "picklist": {
      const options = schema.options ?? [];
      return (x) => options.includes(x);
    }
    case "literal": {
      const literal = schema.literal;
      return (x) => x === literal;
    }
    case "optional":
    case "nullable":
    case "nullish": {
      // A default changes the output; such a schema is left to valibot.
      if (schema.default !== undefined || schema.wrapped === undefined) return null;
      const inner = compile(schema.wrapped);
      if (inner === null) return null;
      const allowUndefined = schema.type !== "nullable";
      const allowNull = schema.type !== "optional";
      return (x) => (x === undefined ? allowUndefined : x === null ? allowNull : inner(x));
    }
    case "array": {
      const item = schema.item === undefined ? null : compile(schema.item);
      if (item === null) return null;
      return (x) => Array.isArray(x) && x.every((e) => item(e));
    }
    case "object":
    case "strict_object":
      return buildObject(schema.entries ?? {});
    case "lazy": {
      const getter = schema.getter;
      if (getter === undefined) return null;
      return (x) => (compile(getter(x)) ?? NO)(x);
    }
    default:
      return null;
  }
}

/** An object whose every key is an entry: an unknown key is dropped (object) or refused (strictObject) by valibot, so it is left to valibot. */
function buildObject(entries: Readonly<Record<string, AnySchema>>): Accepts | null {
  const checks: [string, Accepts][] = [];
  for (const [key, entry] of Object.entries(entries)) {
    const check = compile(entry);
    if (check === null) return null;
    checks.push([key, check]);
  }
  return (x) => {
    if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
    const input = x as Record<string, unknown>;
    for (const key in input) if (!Object.hasOwn(entries, key) || !Object.hasOwn(input, key)) return false;
    for (const [key, check] of checks) if (!check(input[key])) return false;
    return true;
  };
}

/** The pipe's schema, then each validation action; a transformation (or a schema after the first) is left to valibot. */
function buildPipe(pipe: NonNullable<AnySchema["pipe"]>): Accepts | null {
  const [first, ...rest] = pipe;
  const base = compile(first as AnySchema);
  if (base === null) return null;
  const checks: Accepts[] = [base];
  for (const item of rest) {
    const action = item as unknown as Action;
    if (action.kind !== "validation") return null;
    checks.push(validation(action));
  }
  return (x) => {
    for (const check of checks) if (!check(x)) return false;
    return true;
  };
}

/**
 * One validation action as a predicate. The actions a heartbeat is made of, by their public
 * `requirement`, each the test valibot's own `~run` makes (test/accept.test.ts compares them
 * with valibot over many values); any other is run through its `~run`.
 */
function validation(action: Action): Accepts {
  const { type, requirement } = action as Action & { type: string; requirement: unknown };
  switch (type) {
    case "min_value":
      return (x) => (x as number) >= (requirement as number);
    case "max_value":
      return (x) => (x as number) <= (requirement as number);
    case "min_length":
      return (x) => (x as { length: number }).length >= (requirement as number);
    case "max_length":
      return (x) => (x as { length: number }).length <= (requirement as number);
    case "safe_integer":
    case "integer":
    case "check":
      return requirement as Accepts;
    case "regex":
    case "iso_timestamp":
    case "uuid":
      return (x) => (requirement as RegExp).test(x as string);
    default:
      return (x) => {
        const dataset: { typed: boolean; value: unknown; issues?: unknown } = { typed: true, value: x };
        action["~run"](dataset, CONFIG);
        return dataset.issues === undefined;
      };
  }
}
