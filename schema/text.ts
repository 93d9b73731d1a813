// Text from outside Navarch (agents, operators, config files, kernel logs): what may be stored,
// how it is cut, and how it is shown. One place, used by the agent and the reconciler alike.
//
// Why: a JavaScript string may hold a lone UTF-16 surrogate ("\udfff"), which no UTF-8 can
// encode. Sent in JSON as an escape, it reached SQLite's JSON functions, which decoded it into
// bytes that are not UTF-8; libSQL then aborted the whole process when it read them back (and
// again at every restart). And a string cut with `slice()` can split a surrogate pair into one.
import * as v from "valibot";

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/** Whether every surrogate in `text` is half of a pair: text UTF-8 (and so the store) can encode. */
export function isWellFormedText(text: string): boolean {
  return text.isWellFormed();
}

/** `text` with each lone surrogate replaced by U+FFFD: for outside text an agent reports (kernel-log lines). */
export function repairText(text: string): string {
  return text.isWellFormed() ? text : text.toWellFormed();
}

/** Index of the first lone surrogate in `text`, or -1. */
export function loneSurrogateAt(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isHighSurrogate(code) && isLowSurrogate(text.charCodeAt(i + 1))) i++;
    else if (isHighSurrogate(code) || isLowSurrogate(code)) return i;
  }
  return -1;
}

/** Why `text` is refused, naming the first lone surrogate and where it is. */
export function malformedTextMessage(text: string): string {
  const at = loneSurrogateAt(text);
  const unit = text.charCodeAt(at).toString(16).toUpperCase();
  return `must be well-formed Unicode text: a lone UTF-16 surrogate (\\u${unit}) at character ${at} cannot be encoded as UTF-8`;
}

/**
 * The first `units` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair.
 * Every cut of outside text goes through here (or `cutText`), never `slice()`.
 */
export function textPrefix(text: string, units: number): string {
  if (units >= text.length) return text;
  if (units <= 0) return "";
  const end = isHighSurrogate(text.charCodeAt(units - 1)) && isLowSurrogate(text.charCodeAt(units)) ? units - 1 : units;
  return text.slice(0, end);
}

/** The last `units` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair. */
export function textSuffix(text: string, units: number): string {
  if (units >= text.length) return text;
  if (units <= 0) return "";
  const start = text.length - units;
  return text.slice(isLowSurrogate(text.charCodeAt(start)) && isHighSurrogate(text.charCodeAt(start - 1)) ? start + 1 : start);
}

/** `text` cut to at most `max` UTF-16 units on a code-point boundary, ending in `marker` when cut. */
export function cutText(text: string, max: number, marker = "…"): string {
  if (text.length <= max) return text;
  return `${textPrefix(text, max - marker.length)}${marker}`;
}

/** A valibot action for one string: refused, with the place of its first lone surrogate. */
export const wellFormed = v.check<string, (issue: v.CheckIssue<string>) => string>(isWellFormedText, (issue) => malformedTextMessage(issue.input));

/** Most issues one value reports about its strings: a body of 500 bad events needs no 500 lines to be refused. */
const MAX_TEXT_ISSUES = 20;

type PathItem = { type: "unknown"; origin: "value"; input: unknown; key: string | number; value: unknown };

/**
 * Every string in a parsed JSON or YAML value, object keys included, is well-formed text; each
 * one that is not is an issue at its path (`events[3].message`). The check of every edge that
 * takes outside data as a whole (the API's bodies, the config and policy files), so no field,
 * present or added later, is missed.
 */
export const WellFormedStrings = v.pipe(
  v.unknown(),
  v.rawCheck(({ dataset, addIssue }) => {
    let reported = 0;
    const walk = (value: unknown, path: PathItem[]): void => {
      if (reported >= MAX_TEXT_ISSUES) return;
      if (typeof value === "string") {
        if (!isWellFormedText(value)) {
          reported++;
          addIssue({ message: malformedTextMessage(value), ...(path.length > 0 ? { path: path as [PathItem, ...PathItem[]] } : {}) });
        }
        return;
      }
      if (typeof value !== "object" || value === null) return;
      if (Array.isArray(value)) {
        value.forEach((item, i) => walk(item, [...path, { type: "unknown", origin: "value", input: value, key: i, value: item }]));
        return;
      }
      for (const [key, item] of Object.entries(value)) {
        const at: PathItem[] = [
          ...path,
          { type: "unknown", origin: "value", input: value, key: isWellFormedText(key) ? key : key.toWellFormed(), value: item },
        ];
        if (!isWellFormedText(key) && reported < MAX_TEXT_ISSUES) {
          reported++;
          addIssue({ message: `this key ${malformedTextMessage(key)}`, path: at as [PathItem, ...PathItem[]] });
        }
        walk(item, at);
      }
    };
    walk(dataset.value, []);
  }),
);

// The one JSON escape that can make a lone surrogate: \uD800 to \uDFFF. Text that is valid UTF-8
// and lacks it holds none, so most bodies are judged by this scan alone.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Whether JSON text (already valid UTF-8) may parse to a string with a lone surrogate. */
export function mayHoldLoneSurrogate(json: string): boolean {
  return SURROGATE_ESCAPE.test(json);
}

/**
 * `value` as JSON text in which every string is well-formed: a lone surrogate (which
 * JSON.stringify writes as an escape) becomes U+FFFD. For JSON that leaves a program as its own
 * report (the agent's bodies) or goes to SQLite's JSON functions, which would decode such an
 * escape into bytes that are not UTF-8 (the reconciler's ingest). Most values cost one scan.
 */
export function wellFormedJson(value: unknown): string {
  const json = JSON.stringify(value);
  if (!mayHoldLoneSurrogate(json)) return json;
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === "string" ? repairText(item) : item));
}

const FATAL_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The first byte of `bytes` that does not begin a valid UTF-8 sequence (RFC 3629: no overlong forms, no encoded surrogates). */
function invalidUtf8At(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    const extra = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (extra === 0 || i + extra >= bytes.length) return i;
    const second = bytes[i + 1]!;
    const [min, max] = lead === 0xe0 ? [0xa0, 0xbf] : lead === 0xed ? [0x80, 0x9f] : lead === 0xf0 ? [0x90, 0xbf] : lead === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    if (second < min || second > max) return i;
    for (let k = 2; k <= extra; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += extra + 1;
  }
  return i;
}

/** Decodes UTF-8 strictly: the text, or where the first invalid byte is. */
export function decodeUtf8(bytes: Uint8Array): { ok: true; text: string } | { ok: false; byte: number; message: string } {
  try {
    return { ok: true, text: FATAL_UTF8.decode(bytes) };
  } catch {
    const byte = invalidUtf8At(bytes);
    const shown = Array.from(bytes.subarray(byte, byte + 4), (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(" ");
    return { ok: false, byte, message: `is not valid UTF-8: an invalid or overlong byte sequence at byte ${byte} (${shown})` };
  }
}

// Characters that change what a terminal or a log shows instead of being shown: C0 controls,
// DEL, C1 controls (CSI among them), the line and paragraph separators, and bidirectional
// marks, embeddings, overrides and isolates (U+202E turns "exe.txt" into "txt.exe").
const UNPRINTABLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNPRINTABLE_IN_LINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const visible = (c: string) => {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
};

/**
 * `text` with control characters and bidi controls written as visible escapes (`\x1b`, `\u202e`),
 * so outside text can neither recolour, hide or reorder what a terminal shows nor, with
 * `oneLine`, start a line of its own (newlines, tabs and CR become `\n`, `\t`, `\r`).
 */
export function printable(text: string, oneLine = false): string {
  return text.replace(oneLine ? UNPRINTABLE_IN_LINE : UNPRINTABLE, visible);
}

/** JSON or YAML text with the C1 controls, line separators and bidi controls JSON and YAML leave raw written as \u escapes. */
export function escapedData(text: string): string {
  return text.replace(/[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** One JSON value as text safe for a terminal (what `-o json` prints). */
export function jsonText(body: unknown, indent?: number): string {
  return escapedData(JSON.stringify(body, null, indent));
}

/** One log line: the time, the program, and `text` on one line whatever it holds, so no value in it can print a line of its own. */
export function logLine(program: string, text: string, at = new Date()): string {
  return `${at.toISOString()} ${program}: ${printable(text, true)}\n`;
}
