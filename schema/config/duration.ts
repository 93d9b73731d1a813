// Durations in the config file: written like Go's (`30s`, `5m`, `1h30m`, `500ms`), held as
// milliseconds (`Millis`). `parseDuration` and `formatDuration` convert between the two; the
// `duration(min, max)` schema gives every duration key its own range, so a typo like `600h`
// for `600s` fails when the file is loaded. `DURATION_KEYS` lets printers turn `Millis` back
// into the short form.
import * as v from "valibot";
import { show, withJsonShape } from "../shapes.ts";
import { MAX_TIMER_MS } from "../wire.ts";

/** A duration in milliseconds. */
export type Millis = number;

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;

/** `1h30m` → 5400000. Undefined for anything else (no sign, no bare numbers, no spaces). */
export function parseDuration(text: string): Millis | undefined {
  if (text === "0") return 0; // Go accepts a bare zero too
  if (!DURATION_PATTERN.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS_MS[unit as keyof typeof DURATION_UNITS_MS];
  }
  return Math.round(total);
}

/** 5400000 → `1h30m`; 500 → `500ms`; 0 → `0s`. Round-trips through `parseDuration`. */
export function formatDuration(ms: Millis): string {
  if (ms === 0) return "0s";
  let rest = Math.round(ms);
  let out = "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

/** Every key whose value is a duration, so printers can turn `Millis` back into `5m`. */
export const DURATION_KEYS: ReadonlySet<string> = new Set([
  "heartbeat_interval",
  "heartbeat_timeout",
  "health_check_interval",
  "autoscale_interval",
  "cooldown_period",
  "drain_timeout",
  "registration_timeout",
  "registration_timeout_max",
  "reboot_timeout",
  "reboot_window",
  "lookback_window",
  "idle_decay",
  "window",
  "grace_period",
  "unreachable_after",
  "max_backoff",
  "token_lifespan",
  "poll_interval",
  "timeout",
]);

const DAY: Millis = 24 * 3_600_000;

/**
 * A duration from `min` to `max` (both written as durations). Every duration key has its
 * own range: a typo like `600h` for `600s` must fail here, not as a timer that overflows
 * (JS timers hold at most 2^31-1 ms, about 24.8 days) or a node that is never judged.
 */
export function duration(min: string, max: string) {
  const [lo, hi] = [parseDuration(min)!, parseDuration(max)!];
  if (hi > MAX_TIMER_MS) throw new Error(`duration bound ${max} exceeds what a timer holds`);
  const range = `from ${min} to ${max}${hi >= 2 * DAY && hi % DAY === 0 ? ` (${hi / DAY} days)` : ""}`;
  return withJsonShape(
    v.pipe(
      v.custom<string>(
        (x) => {
          const ms = typeof x === "string" ? parseDuration(x) : undefined;
          return ms !== undefined && ms >= lo && ms <= hi;
        },
        (issue) => {
          const ms = typeof issue.input === "string" ? parseDuration(issue.input) : undefined;
          if (ms === undefined) return `expected a duration like 30s or 5m, got ${show(issue.input)}`;
          if (ms === 0 && lo > 0) return `must be longer than zero, got ${show(issue.input)}`;
          return `expected a duration ${range}, got ${show(issue.input)}`;
        },
      ),
      v.transform((text) => parseDuration(text)!),
    ),
    { type: "string", pattern: lo === 0 ? "^(0|([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)$" : "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" },
  );
}
