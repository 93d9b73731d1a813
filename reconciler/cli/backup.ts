// `navarch backup FILE`: an online copy of the reconciler's database, safe while
// `navarch serve` runs. It reads the same config and data directory that serve does.
import { parseArgs } from "node:util";
import { backupDatabase } from "../store/backup.ts";
import { StoreError } from "../store/store.ts";
import { CliError } from "./client.ts";
import { loadServeConfig, serveSettings } from "./serve.ts";

export const BACKUP_USAGE = "usage: navarch backup FILE [--data-dir DIR | --config FILE] [--force]";

interface Out {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export async function backupCommand(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      "data-dir": { type: "string" },
      force: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    out.stdout(
      `${BACKUP_USAGE}\nCopies the database (the one serve uses with the same flags) to FILE while serve runs;\nrefuses an existing FILE unless --force. Restore: stop serve, put FILE at the database path.\n`,
    );
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
