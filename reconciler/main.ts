// navarch: the reconciler (serve), its operator CLI and the local demo, in one binary.
// A command's module is imported when that command runs, never before: the modules bring the
// reconciler with them (the store, the API, every provider, the Kubernetes client), and
// `navarch nodes list` or `navarch COMMAND --help` should start without loading any of it.
// What this file imports itself stays light: the help texts are in cli/usage.ts.
import { NAVARCH_VERSION } from "../schema/version.ts";
import { printable } from "../schema/text.ts";
import { CliError } from "./cli/client.ts";
import { ACTIONS_USAGE, EVENTS_USAGE, NODES_USAGE, REPORT_USAGE, TOKENS_USAGE, backupHelp, configCheckHelp, configMigrateHelp, simHelp } from "./cli/usage.ts";

const USAGE = `navarch ${NAVARCH_VERSION}: GPU fleet reconciler

Usage:
  navarch serve [--config FILE] [--data-dir DIR]
                                         run the reconciler (API, store, fleet loops); --data-dir
                                         overrides server.data_dir (default ./data); serve is
                                         also what navarch --config FILE alone runs (the image's)
  navarch demo [--port N] [--config FILE] [--nvml-library PATH] [--data-dir DIR] [--no-fault] [--duration 10m]
                                         the reconciler with a local pool (embedded defaults, or
                                         --config FILE's) on 127.0.0.1:50051 or --port; breaks a
                                         GPU once the pool is ready; stops at Ctrl-C or --duration
  navarch config check FILE              validate a config file (and what serve needs from it) and print it normalised
  navarch config migrate FILE [-o OUT [--force]]
                                         turn upstream Navarch's config format into this one
  navarch backup FILE [--data-dir DIR | --config FILE] [--force]
                                         copy the database while serve runs (restore: stop serve, put FILE in place)
  navarch sim run|validate SCENARIO.yaml simulate a fleet on virtual time (navarch sim --help)
${NODES_USAGE.split("\n").slice(1).join("\n")}
${EVENTS_USAGE}
${ACTIONS_USAGE}
${REPORT_USAGE}
${TOKENS_USAGE}
  navarch version                        print the version
  navarch COMMAND --help                 the usage of one command

Options the API commands share, accepted anywhere on the line (navarch -s URL nodes list):
  -s, --server URL     the reconciler to talk to
  -o, --output FORMAT  table (default), json or yaml

Environment:
  NAVARCH_SERVER       reconciler URL for CLI commands (default http://127.0.0.1:50051)
  NAVARCH_AUTH_TOKEN   bearer token for the API (serve reads the variable named by
                       server.auth_token_env, NAVARCH_AUTH_TOKEN by default)
  NAVARCH_ACTOR        who the audit log records for CLI actions (default USER@HOST)
  NAVARCH_CA_FILE      PEM CA bundle to trust for an https:// server (instead of the system's);
                       NAVARCH_PIN_SHA256 also pins its certificate's SHA-256 fingerprint, and
                       NAVARCH_CLIENT_CERT with NAVARCH_CLIENT_KEY answer a server that asks for
                       a client certificate (mTLS)
`;

const out = {
  stdout: (s: string) => process.stdout.write(s),
  stderr: (s: string) => process.stderr.write(s),
};

/** Options given before the command (`navarch -s URL nodes list`) move after it, where its parser reads them. */
const LEADING_OPTIONS = new Set(["-s", "--server", "-o", "--output", "--data-dir", "-c", "--config"]);

function hoistLeadingOptions(argv: string[]): string[] {
  const leading: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    const name = arg.split("=", 1)[0] as string;
    if (!LEADING_OPTIONS.has(name)) break;
    const takesNext = !arg.includes("=");
    if (takesNext && argv[i + 1] === undefined) throw new CliError(`option ${arg} needs a value`, 2);
    leading.push(...(takesNext ? [arg, argv[i + 1] as string] : [arg]));
    i += takesNext ? 2 : 1;
  }
  const [command, ...rest] = argv.slice(i);
  // `navarch --config=FILE` alone is serve: what the seed's Deployment and the image run.
  if (command === undefined && leading.some((a) => /^(-c|--config|--data-dir)(=|$)/.test(a))) return ["serve", ...leading];
  return command === undefined ? leading : [command, ...rest, ...leading];
}

/** The USAGE lines of one command (and their continuation lines). */
function usageOf(command: string): string | undefined {
  const lines: string[] = [];
  let taking = false;
  for (const line of USAGE.split("\n")) {
    const head = /^  navarch ([\w|-]+)/.exec(line);
    if (head) taking = (head[1] as string).split("|").includes(command);
    else if (!line.startsWith("    ")) taking = false;
    if (taking) lines.push(line);
  }
  return lines.length === 0 ? undefined : `Usage:\n${lines.join("\n")}\n`;
}

function asksForHelp(args: string[]): boolean {
  return args.includes("--help") || args.includes("-h");
}

interface Command {
  /** Imports the command's module and runs it. */
  run: (args: string[]) => Promise<number>;
  /**
   * A command that answers --help itself (with more than its lines of USAGE): its help when `args`
   * ask for it, else undefined, decided without importing its module. Without one, -h or --help
   * anywhere prints the command's lines of USAGE.
   */
  help?: (args: string[]) => string | undefined;
}

/** An API command of cli/actions.ts. */
function action(name: string): Command {
  return { run: async (args) => (await import("./cli/actions.ts")).actionCommand(name, args, out.stdout) };
}

const COMMANDS = new Map<string, Command>([
  ["serve", { run: async (args) => (await import("./cli/serve.ts")).serveCommand(args, out) }],
  ["demo", { run: async (args) => (await import("./cli/demo.ts")).demoCommand(args, out) }],
  [
    "config",
    {
      help: (args) => {
        if (args[0] === "check") return configCheckHelp(args.slice(1));
        if (args[0] === "migrate") return configMigrateHelp(args.slice(1));
        return asksForHelp(args) ? usageOf("config") : undefined;
      },
      run: async ([verb, ...args]) => {
        if (verb === "check") return (await import("./cli/config-check.ts")).configCheckCommand(args, out);
        if (verb === "migrate") return (await import("./cli/config-migrate.ts")).configMigrateCommand(args, out);
        throw new CliError("usage: navarch config check FILE | navarch config migrate FILE [-o OUT [--force]]", 2);
      },
    },
  ],
  ["backup", { help: backupHelp, run: async (args) => (await import("./cli/backup.ts")).backupCommand(args, out) }],
  ["sim", { help: simHelp, run: async (args) => (await import("./cli/sim.ts")).simCommand(args, out) }],
  ["nodes", { run: async (args) => (await import("./cli/nodes.ts")).nodesCommand(args, out.stdout) }],
  ["events", { run: async (args) => (await import("./cli/events.ts")).eventsCommand(args, out.stdout) }],
  ["tokens", { run: async (args) => (await import("./cli/tokens.ts")).tokensCommand(args, out.stdout) }],
  ["report", { run: async (args) => (await import("./cli/report.ts")).reportCommand(args, out.stdout) }],
  ...["cordon", "uncordon", "drain", "reboot", "replace", "pools", "breaker", "incidents", "fault"].map((name) => [name, action(name)] as const),
]);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = hoistLeadingOptions(argv);
  if (command === undefined) {
    out.stdout(USAGE);
    return 2;
  }
  const known = COMMANDS.get(command);
  const help = known?.help !== undefined ? known.help(rest) : asksForHelp(rest) ? usageOf(command) : undefined;
  if (help !== undefined) {
    out.stdout(help);
    return 0;
  }
  if (known !== undefined) return known.run(rest);
  switch (command) {
    case "version":
    case "--version":
      out.stdout(`${NAVARCH_VERSION}\n`);
      return 0;
    case "help":
    case "-h":
    case "--help":
      out.stdout(USAGE);
      return 0;
    default:
      throw new CliError(`unknown command ${JSON.stringify(command)}; run navarch --help`, 2);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  // Expected failures are one clear line; anything else is a bug and keeps its stack.
  if (err instanceof CliError) {
    // Server answers may quote what agents sent: no terminal escapes get through.
    process.stderr.write(`navarch: ${printable(err.message)}\n`);
    process.exitCode = err.exitCode;
  } else if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`navarch: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
