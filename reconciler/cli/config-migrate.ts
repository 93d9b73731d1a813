// `navarch config migrate FILE [-o OUT [--force]]`: upstream Navarch's config format → this one.
// Prints the result (or writes OUT), with what changed and what could not be carried over as
// notes on stderr and as a comment at the top of the result. The result is checked like any
// config; health policies need no migration (upstream's format loads as it is).
// Exit status: 0 migrated and valid; 2 bad usage, a file that is not upstream's config, a
// problem in it, or a result that still needs fixing (it is printed or written all the same).
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { isUpstreamPolicy } from "../../schema/upstream.ts";
import { parseConfig } from "../config/load.ts";
import { migrateUpstreamConfig, upstreamConfigEvidence } from "../config/upstream.ts";
import { YamlSource, formatProblems, readTextFile } from "../config/yaml-source.ts";
import type { CommandOutput } from "./config-check.ts";
import { CONFIG_MIGRATE_HELP, CONFIG_MIGRATE_OPTIONS, CONFIG_MIGRATE_USAGE } from "./usage.ts";

/** `args` are the words after `config migrate`. */
export async function configMigrateCommand(args: string[], out: CommandOutput): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: CONFIG_MIGRATE_OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    out.stderr(`navarch: ${err instanceof Error ? err.message : String(err)}\n${CONFIG_MIGRATE_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.stdout(CONFIG_MIGRATE_HELP);
    return 0;
  }
  const file = positionals[0];
  if (positionals.length !== 1 || file === undefined || (values.force && values.output === undefined)) {
    out.stderr(`${CONFIG_MIGRATE_USAGE}\n`);
    return 2;
  }
  const target = values.output;
  if (target !== undefined && existsSync(target) && !values.force) {
    out.stderr(`navarch: ${target} exists; pass --force to replace it\n`);
    return 2;
  }

  const read = await readTextFile(file);
  if (!read.ok) return fail(out, file, formatProblems(read.problems, file));
  const yaml = YamlSource.parse(read.text);
  if (!yaml.ok) return fail(out, file, formatProblems(yaml.problems, file));
  const raw = yaml.source.raw;
  if (!isUpstreamPolicy(raw) && upstreamConfigEvidence(raw) === undefined) {
    const ours = parseConfig(read.text, file).ok ? "it is already in this format" : "it is not in upstream's format (pools as a mapping of names)";
    out.stderr(`${file}: nothing to migrate: ${ours}; \`navarch config check ${file}\` validates it\n`);
    return 2;
  }
  const result = migrateUpstreamConfig(yaml.source, file);
  if (!result.ok) return fail(out, file, formatProblems(result.problems, file));

  for (const note of result.notes) out.stderr(`note: ${file}: ${note}\n`);
  const name = target ?? "(migrated)";
  if (target === undefined) {
    out.stdout(result.yaml);
  } else {
    // Whole or not at all: a half-written config must never be what serve finds.
    const staging = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
    writeFileSync(staging, result.yaml, { mode: 0o644 });
    renameSync(staging, target);
  }
  const check = parseConfig(result.yaml, name);
  if (!check.ok) {
    for (const line of formatProblems(check.problems, name)) out.stderr(`${line}\n`);
    out.stderr(`${name}: migrated, with ${check.problems.length} problem(s) to fix by hand before \`navarch config check\` accepts it\n`);
    return 2;
  }
  const pools = result.pools;
  out.stderr(
    `${file}: migrated (${pools} pool${pools === 1 ? "" : "s"})${target === undefined ? "" : ` to ${target}`}; run \`navarch config check ${target ?? "FILE"}\` where serve runs\n`,
  );
  return 0;
}

function fail(out: CommandOutput, file: string, lines: string[]): number {
  for (const line of lines) out.stderr(`${line}\n`);
  out.stderr(`${file}: ${lines.length} problem${lines.length === 1 ? "" : "s"}; nothing was migrated\n`);
  return 2;
}
