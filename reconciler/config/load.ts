// Reading the config file: YAML → schema/config.ts → either the normalised config or every
// problem found, each with its key path, message and offending value. Nothing here touches
// state or reads secrets; callers exit non-zero on `ok: false`.
import { readFile } from "node:fs/promises";
import * as v from "valibot";
import { LineCounter, parseDocument, type Document } from "yaml";
import { NavarchConfigSchema, PROVIDER_TYPES, type NavarchConfig } from "../../schema/config.ts";
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

export type LoadResult =
  | { ok: true; config: NavarchConfig; warnings: string[] }
  | { ok: false; problems: Problem[] };

/** Parses and validates config text; `source` names it in warnings (usually the file path). */
export function parseConfig(text: string, source: string): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
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
  if (doc.contents === null) {
    return { ok: false, problems: [{ path: "", message: "the file is empty (expected a mapping with server, providers and pools)", value: null }] };
  }

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    // e.g. an alias to an anchor that does not exist, or an alias bomb
    return { ok: false, problems: [{ path: "", message: `YAML error: ${(error as Error).message}`, value: undefined }] };
  }

  const result = v.safeParse(NavarchConfigSchema, raw);
  if (!result.success) {
    const problems = result.issues.map((issue) => toProblem(issue, raw, doc, at));
    // Stable sort: file order first; issues at one spot keep the schema's order.
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { ok: false, problems };
  }

  const warnings = doc.warnings.map((w) => {
    const { line, column } = at(w.pos[0]);
    return `${source}: YAML warning at line ${line}, column ${column}: ${w.message}`;
  });
  warnings.push(...unusedProviders(raw, result.output).map((type) => `${source}: providers.${type}: configured but no pool in this file uses it`));
  return { ok: true, config: result.output, warnings };
}

/** Reads `path` and parses it; an unreadable file is a problem naming the OS reason. */
export async function loadConfigFile(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    return { ok: false, problems: [{ path: "", message: `cannot read ${path}: ${osReason(error)}`, value: undefined }] };
  }
  return parseConfig(text, path);
}

/** One line per problem: `config.yaml: pools[1].scaling.max_nodes: must be ≥ min_nodes (4), got 2`. */
export function formatProblems(problems: readonly Problem[], source: string): string[] {
  return problems.map((p) => (p.path ? `${source}: ${p.path}: ${p.message}` : `${source}: ${p.message}`));
}

function toProblem(
  issue: v.BaseIssue<unknown>,
  raw: unknown,
  doc: Document,
  at: (offset: number) => { line: number; column: number },
): Problem {
  const keys = (issue.path ?? []).map((item) => item.key as string | number);
  // The value as written in the file, not as partly normalised by the time a rule saw it.
  const value = keys.reduce<unknown>((node, key) => (typeof node === "object" && node !== null ? (node as Record<string | number, unknown>)[key] : undefined), raw);
  // Position of the deepest node that exists (a missing key points at its parent).
  let node: unknown;
  for (let n = keys.length; n >= 0 && node === undefined; n--) node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
  const range = (node as { range?: [number, number, number] } | undefined)?.range;
  return { path: formatIssuePath(issue.path), message: issue.message, value, ...(range ? at(range[0]) : {}) };
}

/** Provider types configured under `providers:` that no pool names. */
function unusedProviders(raw: unknown, config: NavarchConfig): string[] {
  const written = typeof raw === "object" && raw !== null && "providers" in raw ? raw.providers : undefined;
  if (typeof written !== "object" || written === null) return [];
  const used = new Set(config.pools.flatMap((p) => p.providers));
  return PROVIDER_TYPES.filter((type) => type in written && !used.has(type));
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
