// Plain HTTP off loopback. Without `server.tls` the API (and `/metrics`) is plain HTTP: fine on
// loopback, and what the seed's Kubernetes manifests run on a pod network. Off loopback it is
// served, with one loud warning at start (and in `config check`, on `/metrics` as
// `navarch_server_plain_http`, and as a banner on the dashboard), unless `server.require_tls`
// says to refuse it.
//
// Loopback is decided by address, never by name: a host name (`localhost` included) is resolved
// as the listener would resolve it (getaddrinfo: /etc/hosts, then DNS), and is loopback only when
// every address it resolves to is.
import { lookup } from "node:dns/promises";
import { isLoopbackIp, parseAddress, type ServerConfig } from "../../schema/config.ts";

/** A listener that serves plain HTTP on an address that is not loopback. */
export interface PlainListener {
  /** The config key it comes from. */
  key: "server.address" | "server.metrics_address";
  /** `host:port` as configured. */
  address: string;
  /** What a host name resolved to; empty for an address, or a name that did not resolve. */
  resolved: string[];
}

export type ResolveHost = (host: string) => Promise<string[]>;

export const resolveHost: ResolveHost = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

interface ListenAt {
  key: PlainListener["key"];
  host: string;
  port: number;
}

/** The listeners of `server` that would serve plain HTTP off loopback (none with TLS). */
export async function plainHttpListeners(
  server: Pick<ServerConfig, "address" | "metrics_address" | "tls">,
  resolve: ResolveHost = resolveHost,
): Promise<PlainListener[]> {
  if (server.tls !== undefined) return [];
  const at: ListenAt[] = [];
  for (const key of ["address", "metrics_address"] as const) {
    const parsed = server[key] === undefined ? undefined : parseAddress(server[key]);
    if (parsed !== undefined) at.push({ key: `server.${key}`, ...parsed });
  }
  return exposedListeners(at, resolve);
}

/** Of `listeners` (all plain HTTP), those not on loopback. */
export async function exposedListeners(listeners: readonly ListenAt[], resolve: ResolveHost = resolveHost): Promise<PlainListener[]> {
  const out: PlainListener[] = [];
  for (const { key, host, port } of listeners) {
    const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    if (isLoopbackIp(host)) continue;
    if (isIpLiteral(host)) {
      out.push({ key, address, resolved: [] });
      continue;
    }
    const resolved = await resolve(host).catch(() => []);
    if (resolved.length > 0 && resolved.every(isLoopbackIp)) continue;
    out.push({ key, address, resolved });
  }
  return out;
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

function describe(l: PlainListener): string {
  const wildcard = /^(0\.0\.0\.0|\[::\]):/.test(l.address) ? " (every interface)" : "";
  const name = l.address.replace(/:\d+$/, "");
  const resolved =
    l.resolved.length > 0 ? ` (${name} resolves to ${l.resolved.join(", ")})` : isIpLiteral(name.replace(/^\[|\]$/g, "")) ? "" : ` (${name} does not resolve)`;
  return `${l.key} ${l.address}${wildcard}${resolved}`;
}

/** The one loud start-up warning; also `config check`'s. */
export function plainHttpWarning(listeners: readonly PlainListener[]): string {
  return (
    `PLAIN HTTP OFF LOOPBACK: ${listeners.map(describe).join(" and ")} serves plain HTTP (no server.tls): ` +
    "the admin token, API tokens, enroll tokens and node credentials cross the network in the clear, readable by anyone on the path. " +
    "Fix: set server.tls (cert_file, key_file), or keep this port on a private network only (a pod network, a VPN); " +
    "server.require_tls: true refuses to start like this"
  );
}

/** What `server.require_tls: true` says instead, one line per listener. */
export function plainHttpRefusals(listeners: readonly PlainListener[]): string[] {
  return listeners.map(
    (l) =>
      `${l.key}: ${describe(l).slice(l.key.length + 1)} is not a loopback address and server.tls is not set, so it would serve plain HTTP (tokens in the clear); server.require_tls is true: set server.tls (cert_file, key_file), or listen on 127.0.0.1`,
  );
}

/** The dashboard's banner: what is exposed, in one sentence for the person about to paste a token. */
export function plainHttpBanner(listeners: readonly PlainListener[]): string {
  return `This reconciler serves plain HTTP on ${listeners.map((l) => l.address).join(" and ")}: tokens, yours included, cross the network unencrypted. Set server.tls, or reach it only over a private network.`;
}
