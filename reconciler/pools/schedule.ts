// Which scheduled-autoscaler window is in force at an instant. Pure: local wall-clock time
// comes from Intl.DateTimeFormat in the window's IANA time zone, so DST changes and
// midnight crossings are handled by the calendar, not by fixed UTC offsets.
import { WEEKDAYS, type ScheduleWindow, type ScheduledAutoscalerConfig, type Weekday } from "../../schema/config.ts";

/** Local wall-clock time in a time zone. */
export interface LocalClock {
  weekday: Weekday;
  /** Minutes since local midnight, 0–1439. */
  minutes: number;
  /** `sat 02:00 Europe/Berlin`, for reasons. */
  label: string;
}

export interface ActiveWindow {
  /** Index in `windows` (0-based). */
  index: number;
  window: ScheduleWindow;
  /** The local day the window started on: today, or yesterday for the after-midnight part. */
  startedOn: Weekday;
  clock: LocalClock;
}

// One formatter per zone; caching does not affect results.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", { timeZone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    formatters.set(timeZone, f);
  }
  return f;
}

const SHORT_DAYS: Record<string, Weekday> = { Mon: "mon", Tue: "tue", Wed: "wed", Thu: "thu", Fri: "fri", Sat: "sat", Sun: "sun" };

/** The local weekday and time of `now` (epoch ms) in `timeZone`. */
export function localClock(now: number, timeZone: string): LocalClock {
  const parts = formatter(timeZone).formatToParts(new Date(now));
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? "";
  const weekday = SHORT_DAYS[part("weekday")];
  if (weekday === undefined) throw new Error(`cannot read the weekday of ${new Date(now).toISOString()} in ${timeZone}`);
  const hour = Number(part("hour")) % 24; // some engines print midnight as 24
  const minute = Number(part("minute"));
  const hhmm = `${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")}`;
  return { weekday, minutes: hour * 60 + minute, label: `${weekday} ${hhmm} ${timeZone}` };
}

/** `HH:MM` → minutes since midnight. */
export function clockMinutes(hhmm: string): number {
  const [h, m] = hhmm.split(":");
  return Number(h) * 60 + Number(m);
}

/**
 * The window in force at `now`, or undefined. A window is active from `start` (inclusive)
 * to `end` (exclusive), local time, on each of its `days`; when end ≤ start it runs past
 * midnight, so its after-midnight part is active on the day after a listed day. When
 * several windows are active the first one listed wins.
 */
export function activeWindow(config: ScheduledAutoscalerConfig, now: number): ActiveWindow | undefined {
  const clock = localClock(now, config.timezone);
  const today = clock.weekday;
  const yesterday = WEEKDAYS[(WEEKDAYS.indexOf(today) + 6) % 7]!;
  for (const [index, window] of config.windows.entries()) {
    const start = clockMinutes(window.start);
    const end = clockMinutes(window.end);
    if (start < end) {
      if (window.days.includes(today) && clock.minutes >= start && clock.minutes < end) {
        return { index, window, startedOn: today, clock };
      }
      continue;
    }
    // Crosses midnight: the evening part today, or the morning part of yesterday's window.
    if (window.days.includes(today) && clock.minutes >= start) return { index, window, startedOn: today, clock };
    if (window.days.includes(yesterday) && clock.minutes < end) return { index, window, startedOn: yesterday, clock };
  }
  return undefined;
}

/** `window 1 (fri 22:00–06:00)`. */
export function describeWindow(index: number, window: ScheduleWindow): string {
  return `window ${index + 1} (${window.days.join(",")} ${window.start}–${window.end})`;
}
