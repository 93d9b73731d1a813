// The leaf schemas the sections of a scenario file share (names, integers, probabilities,
// durations, days included): each section (fleet, clouds, workload, chaos, sim, targets, checks, events)
// builds on these, so a value reads the same wherever it is written and its error message
// says the same thing.
import * as v from "valibot";
import { parseDuration, type Millis } from "../config.ts";
import { accept, show } from "../shapes.ts";

export const Text = accept<string>((x) => typeof x === "string" && x.trim() !== "", "a non-empty string");
export const Str = accept<string>((x) => typeof x === "string", "a string");
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const Name = accept<string>((x) => typeof x === "string" && DNS_LABEL.test(x), "a DNS label (lowercase letters, digits and '-', at most 63)");

export function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  const what = max !== Number.MAX_SAFE_INTEGER ? `an integer from ${min} to ${max}` : min === 0 ? "a non-negative integer" : `an integer ≥ ${min}`;
  return accept<number>((x) => typeof x === "number" && Number.isInteger(x) && x >= min && x <= max, what);
}
export const NonNegative = accept<number>((x) => typeof x === "number" && Number.isFinite(x) && x >= 0, "a number ≥ 0");
export const Probability = accept<number>((x) => typeof x === "number" && x >= 0 && x <= 1, "a probability from 0 to 1");
export const True = accept<true>((x) => x === true, "true");
export const Bool = accept<boolean>((x) => typeof x === "boolean", "true or false");

/**
 * A scenario's durations: the config's (`30s`, `5m`, `2h30m`) and whole days in front
 * (`54d`, `1d12h`), since scenarios simulate weeks.
 */
export function parseScenarioDuration(text: string): Millis | undefined {
  const days = /^(\d+)d(.*)$/.exec(text);
  if (days === null) return parseDuration(text);
  const rest = days[2] === "" ? 0 : parseDuration(days[2]!);
  return rest === undefined ? undefined : Number(days[1]) * 86_400_000 + rest;
}

function duration({ positive }: { positive: boolean }) {
  return v.pipe(
    v.custom<string>(
      (x) => typeof x === "string" && parseScenarioDuration(x) !== undefined && (!positive || parseScenarioDuration(x)! > 0),
      (issue) =>
        typeof issue.input === "string" && parseScenarioDuration(issue.input) === 0
          ? `must be longer than zero, got ${show(issue.input)}`
          : `expected a duration like 30s, 5m, 2h30m or 54d, got ${show(issue.input)}`,
    ),
    v.transform((text) => parseScenarioDuration(text)!),
  );
}
export const Duration = duration({ positive: false });
export const PositiveDuration = duration({ positive: true });
