// ISO-8601 times as every input takes them (the CLI's --since, the API's `since`, event times
// in the wire messages). `Date.parse` rolls an impossible date over (2026-02-31 becomes March
// 3rd) and accepts odd forms; this accepts only real calendar dates and clock times, and reads
// them as `Date.parse` does otherwise: a date alone is UTC midnight, a date-time without a
// zone is local time.

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?)?$/i;

export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Epoch milliseconds of an ISO-8601 date or date-time, or undefined when it is not one (or names no real day). */
export function parseIsoTime(text: string): number | undefined {
  const m = ISO.exec(text.trim());
  if (m === null) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (m[4] === undefined) return Date.UTC(year, month - 1, day);
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)];
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  if (m[8] === undefined && m[9] === undefined) return new Date(year, month - 1, day, hour, minute, second, ms).getTime();
  let offsetMin = 0;
  if (m[9] !== undefined) {
    const [oh, om] = [Number(m[10]), Number(m[11] ?? 0)];
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}

/** Whether `text` is an ISO-8601 time naming a real day and clock time. */
export function isRealIsoTime(text: string): boolean {
  return parseIsoTime(text) !== undefined;
}

/** Now, in epoch milliseconds: `Date.now` in the reconciler, virtual time in the simulator. */
export type Clock = () => number;
