// navarch-node: the GPU node agent. Flags follow the seed's DaemonSet and systemd
// examples (`--server HOST:PORT --node-id ID`); the token comes from NAVARCH_AUTH_TOKEN.
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as v from "valibot";
import { NAVARCH_VERSION } from "../schema/version.ts";
import { MAX_GPUS, NodeId } from "../schema/wire.ts";
import { Agent } from "./agent.ts";
import { runCheckOnce } from "./check.ts";
import { HealthMonitor } from "./health.ts";
import { ReconcilerClient, normalizeServerUrl } from "./reporter.ts";
import { Spool } from "./spool.ts";

const USAGE = `navarch-node ${NAVARCH_VERSION}: GPU health agent for Navarch

Usage:
  navarch-node --server HOST:PORT [--node-id ID] [options]
  navarch-node check --once [-o table|json] [--nvml-library PATH] [--kmsg-path PATH]
                         run every check once and print the result; exit 0 healthy,
                         1 degraded, 2 unhealthy, 3 GPUs cannot be read

Options:
  --server URL           reconciler address: host:port or http(s)://host:port (required)
  --node-id ID           this node's id (default: the hostname)
  --pool NAME            pool this node belongs to (set by the reconciler's bootstrap)
  --provider NAME        provider that created this machine
  --instance-type TYPE   provider instance type
  --nvml-library PATH    libnvidia-ml.so.1 to load (default: $NAVARCH_NVML_LIBRARY, then the driver's usual paths)
  --state-dir DIR        where unsent events are spooled (default: /var/lib/navarch-node, or
                         ~/.local/state/navarch-node when not root)
  --kmsg-path PATH       kernel log to follow (default /dev/kmsg; "none" to not follow one)
  --poll-interval SEC    seconds between full GPU checks, 0.1 to 3600 (default 10)
  --expected-gpus N      GPUs this machine must have, 1 to 64 (default: the most seen since start)
  --nvml-deadline SEC    seconds an NVML snapshot may take before the driver is reported
                         unresponsive, 0.1 to 600 (default 5)
  --version              print the version and exit
  -h, --help             print this help and exit

Environment:
  NAVARCH_AUTH_TOKEN     bearer token for the reconciler (the fleet's token), or
  NAVARCH_BOOTSTRAP_TOKEN  a one-time bootstrap token: the first registration exchanges it
                         for this node's own credential, kept in the state directory
                         (node-token) and used from then on

Exit status: 64 for a usage error (a bad flag or value), 2 when the agent cannot start.
`;

function fail(message: string): never {
  process.stderr.write(`navarch-node: ${message}\n`);
  process.exit(2);
}

/** A bad command line (EX_USAGE): distinct from an agent that cannot start. */
function usage(message: string, { withHelp = false } = {}): never {
  process.stderr.write(withHelp ? `navarch-node: ${message}\n\n${USAGE}` : `navarch-node: ${message} (see --help)\n`);
  process.exit(64);
}

function defaultStateDir(): string {
  if (process.getuid?.() === 0) return "/var/lib/navarch-node";
  const base = process.env.XDG_STATE_HOME ?? `${process.env.HOME ?? "/tmp"}/.local/state`;
  return `${base}/navarch-node`;
}

function readBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown-boot";
  }
}

/**
 * A flag in seconds, from `min` to `max`. The agent sets timers from these: the bounds
 * keep them far below what a timer holds (2^31-1 ms), and above a busy loop.
 */
function seconds(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === "" ? NaN : Number(value);
  if (!(n >= min && n <= max)) usage(`--${flag}: expected seconds from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

function wholeNumber(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === "" ? NaN : Number(value);
  if (!(Number.isInteger(n) && n >= min && n <= max)) usage(`--${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "check") {
    process.exitCode = await runCheckOnce(argv.slice(1));
    return;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        server: { type: "string" },
        "node-id": { type: "string" },
        pool: { type: "string" },
        provider: { type: "string" },
        "instance-type": { type: "string" },
        "nvml-library": { type: "string" },
        "state-dir": { type: "string" },
        "kmsg-path": { type: "string" },
        "poll-interval": { type: "string" },
        "expected-gpus": { type: "string" },
        "nvml-deadline": { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err), { withHelp: true });
  }
  const flags = parsed.values;
  if (flags.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (flags.version) {
    process.stdout.write(`${NAVARCH_VERSION}\n`);
    return;
  }
  if (!flags.server) usage("--server is required (the reconciler's host:port)");
  let serverUrl: string;
  try {
    serverUrl = normalizeServerUrl(flags.server);
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err));
  }
  const nodeId = flags["node-id"] ?? hostname();
  const idCheck = v.safeParse(NodeId, nodeId);
  if (!idCheck.success) usage(`--node-id ${JSON.stringify(nodeId)}: ${idCheck.issues[0]?.message ?? "invalid"}`);
  // Every flag is checked before anything is opened.
  const pollSeconds = seconds("poll-interval", flags["poll-interval"], 0.1, 3600);
  const expectedGpus = wholeNumber("expected-gpus", flags["expected-gpus"], 1, MAX_GPUS);
  const deadlineSeconds = seconds("nvml-deadline", flags["nvml-deadline"], 0.1, 600);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} navarch-node: ${line}\n`);
  const stateDir = flags["state-dir"] ?? defaultStateDir();
  // The fleet's token, or a one-time bootstrap token exchanged at registration for the
  // node's own credential (kept in the state directory and used from then on).
  const token = process.env.NAVARCH_AUTH_TOKEN || process.env.NAVARCH_BOOTSTRAP_TOKEN || "";
  const credentialFile = join(stateDir, "node-token");
  if (!token && !existsSync(credentialFile)) {
    fail("neither NAVARCH_AUTH_TOKEN nor NAVARCH_BOOTSTRAP_TOKEN is set, and there is no node credential in the state directory; the reconciler refuses unauthenticated agents");
  }
  let spool: Spool;
  try {
    spool = new Spool(stateDir);
  } catch (err) {
    fail(`cannot use state directory ${stateDir}: ${err instanceof Error ? err.message : String(err)}`);
  }

  // The monitor reports through the agent, which exists once the monitor does.
  let agent: Agent | undefined;
  const gpus = new HealthMonitor({
    libraryPath: flags["nvml-library"],
    kmsgPath: flags["kmsg-path"] === "none" ? null : (flags["kmsg-path"] ?? "/dev/kmsg"),
    ...(pollSeconds !== undefined ? { pollIntervalMs: pollSeconds * 1000 } : {}),
    ...(expectedGpus !== undefined ? { expectedGpus } : {}),
    ...(deadlineSeconds !== undefined ? { pollDeadlineMs: deadlineSeconds * 1000 } : {}),
    onFinding: (f) => {
      const { pciBusId: _busId, ...event } = f;
      agent?.report({ ...event, time: new Date().toISOString() });
      log(`${f.severity}: ${f.check}${f.code ? ` ${f.code}` : ""}: ${f.message}`);
    },
    log,
  });

  agent = new Agent({
    identity: {
      nodeId,
      hostname: hostname(),
      bootId: readBootId(),
      ...(flags.pool ? { pool: flags.pool } : {}),
      ...(flags.provider ? { provider: flags.provider } : {}),
      ...(flags["instance-type"] ? { instanceType: flags["instance-type"] } : {}),
    },
    client: new ReconcilerClient(serverUrl, token),
    spool,
    gpus,
    log,
    credentialFile,
  });
  log(`starting ${NAVARCH_VERSION}: node ${nodeId}, reconciler ${serverUrl}, state ${stateDir}`);
  // Report from the start: findings of the first check are spooled until registration.
  await gpus.start();
  agent.start();

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    await agent?.stop();
    await gpus.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

await main(process.argv.slice(2));
