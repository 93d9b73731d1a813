// `navarch config check FILE`: validates a config file, and what `navarch serve` would need from
// it (the health policy and SSH keys it names, secrets, metrics sources, the Kubernetes
// connection), without touching any state. Both run the same preparation
// (reconciler/app/preflight.ts), so a file this accepts starts, with the same warnings.
// Exit status: 0 valid (the normalised config is printed), 2 invalid or bad usage.
import { configToYaml } from "../config/print.ts";
import { plainHttpWarning } from "../config/exposure.ts";
import { prepareServeConfig, type PrepareOptions } from "../app/preflight.ts";
import { CONFIG_CHECK_USAGE, configCheckHelp } from "./usage.ts";

/** Output sinks; every call gets text that ends in a newline (pass `(s) => process.stdout.write(s)`). */
export interface CommandOutput {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** `args` are the words after `config check`. */
export async function configCheckCommand(args: string[], out: CommandOutput, options: PrepareOptions = {}): Promise<number> {
  const help = configCheckHelp(args);
  if (help !== undefined) {
    out.stdout(help);
    return 0;
  }
  const file = args[0];
  if (args.length !== 1 || file === undefined || file.startsWith("-")) {
    out.stderr(`${CONFIG_CHECK_USAGE}\n`);
    return 2;
  }

  const result = await prepareServeConfig(file, options);
  if (!result.ok) {
    for (const line of result.problems) out.stderr(`${line}\n`);
    const n = result.problems.length;
    out.stderr(`${file}: ${n} problem${n === 1 ? "" : "s"}; nothing was changed\n`);
    return 2;
  }
  for (const warning of result.warnings) out.stderr(`warning: ${warning}\n`);
  if (result.plainHttp.length > 0) out.stderr(`warning: ${file}: ${plainHttpWarning(result.plainHttp)}\n`);
  const pools = result.config.pools.length;
  out.stdout(`# ${file} is valid (${pools} pool${pools === 1 ? "" : "s"}); normalised, with defaults filled in:\n`);
  out.stdout(configToYaml(result.config));
  return 0;
}
