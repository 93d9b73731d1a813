// Reading the config file: YAML → schema/config.ts → either the normalised config or every
// problem found, each with its key path, message and offending value. Nothing here touches
// state or reads secrets; callers exit non-zero on `ok: false`.
import * as v from "valibot";
import { NavarchConfigSchema, PROVIDER_TYPES, type NavarchConfig } from "../../schema/config.ts";
import { formatIssuePath } from "../../schema/wire.ts";
import { upstreamConfigEvidence, upstreamConfigMessage } from "./upstream.ts";
import { YamlSource, readTextFile, sortProblems, type Problem } from "./yaml-source.ts";

export type LoadResult = { ok: true; config: NavarchConfig; warnings: string[] } | { ok: false; problems: Problem[] };

/** Parses and validates config text; `source` names it in warnings (usually the file path). */
export function parseConfig(text: string, source: string): LoadResult {
  const parsed = YamlSource.parse(text);
  if (!parsed.ok) return parsed;
  const yaml = parsed.source;
  if (yaml.raw === null) {
    return { ok: false, problems: [{ path: "", message: "the file is empty (expected a mapping with server, providers and pools)", value: null }] };
  }
  // Upstream Navarch's format fails key by key here; one line saying what it is helps more.
  const upstream = upstreamConfigEvidence(yaml.raw);
  if (upstream !== undefined) return { ok: false, problems: [{ path: "", message: upstreamConfigMessage(source, upstream), value: undefined }] };
  const result = v.safeParse(NavarchConfigSchema, yaml.raw);
  if (!result.success) {
    const keys = (issue: v.BaseIssue<unknown>) => (issue.path ?? []).map((item) => item.key as string | number);
    return { ok: false, problems: sortProblems(result.issues.map((issue) => yaml.problemAt(formatIssuePath(issue.path), keys(issue), issue.message))) };
  }
  const warnings = yaml.warnings(source);
  warnings.push(...unusedProviders(yaml.raw, result.output).map((type) => `${source}: providers.${type}: configured but no pool in this file uses it`));
  return { ok: true, config: result.output, warnings };
}

/** Reads `path` and parses it; an unreadable file is a problem naming the OS reason. */
export async function loadConfigFile(path: string): Promise<LoadResult> {
  const read = await readTextFile(path);
  return read.ok ? parseConfig(read.text, path) : read;
}

/** Provider types configured under `providers:` that no pool names. */
function unusedProviders(raw: unknown, config: NavarchConfig): string[] {
  const written = typeof raw === "object" && raw !== null && "providers" in raw ? raw.providers : undefined;
  if (typeof written !== "object" || written === null) return [];
  const used = new Set(config.pools.flatMap((p) => p.providers));
  return PROVIDER_TYPES.filter((type) => type in written && !used.has(type));
}
