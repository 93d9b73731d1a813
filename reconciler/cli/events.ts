// `navarch events`: the health-event log, filtered by node, pool, severity and time,
// and with --follow, new events as they arrive (polling /v1/events with a cursor,
// so none is missed or shown twice).
import { parseArgs } from "node:util";
import { SEVERITIES } from "../../schema/wire.ts";
import { EventList, type EventView } from "../api/views/events.ts";
import { CliError, apiGet, resolveTarget } from "./client.ts";
import type { CommandOptions } from "./actions.ts";
import { parseIsoTime } from "../../schema/time.ts";
import { age, parseAnswer, parseFormat, yamlText } from "./output.ts";
import { jsonText, printable, textPrefix } from "../../schema/text.ts";
import { EVENTS_USAGE } from "./usage.ts";

export async function eventsCommand(args: string[], write: (s: string) => void, opts: CommandOptions = {}): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      node: { type: "string" },
      pool: { type: "string" },
      severity: { type: "string" },
      check: { type: "string" },
      since: { type: "string" },
      limit: { type: "string" },
      follow: { type: "boolean", short: "f" },
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new CliError(`usage:\n${EVENTS_USAGE}`, 2);
  const format = parseFormat(values.output);
  if (values.severity !== undefined && !(SEVERITIES as readonly string[]).includes(values.severity)) {
    throw new CliError(`--severity: expected ${SEVERITIES.join(", ")}, got ${JSON.stringify(values.severity)}`, 2);
  }
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CliError(`--limit: expected a whole number from 1 to 1000, got ${values.limit}`, 2);
  const since = values.since === undefined ? undefined : parseSince(values.since, Date.now());
  const target = resolveTarget(values.server);
  const query = new URLSearchParams();
  for (const key of ["node", "pool", "severity", "check"] as const) {
    const value = values[key];
    if (value !== undefined) query.set(key, value);
  }
  if (since !== undefined) query.set("since", String(since));
  const fetchPage = async (extra: Record<string, string>) => {
    const q = new URLSearchParams(query);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return parseAnswer(EventList, await apiGet(target, `/v1/events?${q}`), "events");
  };

  let page = await fetchPage({ limit: String(limit) });
  if (!values.follow) {
    if (format === "table") write(`${page.events.length === 0 ? "No events." : eventsTable(page.events, true)}\n`);
    else if (format === "json") write(`${jsonText({ events: page.events }, 2)}\n`);
    else write(yamlText({ events: page.events }));
    return 0;
  }
  // Following: a header once, then rows (table), one JSON object per line (json) or one YAML document per event.
  const emit = (events: EventView[], header: boolean) => {
    if (events.length === 0) return;
    if (format === "table") write(`${eventsTable(events, header)}\n`);
    else for (const e of events) write(format === "json" ? `${jsonText(e)}\n` : `---\n${yamlText(e)}`);
  };
  emit(page.events, true);
  let header = page.events.length === 0;
  const pollMs = opts.pollMs ?? 1000;
  while (!opts.signal?.aborted) {
    await sleep(pollMs, opts.signal);
    if (opts.signal?.aborted) break;
    page = await fetchPage({ after: String(page.cursor), limit: "1000" });
    emit(page.events, header);
    if (page.events.length > 0) header = false;
  }
  return 0;
}

/** Fixed column widths so that followed rows line up with the header. */
function eventsTable(events: EventView[], header: boolean, now = Date.now()): string {
  const rows = events.map((e) => [
    new Date(e.time)
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, "Z"),
    age(e.time, now),
    e.nodeId,
    e.pool ?? "-",
    e.check,
    e.code ?? "",
    e.severity,
    e.gpuIndex === null ? "-" : String(e.gpuIndex),
    e.count > 1 ? `${e.message} (×${e.count})` : e.message,
  ]);
  const widths = [20, 9, 24, 12, 14, 6, 9, 3];
  const line = (cells: string[]) =>
    cells
      .map((c) => printable(c, true))
      .map((c, i) => (i < widths.length ? textPrefix(c, widths[i] ?? 0).padEnd(widths[i] ?? 0) : c))
      .join("  ")
      .trimEnd();
  const out = rows.map(line);
  if (header) out.unshift(line(["TIME", "AGE", "NODE", "POOL", "CHECK", "CODE", "SEVERITY", "GPU", "MESSAGE"]));
  return out.join("\n");
}

/** "90s", "10m", "2h", "3d" before now, or an ISO-8601 time, as epoch ms. */
export function parseSince(s: string, now: number): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  const unit: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  if (m) return now - Number(m[1]) * (unit[m[2] ?? "s"] ?? 1000);
  // Strict: an impossible date (2026-02-31) is refused, not rolled over into March.
  const t = parseIsoTime(s);
  if (t === undefined) throw new CliError(`--since: expected a duration like 10m, 2h, 3d or an ISO-8601 time of a real date, got ${JSON.stringify(s)}`, 2);
  return t;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
