// The config file's leaf schemas, shared by its sections: strings, booleans, integers with a
// ceiling, percentages, lists, mappings, DNS labels, environment variable names and URLs. Each
// fails with a message that names what was expected and what was found.
import * as v from "valibot";
import { accept, isRecord, show, withJsonShape } from "../shapes.ts";

export const Str = accept<string>((x) => typeof x === "string", "a string", { type: "string" });
export const Text = accept<string>((x) => typeof x === "string" && x.trim() !== "", "a non-empty string", { type: "string", minLength: 1 });
export const Bool = accept<boolean>((x) => typeof x === "boolean", "true or false", { type: "boolean" });

/**
 * An integer from `min` to `max`. Every integer setting has a ceiling: they size loops,
 * token buckets and node counts, and YAML reads `1e300` as an integer too.
 */
export function int(min: number, max: number) {
  const below = min === 0 ? "a non-negative integer" : `an integer ≥ ${min}`;
  const schema = v.custom<number>(
    (x) => typeof x === "number" && Number.isInteger(x) && x >= min && x <= max,
    (issue) =>
      typeof issue.input === "number" && Number.isInteger(issue.input) && issue.input > max
        ? `expected an integer from ${min} to ${max}, got ${show(issue.input)}`
        : `expected ${below}, got ${show(issue.input)}`,
  );
  return withJsonShape(schema, { type: "integer", minimum: min, maximum: max });
}
/** Nodes in one pool (and anything counted in nodes): far above any real pool, far below a runaway loop. */
export const MAX_NODES = 100_000;
export const NodeCount = int(0, MAX_NODES);

/** Any YAML mapping (valibot's object schemas would also take a list). */
export const Mapping = accept<Record<string, unknown>>(isRecord, "a mapping", { type: "object" });

/** A string matching `pattern`; `what` describes the shape for the message. */
export function shaped(pattern: RegExp, what: string) {
  return accept<string>((x) => typeof x === "string" && pattern.test(x), what, { type: "string", pattern: pattern.source });
}

export function list<TItem extends v.GenericSchema>(item: TItem, { nonEmpty = false, noun = "item" } = {}) {
  return v.pipe(
    v.array(item, (issue) => `expected a list, got ${show(issue.input)}`),
    v.check((items) => !nonEmpty || items.length > 0, `must list at least one ${noun}`),
  );
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DnsLabel = shaped(DNS_LABEL, "a DNS label (lowercase letters, digits and '-', at most 63, starting and ending alphanumeric)");
export const EnvVarName = v.custom<string>(
  (x) => typeof x === "string" && /^[A-Z_][A-Z0-9_]*$/.test(x),
  // Don't echo the value: a secret pasted where its variable's name belongs would end up in logs.
  (issue) =>
    typeof issue.input === "string"
      ? "expected the name of an environment variable, like LAMBDA_API_KEY (capital letters, digits and _); the value is not shown in case it is a secret"
      : `expected the name of an environment variable, like LAMBDA_API_KEY, got ${show(issue.input)}`,
);
export const HttpUrl = accept<string>((x) => {
  if (typeof x !== "string" || !URL.canParse(x)) return false;
  return ["http:", "https:"].includes(new URL(x).protocol);
}, "an http:// or https:// URL");

export const Percent = accept<number>((x) => typeof x === "number" && x >= 0 && x <= 100, "a number from 0 to 100", {
  type: "number",
  minimum: 0,
  maximum: 100,
});
