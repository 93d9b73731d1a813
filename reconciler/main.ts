// navarch: the reconciler (serve), its operator CLI and the local demo, in one binary.
import { NAVARCH_VERSION } from "../schema/version.ts";
import { backupCommand } from "./cli/backup.ts";
import { CliError } from "./cli/client.ts";
import { configCheckCommand } from "./cli/config-check.ts";
import { demoCommand } from "./cli/demo.ts";
import { ACTIONS_USAGE, actionCommand } from "./cli/actions.ts";
import { NODES_USAGE, nodesCommand } from "./cli/nodes.ts";
import { EVENTS_USAGE, eventsCommand } from "./cli/events.ts";
import { serveCommand } from "./cli/serve.ts";
import { simCommand } from "./cli/sim.ts";

const USAGE = `navarch ${NAVARCH_VERSION}: GPU fleet reconciler

Usage:
  navarch serve [--config FILE]          run the reconciler (API, store, fleet loops)
  navarch demo [--nvml-library PATH]     the reconciler on embedded defaults with a local pool; breaks a GPU once it is ready
  navarch config check FILE              validate a config file and print it normalised
  navarch backup FILE [--data-dir DIR | --config FILE] [--force]
                                         copy the database while serve runs (restore: stop serve, put FILE in place)
  navarch sim run|validate SCENARIO.yaml simulate a fleet on virtual time (navarch sim --help)
${NODES_USAGE.split("\n").slice(1).join("\n")}
${EVENTS_USAGE}
${ACTIONS_USAGE}
  navarch version                        print the version

Environment:
  NAVARCH_SERVER       reconciler URL for CLI commands (default http://127.0.0.1:50051)
  NAVARCH_AUTH_TOKEN   bearer token for the API (serve reads the variable named by
                       server.auth_token_env, NAVARCH_AUTH_TOKEN by default)
`;

const out = {
  stdout: (s: string) => process.stdout.write(s),
  stderr: (s: string) => process.stderr.write(s),
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serveCommand(rest, out);
    case "demo":
      return demoCommand(rest, out);
    case "backup":
      return backupCommand(rest, out);
    case "config":
      if (rest[0] === "check") return configCheckCommand(rest.slice(1), out);
      throw new CliError("usage: navarch config check FILE", 2);
    case "nodes":
      return nodesCommand(rest, out.stdout);
    case "events":
      return eventsCommand(rest, out.stdout);
    case "cordon":
    case "uncordon":
    case "drain":
    case "replace":
    case "pools":
    case "breaker":
    case "incidents":
    case "fault":
      return actionCommand(command, rest, out.stdout);
    case "sim":
      return simCommand(rest, out);
    case "version":
    case "--version":
      out.stdout(`${NAVARCH_VERSION}\n`);
      return 0;
    case undefined:
    case "help":
    case "-h":
    case "--help":
      out.stdout(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new CliError(`unknown command ${JSON.stringify(command)}; run navarch --help`, 2);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  // Expected failures are one clear line; anything else is a bug and keeps its stack.
  if (err instanceof CliError) {
    process.stderr.write(`navarch: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`navarch: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
