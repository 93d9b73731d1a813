// Time in the views: answers carry epoch milliseconds (`Ms`); a query may give a time as epoch
// milliseconds or ISO-8601 (`parseTime`), as /v1/events and /v1/report take it, and /v1/report's
// start also as a span before the server's now (`parseSince`: the dashboard's clock is not the
// server's).
import * as v from "valibot";
import { parseIsoTime } from "../../../schema/time.ts";

export const Ms = v.pipe(v.number(), v.description("milliseconds since the epoch (UTC)"));

/** A query's time: epoch ms, or an ISO-8601 time of a real date (2026-02-31 is refused, not rolled over); null when neither. */
export function parseTime(s: string): number | null {
  if (/^\d{1,15}$/.test(s)) return Number(s);
  return parseIsoTime(s) ?? null;
}

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** A window's start: `30m`, `24h`, `7d`, `2w` before `now`, or a time as parseTime takes it; null when none of these. */
export function parseSince(s: string, now: number): number | null {
  const m = /^(\d{1,4})([mhdw])$/.exec(s);
  if (m) return now - Number(m[1]) * UNIT_MS[m[2]!]!;
  return parseTime(s);
}
