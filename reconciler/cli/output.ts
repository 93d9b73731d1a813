// Rendering for the operator CLI: aligned tables that fit a terminal, ages like
// "42s ago", durations, and -o table|json|yaml.
import * as v from "valibot";
import YAML from "yaml";
import { cutText, escapedData, jsonText, printable } from "../../schema/text.ts";
import { CliError } from "./client.ts";

/** The terminal's width when stdout is one (tables are then cut to fit), else undefined. */
export function terminalWidth(): number | undefined {
  return process.stdout.isTTY && process.stdout.columns > 0 ? process.stdout.columns : undefined;
}

// Text that came from agents (host names, NVML errors, kernel-log lines, reasons) may hold
// terminal escape sequences or newlines: an agent must not be able to recolour, hide or rewrite
// what an operator's terminal shows, nor print a line of its own. `printable` (schema/text.ts)
// writes them as visible escapes: in a table cell or a `key: value` line, newlines too.

/**
 * A line of human text whose every value stays on that line: each `${value}` is written with
 * `printable(value, true)` (a newline in a pool name is `\n`), the template's own text as it is.
 * `shown\`Pool:        ${n.pool}\``. Nested `shown` lines are unchanged by the outer one.
 */
export function shown(template: TemplateStringsArray, ...values: unknown[]): string {
  let out = template[0] ?? "";
  values.forEach((value, i) => {
    out += printable(String(value), true) + (template[i + 1] ?? "");
  });
  return out;
}

/** One YAML document as text safe for a terminal (what `-o yaml` prints). */
export function yamlText(body: unknown): string {
  // A string with a control character is written double-quoted with JSON's escapes: as a block
  // scalar its newlines would print lines of its own. Nothing is folded onto a next line.
  const doc = new YAML.Document(body);
  YAML.visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === "string" && CONTROL.test(node.value)) node.type = "QUOTE_DOUBLE";
    },
  });
  return printable(escapedData(doc.toString({ lineWidth: 0, doubleQuotedAsJSON: true })));
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * Renders rows as left-aligned columns; cells are clipped to `maxCell` characters and,
 * on a terminal, the last column is clipped so each line fits its width.
 */
export function table(headers: string[], rows: string[][], maxCell = 48, width = terminalWidth()): string {
  const clip = (s: string, n: number) => cutText(s, Math.max(1, n));
  const all = [headers, ...rows.map((r) => r.map((c) => clip(printable(c, true), maxCell)))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const lead = widths.slice(0, -1).reduce((sum, w) => sum + w + 2, 0);
  const last = width === undefined ? Number.POSITIVE_INFINITY : Math.max(12, width - lead);
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? clip(cell, last) : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** "42s ago", "5m ago", "3h ago", "2d ago"; "-" for no time. */
export function age(atMs: number | null | undefined, nowMs = Date.now()): string {
  if (atMs === null || atMs === undefined) return "-";
  const s = Math.max(0, Math.round((nowMs - atMs) / 1000));
  if (s < 120) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.round(h / 24)}d ago`;
}

/** "42s", "5m 3s", "2h 5m", "3d 4h"; "-" for none. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export type Format = "table" | "json" | "yaml";

/** The -o value, or a usage error naming what was given. */
export function parseFormat(value: string | undefined): Format {
  const format = value ?? "table";
  if (format !== "table" && format !== "json" && format !== "yaml") {
    throw new CliError(`-o: expected table, json or yaml, got ${JSON.stringify(format)}`, 2);
  }
  return format;
}

/** JSON and YAML print the API's answer as it is; a table is the command's own text. */
export function render(format: Format, body: unknown, asTable: () => string): string {
  if (format === "json") return `${jsonText(body, 2)}\n`;
  if (format === "yaml") return yamlText(body);
  return `${printable(asTable())}\n`;
}

/** Checks an API answer against the schema the server answers with (one line if it does not match). */
export function parseAnswer<S extends v.GenericSchema>(schema: S, body: unknown, what: string): v.InferOutput<S> {
  const r = v.safeParse(schema, body);
  if (!r.success) {
    const issue = r.issues[0];
    const path = issue?.path?.map((p) => String(p.key)).join(".") ?? "";
    throw new CliError(
      `unexpected answer from the reconciler for ${what}${path ? ` at ${path}` : ""}: ${issue?.message ?? "invalid"} (is the server a different version?)`,
    );
  }
  return r.output;
}
