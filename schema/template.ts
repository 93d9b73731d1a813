// `setup_commands` are Go-template strings (the seed's `{{.ControlPlane}}`, `{{.NodeID}}`).
// We support exactly the subset they need: `{{.Variable}}` with Go's `{{-`/`-}}` whitespace
// trimming and `{{/* comments */}}`. Anything else is an error at config-check time, so a
// typo never reaches a freshly provisioned machine as a literal `{{.NodeId}}`.

/** The variables a setup command may use, in the order the docs list them. */
export const TEMPLATE_VARIABLES = [
  "ControlPlane", // URL of the reconciler the agent reports to
  "NodeID", // the node's id in the fleet
  "Pool", // pool name
  "Provider", // provider type that created the machine (lambda, gcp, …)
  "Region",
  "InstanceType",
  "BootstrapToken", // one-time token the agent exchanges for its own credential
] as const;
export type TemplateVariable = (typeof TEMPLATE_VARIABLES)[number];

export function isTemplateVariable(name: string): name is TemplateVariable {
  return (TEMPLATE_VARIABLES as readonly string[]).includes(name);
}

export type TemplatePart = { kind: "text"; text: string } | { kind: "variable"; name: TemplateVariable };

export interface TemplateError {
  kind: "unknown_variable" | "unterminated" | "unsupported";
  /** Standalone description, e.g. `unknown template variable {{.NodeId}} on line 7` (the line only for multi-line text). */
  message: string;
  /** 1-based position of the offending `{{` in the text. */
  line: number;
  column: number;
  /** For `unknown_variable`: the name as written (without the dot). */
  variable?: string;
}

export type ParsedTemplate = { ok: true; parts: TemplatePart[]; variables: TemplateVariable[] } | { ok: false; errors: TemplateError[] };

const VARIABLE_ACTION = /^\.([A-Za-z_][A-Za-z0-9_]*)$/;

/** Splits `text` into literal text and variable references; collects every error, not just the first. */
export function parseTemplate(text: string): ParsedTemplate {
  const parts: TemplatePart[] = [];
  const errors: TemplateError[] = [];
  let pendingText = "";
  let cursor = 0;
  while (cursor < text.length) {
    const open = text.indexOf("{{", cursor);
    if (open < 0) {
      pendingText += text.slice(cursor);
      break;
    }
    const close = text.indexOf("}}", open + 2);
    const { line, column } = position(text, open);
    const where = text.includes("\n") ? ` on line ${line}` : "";
    const reopen = text.indexOf("{{", open + 2);
    if (close >= 0 && reopen >= 0 && reopen < close) {
      // `{{.NodeID --server {{.ControlPlane}}`: the first action was never closed.
      errors.push({ kind: "unterminated", message: `unterminated "{{"${where}: no closing "}}" before the next "{{"`, line, column });
      cursor = reopen;
      continue;
    }
    if (close < 0) {
      errors.push({ kind: "unterminated", message: `unterminated "{{"${where}: no closing "}}"`, line, column });
      break;
    }
    let inner = text.slice(open + 2, close);
    let before = text.slice(cursor, open);
    let trimAfter = false;
    // Go trims only with a space next to the dash: `{{- .X -}}`; `{{-3}}` is a number.
    if (/^-\s/.test(inner)) {
      before = before.replace(/\s+$/, "");
      inner = inner.slice(1);
    }
    if (/\s-$/.test(inner)) {
      trimAfter = true;
      inner = inner.slice(0, -1);
    }
    pendingText += before;
    inner = inner.trim();
    const variable = VARIABLE_ACTION.exec(inner)?.[1];
    if (variable !== undefined && isTemplateVariable(variable)) {
      if (pendingText) parts.push({ kind: "text", text: pendingText });
      pendingText = "";
      parts.push({ kind: "variable", name: variable });
    } else if (variable !== undefined) {
      errors.push({
        kind: "unknown_variable",
        message: `unknown template variable {{.${variable}}}${where}`,
        line,
        column,
        variable,
      });
    } else if (!(inner.startsWith("/*") && inner.endsWith("*/"))) {
      errors.push({
        kind: "unsupported",
        message: `unsupported template action {{${inner}}}${where}: only {{.Variable}} is supported`,
        line,
        column,
      });
    }
    cursor = close + 2;
    if (trimAfter) cursor += /^\s*/.exec(text.slice(cursor))![0].length;
  }
  if (errors.length > 0) return { ok: false, errors };
  if (pendingText) parts.push({ kind: "text", text: pendingText });
  const variables = [...new Set(parts.flatMap((p) => (p.kind === "variable" ? [p.name] : [])))];
  return { ok: true, parts, variables };
}

/**
 * Fills in a validated template. `quote` is applied to every substituted value, never to
 * the literal text: the SSH runner passes `shellEscape`. Throws on an invalid template or a
 * variable without a value: config validation rules out the first, so either is a bug.
 */
export function renderTemplate(text: string, values: Partial<Record<TemplateVariable, string>>, quote: (value: string) => string): string {
  const parsed = parseTemplate(text);
  if (!parsed.ok) throw new Error(`invalid template: ${parsed.errors.map((e) => e.message).join("; ")}`);
  return parsed.parts
    .map((part) => {
      if (part.kind === "text") return part.text;
      const value = values[part.name];
      if (value === undefined) throw new Error(`template uses {{.${part.name}}} but no value was given for it`);
      return quote(value);
    })
    .join("");
}

/**
 * Quotes `value` as one POSIX shell word. Values made only of characters that are never
 * special to the shell are returned as they are (so `--node-id gpu-1` stays readable);
 * anything else is single-quoted, with each `'` written as `'\''`.
 *
 * Not safe inside an unquoted heredoc (`<< EOF`): there the shell still expands `$(…)`
 * within quotes. Values we substitute (ids, URLs, names) never contain `$` or backquotes.
 */
export function shellEscape(value: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}
