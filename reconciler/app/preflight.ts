// What `navarch serve` needs beyond a valid file: the health policy it names, the SSH keys its
// pools bootstrap with, the environment variables holding secrets, a metrics source for each
// autoscaler, the Kubernetes connection, the fake libnvidia-ml of a local pool. `navarch config
// check` and `navarch serve` both run `prepareServeConfig`, so they agree line for line: a file
// check accepts starts, and one serve refuses, check refuses with the same message.
//
// Errors are what serve cannot start with (a policy or key that exists but does not parse, a
// Kubernetes connection that cannot be loaded, a missing nvml_library). Warnings are what only
// this machine lacks, since CI and laptops do not hold production secrets: an unset variable,
// a missing key file, and a missing health policy file, which serves the default policy (the
// seed's own ConfigMap names /etc/navarch/health-policy.yaml and ships no such file; refusing
// would crash-loop its Deployment, while the default policy is the catalog's, never permissive).
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import type { AutoscalerConfig, NavarchConfig } from "../../schema/config.ts";
import { publicKeyFromPrivate } from "../../bootstrap/ssh.ts";
import { defaultHealthPolicy } from "../health/compile-policy.ts";
import type { HealthPolicy } from "../health/policy-evaluation.ts";
import { parsePolicy } from "../health/policy-file.ts";
import { connectKube } from "../schedulers/kubernetes/index.ts";
import { slurmTokens } from "../schedulers/slurm/index.ts";
import { TlsError, expiryWarning, loadTlsMaterial } from "./tls.ts";
import { EMBEDDED_DEFAULTS_SOURCE, EMBEDDED_DEFAULTS_YAML } from "../config/defaults.ts";
import { loadConfigFile, parseConfig } from "../config/load.ts";
import { formatProblems, readTextFile } from "../config/yaml-source.ts";
import { plainHttpListeners, plainHttpRefusals, resolveHost, type PlainListener, type ResolveHost } from "../config/exposure.ts";
import { checkAgentRelease, type ServedRelease } from "../release/agent-release.ts";

export type EnvLookup = (name: string) => string | undefined;

export interface ServeInputs {
  config: NavarchConfig;
  policy: HealthPolicy;
  /** One line each, without the `warning: ` prefix. */
  warnings: string[];
  /** Listeners that would serve plain HTTP off loopback: `config check` warns; serve logs it once as it starts them. */
  plainHttp: PlainListener[];
  /** server.agent_release, verified. */
  agentRelease?: ServedRelease;
}

/** On failure, every problem as one line (`navarch.yaml: pools[0].…: …`, or the policy file's). */
export type PrepareResult = ({ ok: true } & ServeInputs) | { ok: false; source: string; problems: string[] };

export interface PrepareOptions {
  env?: EnvLookup;
  /** How host names in server.address are resolved (tests map names without /etc/hosts). */
  resolve?: ResolveHost;
}

/** Loads `path` (or the embedded defaults) and everything serve would need from it. */
export async function prepareServeConfig(path: string | undefined, options: PrepareOptions = {}): Promise<PrepareResult> {
  const source = path ?? EMBEDDED_DEFAULTS_SOURCE;
  const loaded = path === undefined ? parseConfig(EMBEDDED_DEFAULTS_YAML, source) : await loadConfigFile(path);
  if (!loaded.ok) return { ok: false, source, problems: formatProblems(loaded.problems, source) };
  const needs = await checkServeNeeds(loaded.config, source, {
    env: options.env ?? ((name) => process.env[name]),
    embedded: path === undefined,
    ...(options.resolve ? { resolve: options.resolve } : {}),
  });
  if (needs.problems.length > 0) return { ok: false, source, problems: needs.problems };
  return {
    ok: true,
    config: loaded.config,
    policy: needs.policy,
    warnings: [...loaded.warnings, ...needs.warnings],
    plainHttp: needs.plainHttp,
    ...(needs.agentRelease ? { agentRelease: needs.agentRelease } : {}),
  };
}

interface Needs {
  policy: HealthPolicy;
  problems: string[];
  warnings: string[];
  plainHttp: PlainListener[];
  agentRelease?: ServedRelease;
}

/** Everything beyond the schema; `source` names the config file in every line. */
export async function checkServeNeeds(
  config: NavarchConfig,
  source: string,
  options: { env: EnvLookup; embedded?: boolean; resolve?: ResolveHost },
): Promise<Needs> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const plainHttp = await checkPlainHttp(config, source, options.resolve ?? resolveHost, problems, warnings);
  const policy = await loadNamedPolicy(config, source, problems, warnings);
  await checkSshKeys(config, source, problems, warnings);
  checkSecrets(config, source, options.env, warnings, options.embedded === true);
  checkAutoscalerSources(config, source, warnings);
  checkLocalProvider(config, source, problems);
  checkTls(config, source, problems, warnings);
  await checkKubernetes(config, source, options.env, problems);
  checkSlurm(config, source, options.env, problems);
  const release = await checkAgentRelease(config.server);
  if (!release.ok) problems.push(`${source}: server.agent_release: ${release.problem}`);
  return {
    policy: policy ?? defaultHealthPolicy(),
    problems,
    warnings,
    plainHttp,
    ...(release.ok && release.release ? { agentRelease: release.release } : {}),
  };
}

// ───────────────────────────── plain HTTP ─────────────────────────────

/** Plain HTTP off loopback: the listeners it would be served on, or with server.require_tls a refusal for each. */
async function checkPlainHttp(config: NavarchConfig, source: string, resolve: ResolveHost, problems: string[], warnings: string[]): Promise<PlainListener[]> {
  const exposed = await plainHttpListeners(config.server, resolve);
  if (config.server.allow_plain_http !== undefined) {
    warnings.push(
      `${source}: server.allow_plain_http: deprecated and silences nothing: plain HTTP off loopback is served with a warning whatever it says; remove it (server.require_tls: true refuses plain HTTP instead)`,
    );
  }
  if (config.server.require_tls) for (const line of plainHttpRefusals(exposed)) problems.push(`${source}: ${line}`);
  return config.server.require_tls ? [] : exposed;
}

// ───────────────────────────── the health policy ─────────────────────────────

/** The policy `server.health_policy_path` names (see the top of this file for a missing one). */
export async function loadNamedPolicy(config: NavarchConfig, source: string, problems: string[], warnings: string[]): Promise<HealthPolicy | undefined> {
  const path = config.server.health_policy_path;
  if (path === undefined) return defaultHealthPolicy();
  if (await isMissing(path)) {
    warnings.push(
      `${source}: server.health_policy_path: ${path} does not exist; serving with the default health policy (the Xid catalog's) until the file is there and navarch restarts`,
    );
    return defaultHealthPolicy();
  }
  const read = await readTextFile(path);
  if (!read.ok) {
    // It is there but cannot be read: the operator's rules exist, so the defaults will not do.
    for (const p of read.problems) problems.push(`${source}: server.health_policy_path: ${p.message}`);
    return undefined;
  }
  const parsed = parsePolicy(read.text, path);
  if (!parsed.ok) {
    problems.push(...formatProblems(parsed.problems, path));
    return undefined;
  }
  warnings.push(...parsed.warnings);
  return parsed.policy;
}

/** ENOENT only: a file that exists but cannot be read is a different problem. */
async function isMissing(path: string): Promise<boolean> {
  return stat(path).then(
    () => false,
    (err: unknown) => typeof err === "object" && err !== null && "code" in err && err.code === "ENOENT",
  );
}

// ───────────────────────────── SSH keys ─────────────────────────────

async function checkSshKeys(config: NavarchConfig, source: string, problems: string[], warnings: string[]): Promise<void> {
  const seen = new Set<string>();
  for (const [i, pool] of config.pools.entries()) {
    const path = pool.ssh_private_key_path;
    if (path === undefined || pool.setup_commands.length === 0 || seen.has(path)) continue;
    seen.add(path);
    const at = `${source}: pools[${i}].ssh_private_key_path`;
    const read = await readTextFile(path);
    if (!read.ok) {
      // Like a secret in an environment variable: present where serve runs, often not where check runs.
      const reason = read.problems[0]?.message ?? `cannot read ${path}`;
      warnings.push(`${at}: ${reason}; pool ${pool.name} cannot bootstrap new machines until serve can read it`);
      continue;
    }
    try {
      publicKeyFromPrivate(read.text);
    } catch (err) {
      problems.push(
        `${at}: ${path} is not a private key serve can use (expected an unencrypted OpenSSH or PEM private key): ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}

// ───────────────────────────── secrets in the environment ─────────────────────────────

function checkSecrets(config: NavarchConfig, source: string, env: EnvLookup, warnings: string[], embedded: boolean): void {
  const unset = (name: string) => (env(name) ?? "").trim() === "";
  const used = new Set(config.pools.flatMap((p) => p.providers));
  const poolsOf = (type: string) =>
    config.pools
      .filter((p) => p.providers.some((t) => t === type))
      .map((p) => p.name)
      .join(", ");
  const { server, providers } = config;
  // The embedded defaults are for this machine: the generated token is their design.
  if (!embedded && unset(server.auth_token_env)) {
    warnings.push(
      `${source}: server.auth_token_env: $${server.auth_token_env} is not set; serve uses the token in ${server.data_dir}/auth-token (generating one), which agents and the CLI then need`,
    );
  }
  const lambda = providers.lambda;
  if (used.has("lambda") && lambda !== undefined && unset(lambda.api_key_env)) {
    warnings.push(`${source}: providers.lambda.api_key_env: $${lambda.api_key_env} is not set; launches in ${poolsOf("lambda")} fail until it is`);
  }
  const gcp = providers.gcp;
  if (used.has("gcp") && gcp !== undefined) {
    if (gcp.credentials_env !== undefined && unset(gcp.credentials_env)) {
      warnings.push(`${source}: providers.gcp.credentials_env: $${gcp.credentials_env} is not set; launches in ${poolsOf("gcp")} fail until it is`);
    } else if (gcp.credentials_file !== undefined && !existsSync(gcp.credentials_file)) {
      warnings.push(`${source}: providers.gcp.credentials_file: ${gcp.credentials_file} does not exist; launches in ${poolsOf("gcp")} fail until it does`);
    } else if (gcp.credentials_env === undefined && gcp.credentials_file === undefined) {
      warnings.push(`${source}: providers.gcp: no credentials_env or credentials_file; launches in ${poolsOf("gcp")} fail until one is set`);
    }
  }
  const aws = providers.aws;
  if (used.has("aws") && aws !== undefined) {
    const keys = [
      ["access_key_id_env", aws.access_key_id_env ?? "AWS_ACCESS_KEY_ID"],
      ["secret_access_key_env", aws.secret_access_key_env ?? "AWS_SECRET_ACCESS_KEY"],
    ] as const;
    for (const [key, name] of keys) {
      if (unset(name)) warnings.push(`${source}: providers.aws.${key}: $${name} is not set; launches in ${poolsOf("aws")} fail until it is`);
    }
  }
  const prometheus = config.metrics?.prometheus;
  if (prometheus?.bearer_token_env !== undefined && unset(prometheus.bearer_token_env)) {
    warnings.push(
      `${source}: metrics.prometheus.bearer_token_env: $${prometheus.bearer_token_env} is not set; every query to ${prometheus.url} fails and the autoscalers reading it hold`,
    );
  }
}

// ───────────────────────────── autoscalers and their metrics ─────────────────────────────

function checkAutoscalerSources(config: NavarchConfig, source: string, warnings: string[]): void {
  if (config.kubernetes?.queue_metrics.enabled === true || config.slurm?.queue_metrics.enabled === true) return;
  const why =
    config.slurm !== undefined
      ? "slurm.queue_metrics.enabled is false"
      : config.kubernetes === undefined
        ? "there is no kubernetes: section"
        : "kubernetes.queue_metrics.enabled is false";
  const visit = (a: AutoscalerConfig, path: string, pool: string, inside?: string): void => {
    switch (a.type) {
      case "queue": {
        const effect =
          inside === undefined
            ? `pool ${pool} holds its size ("queue depth unknown")`
            : inside === "composite"
              ? "the composite goes by its other autoscalers"
              : `the ${inside} gets no size from this fallback`;
        warnings.push(`${source}: ${path}: a queue autoscaler without queue metrics (${why}; they count pods labelled navarch.dev/pool=${pool}): ${effect}`);
        return;
      }
      case "composite":
        a.autoscalers.forEach((child, i) => visit(child, `${path}.autoscalers[${i}]`, pool, "composite"));
        return;
      case "scheduled":
      case "predictive":
        if (a.fallback !== undefined) visit(a.fallback, `${path}.fallback`, pool, `${a.type} autoscaler`);
        return;
      default:
        return;
    }
  };
  for (const [i, pool] of config.pools.entries()) {
    // A queue that lives in Prometheus is queue metrics too.
    const queries = { ...config.metrics?.prometheus?.queries, ...pool.scaling.metrics?.prometheus };
    if (config.metrics?.prometheus !== undefined && (queries.queue_pending !== undefined || queries.queue_running !== undefined)) continue;
    if (pool.scaling.autoscaler !== undefined) visit(pool.scaling.autoscaler, `pools[${i}].scaling.autoscaler`, pool.name);
  }
}

// ───────────────────────────── what serve refuses to start without ─────────────────────────────

function checkLocalProvider(config: NavarchConfig, source: string, problems: string[]): void {
  const library = config.providers.local?.nvml_library;
  if (!config.pools.some((p) => p.providers.includes("local")) || library === undefined) return;
  if (!existsSync(library)) {
    problems.push(
      `${source}: providers.local.nvml_library: ${library} does not exist (expected the path of a libnvidia-ml, e.g. the fake one npm run build makes)`,
    );
  }
}

/** The certificate, its key and the client CAs, read and matched as serve reads them. */
function checkTls(config: NavarchConfig, source: string, problems: string[], warnings: string[]): void {
  const tls = config.server.tls;
  if (tls === undefined) return;
  try {
    const expiry = expiryWarning(loadTlsMaterial(tls), Date.now());
    if (expiry !== undefined) warnings.push(`${source}: ${expiry}`);
  } catch (err) {
    if (!(err instanceof TlsError)) throw err;
    problems.push(`${source}: ${err.message}`);
  }
}

/** Loads the connection as serve does (no request is sent): a kubeconfig, the pod's account, or a token. */
/** Loads the Slurm credentials as serve does (no request is sent): the JWT key file, or the token's variable. */
function checkSlurm(config: NavarchConfig, source: string, env: EnvLookup, problems: string[]): void {
  if (config.slurm === undefined) return;
  try {
    slurmTokens(config.slurm, env);
  } catch (err) {
    const message = err instanceof Error ? err.message.replace(/^slurm: /, "") : String(err);
    problems.push(`${source}: ${message}`);
  }
}

async function checkKubernetes(config: NavarchConfig, source: string, env: EnvLookup, problems: string[]): Promise<void> {
  if (config.kubernetes === undefined) return;
  try {
    const client = await connectKube(config.kubernetes, env);
    client.close();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Messages about one key already start with its path.
    problems.push(`${source}: ${message.startsWith("kubernetes.") ? message : `kubernetes: ${message}`}`);
  }
}
