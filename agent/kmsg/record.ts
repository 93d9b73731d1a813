// One kernel-log record, parsed: a /dev/kmsg record (header, message, KEY=value continuation
// lines) or one line of dmesg / syslog / journal text with its prefixes stripped. The first step
// from kernel log to finding, shared by the streaming parser (parser.ts) and the follower
// (follow.ts); it knows nothing about GPUs beyond where a GPU line starts behind an unknown prefix.
//
// /dev/kmsg format (Documentation/ABI/testing/dev-kmsg): `pri,seq,usec,flags[,…];message\n`, then
// zero or more continuation lines starting with ' ' carrying KEY=value context (SUBSYSTEM=, DEVICE=).
// Non-printable bytes and '\' in the message are escaped as \xHH (a multi-line printk arrives as
// one record with \x0a inside). flags: '-' default, 'c' first fragment of a continued line, '+' a
// continuation fragment.

export interface KmsgRecord {
  format: "kmsg" | "text";
  /** syslog level 0–7 (kmsg records, `<N>` prefixed text). */
  level?: number;
  /** syslog facility (0 = kernel, 1 = user, …). */
  facility?: number;
  seq?: number;
  /** Kernel monotonic timestamp in µs (kmsg header, or `[ secs.frac]` in dmesg text). */
  usec?: number;
  /** kmsg flags field ('-', 'c', '+'); '-' for text. */
  flags: string;
  /** The message, unescaped; lines of a multi-line record joined with '\n'. */
  message: string;
  /** kmsg continuation KEY=value pairs. */
  dict: Record<string, string>;
  /** The record as read. */
  raw: string;
}

export const KMSG_HEADER = /^(\d{1,10}),(\d{1,20}),(-?\d{1,20})((?:,[^;]*)?);([\s\S]*)$/;
export const DICT_LINE = /^[ \t]([A-Z0-9_]+)=(.*)$/;
const TEXT_USEC = /\[\s*(\d{1,10})\.(\d{1,9})\]/;
const TEXT_ANCHOR = /NVRM:|nvidia-nvswitch\d*:|SXid \(/;
// The prefixes dmesg, syslog and journalctl put before a kernel message, each optional, in order:
// `<4>` (dmesg -r), `Jan 16 14:04:39 host kernel: ` / `2025-01-16T14:04:39.1+00:00 host kernel: `,
// `[ 4254.197816] ` or `[Sun Aug 25 20:10:45 2024] ` (dmesg -T).
const TEXT_PREFIX = new RegExp(
  [
    String.raw`^(?:<(\d{1,3})>)?`,
    String.raw`(?:(?:[A-Z][a-z]{2} +\d{1,2} +\d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}[T ][0-9:.,]+(?:Z|[+-]\d{2}:?\d{2})?) +\S+ +kernel: *)?`,
    String.raw`(?:kernel: *)?`,
    String.raw`(?:\[ *(\d{1,10})\.(\d{1,9})\] ?|\[[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}\] ?)?`,
  ].join(""),
);

function unescapeKmsg(s: string): string {
  return s.indexOf("\\x") < 0 ? s : s.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function usecFrom(secs: string, frac: string): number {
  return Number(secs) * 1_000_000 + Number(frac.padEnd(6, "0").slice(0, 6));
}

/**
 * Parse one record: a kmsg record (header line + continuation lines) or one text line (+ the
 * indented lines dmesg prints under a multi-line record). Never throws; undefined for empty input.
 */
export function parseKmsgRecord(input: string | readonly string[]): KmsgRecord | undefined {
  const lines = typeof input === "string" ? input.replace(/\n$/, "").split("\n") : input;
  const first = lines[0];
  if (first === undefined || first.trim() === "") return undefined;
  const raw = lines.join("\n");
  const header = KMSG_HEADER.exec(first);
  if (header) {
    const [, pri = "0", seq = "0", usec = "0", extra = "", text = ""] = header;
    const priNum = Number(pri);
    const dict: Record<string, string> = {};
    const messageLines = [unescapeKmsg(text)];
    for (const line of lines.slice(1)) {
      const kv = DICT_LINE.exec(line);
      if (kv) dict[kv[1] ?? ""] = unescapeKmsg(kv[2] ?? "");
      else if (line.trim() !== "") messageLines.push(unescapeKmsg(line.trim()));
    }
    const flags = extra.split(",")[1]?.trim() || "-";
    const usecNum = Number(usec);
    return {
      format: "kmsg",
      level: priNum & 7,
      facility: priNum >> 3,
      seq: Number(seq),
      usec: usecNum >= 0 ? usecNum : undefined,
      flags,
      message: messageLines.join("\n"),
      dict,
      raw,
    };
  }
  // Text: `<4>[ 123.456789] NVRM: …`, `Jan 16 14:04:39 host kernel: [44643.002792] NVRM: …`,
  // `[Sun Aug 25 20:10:45 2024] NVRM: …`, `2025-01-16T14:04:39+00:00 host kernel: NVRM: …`, or bare.
  // Known prefixes are stripped; a GPU line behind an unknown prefix is cut at its anchor.
  const pre = TEXT_PREFIX.exec(first);
  let text = pre ? first.slice(pre[0].length) : first;
  let usec = pre?.[2] !== undefined ? usecFrom(pre[2], pre[3] ?? "0") : undefined;
  const anchor = TEXT_ANCHOR.exec(text);
  if (anchor && anchor.index > 0) {
    if (usec === undefined) {
      const ts = TEXT_USEC.exec(text.slice(0, anchor.index));
      if (ts) usec = usecFrom(ts[1] ?? "0", ts[2] ?? "0");
    }
    text = text.slice(anchor.index);
  }
  const levelPri = pre?.[1];
  const messageLines = [text];
  for (const line of lines.slice(1)) if (line.trim() !== "") messageLines.push(line.trim());
  return {
    format: "text",
    level: levelPri !== undefined ? Number(levelPri) & 7 : undefined,
    facility: levelPri !== undefined ? Number(levelPri) >> 3 : undefined,
    usec,
    flags: "-",
    message: messageLines.join("\n"),
    dict: {},
    raw,
  };
}
