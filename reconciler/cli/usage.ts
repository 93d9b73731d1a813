// What `navarch --help` and `navarch COMMAND --help` print: every command's usage and help
// text, and, for the commands that answer --help themselves, when their arguments ask for it.
// Nothing here imports more than node:util: reconciler/main.ts prints help from this file
// without loading a command's module (and through it the reconciler), and each command
// module takes its texts from here, so the two never differ.
import { parseArgs } from "node:util";

export const NODES_USAGE = `Usage:
  navarch nodes list [--pool POOL] [--state STATE] [--unhealthy] [-o table|json|yaml] [-s SERVER]
  navarch nodes get NODE_ID [--events N] [-o table|json|yaml] [-s SERVER]
  navarch nodes run-check NODE CHECK [--wait] [--deadline 1h] [--reason TEXT]   (a check the node's agent configuration defines)`;

export const EVENTS_USAGE = `  navarch events [--node NODE] [--pool POOL] [--severity healthy|degraded|unhealthy] [--check CHECK]
                 [--since 10m|2h|3d|ISO-TIME] [--limit N] [--follow] [-o table|json|yaml]`;

export const ACTIONS_USAGE = `  navarch cordon|uncordon|reboot|replace NODE [--reason TEXT]
  navarch drain NODE [--reason TEXT] [--deadline 30m] [--no-wait]   (waits, printing progress, until drained)
  navarch pools list | get POOL | pause POOL [--reason TEXT] | resume POOL
  navarch pools scale POOL --nodes N [--reason TEXT]   (a pool without an autoscaler: held at N)
  navarch breaker reset SCOPE                 (fleet or pool:NAME)
  navarch incidents [--open] [--node NODE] [--pool POOL]
  navarch fault inject NODE --xid N [--gpu I] | --nvml COMMAND | --kmsg LINE   (local nodes only)
  (every command takes -o table|json|yaml and -s SERVER)`;

export const REPORT_USAGE = `  navarch report [--since 7d|ISO-TIME] [-o table|json|yaml]
                                         what the fleet cost: machines launched and terminated
                                         without ever serving, per pool and provider, and their
                                         GPU-hours; goodput: GPU-hours lost while nodes were out
                                         of service, by cause, the mean time to repair per rung
                                         and the ten worst nodes (default: the last 7 days)`;

export const TOKENS_USAGE = `  navarch tokens create --role admin|operator|viewer|enroll [--pool POOL] [--ttl 30d] [--name NAME]
                                         mint an API token (enroll: registers nodes into POOL); printed once
  navarch tokens list                    every token: id, role, pool, expiry, revoked
  navarch tokens revoke ID               refuse a token from now on`;

export const BACKUP_USAGE = "usage: navarch backup FILE [--data-dir DIR | --config FILE] [--force]";

/** `navarch backup`'s options: backup.ts parses with them, and backupHelp below to see if they ask for help. */
export const BACKUP_OPTIONS = {
  config: { type: "string", short: "c" },
  "data-dir": { type: "string" },
  force: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const BACKUP_HELP = `${BACKUP_USAGE}
Copies the database (the one serve uses with the same flags) to FILE while serve runs;
refuses an existing FILE unless --force. Restore: stop serve, put FILE at the database path.
`;

/** `navarch backup ARGS`'s help when ARGS ask for it (and parse: a bad flag is backup's usage error). */
export function backupHelp(args: string[]): string | undefined {
  try {
    return parseArgs({ args, options: BACKUP_OPTIONS, allowPositionals: true, strict: true }).values.help ? BACKUP_HELP : undefined;
  } catch {
    return undefined;
  }
}

export const CONFIG_CHECK_USAGE = "usage: navarch config check FILE";

const CONFIG_CHECK_HELP =
  `${CONFIG_CHECK_USAGE}\nValidates FILE and what navarch serve needs from it (the health policy and SSH keys it names, ` +
  "environment variables, metrics sources, the Kubernetes connection); prints it normalised (defaults filled in), or lists every problem.\n";

/** `navarch config check ARGS`'s help when ARGS are only -h or --help. */
export function configCheckHelp(args: string[]): string | undefined {
  return args.length === 1 && (args[0] === "-h" || args[0] === "--help") ? CONFIG_CHECK_HELP : undefined;
}

export const CONFIG_MIGRATE_USAGE = "usage: navarch config migrate FILE [-o OUT [--force]]";

/** `navarch config migrate`'s options: config-migrate.ts parses with them, and configMigrateHelp below. */
export const CONFIG_MIGRATE_OPTIONS = { output: { type: "string", short: "o" }, force: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const CONFIG_MIGRATE_HELP =
  `${CONFIG_MIGRATE_USAGE}\nTurns a config file in upstream Navarch's format (pools as a mapping, defaults:, autoscaling:) into this one; ` +
  "prints it, or writes OUT (an existing OUT only with --force). What could not be carried over is listed on stderr and at the top of the result.\n";

/** `navarch config migrate ARGS`'s help when ARGS ask for it (and parse: a bad flag is migrate's usage error). */
export function configMigrateHelp(args: string[]): string | undefined {
  try {
    return parseArgs({ args, options: CONFIG_MIGRATE_OPTIONS, allowPositionals: true, strict: true }).values.help ? CONFIG_MIGRATE_HELP : undefined;
  } catch {
    return undefined;
  }
}

export const SIM_USAGE = `usage: navarch sim run SCENARIO.yaml [--seed N] [--duration D] [-o table|json|html] [--out FILE] [--memory] [--verbose]
       navarch sim validate SCENARIO.yaml`;

const SIM_HELP = `${SIM_USAGE}

run       simulates the scenario: the real reconcile loop with simulated agents, clouds and
          scheduler on virtual time; prints the report and exits 1 if a check failed
validate  checks the scenario file; every problem is listed with its key path (exit 2)

  --seed N       the random seed (default: the scenario's seed:, else 1); same seed, same report
  --duration D   run this long instead of the scenario's duration (e.g. 3d: the first three days;
                 its at: end moves there, later events are left out)
  -o, --output   table (default), json, or html (a self-contained page with timelines)
  --out FILE     write the report to FILE instead of standard output
  --memory       keep the database in memory instead of a temp file
  --verbose      print the reconciler's log lines (virtual time) to standard error
`;

/** `navarch sim ARGS`'s help when ARGS ask for it: `sim help`, or -h or --help anywhere. */
export function simHelp(args: string[]): string | undefined {
  const [verb, ...rest] = args;
  const asks = verb === "-h" || verb === "--help" || verb === "help" || rest.includes("--help") || rest.includes("-h");
  return asks ? SIM_HELP : undefined;
}
