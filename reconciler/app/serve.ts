// Starts the reconciler: opens (and migrates) the store, resolves the auth token,
// and serves the API. Returns a handle so the demo, tests and `navarch serve` share
// one start-up path.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync, type Stats } from "node:fs";
import { hostname } from "node:os";
import { dirname, resolve } from "node:path";
import { type MetricsAuth, type MetricsPerGpu, type NavarchConfig, type ServerTlsConfig } from "../../schema/config.ts";
import { createApi, createMetricsApp } from "../api/server.ts";
import { Ingest } from "../ingest/group-commit.ts";
import { WorkerWriter, clientWriter, type GroupWriter } from "../ingest/writer.ts";
import { ListenError, Listener } from "./listener.ts";
import { authTokenFile } from "./auth-token-file.ts";
import {
  exposedListeners,
  plainHttpBanner,
  plainHttpRefusals,
  plainHttpWarning,
  resolveHost,
  type PlainListener,
  type ResolveHost,
} from "../config/exposure.ts";
import { defaultHealthPolicy } from "../health/compile-policy.ts";
import type { HealthPolicy } from "../health/policy-evaluation.ts";
import type { BesideCalls } from "../dependencies/beside.ts";
import { Reconciler as ReconcileLoop, providerCalls } from "../lifecycle/loop.ts";
import type { Clock } from "../../schema/time.ts";
import type { SchedulerIntegration, SchedulerMirror } from "../schedulers/scheduler.ts";
import { schedulerLoopHandle, storeSchedulerHost } from "../schedulers/host.ts";
import { createScheduler } from "../schedulers/index.ts";
import { observeLoop } from "../metrics/loop-metrics.ts";
import { createMetrics, type Metrics } from "../metrics/metrics.ts";
import { PrometheusMetricsSource } from "../pools/prometheus.ts";
import { createProviders } from "../providers/index.ts";
import type { Provider } from "../providers/provider.ts";
import { DEFAULT_LEASE_TIMING, LeaderLease, LeaseKeeper, type LeaseChange, type LeaseTiming } from "../safety/lease.ts";
import { openStore, redactUrl, type Store } from "../store/store.ts";
import { Dependencies } from "../dependencies/status.ts";
import type { ReconcilerStatus } from "../../schema/admin.ts";
import type { ServedRelease } from "../release/agent-release.ts";

export { ListenError };

/** A start-up problem of this machine (the data directory, the token file): one line for the operator. */
export class StartError extends Error {
  override readonly name = "StartError";
}

export interface ServeSettings {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string;
  databaseAuthToken?: string;
  /** Name of the env var that holds the API token (the seed's NAVARCH_AUTH_TOKEN). */
  authTokenEnv: string;
  heartbeatIntervalSeconds: number;
  /** The URL machines reach this reconciler at; default: the config's server.public_url, else derived from host and port. */
  publicUrl?: string;
  /** The agent binary served to new machines (default: navarch-node beside this executable, or $NAVARCH_NODE_BINARY). */
  agentBinary?: string;
  /** server.agent_release, verified: served instead of agentBinary, with its SHA256SUMS and signature. */
  agentRelease?: ServedRelease;
  /** server.tls: HTTPS only, the files re-read when they change. */
  tls?: ServerTlsConfig;
  /** server.require_tls: refuse plain HTTP off loopback instead of serving it with a warning. */
  requireTls?: boolean;
  /** How a host name is resolved to decide whether it is loopback (tests map names without /etc/hosts). */
  resolveHost?: ResolveHost;
  /** server.metrics_address: /metrics on a listener of its own. */
  metricsAddress?: { host: string; port: number };
  /** server.metrics_auth (default none: open). */
  metricsAuth?: MetricsAuth;
  /** server.metrics_per_gpu (default auto). */
  metricsPerGpu?: MetricsPerGpu;
  /** How often the TLS files are looked at for a change (tests shorten it). */
  tlsPollMs?: number;
}

/** What the reconcile loop runs over; without it only the API is served. */
export interface FleetSettings {
  config: NavarchConfig;
  policy?: HealthPolicy;
  /** Instead of the providers the config names (tests, the simulator). */
  providers?: ReadonlyMap<string, Provider>;
  scheduler?: SchedulerMirror;
  /** Milliseconds between passes when nothing wakes the loop. */
  intervalMs?: number;
  /** The leader lease's timing (tests shorten it). */
  leaseTiming?: Partial<LeaseTiming>;
}

export interface Reconciler {
  readonly url: string;
  /** The metrics listener's URL, when server.metrics_address is set. */
  readonly metricsUrl: string | undefined;
  readonly authToken: string;
  /** Where the token came from, for the start-up log line. */
  readonly authTokenSource: string;
  readonly store: Store;
  readonly providers: ReadonlyMap<string, Provider>;
  /** The reconcile loop, while this reconciler leads. */
  readonly loop: ReconcileLoop | undefined;
  /** The leader lease, when a fleet was given. */
  readonly lease: LeaderLease | undefined;
  /** What this reconciler depends on and how each is doing (reconciler/dependencies/status.ts). */
  readonly dependencies: Dependencies;
  /** GET /v1/status's answer. */
  status(): ReconcilerStatus;
  stop(): Promise<void>;
}

export async function startReconciler(settings: ServeSettings, log: (line: string) => void, now: Clock = Date.now, fleet?: FleetSettings): Promise<Reconciler> {
  const plainHttp = await plainHttpExposure(settings, log);
  const { token, source } = resolveAuthToken(settings, log);
  prepareDatabaseFile(settings, log);
  const dependencies = new Dependencies({ log });
  const database = dependencies.add(
    "database",
    "the database",
    settings.databaseUrl.startsWith("file:") ? settings.databaseUrl.slice(5) : redactUrl(settings.databaseUrl),
  );
  const store = await openStore({
    url: settings.databaseUrl,
    ...(settings.databaseAuthToken ? { authToken: settings.databaseAuthToken } : {}),
    log,
    probed: (health) => (health.ready ? database.ok() : database.failed(new Error(health.reason))),
  });
  database.ok();
  const metrics = createMetrics(store.db, {
    perGpu: settings.metricsPerGpu ?? "auto",
    plainHttp: plainHttp.length > 0,
    dependencies: () => dependencies.list(),
    now,
  });
  // Heartbeats and events are committed in groups; what is queued is written before the store closes.
  const writer = await ingestWriter(store, settings.databaseUrl, metrics, log);
  const ingest = new Ingest(writer, { now, observe: (n) => metrics.ingestGroup.observe(n) });
  // The loop is created once the server listens (local agents need its URL); events wake it.
  let loop: ReconcileLoop | undefined;
  let providers: ReadonlyMap<string, Provider> = new Map();
  let publicUrl: string | undefined;
  let role: string | undefined;
  const status = (): ReconcilerStatus => ({
    role: role ?? "serving the API only (no fleet)",
    leading: loop !== undefined,
    loop: loop?.status() ?? null,
    dependencies: dependencies.list(),
  });
  const app = createApi({
    store,
    metrics,
    ingest,
    authToken: token,
    heartbeatIntervalSeconds: settings.heartbeatIntervalSeconds,
    now,
    log,
    wake: () => loop?.wake(),
    providers: () => providers,
    publicUrl: () => publicUrl,
    role: () => role,
    status,
    ...(settings.agentBinary ? { agentBinary: settings.agentBinary } : {}),
    ...(settings.agentRelease ? { agentRelease: settings.agentRelease } : {}),
    ...(settings.metricsAuth ? { metricsAuth: settings.metricsAuth } : {}),
    metricsHere: settings.metricsAddress === undefined,
    ...(plainHttp.length > 0 ? { plainHttpBanner: plainHttpBanner(plainHttp) } : {}),
  });
  const listeners: Listener[] = [];
  const listen = (key: string, host: string, port: number, fetch: (request: Request) => Response | Promise<Response>) => {
    const opened = Listener.open({
      host,
      port,
      fetch,
      key,
      log,
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(settings.tlsPollMs ? { tlsPollMs: settings.tlsPollMs } : {}),
      onReloadRefused: () => metrics.tlsReloadRefusals.inc(),
    });
    listeners.push(opened);
    return opened;
  };
  let server: Listener;
  let metricsServer: Listener | undefined;
  try {
    server = listen("server.address", settings.host, settings.port, app.fetch);
    if (settings.metricsAddress !== undefined) {
      const metricsApp = createMetricsApp({ store, metrics, authToken: token, now, ...(settings.metricsAuth ? { metricsAuth: settings.metricsAuth } : {}) });
      metricsServer = listen("server.metrics_address", settings.metricsAddress.host, settings.metricsAddress.port, metricsApp.fetch);
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.stop()));
    store.close();
    throw err;
  }
  if (settings.tls !== undefined)
    log(
      `tls: serving ${settings.tls.cert_file} (sha256 ${server.fingerprint256})${settings.tls.client_ca_file ? `; clients need a certificate signed by ${settings.tls.client_ca_file}` : ""}`,
    );
  const url = server.url;
  // What new machines are told to reach ({{.ControlPlane}}, /install.sh): not 0.0.0.0.
  publicUrl = (settings.publicUrl ?? fleet?.config.server.public_url ?? derivePublicUrl(settings.host, server.port, settings.tls !== undefined)).replace(
    /\/+$/,
    "",
  );
  let scheduler: SchedulerIntegration | undefined;
  let lease: LeaderLease | undefined;
  let keeper: LeaseKeeper | undefined;
  let closeLease: (() => void) | undefined;
  let besideCalls: BesideCalls | undefined;
  if (fleet !== undefined) {
    const fleetSettings = fleet;
    // Local agents reach the reconciler where new machines do when that is set (a load balancer
    // in front of two reconcilers), else at this one's own address.
    const agentUrl = (settings.publicUrl ?? fleet.config.server.public_url ?? url).replace(/\/+$/, "");
    providers = fleet.providers ?? createProviders(fleet.config, { dataDir: settings.dataDir, serverUrl: agentUrl, authToken: token, log });
    // The lease on a connection of its own, never waiting long (safety/lease.ts says why).
    const timing = { ...DEFAULT_LEASE_TIMING, ...fleet.leaseTiming };
    const leaseConnection = store.sideConnection(Math.max(1000, timing.retryMs));
    closeLease = leaseConnection.close;
    const elected = (lease = new LeaderLease({ db: leaseConnection.db, address: publicUrl, timing }));
    // Only the leader runs the loop and writes to the cloud and the cluster; a standby serves
    // the API (agents and operators may use any replica) and waits.
    const prometheus = fleet.config.metrics?.prometheus;
    // One per process: a call under way when this reconciler stands down is seen, not made again, if it leads again.
    const beside = (besideCalls = providerCalls(() => loop?.wake()));
    const lead = async (epoch: number) => {
      // The scheduler the config names (kubernetes:, slurm:): its cordon mirror + drain, its
      // queue source, and what it runs beside the loop (schedulers/scheduler.ts).
      if (fleetSettings.scheduler === undefined) {
        scheduler = await createScheduler(
          fleetSettings.config,
          storeSchedulerHost({ store, log, now, wake: () => loop?.wake(), providers: () => providers, dependencies }),
        );
      }
      const queue = scheduler?.queue;
      const next = new ReconcileLoop({
        store,
        config: fleetSettings.config,
        providers,
        policy: fleetSettings.policy ?? defaultHealthPolicy(),
        now,
        log,
        publicUrl,
        fence: elected,
        dependencies,
        beside,
        ...(fleetSettings.scheduler ? { scheduler: fleetSettings.scheduler } : scheduler ? { scheduler: scheduler.mirror } : {}),
        ...(queue ? { queueMetrics: (pool: string) => queue.depth(pool) } : {}),
        ...(prometheus
          ? { metricsSource: new PrometheusMetricsSource(prometheus, { dependency: dependencies.add("prometheus", "Prometheus", prometheus.url) }) }
          : {}),
      });
      observeLoop(next, metrics); // navarch_reconcile_pass_duration_seconds and friends
      // Starts what runs beside the loop; never waits for the scheduler's API (schedulers/scheduler.ts).
      await scheduler?.start(
        schedulerLoopHandle({ store, loop: next, providers: () => new Set(providers.keys()), filePools: fleetSettings.config.pools.map((p) => p.name) }),
      );
      loop = next;
      next.start(fleetSettings.intervalMs ?? 1000);
      role = `leader, lease epoch ${epoch}`;
      log(`leading (lease epoch ${epoch}) as ${elected.holder}`);
    };
    const standDown = async () => {
      const stopping = loop;
      loop = undefined;
      await stopping?.stop();
      await scheduler?.stop();
      scheduler = undefined;
    };
    const onChange = async (change: LeaseChange) => {
      if (change.leading) {
        if (change.from) log(`took the leader lease over from ${change.from.holder} (silent for the lease's ${elected.timing.durationMs / 1000} s)`);
        await lead(change.epoch);
        return;
      }
      await standDown();
      // A lease this process lost is never "led by" this process: it takes it again at a later round.
      const leader = change.leader?.holder === elected.holder ? undefined : change.leader;
      const who = leader ? `${leader.holder}${leader.address ? ` at ${leader.address}` : ""} (epoch ${leader.epoch})` : "nobody yet";
      role = `standby; the leader is ${who}`;
      log(`standing by: ${change.reason}; the leader is ${who}`);
    };
    keeper = new LeaseKeeper(elected, onChange, log);
    try {
      await keeper.start();
      if (!elected.leading) {
        const current = await elected.current().catch(() => undefined);
        const leader = current?.holder === elected.holder ? undefined : current;
        const who = leader ? `the leader is ${leader.holder}${leader.address ? ` at ${leader.address}` : ""} (epoch ${leader.epoch})` : "waiting for the lease";
        role = `standby; ${who}`;
        log(`standby: ${who}; taking over if it stops renewing for ${elected.timing.durationMs / 1000} s`);
      }
    } catch (err) {
      await keeper.stop();
      closeLease?.();
      await Promise.all(listeners.map((l) => l.stop()));
      store.close();
      throw err;
    }
  }
  return {
    url,
    metricsUrl: metricsServer?.url,
    authToken: token,
    authTokenSource: source,
    store,
    providers,
    get loop() {
      return loop;
    },
    lease,
    dependencies,
    status,
    async stop() {
      await loop?.stop();
      besideCalls?.stop();
      await scheduler?.stop();
      // Last: the lease is released only once nothing of ours acts any more.
      await keeper?.stop();
      closeLease?.();
      // Close keep-alive connections too: agents must see this server is gone.
      await Promise.all(listeners.map((l) => l.stop(true)));
      await ingest.close();
      store.close();
    },
  };
}

/**
 * The listeners that will serve plain HTTP off loopback: logged once, loudly; refused with
 * server.require_tls (config check says the same: config/exposure.ts).
 */
async function plainHttpExposure(settings: ServeSettings, log: (line: string) => void): Promise<PlainListener[]> {
  if (settings.tls !== undefined) return [];
  const listeners: { key: PlainListener["key"]; host: string; port: number }[] = [{ key: "server.address", host: settings.host, port: settings.port }];
  if (settings.metricsAddress !== undefined) listeners.push({ key: "server.metrics_address", ...settings.metricsAddress });
  const exposed = await exposedListeners(listeners, settings.resolveHost ?? resolveHost);
  if (exposed.length === 0) return exposed;
  if (settings.requireTls === true) throw new ListenError(plainHttpRefusals(exposed).join("; "));
  log(`warning: ${plainHttpWarning(exposed)}`);
  return exposed;
}

/**
 * The token comes from the named env var. With none set (the embedded default),
 * a random one is generated once and kept in the data directory (mode 0600, the directory
 * 0700), so local agents and the CLI can read it and it survives restarts.
 */
function resolveAuthToken(settings: ServeSettings, log: (line: string) => void): { token: string; source: string } {
  const fromEnv = process.env[settings.authTokenEnv];
  if (fromEnv) return { token: fromEnv, source: `$${settings.authTokenEnv}` };
  const path = authTokenFile(settings.dataDir);
  const found = statOrUndefined(path);
  if (found !== undefined) {
    if (!found.isFile()) throw new StartError(`${path} is not a file (it should hold the API token); move it aside, or set $${settings.authTokenEnv}`);
    warnIfShared(path, found.mode, 0o077, "readable by other users; it holds the admin token", log);
    let token: string;
    try {
      token = readFileSync(path, "utf8").trim();
    } catch (err) {
      throw new StartError(`cannot read the API token in ${path}: ${errorText(err)}`);
    }
    if (token.length > 0) return { token, source: path };
  }
  ensurePrivateDir(settings.dataDir);
  const token = randomBytes(24).toString("base64url");
  try {
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (err) {
    throw new StartError(`cannot write the API token to ${path}: ${errorText(err)} (set server.data_dir, or $${settings.authTokenEnv})`);
  }
  return { token, source: `${path} (generated: $${settings.authTokenEnv} was not set)` };
}

/**
 * A database file under a directory this creates 0700, itself created 0600 (SQLite gives
 * its -wal and -shm files the database file's mode); an existing one others can read is
 * said at start.
 */
function prepareDatabaseFile(settings: ServeSettings, log: (line: string) => void): void {
  if (!settings.databaseUrl.startsWith("file:")) return;
  const path = settings.databaseUrl.slice("file:".length);
  if (path === "" || path.startsWith(":memory:")) return;
  const found = statOrUndefined(path);
  if (found !== undefined) {
    if (found.isFile()) warnIfShared(path, found.mode, 0o004, "readable by every user; it holds the fleet's state and token hashes", log);
    return; // Anything else is the store's to refuse, with its own message.
  }
  const dir = dirname(path);
  if (resolve(dir) === resolve(settings.dataDir)) ensurePrivateDir(dir);
  try {
    writeFileSync(path, "", { mode: 0o600, flag: "wx" });
  } catch {
    // The store says why it cannot create it.
  }
}

/** Creates the data directory 0700; refuses one that is a file, in one line. */
function ensurePrivateDir(dir: string): void {
  const found = statOrUndefined(dir);
  if (found !== undefined) {
    if (!found.isDirectory()) throw new StartError(`server.data_dir: ${dir} is a file, not a directory; point server.data_dir (or --data-dir) at a directory`);
    return;
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartError(`server.data_dir: cannot create ${dir}: ${errorText(err)}`);
  }
}

function warnIfShared(path: string, mode: number, bits: number, why: string, log: (line: string) => void): void {
  if ((mode & bits) === 0) return;
  log(`warning: ${path} is mode ${(mode & 0o777).toString(8).padStart(4, "0")}, ${why}: chmod 600 ${path}`);
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "";
    // A path through a file ("data/auth-token" where data is a file) is the directory's problem.
    if (code === "ENOTDIR")
      throw new StartError(`server.data_dir: ${dirname(path)} is a file, not a directory; point server.data_dir (or --data-dir) at a directory`);
    if (code === "ENOENT") return undefined;
    throw new StartError(`cannot look at ${path}: ${errorText(err)}`);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `http(s)://host:port`, with a wildcard listen address replaced by this machine's name. */
export function derivePublicUrl(host: string, port: number, tls = false): string {
  const name = host === "0.0.0.0" || host === "::" || host === "[::]" || host === "" ? hostname() : host;
  return `${tls ? "https" : "http"}://${name.includes(":") ? `[${name}]` : name}:${port}`;
}

/** A database file's groups are written in a worker thread (ingest/writer.ts); other databases' on this one. */
async function ingestWriter(store: Store, url: string, metrics: Metrics, log: (line: string) => void): Promise<GroupWriter> {
  if (!url.startsWith("file:") || url === "file::memory:") return clientWriter(store.db.$client);
  const worker = await WorkerWriter.start(url, {
    observe: (err) => store.observe(err),
    checkpointed: (ms) => {
      metrics.ingestCheckpointBeside.observe(ms.beside / 1000);
      metrics.ingestCheckpoint.observe(ms.between / 1000);
    },
    exclusive: (write) => store.exclusive(write),
    fallback: clientWriter(store.db.$client),
    log,
  });
  if (worker !== undefined) return worker;
  log("warning: this binary has no ingest worker (built without it): heartbeats are written on the main thread");
  return clientWriter(store.db.$client);
}
