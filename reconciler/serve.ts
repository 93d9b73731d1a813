// Starts the reconciler: opens (and migrates) the store, resolves the auth token,
// and serves the API. Returns a handle so the demo, tests and `navarch serve` share
// one start-up path.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { NavarchConfig } from "../schema/config.ts";
import { createApi } from "./api/server.ts";
import { defaultHealthPolicy, type HealthPolicy } from "./fleet/policy.ts";
import { Reconciler as ReconcileLoop } from "./fleet/reconciler.ts";
import type { Clock } from "./fleet/registry.ts";
import type { SchedulerMirror } from "./fleet/scheduler.ts";
import { startKubernetes, type KubeIntegration } from "./kube/index.ts";
import { createMetrics, observeLoop } from "./metrics.ts";
import { createProviders } from "./providers/index.ts";
import type { Provider } from "./providers/provider.ts";
import { openStore, type Store } from "./store/store.ts";

export class ListenError extends Error {
  override readonly name = "ListenError";
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
}

export interface Reconciler {
  readonly url: string;
  readonly authToken: string;
  /** Where the token came from, for the start-up log line. */
  readonly authTokenSource: string;
  readonly store: Store;
  readonly providers: ReadonlyMap<string, Provider>;
  /** The reconcile loop, when a fleet was given. */
  readonly loop: ReconcileLoop | undefined;
  stop(): Promise<void>;
}

export async function startReconciler(
  settings: ServeSettings,
  log: (line: string) => void,
  now: Clock = Date.now,
  fleet?: FleetSettings,
): Promise<Reconciler> {
  const { token, source } = resolveAuthToken(settings);
  const store = await openStore({
    url: settings.databaseUrl,
    ...(settings.databaseAuthToken ? { authToken: settings.databaseAuthToken } : {}),
  });
  const metrics = createMetrics(store.db);
  // The loop is created once the server listens (local agents need its URL); events wake it.
  let loop: ReconcileLoop | undefined;
  let providers: ReadonlyMap<string, Provider> = new Map();
  let publicUrl: string | undefined;
  const app = createApi({
    store,
    metrics,
    authToken: token,
    heartbeatIntervalSeconds: settings.heartbeatIntervalSeconds,
    now,
    log,
    wake: () => loop?.wake(),
    providers: () => providers,
    publicUrl: () => publicUrl,
    ...(settings.agentBinary ? { agentBinary: settings.agentBinary } : {}),
  });
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ hostname: settings.host, port: settings.port, fetch: app.fetch });
  } catch (err) {
    store.close();
    throw new ListenError(
      `cannot listen on ${settings.host}:${settings.port}: ${err instanceof Error ? err.message : String(err)} (set server.address)`,
    );
  }
  const url = `http://${settings.host.includes(":") ? `[${settings.host}]` : settings.host}:${server.port}`;
  // What new machines are told to reach ({{.ControlPlane}}, /install.sh): not 0.0.0.0.
  publicUrl = (settings.publicUrl ?? fleet?.config.server.public_url ?? derivePublicUrl(settings.host, server.port ?? settings.port)).replace(/\/+$/, "");
  let kube: KubeIntegration | undefined;
  if (fleet !== undefined) {
    providers = fleet.providers ?? createProviders(fleet.config, { dataDir: settings.dataDir, serverUrl: url, authToken: token, log });
    // kubernetes: the cordon mirror + drain, queue metrics and GpuPool resources (reconciler/kube).
    if (fleet.config.kubernetes !== undefined && fleet.scheduler === undefined) {
      try {
        kube = await startKubernetes(fleet.config.kubernetes, { store, log, now, wake: () => loop?.wake() });
      } catch (err) {
        await server.stop(true);
        store.close();
        throw err;
      }
    }
    loop = new ReconcileLoop({
      store,
      config: fleet.config,
      providers,
      policy: fleet.policy ?? defaultHealthPolicy(),
      now,
      log,
      publicUrl,
      ...(fleet.scheduler ? { scheduler: fleet.scheduler } : kube ? { scheduler: kube.mirror } : {}),
      ...(kube?.queueMetrics ? { queueMetrics: kube.queueMetrics } : {}),
    });
    observeLoop(loop, metrics); // navarch_reconcile_pass_duration_seconds and friends
    await kube?.startPools(loop, () => new Set(providers.keys()), fleet.config.pools.map((p) => p.name));
    loop.start(fleet.intervalMs ?? 1000);
  }
  return {
    url,
    authToken: token,
    authTokenSource: source,
    store,
    providers,
    loop,
    async stop() {
      await loop?.stop();
      await kube?.stop();
      // Close keep-alive connections too: agents must see this server is gone.
      await server.stop(true);
      store.close();
    },
  };
}

/**
 * The token comes from the named env var. With none set (the embedded default),
 * a random one is generated once and kept in the data directory (mode 0600), so
 * local agents and the CLI can read it and it survives restarts.
 */
function resolveAuthToken(settings: ServeSettings): { token: string; source: string } {
  const fromEnv = process.env[settings.authTokenEnv];
  if (fromEnv) return { token: fromEnv, source: `$${settings.authTokenEnv}` };
  const path = authTokenFile(settings.dataDir);
  if (existsSync(path)) {
    const token = readFileSync(path, "utf8").trim();
    if (token.length > 0) return { token, source: path };
  }
  mkdirSync(settings.dataDir, { recursive: true });
  const token = randomBytes(24).toString("base64url");
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { token, source: `${path} (generated: $${settings.authTokenEnv} was not set)` };
}

/** `http://host:port`, with a wildcard listen address replaced by this machine's name. */
export function derivePublicUrl(host: string, port: number): string {
  const name = host === "0.0.0.0" || host === "::" || host === "[::]" || host === "" ? hostname() : host;
  return `http://${name.includes(":") ? `[${name}]` : name}:${port}`;
}

export function authTokenFile(dataDir: string): string {
  return join(dataDir, "auth-token");
}
