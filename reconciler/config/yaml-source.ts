// Reading a YAML file for validation: the parsed value plus where each key sits,
// so every problem names its key path, the value as written and its line. Shared
// by the config loader and the health-policy loader.
import { readFile } from "node:fs/promises";
import * as v from "valibot";
import { LineCounter, parseDocument, type Document, type Node } from "yaml";
import { WellFormedStrings, decodeUtf8, printable } from "../../schema/text.ts";
import { formatIssuePath } from "../../schema/wire.ts";

export interface Problem {
  /** Key path like `pools[1].scaling.max_nodes`; empty for the file as a whole. */
  path: string;
  /** What is wrong, including what was found, e.g. `must be ≥ min_nodes (4), got 2`. */
  message: string;
  /** The offending value as parsed from YAML (undefined for a missing key). */
  value: unknown;
  /** 1-based position in the file, where known (used to list problems in file order). */
  line?: number;
  column?: number;
}

export type PathKey = string | number;

export class YamlSource {
  private constructor(
    readonly doc: Document,
    /** The document as plain data. */
    readonly raw: unknown,
    private readonly lines: LineCounter,
  ) {}

  /** Parses `text`; syntax errors come back as problems with line and column. */
  static parse(text: string, emptyAs?: unknown): { ok: true; source: YamlSource } | { ok: false; problems: Problem[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const at = (offset: number) => {
      const { line, col } = lines.linePos(offset);
      return { line, column: col };
    };
    if (doc.errors.length > 0) {
      const problems: Problem[] = [];
      for (const error of doc.errors) {
        const { line, column } = at(error.pos[0]);
        // One syntax error often trips a second parser rule at the same line: report the cause.
        if (problems.at(-1)?.line === line) continue;
        problems.push({ path: "", message: `YAML syntax error at line ${line}, column ${column}: ${error.message}`, value: undefined, line, column });
      }
      return { ok: false, problems };
    }
    if (doc.contents === null && emptyAs !== undefined) return { ok: true, source: new YamlSource(doc, emptyAs, lines) };
    let source: YamlSource;
    try {
      source = new YamlSource(doc, doc.contents === null ? null : doc.toJS({ maxAliasCount: 1000 }), lines);
    } catch (error) {
      // e.g. an alias to an anchor that does not exist, or an alias bomb
      return { ok: false, problems: [{ path: "", message: `YAML error: ${error instanceof Error ? error.message : String(error)}`, value: undefined }] };
    }
    // A "\udfff" escape in a double-quoted string makes text no store or log can hold, in any key.
    const strings = v.safeParse(WellFormedStrings, source.raw);
    if (!strings.success) {
      const problems = strings.issues.map((issue) => {
        const keys = (issue.path ?? []).map((item) => item.key as PathKey);
        return source.problemAt(formatIssuePath(issue.path), keys, issue.message);
      });
      return { ok: false, problems: sortProblems(problems) };
    }
    return { ok: true, source };
  }

  /** The value at a key path as written in the file (not as partly normalised by a schema). */
  valueAt(keys: readonly PathKey[]): unknown {
    return keys.reduce<unknown>((node, key) => (typeof node === "object" && node !== null ? (node as Record<PathKey, unknown>)[key] : undefined), this.raw);
  }

  /** The deepest node that exists on the path (a missing key points at its parent), with its position. */
  nodeAt(keys: readonly PathKey[]): { node: Node | undefined; line?: number; column?: number } {
    let node: unknown;
    for (let n = keys.length; n >= 0 && node === undefined; n--) node = n === 0 ? this.doc.contents : this.doc.getIn(keys.slice(0, n), true);
    const range = typeof node === "object" && node !== null && "range" in node && Array.isArray(node.range) ? node.range : undefined;
    const start = typeof range?.[0] === "number" ? range[0] : undefined;
    const found = (node ?? undefined) as Node | undefined;
    if (start === undefined) return { node: found };
    const { line, col } = this.lines.linePos(start);
    return { node: found, line, column: col };
  }

  /** A problem at a key path, with the value as written and its position. */
  problemAt(path: string, keys: readonly PathKey[], message: string): Problem {
    const { line, column } = this.nodeAt(keys);
    return { path, message, value: this.valueAt(keys), ...(line !== undefined && column !== undefined ? { line, column } : {}) };
  }

  warnings(source: string): string[] {
    return this.doc.warnings.map((w) => {
      const { line, col } = this.lines.linePos(w.pos[0]);
      return `${source}: YAML warning at line ${line}, column ${col}: ${w.message}`;
    });
  }
}

/** Stable sort into file order; problems at one spot keep their order. */
export function sortProblems(problems: Problem[]): Problem[] {
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

/** Reads a file as UTF-8 text; an unreadable one is a problem naming the OS reason, bytes that are not UTF-8 one naming where. */
export async function readTextFile(path: string): Promise<{ ok: true; text: string } | { ok: false; problems: Problem[] }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { ok: false, problems: [{ path: "", message: `cannot read ${path}: ${osReason(error)}`, value: undefined }] };
  }
  const decoded = decodeUtf8(bytes);
  if (decoded.ok) return decoded;
  // Where, as an editor shows it: the line and column of the first bad byte.
  const before = new TextDecoder().decode(bytes.subarray(0, decoded.byte));
  const line = before.split("\n").length;
  const column = before.length - before.lastIndexOf("\n");
  return {
    ok: false,
    problems: [
      {
        path: "",
        message: `${path} ${decoded.message.replace(/at byte (\d+)/, `at line ${line}, column ${column} (byte $1)`)}`,
        value: undefined,
        line,
        column,
      },
    ],
  };
}

/** One line per problem: `config.yaml: pools[1].scaling.max_nodes: must be ≥ min_nodes (4), got 2` (a value's newlines and escapes shown, not obeyed). */
export function formatProblems(problems: readonly Problem[], source: string): string[] {
  return problems.map((p) => printable(p.path ? `${source}: ${p.path}: ${p.message}` : `${source}: ${p.message}`, true));
}

/** `no such file or directory (ENOENT)` from a Node/Bun fs error. */
function osReason(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(error);
  const code = typeof e.code === "string" ? e.code : undefined;
  // fs messages read `ENOENT: no such file or directory, open '/x'`: keep the middle part.
  const reason = code && message.startsWith(`${code}: `) ? message.slice(code.length + 2).replace(/, \w+ '.*'$|, \w+$/, "") : message;
  return code ? `${reason} (${code})` : reason;
}
