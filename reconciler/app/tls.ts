// The reconciler's TLS material: server.tls.cert_file and key_file (and client_ca_file for
// mTLS), read and checked together, so a listener never starts, or reloads, with a key that
// does not match its certificate or a file half written. `config check` and `serve` read them
// with the same function, and the serve loop re-reads them when a file changes on disk.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import type { ServerTlsConfig } from "../../schema/config.ts";

/** A problem with one of the files; the message starts with its config key. */
export class TlsError extends Error {
  override readonly name = "TlsError";
}

export interface TlsMaterial {
  cert: string;
  key: string;
  /** Client CAs (mTLS), when configured. */
  ca?: string;
  /** SHA-256 of the leaf certificate (DER), `AA:BB:…`: what `navarch-node --pin-sha256` takes. */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
  /** mtime and size of each file, to notice a change. */
  stamp: string;
}

/** Reads and checks the files; throws a TlsError naming the key (`server.tls.cert_file: …`). */
export function loadTlsMaterial(tls: ServerTlsConfig): TlsMaterial {
  const cert = readPem("cert_file", tls.cert_file);
  const key = readPem("key_file", tls.key_file);
  const ca = tls.client_ca_file === undefined ? undefined : readPem("client_ca_file", tls.client_ca_file);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsError(`server.tls.cert_file: ${tls.cert_file} holds no PEM certificate (${message(err)})`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsError(`server.tls.key_file: ${tls.key_file} holds no unencrypted PEM private key (${message(err)})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsError(`server.tls.key_file: ${tls.key_file} is not the key of the certificate in ${tls.cert_file} (${leaf.subject.replaceAll("\n", ", ")})`);
  }
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new TlsError(`server.tls.client_ca_file: ${tls.client_ca_file} holds no PEM certificate (${message(err)})`);
    }
  }
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    fingerprint256: leaf.fingerprint256,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    stamp: tlsStamp(tls),
  };
}

/** Changes when any of the files does (mtime, size, inode): cheap enough to poll. */
export function tlsStamp(tls: ServerTlsConfig): string {
  return [tls.cert_file, tls.key_file, tls.client_ca_file]
    .filter((f): f is string => f !== undefined)
    .map((f) => {
      try {
        const st = statSync(f);
        return `${st.ino}:${st.mtimeMs}:${st.size}`;
      } catch {
        return "missing";
      }
    })
    .join("/");
}

/** Why no client would accept the certificate now (expired, or not valid yet); undefined when it is valid. */
export function notValidNow(material: TlsMaterial, now: number): string | undefined {
  if (material.notAfter.getTime() < now)
    return `server.tls.cert_file: the certificate expired on ${material.notAfter.toISOString()}; every client would refuse it`;
  if (material.notBefore.getTime() > now)
    return `server.tls.cert_file: the certificate is not valid before ${material.notBefore.toISOString()}; every client would refuse it`;
  return undefined;
}

/** Warnings for a certificate that works today but not for long. */
export function expiryWarning(material: TlsMaterial, now: number): string | undefined {
  const days = (material.notAfter.getTime() - now) / 86_400_000;
  if (days < 0) return `server.tls.cert_file: the certificate expired on ${material.notAfter.toISOString()}; agents and the CLI refuse it`;
  const whole = Math.floor(days);
  if (days < 14) return `server.tls.cert_file: the certificate expires on ${material.notAfter.toISOString()} (in ${whole} day${whole === 1 ? "" : "s"})`;
  return undefined;
}

function readPem(key: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "";
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "cannot be read by this user" : message(err);
    throw new TlsError(`server.tls.${key}: ${path} ${why}`);
  }
  if (!text.includes("-----BEGIN ")) throw new TlsError(`server.tls.${key}: ${path} is not a PEM file (no -----BEGIN line)`);
  return text;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
