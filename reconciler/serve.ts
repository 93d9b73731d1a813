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
import { Reconciler as ReconcileLoop } from "./lifecycle/loop.ts";
import type { Clock } from "./fleet/registry.ts";
import type { SchedulerMirror } from "./fleet/scheduler.ts";
import { startKubernetes, type KubeIntegration } from "./kube/index.ts";
import { createMetrics, observeLoop } from "./metrics.ts";
import { createProviders } from "./providers/index.ts";
import type { Provider } from "./providers/provider.ts";
import { LeaderLease, LeaseKeeper, type LeaseChange, type LeaseTiming } from "./safety/lease.ts";
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
  /** The leader lease's timing (tests shorten it). */
  leaseTiming?: Partial<LeaseTiming>;
}

export interface Reconciler {
  readonly url: string;
  readonly authToken: string;
  /** Where the token came from, for the start-up log line. */
  readonly authTokenSource: string;
  readonly store: Store;
  readonly providers: ReadonlyMap<string, Provider>;
  /** The reconcile loop, while this reconciler leads. */
  readonly loop: ReconcileLoop | undefined;
  /** The leader lease, when a fleet was given. */
  readonly lease: LeaderLease | undefined;
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
    log,
  });
  const metrics = createMetrics(store.db);
  // The loop is created once the server listens (local agents need its URL); events wake it.
  let loop: ReconcileLoop | undefined;
  let providers: ReadonlyMap<string, Provider> = new Map();
  let publicUrl: string | undefined;
  let role: string | undefined;
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
    role: () => role,
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
  let lease: LeaderLease | undefined;
  let keeper: LeaseKeeper | undefined;
  if (fleet !== undefined) {
    const fleetSettings = fleet;
    // Local agents reach the reconciler where new machines do when that is set (a load balancer
    // in front of two reconcilers), else at this one's own address.
    const agentUrl = (settings.publicUrl ?? fleet.config.server.public_url ?? url).replace(/\/+$/, "");
    providers = fleet.providers ?? createProviders(fleet.config, { dataDir: settings.dataDir, serverUrl: agentUrl, authToken: token, log });
    const elected = lease = new LeaderLease({ db: store.db, address: publicUrl, ...(fleet.leaseTiming ? { timing: fleet.leaseTiming } : {}) });
    // Only the leader runs the loop and writes to the cloud and the cluster; a standby serves
    // the API (agents and operators may use any replica) and waits.
    const lead = async (epoch: number) => {
      // kubernetes: the cordon mirror + drain, queue metrics and GpuPool resources (reconciler/kube).
      if (fleetSettings.config.kubernetes !== undefined && fleetSettings.scheduler === undefined) {
        kube = await startKubernetes(fleetSettings.config.kubernetes, { store, log, now, wake: () => loop?.wake() });
      }
      const next = new ReconcileLoop({
        store,
        config: fleetSettings.config,
        providers,
        policy: fleetSettings.policy ?? defaultHealthPolicy(),
        now,
        log,
        publicUrl,
        fence: elected,
        ...(fleetSettings.scheduler ? { scheduler: fleetSettings.scheduler } : kube ? { scheduler: kube.mirror } : {}),
        ...(kube?.queueMetrics ? { queueMetrics: kube.queueMetrics } : {}),
      });
      observeLoop(next, metrics); // navarch_reconcile_pass_duration_seconds and friends
      await kube?.startPools(next, () => new Set(providers.keys()), fleetSettings.config.pools.map((p) => p.name));
      loop = next;
      next.start(fleetSettings.intervalMs ?? 1000);
      role = `leader, lease epoch ${epoch}`;
      log(`leading (lease epoch ${epoch}) as ${elected.holder}`);
    };
    const standDown = async () => {
      const stopping = loop;
      loop = undefined;
      await stopping?.stop();
      await kube?.stop();
      kube = undefined;
    };
    const onChange = async (change: LeaseChange) => {
      if (change.leading) {
        if (change.from) log(`took the leader lease over from ${change.from.holder} (silent for the lease's ${elected.timing.durationMs / 1000} s)`);
        await lead(change.epoch);
        return;
      }
      await standDown();
      const who = change.leader ? `${change.leader.holder}${change.leader.address ? ` at ${change.leader.address}` : ""} (epoch ${change.leader.epoch})` : "nobody yet";
      role = `standby; the leader is ${who}`;
      log(`standing by: ${change.reason}; the leader is ${who}`);
    };
    keeper = new LeaseKeeper(elected, onChange, log);
    try {
      await keeper.start();
      if (!elected.leading) {
        const leader = await elected.current();
        const who = leader ? `the leader is ${leader.holder}${leader.address ? ` at ${leader.address}` : ""} (epoch ${leader.epoch})` : "waiting for the lease";
        role = `standby; ${who}`;
        log(`standby: ${who}; taking over if it stops renewing for ${elected.timing.durationMs / 1000} s`);
      }
    } catch (err) {
      await keeper.stop();
      await server.stop(true);
      store.close();
      throw err;
    }
  }
  return {
    url,
    authToken: token,
    authTokenSource: source,
    store,
    providers,
    get loop() {
      return loop;
    },
    lease,
    async stop() {
      await loop?.stop();
      await kube?.stop();
      // Last: the lease is released only once nothing of ours acts any more.
      await keeper?.stop();
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
