// The `server:` section: where the API listens (and /metrics, with or without a token), TLS,
// heartbeat timing, the data directory and database, the admin token's variable, the URL
// machines reach the reconciler at, and the signed agent release it serves.
import * as v from "valibot";
import { parsePublicKey } from "../minisign.ts";
import { accept, oneOf, strict } from "../shapes.ts";
import { num, rules } from "./cross-field-rules.ts";
import { duration, formatDuration, type Millis } from "./duration.ts";
import { Bool, EnvVarName, HttpUrl, shaped, Text } from "./leaf-schemas.ts";

export interface ServerConfig {
  /** `host:port` the API listens on; split it with `parseAddress`. */
  address: string;
  heartbeat_interval: Millis;
  /** A node silent for this long is Lost. Defaults to 3 × heartbeat_interval. */
  heartbeat_timeout: Millis;
  health_check_interval: Millis;
  autoscale_interval: Millis;
  health_policy_path?: string;
  data_dir: string;
  /** `file:…`, `libsql://…`, `http(s)://…` or `ws(s)://…`; absent means a file under data_dir. */
  database_url?: string;
  /** Name of the environment variable holding the admin/bootstrap token (never the token). */
  auth_token_env: string;
  /**
   * The URL machines reach this reconciler at: `{{.ControlPlane}}` in setup_commands and the
   * server baked into /install.sh. Absent: derived from `address` (0.0.0.0 → this host's name).
   */
  public_url?: string;
  /** HTTPS for the API (and the metrics listener); absent: plain HTTP (off loopback with a warning, or refused with require_tls). */
  tls?: ServerTlsConfig;
  /** Refuse to start serving plain HTTP on an address that is not loopback (instead of warning). */
  require_tls: boolean;
  /**
   * Deprecated and silences nothing: plain HTTP off loopback is served with a warning whatever
   * it says. Kept so that files written for earlier versions still load; `config check` says so.
   */
  allow_plain_http?: boolean;
  /** `host:port` of a listener that serves only /metrics; absent: /metrics on `address`. */
  metrics_address?: string;
  /** Who may read /metrics: anyone who reaches it (`none`, the default), or a token of the viewer role or above. */
  metrics_auth: MetricsAuth;
  /**
   * Per-GPU series on /metrics (navarch_node_gpu_*{node,gpu}): `auto` while the fleet has at most
   * 40,000 GPUs with readings (5,000 nodes of 8), `on`, or `off`. Pool aggregates are always there.
   */
  metrics_per_gpu: MetricsPerGpu;
  /** A signed release directory (`npm run release`) whose navarch-node /install.sh installs, instead of the one beside this executable. */
  agent_release?: string;
  /** The minisign public key (base64, `RWQ…`) agent_release must be signed with; never one found inside it. */
  agent_release_public_key?: string;
}

export const METRICS_AUTH = ["viewer", "none"] as const;
export type MetricsAuth = (typeof METRICS_AUTH)[number];
export const METRICS_PER_GPU = ["auto", "on", "off"] as const;
export type MetricsPerGpu = (typeof METRICS_PER_GPU)[number];

export interface ServerTlsConfig {
  /** PEM certificate chain the reconciler presents (leaf first); re-read when it changes. */
  cert_file: string;
  /** PEM private key of cert_file; re-read with it. */
  key_file: string;
  /** PEM CA certificates: when set, every client must present a certificate one of them signed (mTLS). */
  client_ca_file?: string;
}

/** Splits `host:port` (`[::1]:80` for IPv6). Undefined when it is not one. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) return undefined;
  // `:50051`, as Go's listeners (and upstream Navarch's examples) write it: every interface.
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

const Address = v.pipe(
  accept<string>(
    (x) => typeof x === "string" && parseAddress(x) !== undefined,
    "host:port with a port from 1 to 65535, like 0.0.0.0:50051 (or :50051 for every interface)",
  ),
  v.transform((address) => (address.startsWith(":") ? `0.0.0.0${address}` : address)),
);

/**
 * Whether `host` is a loopback address written as an address (127.0.0.0/8, ::1, ::ffff:127.x).
 * Names, `localhost` included, are not: what a name means is /etc/hosts' and DNS's to say, so
 * a name is resolved and its addresses checked (reconciler/config/exposure.ts).
 */
export function isLoopbackIp(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "::1" || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Two addresses that would bind the same port (a wildcard host overlaps every host). */
function sameListener(a: string, b: string): boolean {
  const [x, y] = [parseAddress(a), parseAddress(b)];
  if (x === undefined || y === undefined || x.port !== y.port) return false;
  const wildcard = (h: string) => h === "0.0.0.0" || h === "::";
  return x.host === y.host || wildcard(x.host) || wildcard(y.host);
}

const ServerTls = strict({
  cert_file: Text,
  key_file: Text,
  client_ca_file: v.optional(Text),
});

const MinisignPublicKey = accept<string>((x) => {
  if (typeof x !== "string") return false;
  try {
    parsePublicKey(x);
    return true;
  } catch {
    return false;
  }
}, "a minisign public key: the base64 line of its .pub file (RWQ…), as `minisign -G` and `npm run release` print it");

const DatabaseUrl = shaped(/^(file:.+|(libsql|https?|wss?):\/\/.+)$/, "a database URL: file:…, libsql://…, http(s)://… or ws(s)://…");

export const Server: v.GenericSchema<unknown, ServerConfig> = v.pipe(
  strict({
    address: v.optional(Address, "127.0.0.1:50051"),
    // Agents set their heartbeat timer from this (the reconciler tells them).
    heartbeat_interval: v.optional(duration("1s", "10m"), "30s"),
    heartbeat_timeout: v.optional(duration("1s", "1h")),
    health_check_interval: v.optional(duration("1s", "1h"), "60s"),
    // Only gates the loop's passes (at most one a second), so sub-second values are harmless.
    autoscale_interval: v.optional(duration("100ms", "1h"), "30s"),
    health_policy_path: v.optional(Text),
    data_dir: v.optional(Text, "data"),
    database_url: v.optional(DatabaseUrl),
    auth_token_env: v.optional(EnvVarName, "NAVARCH_AUTH_TOKEN"),
    public_url: v.optional(HttpUrl),
    tls: v.optional(ServerTls),
    require_tls: v.optional(Bool, false),
    allow_plain_http: v.optional(Bool),
    metrics_address: v.optional(Address),
    // Open, as every Prometheus exporter is and the seed's ServiceMonitor assumes; label values
    // are pool names, node ids, states and codes (never a token or an agent's free text).
    metrics_auth: v.optional(oneOf(METRICS_AUTH), "none"),
    metrics_per_gpu: v.optional(oneOf(METRICS_PER_GPU), "auto"),
    agent_release: v.optional(Text),
    agent_release_public_key: v.optional(MinisignPublicKey),
  }),
  rules((f, report, raw) => {
    const [interval, timeout] = [num(f.heartbeat_interval), num(f.heartbeat_timeout)];
    if (interval !== undefined && timeout !== undefined && timeout <= interval) {
      report("heartbeat_timeout", `must be longer than heartbeat_interval (${formatDuration(interval)}), got ${formatDuration(timeout)}`);
    }
    // Whether an address is loopback needs its name resolved: reconciler/config/exposure.ts.
    const tls = raw.tls !== undefined;
    if (f.require_tls === true && f.allow_plain_http === true) {
      report("allow_plain_http", "contradicts server.require_tls: true (which refuses plain HTTP off loopback); remove one of them");
    }
    if (tls && typeof f.public_url === "string" && f.public_url.startsWith("http://")) {
      report("public_url", `the API serves HTTPS (server.tls is set), so new machines must be told https://, got ${JSON.stringify(f.public_url)}`);
    }
    // The key comes from the operator: one shipped inside the release would vouch for itself.
    if (raw.agent_release !== undefined && raw.agent_release_public_key === undefined) {
      report("agent_release_public_key", "is required with server.agent_release: the minisign public key its SHA256SUMS must be signed with");
    }
    if (raw.agent_release === undefined && raw.agent_release_public_key !== undefined)
      report("agent_release", "is required with server.agent_release_public_key");
    if (typeof f.address === "string" && typeof f.metrics_address === "string" && sameListener(f.address, f.metrics_address)) {
      report("metrics_address", `must differ from server.address (${f.address}): it is a listener of its own`);
    }
  }),
  // Three missed heartbeats: one lost packet or a slow GC pause must not declare a node Lost.
  v.transform(({ address, heartbeat_interval, heartbeat_timeout, ...rest }) => ({
    address,
    heartbeat_interval,
    heartbeat_timeout: heartbeat_timeout ?? 3 * heartbeat_interval,
    ...rest,
  })),
);
