// Time in the views: answers carry epoch milliseconds (`Ms`); a query may give a time as epoch
// milliseconds or ISO-8601 (`parseTime`), as /v1/events and /v1/report take it.
import * as v from "valibot";
import { parseIsoTime } from "../../../schema/time.ts";

export const Ms = v.pipe(v.number(), v.description("milliseconds since the epoch (UTC)"));

/** A query's time: epoch ms, or an ISO-8601 time of a real date (2026-02-31 is refused, not rolled over); null when neither. */
export function parseTime(s: string): number | null {
  if (/^\d{1,15}$/.test(s)) return Number(s);
  return parseIsoTime(s) ?? null;
}
