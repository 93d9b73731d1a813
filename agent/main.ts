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
import { loadAgentConfig } from "./config.ts";
import { RequestHandler } from "./requests.ts";
import { runCheckOnce } from "./check.ts";
import { HealthMonitor } from "./health-monitor.ts";
import { redactUrl } from "../schema/url.ts";
import { ReconcilerClient, normalizeServerUrl } from "./reporter.ts";
import { ClientTlsError, clientFetch, clientTlsFromEnv, normalizeFingerprint } from "../schema/client-tls.ts";
import { Spool } from "./spool.ts";
import { explicitLibraryProblem } from "./nvml/discovery.ts";
import { logLine } from "../schema/text.ts";

const USAGE = `navarch-node ${NAVARCH_VERSION}: GPU health agent for Navarch

Usage:
  navarch-node --server HOST:PORT [--node-id ID] [options]
  navarch-node check --once [-o table|json] [--nvml-library PATH] [--kmsg-path PATH]
                         [--infiniband-dir DIR|none] [--sysfs-root DIR]
                         run every check once and print the result; exit 0 healthy,
                         1 degraded, 2 unhealthy, 3 GPUs cannot be read

Options:
  --server URL           reconciler address: host:port or http(s)://host:port (required)
  --node-id ID           this node's id (default: the hostname)
  --pool NAME            pool this node belongs to (set by the reconciler's bootstrap)
  --provider NAME        provider that created this machine
  --instance-type TYPE   provider instance type
  --config FILE          what this machine does when the reconciler asks: the checks it may be
                         asked to run, by name (default: /etc/navarch/agent.yaml when it exists;
                         without one every request is refused). A file with a problem stops the
                         agent at start, naming the key and line
  --nvml-library PATH    libnvidia-ml.so.1 to load (default: $NAVARCH_NVML_LIBRARY, then the driver's usual paths)
  --state-dir DIR        where unsent events are spooled (default: /var/lib/navarch-node, or
                         ~/.local/state/navarch-node when not root); when it cannot be written,
                         events are kept in memory and "event spool unwritable" is reported
  --kmsg-path PATH       kernel log to follow (default /dev/kmsg; "none" to not follow one)
  --poll-interval SEC    seconds between full GPU checks, 0.1 to 3600 (default 10)
  --expected-gpus N      GPUs this machine must have, 1 to 64 (default: the most seen since start)
  --nvml-deadline SEC    seconds one NVML call may take before the driver is reported
                         unresponsive, 0.1 to 600 (default 5)
  --infiniband-dir DIR   InfiniBand/RoCE ports to watch (default /sys/class/infiniband; "none": no)
  --infiniband-rate GBPS the rate every port should run at, 1 to 10000 (default: the fastest seen)
  --sysfs-root DIR       where sysfs is mounted, for the driver's kernel module version (default /sys)
  --ca-file FILE         PEM CA bundle to trust for an https:// reconciler instead of the system's
                         (default: $NAVARCH_CA_FILE)
  --pin-sha256 FP        also require the reconciler's certificate to have this SHA-256 fingerprint
                         (as openssl x509 -fingerprint -sha256 prints it; default: $NAVARCH_PIN_SHA256)
  --client-cert FILE     PEM client certificate and key for a reconciler that asks for one (mTLS)
  --client-key FILE      (default: $NAVARCH_CLIENT_CERT, $NAVARCH_CLIENT_KEY)
  --version              print the version and exit
  -h, --help             print this help and exit

Environment:
  NAVARCH_AUTH_TOKEN     bearer token for the reconciler (the fleet's token), or
  NAVARCH_BOOTSTRAP_TOKEN  a one-time bootstrap token: the first registration exchanges it
                         for this node's own credential, kept in the state directory
                         (node-token) and used from then on

Signals: SIGTERM and SIGINT stop the agent (after one last attempt to send what is spooled);
SIGUSR1 logs where its memory is (resident set, and each JavaScript heap).

Exit status: 64 for a usage error (a bad flag or value), 2 when the agent cannot start (no token,
or an agent configuration with a problem).
`;

/**
 * The agent runs a little code often (a tick a second, a poll every few seconds). Left to tier up,
 * JavaScriptCore compiles it and keeps the compilers' code and data resident: about 2 MiB more
 * and more CPU than it saves (bench/agent.ts). The interpreter is fast enough for this work.
 */
Bun.unsafe.setJITPolicy(1e6);
/**
 * A full collection every minute. The heaps are small (a few MiB) and the garbage steady; left
 * alone, JavaScriptCore lets old garbage pile up between rare full collections and the resident
 * set climbs for many minutes before it falls (bench/agent.ts --soak). About 0.01 % of a core.
 */
const FULL_GC_INTERVAL_MS = 60_000;
setInterval(() => Bun.gc(true), FULL_GC_INTERVAL_MS).unref();

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

/**
 * The kernel's boot id; NAVARCH_BOOT_ID instead when set (the local provider runs several
 * simulated machines on one kernel, and gives each its own boots).
 */
function readBootId(): string {
  const given = process.env.NAVARCH_BOOT_ID?.trim();
  if (given) return given;
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

/** fetch with the reconciler's TLS trust: flags, else $NAVARCH_CA_FILE and friends (schema/client-tls.ts). */
function reconcilerFetch(flags: Record<string, string | boolean | undefined>, serverUrl: string): (url: string, init: RequestInit) => Promise<Response> {
  const env = clientTlsFromEnv();
  const flag = (name: string) => (typeof flags[name] === "string" ? (flags[name] as string) : undefined);
  const settings = {
    caFile: flag("ca-file") ?? env.caFile,
    pinSha256: flag("pin-sha256") ?? env.pinSha256,
    certFile: flag("client-cert") ?? env.certFile,
    keyFile: flag("client-key") ?? env.keyFile,
  };
  const names = { caFile: "--ca-file", pinSha256: "--pin-sha256", certFile: "--client-cert", keyFile: "--client-key" };
  if (settings.pinSha256 !== undefined && normalizeFingerprint(settings.pinSha256) === undefined) {
    usage(`--pin-sha256: expected a SHA-256 fingerprint (64 hex digits, colons allowed), got ${JSON.stringify(settings.pinSha256)}`);
  }
  if (!serverUrl.startsWith("https:") && ["ca-file", "pin-sha256", "client-cert", "client-key"].some((name) => flag(name) !== undefined)) {
    usage(`--ca-file, --pin-sha256 and --client-cert apply to an https:// reconciler; --server is ${redactUrl(serverUrl)}`);
  }
  try {
    return clientFetch(settings, names);
  } catch (err) {
    fail(err instanceof ClientTlsError ? err.message : String(err));
  }
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
        config: { type: "string" },
        "nvml-library": { type: "string" },
        "state-dir": { type: "string" },
        "kmsg-path": { type: "string" },
        "poll-interval": { type: "string" },
        "expected-gpus": { type: "string" },
        "nvml-deadline": { type: "string" },
        "infiniband-dir": { type: "string" },
        "infiniband-rate": { type: "string" },
        "sysfs-root": { type: "string" },
        "ca-file": { type: "string" },
        "pin-sha256": { type: "string" },
        "client-cert": { type: "string" },
        "client-key": { type: "string" },
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
  const infinibandRate = wholeNumber("infiniband-rate", flags["infiniband-rate"], 1, 10_000);
  const libraryProblem = flags["nvml-library"] === undefined ? undefined : explicitLibraryProblem(flags["nvml-library"]);
  if (libraryProblem !== undefined) usage(`--nvml-library: ${libraryProblem}`);
  const send = reconcilerFetch(flags, serverUrl);
  // What this machine will do on request: its owner's file, checked before anything starts.
  const agentConfig = loadAgentConfig(flags.config);
  if (!agentConfig.ok) {
    process.stderr.write(
      `navarch-node: the agent configuration has ${agentConfig.problems.length === 1 ? "a problem" : `${agentConfig.problems.length} problems`}:\n${agentConfig.problems.map((p) => `  ${p}\n`).join("")}`,
    );
    process.exit(2);
  }
  // Every line on one line: kernel-log text and NVML errors may hold newlines and escapes.
  const log = (line: string) => process.stderr.write(logLine("navarch-node", line));
  const stateDir = flags["state-dir"] ?? defaultStateDir();
  // The fleet's token, or a one-time bootstrap token exchanged at registration for the
  // node's own credential (kept in the state directory and used from then on).
  const token = process.env.NAVARCH_AUTH_TOKEN || process.env.NAVARCH_BOOTSTRAP_TOKEN || "";
  const credentialFile = join(stateDir, "node-token");
  if (!token && !existsSync(credentialFile)) {
    fail(
      "neither NAVARCH_AUTH_TOKEN nor NAVARCH_BOOTSTRAP_TOKEN is set, and there is no node credential in the state directory; the reconciler refuses unauthenticated agents",
    );
  }
  // Never fails: a state directory that cannot be written is a finding, and events stay in memory.
  const spool = new Spool(stateDir);

  // The monitor reports through the agent, which exists once the monitor does.
  let agent: Agent | undefined;
  const gpus = new HealthMonitor({
    libraryPath: flags["nvml-library"],
    kmsgPath: flags["kmsg-path"] === "none" ? null : (flags["kmsg-path"] ?? "/dev/kmsg"),
    ...(pollSeconds !== undefined ? { pollIntervalMs: pollSeconds * 1000 } : {}),
    ...(expectedGpus !== undefined ? { expectedGpus } : {}),
    ...(deadlineSeconds !== undefined ? { pollDeadlineMs: deadlineSeconds * 1000 } : {}),
    ...(flags["infiniband-dir"] !== undefined ? { infinibandDir: flags["infiniband-dir"] === "none" ? null : flags["infiniband-dir"] } : {}),
    ...(infinibandRate !== undefined ? { infinibandRateGbps: infinibandRate } : {}),
    ...(flags["sysfs-root"] !== undefined ? { sysfsRoot: flags["sysfs-root"] } : {}),
    onFinding: (f) => {
      const { pciBusId: _busId, ...event } = f;
      agent?.report({ ...event, time: new Date().toISOString() });
      log(`${f.severity}: ${f.check}${f.code ? ` ${f.code}` : ""}: ${f.message}`);
    },
    log,
  });

  const client = new ReconcilerClient(serverUrl, token, undefined, send);
  const requests = new RequestHandler({
    nodeId,
    client,
    config: agentConfig.config,
    configSource: agentConfig.source,
    stateDir,
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
    client,
    spool,
    gpus,
    log,
    credentialFile,
    requests,
  });
  log(`starting ${NAVARCH_VERSION}: node ${nodeId}, reconciler ${redactUrl(serverUrl)}, state ${stateDir}`);
  const checkNames = Object.keys(agentConfig.config.checks);
  log(
    agentConfig.source === undefined
      ? "no agent configuration (no /etc/navarch/agent.yaml): every request of the reconciler is refused"
      : `configuration ${agentConfig.source}: ${checkNames.length === 0 ? "no checks" : `checks ${checkNames.join(", ")}`} may be run on request`,
  );
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
  process.on("SIGUSR1", () => void gpus.memoryReport().then(log));
}

await main(process.argv.slice(2));
