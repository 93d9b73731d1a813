// `navarch serve`: the reconciler as a long-running service (systemd runs this).
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseAddress, type NavarchConfig } from "../../schema/config.ts";
import { EMBEDDED_DEFAULTS_SOURCE, EMBEDDED_DEFAULTS_YAML } from "../config/defaults.ts";
import { loadConfigFile, parseConfig } from "../config/load.ts";
import { formatProblems } from "../config/yaml-source.ts";
import { loadNamedPolicy, prepareServeConfig } from "../app/preflight.ts";
import type { HealthPolicy } from "../health/policy-evaluation.ts";
import { ListenError, StartError, startReconciler, type ServeSettings } from "../app/serve.ts";
import { TlsError } from "../app/tls.ts";
import { StoreError, defaultDatabaseUrl } from "../store/store.ts";
import { logLine } from "../../schema/text.ts";

interface Out {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/**
 * Loads --config FILE, or the embedded defaults: the config alone, for commands that only need
 * where the data is (backup). Prints every problem and returns undefined on bad input.
 */
export async function loadServeConfig(path: string | undefined, out: Out): Promise<NavarchConfig | undefined> {
  const source = path ?? EMBEDDED_DEFAULTS_SOURCE;
  const result = path === undefined ? parseConfig(EMBEDDED_DEFAULTS_YAML, source) : await loadConfigFile(path);
  if (!result.ok) {
    for (const line of formatProblems(result.problems, source)) out.stderr(`${line}\n`);
    out.stderr(`navarch: ${result.problems.length} problem(s) in ${source}; nothing was started\n`);
    return undefined;
  }
  for (const warning of result.warnings) out.stderr(`warning: ${warning}\n`);
  return result.config;
}

/**
 * The health policy the config names, or the default (also when the file does not exist, with a
 * warning: the same rule as `serve` and `config check`); every problem printed on bad input.
 */
export async function loadHealthPolicy(config: NavarchConfig, out: Out, source = "config"): Promise<HealthPolicy | undefined> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const policy = await loadNamedPolicy(config, source, problems, warnings);
  for (const line of problems) out.stderr(`${line}\n`);
  if (policy === undefined) {
    out.stderr(`navarch: ${problems.length} problem(s) in the health policy; nothing was started\n`);
    return undefined;
  }
  for (const warning of warnings) out.stderr(`warning: ${warning}\n`);
  return policy;
}

export function serveSettings(config: NavarchConfig, dataDirOverride?: string): ServeSettings {
  const { server } = config;
  // The schema has already checked the address, so this cannot fail here.
  const address = parseAddress(server.address) ?? { host: "127.0.0.1", port: 50051 };
  const dataDir = resolve(dataDirOverride ?? server.data_dir);
  return {
    host: address.host,
    port: address.port,
    dataDir,
    databaseUrl: dataDirOverride !== undefined || server.database_url === undefined ? defaultDatabaseUrl(dataDir) : server.database_url,
    authTokenEnv: server.auth_token_env,
    heartbeatIntervalSeconds: server.heartbeat_interval / 1000,
    ...(server.tls ? { tls: server.tls } : {}),
    requireTls: server.require_tls,
    ...(server.metrics_address ? { metricsAddress: parseAddress(server.metrics_address) ?? { host: "127.0.0.1", port: 9090 } } : {}),
    metricsAuth: server.metrics_auth,
    metricsPerGpu: server.metrics_per_gpu,
    ...(process.env.NAVARCH_DATABASE_AUTH_TOKEN ? { databaseAuthToken: process.env.NAVARCH_DATABASE_AUTH_TOKEN } : {}),
  };
}

/** What stops a start for a reason the operator can fix: printed as one line. */
export function isStartProblem(err: unknown): err is Error {
  return err instanceof StoreError || err instanceof ListenError || err instanceof TlsError || err instanceof StartError;
}

export async function serveCommand(args: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string", short: "c" }, "data-dir": { type: "string" } },
    strict: true,
  });
  // The same preparation as `navarch config check`: what it accepts starts, what it refuses is refused here.
  const prepared = await prepareServeConfig(values.config);
  if (!prepared.ok) {
    for (const line of prepared.problems) out.stderr(`${line}\n`);
    out.stderr(`navarch: ${prepared.problems.length} problem(s) in ${prepared.source}; nothing was started\n`);
    return 2;
  }
  for (const warning of prepared.warnings) out.stderr(`warning: ${warning}\n`);
  const { config, policy } = prepared;
  const settings: ServeSettings = { ...serveSettings(config, values["data-dir"]), ...(prepared.agentRelease ? { agentRelease: prepared.agentRelease } : {}) };
  // Every line on one line: a node's pool or an event's message may hold newlines and escapes.
  const log = (line: string) => out.stderr(logLine("navarch", line));
  // From the first moment on, whatever is under way: a signal stops serve within STOP_DEADLINE_MS.
  const signal = stopOnSignals(log);
  let rec;
  try {
    rec = await startReconciler(settings, log, Date.now, { config, policy });
  } catch (err) {
    // A bad database, a taken port, a certificate or data directory that will not do: one line, not a stack trace.
    if (!isStartProblem(err)) throw err;
    out.stderr(`navarch: ${err.message}\n`);
    return 1;
  }
  log(
    `listening on ${rec.url}${rec.metricsUrl ? ` (/metrics on ${rec.metricsUrl})` : ""}; database ${rec.store.location}; ${config.pools.length} pool(s); token from ${rec.authTokenSource}`,
  );
  await signal;
  await rec.stop();
  log("stopped");
  // A provider call still under way beside the loop (a hanging API) is left behind: its
  // operation row says it ran, and the next start resumes it with the same idempotency key.
  process.exit(0);
}

/** The longest a stop may take after SIGTERM or SIGINT; then serve exits without finishing it. */
export const STOP_DEADLINE_MS = 4_500;

/**
 * Resolves at the first SIGTERM or SIGINT. From then on serve has STOP_DEADLINE_MS to stop
 * cleanly (the loop's pass ends, the lease is given back, the store closes); past it, or at a
 * second signal, it exits at once: nothing it waits on (a database, an API server that does not
 * answer) keeps it running. A lease not given back is taken over when it lapses.
 */
function stopOnSignals(log: (line: string) => void): Promise<string> {
  return new Promise((resolve) => {
    let first: string | undefined;
    const on = (signal: "SIGINT" | "SIGTERM") => {
      if (first !== undefined) {
        log(`${signal} again while stopping: exiting now`);
        process.exit(signal === "SIGINT" ? 130 : 143);
      }
      first = signal;
      log(`${signal}: stopping (within ${STOP_DEADLINE_MS / 1000} s; a second signal exits at once)`);
      setTimeout(() => {
        log(`not stopped within ${STOP_DEADLINE_MS / 1000} s of ${signal}: exiting now`);
        process.exit(1);
      }, STOP_DEADLINE_MS).unref();
      resolve(signal);
    };
    process.on("SIGINT", () => on("SIGINT"));
    process.on("SIGTERM", () => on("SIGTERM"));
  });
}
