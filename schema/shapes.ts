// The building blocks of the project's valibot schemas (config, health policy,
// scenarios): messages that name what was expected and what was found, and
// "did you mean" for near misses. One place, so every file reports alike.
import * as v from "valibot";

/** How a value is shown after "got": strings quoted, containers by kind. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null (an empty value)";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The candidate `word` most likely misspells, if any is close enough to suggest. */
export function closestMatch(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const limit = w.length <= 3 ? 1 : w.length <= 6 ? 2 : 3;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(w, candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  if (best !== undefined && bestDistance <= limit) return best;
  // A truncated or extended name (`cooldown` for `cooldown_period`) is far in edits but obvious.
  const related = candidates.filter((c) => w.length >= 4 && (c.toLowerCase().startsWith(w) || w.startsWith(c.toLowerCase())));
  return related.length === 1 ? related[0] : undefined;
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/** `unknown <noun> "x" (expected one of a, b; did you mean "a"?)` */
export function unknownNameMessage(noun: string, got: string, allowed: readonly string[]): string {
  const suggestion = closestMatch(got, allowed);
  const hint = suggestion === undefined ? "" : `; did you mean "${suggestion}"?`;
  return `unknown ${noun} "${got}" (expected one of ${allowed.join(", ")}${hint})`;
}

/** ` (did you mean "x"?)`, or nothing. */
export function suggest(word: string, known: readonly string[]): string {
  const match = closestMatch(word, known);
  return match === undefined ? "" : ` (did you mean "${match}"?)`;
}

/**
 * What a schema accepts, in JSON Schema terms, where valibot cannot say it (a custom check):
 * the GpuPool CRD is generated from the config pool's schema through these (reconciler/schedulers/kubernetes/crd.ts).
 * Only what Kubernetes' structural schemas allow: a type, and bounds, an enum or a pattern.
 */
export interface JsonShape {
  type: "string" | "integer" | "number" | "boolean" | "object" | "array";
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  /** An object whose keys valibot checks and a structural schema cannot list (a nested autoscaler). */
  "x-kubernetes-preserve-unknown-fields"?: true;
  required?: readonly string[];
  properties?: Record<string, JsonShape>;
  items?: JsonShape;
  additionalProperties?: JsonShape;
  /** Cross-field rules (CEL) a structural schema adds to what its shape says. */
  "x-kubernetes-validations"?: readonly CelRule[];
}

export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
}

/** A schema as valibot builds it, as far as a walk over its keys reads it (a pipe keeps its first schema's type). */
export interface SchemaNode {
  type: string;
  /** valibot's: "schema" for a schema, "validation" or "transformation" for a pipe's actions. */
  kind?: string;
  wrapped?: SchemaNode;
  pipe?: SchemaNode[];
  entries?: Record<string, SchemaNode>;
  item?: SchemaNode;
  value?: SchemaNode;
}

export const isSchemaNode = (x: unknown): x is SchemaNode => typeof x === "object" && x !== null && "type" in x && typeof x.type === "string";

const jsonShapes = new WeakMap<object, JsonShape>();

/** Records `shape` as what `schema` accepts; returns the schema. */
export function withJsonShape<T extends object>(schema: T, shape: JsonShape): T {
  jsonShapes.set(schema, shape);
  return schema;
}

export function jsonShapeOf(schema: object): JsonShape | undefined {
  return jsonShapes.get(schema);
}

/**
 * A value of type T accepted by `test`; otherwise `expected <what>, got <value>`. `shape` says
 * what it accepts in JSON Schema terms (for generated schemas); without one, nothing is said.
 */
export function accept<T>(test: (value: unknown) => boolean, what: string, shape?: JsonShape) {
  const schema = v.custom<T>(test, (issue) => `expected ${what}, got ${show(issue.input)}`);
  return shape === undefined ? schema : withJsonShape(schema, shape);
}

/**
 * One of a fixed set of names, with a suggestion for near misses. With a `noun` a wrong
 * string reads `unknown <noun> "x" (expected one of …)`; without, `expected one of …, got "x"`.
 */
export function oneOf<const T extends readonly string[]>(names: T, noun?: string) {
  const schema = v.custom<T[number]>(
    (x) => typeof x === "string" && names.includes(x),
    (issue) => {
      if (noun !== undefined) {
        return typeof issue.input === "string"
          ? unknownNameMessage(noun, issue.input, names)
          : `expected a ${noun} (one of ${names.join(", ")}), got ${show(issue.input)}`;
      }
      const guess = typeof issue.input === "string" ? closestMatch(issue.input, names) : undefined;
      return `expected one of ${names.join(", ")}, got ${show(issue.input)}${guess === undefined ? "" : `; did you mean "${guess}"?`}`;
    },
  );
  return withJsonShape(schema, { type: "string", enum: names });
}

export interface StrictOptions {
  /** What the mapping is, for "expected <what> (a mapping)"; plain "a mapping" when absent. */
  what?: string;
  /** When the keys are themselves names (`provider type`): unknown ones read like oneOf's. */
  unknownNoun?: string;
  /** List the allowed keys when no near miss can be suggested. */
  listAllowed?: boolean;
}

/**
 * A mapping with exactly these keys. Unlike `v.strictObject` it reports every unknown key
 * (not just the first), each at its own path, with a did-you-mean.
 */
export function strict<const TEntries extends v.ObjectEntries>(entries: TEntries, options: StrictOptions = {}) {
  const known = Object.keys(entries);
  const expected = options.what === undefined ? "a mapping" : `${options.what} (a mapping)`;
  return v.pipe(
    v.custom<Record<string, unknown>>(isRecord, (issue) => `expected ${expected}, got ${show(issue.input)}`),
    // Only reached with a mapping, so its message is only ever about missing required keys.
    v.looseObject(entries, "is required"),
    v.rawCheck(({ dataset, addIssue }) => {
      const value: unknown = dataset.value;
      if (!isRecord(value)) return;
      for (const key of Object.keys(value)) {
        if (known.includes(key)) continue;
        const hint = suggest(key, known);
        const message = options.unknownNoun
          ? unknownNameMessage(options.unknownNoun, key, known)
          : `unknown key "${key}"${hint === "" && options.listAllowed ? ` (allowed: ${known.join(", ")})` : hint}`;
        addIssue({ message, path: [{ type: "object", origin: "key", input: value, key, value: value[key] }] });
      }
    }),
    v.transform((value) => {
      const out: Record<string, unknown> = {};
      for (const key of known) if (value[key] !== undefined) out[key] = value[key];
      return out as v.InferOutput<v.ObjectSchema<TEntries, undefined>>;
    }),
  );
}

/** A key of a YAML document path: mapping keys and list indexes. */
export type PathKey = string | number;

/** valibot issue path items for `keys` below `raw`, each with the value found there. */
export function issuePathAt(raw: unknown, keys: readonly PathKey[]): [v.IssuePathItem, ...v.IssuePathItem[]] {
  const items: v.IssuePathItem[] = [];
  let input: unknown = raw;
  for (const key of keys) {
    const value = isRecord(input) || Array.isArray(input) ? (input as Record<PathKey, unknown>)[key] : undefined;
    items.push({ type: "unknown", origin: "value", input, key, value });
    input = value;
  }
  return items as [v.IssuePathItem, ...v.IssuePathItem[]];
}

/**
 * A policy file's rule names are unique: each duplicate is reported at `rules[i].name`, naming the
 * rule that has it first. For a v.rawCheck, so that names are compared even when other keys have
 * problems (one run reports everything).
 */
export function reportDuplicateRuleNames(file: unknown, addIssue: (info: { message: string; path: [v.IssuePathItem, ...v.IssuePathItem[]] }) => void): void {
  if (!isRecord(file) || !Array.isArray(file.rules)) return;
  const rules: unknown[] = file.rules;
  const seen = new Map<string, number>();
  rules.forEach((rule, index) => {
    if (!isRecord(rule) || typeof rule.name !== "string") return;
    const first = seen.get(rule.name);
    if (first === undefined) return void seen.set(rule.name, index);
    addIssue({
      message: `duplicate rule name ${show(rule.name)} (rules[${first}] has it already)`,
      path: [
        { type: "object", origin: "value", input: file, key: "rules", value: rules },
        { type: "array", origin: "value", input: rules, key: index, value: rule },
        { type: "object", origin: "value", input: rule, key: "name", value: rule.name },
      ],
    });
  });
}
