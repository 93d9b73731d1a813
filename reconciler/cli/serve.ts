// `navarch serve`: the reconciler as a long-running service (systemd runs this).
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseAddress, type NavarchConfig } from "../../schema/config.ts";
import { EMBEDDED_DEFAULTS_SOURCE, EMBEDDED_DEFAULTS_YAML } from "../config/defaults.ts";
import { loadConfigFile, parseConfig } from "../config/load.ts";
import { formatProblems } from "../config/yaml-source.ts";
import { defaultHealthPolicy, loadPolicyFile, type HealthPolicy } from "../fleet/policy.ts";
import { ListenError, startReconciler, type ServeSettings } from "../serve.ts";
import { StoreError, defaultDatabaseUrl } from "../store/store.ts";

interface Out {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Loads --config FILE, or the embedded defaults; prints every problem and returns undefined on bad input. */
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

/** The health policy file the config names, or the default; every problem printed on bad input. */
export async function loadHealthPolicy(config: NavarchConfig, out: Out): Promise<HealthPolicy | undefined> {
  const path = config.server.health_policy_path;
  if (path === undefined) return defaultHealthPolicy();
  const result = await loadPolicyFile(path);
  if (!result.ok) {
    for (const line of formatProblems(result.problems, path)) out.stderr(`${line}\n`);
    out.stderr(`navarch: ${result.problems.length} problem(s) in ${path}; nothing was started\n`);
    return undefined;
  }
  for (const warning of result.warnings) out.stderr(`warning: ${warning}\n`);
  return result.policy;
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
    ...(process.env.NAVARCH_DATABASE_AUTH_TOKEN ? { databaseAuthToken: process.env.NAVARCH_DATABASE_AUTH_TOKEN } : {}),
  };
}

export async function serveCommand(args: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string", short: "c" }, "data-dir": { type: "string" } },
    strict: true,
  });
  const config = await loadServeConfig(values.config, out);
  if (config === undefined) return 2;
  const policy = await loadHealthPolicy(config, out);
  if (policy === undefined) return 2;
  const settings = serveSettings(config, values["data-dir"]);
  const log = (line: string) => out.stderr(`${new Date().toISOString()} navarch: ${line}\n`);
  let rec;
  try {
    rec = await startReconciler(settings, log, Date.now, { config, policy });
  } catch (err) {
    // A bad database or a taken port is one line for the operator, not a stack trace.
    if (!(err instanceof StoreError) && !(err instanceof ListenError)) throw err;
    out.stderr(`navarch: ${err.message}\n`);
    return 1;
  }
  log(
    `listening on ${rec.url}; database ${rec.store.location}; ${config.pools.length} pool(s); token from ${rec.authTokenSource}`,
  );
  await new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
  });
  log("stopping");
  await rec.stop();
  return 0;
}
