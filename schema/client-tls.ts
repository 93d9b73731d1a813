// How the reconciler's clients (navarch-node and the navarch CLI) trust it over HTTPS, one rule
// for both: the system's CAs, or the CA bundle named by --ca-file / $NAVARCH_CA_FILE; optionally
// a pinned SHA-256 fingerprint of the reconciler's certificate (--pin-sha256 /
// $NAVARCH_PIN_SHA256) checked on top of the chain and host name, never instead of them; and
// a client certificate for a reconciler that asks for one (mTLS: $NAVARCH_CLIENT_CERT and
// $NAVARCH_CLIENT_KEY). The files are read once, at start.
import { readFileSync } from "node:fs";
import { checkServerIdentity, type PeerCertificate } from "node:tls";

export interface ClientTlsSettings {
  /** PEM CA bundle to trust instead of the system's. */
  caFile?: string | undefined;
  /** SHA-256 of the reconciler's certificate (`AA:BB:…`, hex, or `sha256:…`). */
  pinSha256?: string | undefined;
  /** PEM client certificate and key, for a reconciler with server.tls.client_ca_file. */
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

/** The variables both clients read (a flag of the same meaning wins). */
export const CLIENT_TLS_ENV = {
  caFile: "NAVARCH_CA_FILE",
  pinSha256: "NAVARCH_PIN_SHA256",
  certFile: "NAVARCH_CLIENT_CERT",
  keyFile: "NAVARCH_CLIENT_KEY",
} as const;

/** A setting that cannot be used; the message names the flag or variable. */
export class ClientTlsError extends Error {
  override readonly name = "ClientTlsError";
}

export function clientTlsFromEnv(env: Record<string, string | undefined> = process.env): ClientTlsSettings {
  const get = (name: string) => (env[name] ?? "").trim() || undefined;
  return {
    caFile: get(CLIENT_TLS_ENV.caFile),
    pinSha256: get(CLIENT_TLS_ENV.pinSha256),
    certFile: get(CLIENT_TLS_ENV.certFile),
    keyFile: get(CLIENT_TLS_ENV.keyFile),
  };
}

/** `sha256:AA:BB:…`, `AABB…` or `aa:bb…` → 64 lowercase hex digits; undefined when it is not a SHA-256. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text
    .trim()
    .replace(/^sha256:/i, "")
    .replaceAll(":", "")
    .toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

export type FetchTls = NonNullable<BunFetchRequestInit["tls"]>;

/**
 * The `tls` options of fetch for these settings (undefined: the defaults). `names` says how
 * the user wrote each setting (`--ca-file`, `$NAVARCH_CA_FILE`), for messages.
 */
export function fetchTls(settings: ClientTlsSettings, names: Record<keyof ClientTlsSettings, string> = envNames()): FetchTls | undefined {
  const tls: FetchTls = {};
  if (settings.caFile !== undefined) tls.ca = readPem(settings.caFile, names.caFile, "CERTIFICATE");
  if ((settings.certFile === undefined) !== (settings.keyFile === undefined)) {
    throw new ClientTlsError(
      `${settings.certFile === undefined ? names.certFile : names.keyFile} is needed with ${settings.certFile === undefined ? names.keyFile : names.certFile} (a client certificate and its key)`,
    );
  }
  if (settings.certFile !== undefined && settings.keyFile !== undefined) {
    tls.cert = readPem(settings.certFile, names.certFile, "CERTIFICATE");
    tls.key = readPem(settings.keyFile, names.keyFile, "PRIVATE KEY");
  }
  if (settings.pinSha256 !== undefined) {
    const pin = normalizeFingerprint(settings.pinSha256);
    if (pin === undefined)
      throw new ClientTlsError(`${names.pinSha256}: expected a SHA-256 fingerprint (64 hex digits, colons allowed), got ${JSON.stringify(settings.pinSha256)}`);
    // Runs after the chain has verified: the pin narrows what is trusted, it never widens it.
    tls.checkServerIdentity = (host: string, cert: PeerCertificate) => {
      const wrongHost = checkServerIdentity(host, cert);
      if (wrongHost !== undefined) return wrongHost;
      const got = normalizeFingerprint(cert.fingerprint256 ?? "");
      return got === pin ? undefined : new Error(`the reconciler's certificate has sha256 ${cert.fingerprint256}, not the one pinned with ${names.pinSha256}`);
    };
  }
  return Object.keys(tls).length === 0 ? undefined : tls;
}

/**
 * A fetch that uses these settings, keeping its connections (a pin's check then runs once per
 * connection, not per request). Plain `fetch` when there is nothing to set.
 */
export function clientFetch(
  settings: ClientTlsSettings,
  names?: Record<keyof ClientTlsSettings, string>,
): (input: string, init?: RequestInit) => Promise<Response> {
  const tls = fetchTls(settings, names);
  if (tls === undefined) return (input, init) => fetch(input, init);
  const session = new Bun.FetchSession({ tls });
  return (input, init) => session.fetch(input, init);
}

function envNames(): Record<keyof ClientTlsSettings, string> {
  return {
    caFile: `$${CLIENT_TLS_ENV.caFile}`,
    pinSha256: `$${CLIENT_TLS_ENV.pinSha256}`,
    certFile: `$${CLIENT_TLS_ENV.certFile}`,
    keyFile: `$${CLIENT_TLS_ENV.keyFile}`,
  };
}

function readPem(path: string, name: string, kind: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ClientTlsError(`${name}: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!text.includes(`-----BEGIN `) || !text.includes(kind.split(" ").at(-1) ?? kind))
    throw new ClientTlsError(`${name}: ${path} holds no PEM ${kind.toLowerCase()}`);
  return text;
}
