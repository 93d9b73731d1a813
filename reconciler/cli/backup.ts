// `navarch backup FILE`: an online copy of the reconciler's database, safe while
// `navarch serve` runs. It reads the same config and data directory that serve does.
import { parseArgs } from "node:util";
import { backupDatabase } from "../store/backup.ts";
import { StoreError } from "../store/store.ts";
import { CliError } from "./client.ts";
import { loadServeConfig, serveSettings } from "./serve.ts";
import { BACKUP_HELP, BACKUP_OPTIONS, BACKUP_USAGE } from "./usage.ts";

interface Out {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export async function backupCommand(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: BACKUP_OPTIONS, allowPositionals: true, strict: true });
  if (values.help) {
    out.stdout(BACKUP_HELP);
    return 0;
  }
  const file = positionals[0];
  if (file === undefined || positionals.length !== 1) throw new CliError(BACKUP_USAGE, 2);
  const config = await loadServeConfig(values.config, out);
  if (config === undefined) return 2;
  const { databaseUrl } = serveSettings(config, values["data-dir"]);
  try {
    const result = await backupDatabase({ url: databaseUrl, file, force: values.force ?? false });
    const mib = (result.bytes / 2 ** 20).toFixed(1);
    out.stdout(`backed up ${result.nodes} node${result.nodes === 1 ? "" : "s"} to ${result.file} (${mib} MiB)\n`);
    return 0;
  } catch (err) {
    if (err instanceof StoreError) throw new CliError(err.message, 1);
    throw err;
  }
}
