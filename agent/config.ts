// Reading the agent's configuration file (`--config`, else /etc/navarch/agent.yaml when it
// exists): YAML checked against schema/agent-config.ts. Every problem is one line naming the
// file, the key path and, where known, the line (`agent.yaml: checks.dcgm-diag.timeout: expected
// a duration …, got "2d" (line 4)`); a file with any problem stops the agent at start, so a
// machine never runs with half of what its owner wrote.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import * as v from "valibot";
import { LineCounter, isMap, isScalar, parseDocument } from "yaml";
import { AGENT_CONFIG_PATH, AgentConfigSchema, EMPTY_AGENT_CONFIG, type AgentConfig } from "../schema/agent-config.ts";
import { WellFormedStrings, decodeUtf8, printable } from "../schema/text.ts";
import { formatIssuePath } from "../schema/wire.ts";

export type AgentConfigResult = { ok: true; config: AgentConfig; source: string | undefined } | { ok: false; problems: string[] };

/** Parses the text of a configuration file; `source` names it in every problem. */
export function parseAgentConfig(text: string, source: string): AgentConfigResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problem = (message: string) => printable(`${source}: ${message}`, true);
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return problem(`YAML syntax error at line ${line}, column ${col}: ${e.message}`);
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.contents === null ? {} : doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, problems: [problem(`YAML error: ${err instanceof Error ? err.message : String(err)}`)] };
  }
  const lineOf = (keys: readonly (string | number)[], atKey: boolean): string => {
    // A problem with a key itself (a check's name) is on the key's line, not its value's.
    if (atKey && keys.length > 0) {
      const parent: unknown = keys.length === 1 ? doc.contents : doc.getIn(keys.slice(0, -1), true);
      const items = isMap(parent) ? parent.items : [];
      const pair = items.find((p) => isScalar(p.key) && p.key.value === keys.at(-1));
      const start = isScalar(pair?.key) ? pair.key.range?.[0] : undefined;
      if (start !== undefined) return ` (line ${lines.linePos(start).line})`;
    }
    for (let n = keys.length; n > 0; n--) {
      const node: unknown = doc.getIn(keys.slice(0, n), true);
      const range = typeof node === "object" && node !== null && "range" in node && Array.isArray(node.range) ? node.range : undefined;
      if (typeof range?.[0] === "number") return ` (line ${lines.linePos(range[0]).line})`;
    }
    return "";
  };
  const issues = (list: readonly v.BaseIssue<unknown>[]) =>
    list.map((issue) => {
      const path = formatIssuePath(issue.path);
      const keys = (issue.path ?? []).map((item) => item.key as string | number);
      const atKey = issue.path?.at(-1)?.origin === "key";
      return problem(`${path === "" ? "" : `${path}: `}${issue.message}${lineOf(keys, atKey)}`);
    });
  const strings = v.safeParse(WellFormedStrings, raw);
  if (!strings.success) return { ok: false, problems: issues(strings.issues) };
  const parsed = v.safeParse(AgentConfigSchema, raw);
  if (!parsed.success) return { ok: false, problems: issues(parsed.issues) };
  return { ok: true, config: parsed.output, source };
}

/**
 * The configuration the agent runs with: the file `--config` names (which must exist), else
 * /etc/navarch/agent.yaml when it exists, else none (every request is refused).
 */
export function loadAgentConfig(explicit: string | undefined, defaultPath = AGENT_CONFIG_PATH): AgentConfigResult {
  const path = explicit ?? defaultPath;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "";
    if (explicit === undefined && code === "ENOENT") return { ok: true, config: EMPTY_AGENT_CONFIG, source: undefined };
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (err as Error).message;
    return { ok: false, problems: [printable(`${path}: cannot read it: ${why}${code && !why.includes(code) ? ` (${code})` : ""}`, true)] };
  }
  const decoded = decodeUtf8(bytes);
  if (!decoded.ok) return { ok: false, problems: [printable(`${path}: ${decoded.message}`, true)] };
  const parsed = parseAgentConfig(decoded.text, path);
  // Refusals name the file wherever the agent was started from.
  return parsed.ok ? { ...parsed, source: resolve(path) } : parsed;
}
