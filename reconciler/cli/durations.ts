// Durations on the command line: `--duration 10m`, `--deadline 2h`, `--ttl 30d`. One grammar
// for every flag: whole numbers with s, m, h, d or w, combined (`1h30m`), or bare seconds
// (`600`, as the flags took before). A value outside the flag's range is a usage error that
// names the flag, the range and what was given.
import { CliError } from "./client.ts";

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 };

/** `90m`, `1h30m`, `30d`, `2w`, `600` → seconds; undefined when it is none of those. */
export function cliSeconds(text: string): number | undefined {
  const t = text.trim();
  if (/^\d{1,9}$/.test(t)) return Number(t);
  if (!/^(\d{1,7}[smhdw])+$/.test(t)) return undefined;
  let total = 0;
  for (const [, n, unit] of t.matchAll(/(\d+)([smhdw])/g)) total += Number(n) * UNIT_SECONDS[unit!]!;
  return total;
}

/** What to write for `seconds` in a message: `10m`, `7d`, `3650d`. */
function shown(seconds: number): string {
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
  ] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** `text` as seconds within min..max, or a usage error naming `flag` (exit 2). */
export function durationFlag(flag: string, text: string, min: number, max: number, like: string): number {
  const seconds = cliSeconds(text);
  if (seconds === undefined || seconds < min || seconds > max) {
    throw new CliError(`${flag}: expected a duration from ${shown(min)} to ${shown(max)}, like ${like}, got ${JSON.stringify(text)}`, 2);
  }
  return seconds;
}
