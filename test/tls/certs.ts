// Throwaway certificates for the TLS tests, made with openssl at test time in a temp
// directory (never committed): a CA, server certificates for given IPs and names, client
// certificates for mTLS. EC P-256 keys: fast to make, and what production certificates use.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const ENSURE = new URL("./ensure-tls-tools.sh", import.meta.url).pathname;

/** Installs openssl, curl and iproute2 when missing, or throws with the reason (never skips). */
export function ensureTlsTools(): void {
  const r = Bun.spawnSync(["sh", ENSURE], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`test/tls/ensure-tls-tools.sh failed (${r.exitCode}): ${r.stdout.toString()}${r.stderr.toString()}`);
}

function openssl(args: string[], cwd: string): string {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

export interface Issued {
  cert: string;
  key: string;
  /** `AA:BB:…`, as openssl x509 -fingerprint -sha256 prints it. */
  fingerprint256: string;
}

export class TestCa {
  readonly cert: string;
  private readonly key: string;
  private serial = 0;

  constructor(
    readonly dir: string,
    readonly name = "navarch-test-ca",
  ) {
    this.cert = join(dir, `${name}.pem`);
    this.key = join(dir, `${name}.key`);
    openssl(
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        this.key,
        "-out",
        this.cert,
        "-days",
        "3",
        "-subj",
        `/CN=${name}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ],
      dir,
    );
  }

  /** A server certificate for these IP addresses and DNS names (the first is its CN). */
  server(name: string, sans: { ips?: string[]; dns?: string[] }, out = name): Issued {
    const alt = [...(sans.ips ?? []).map((ip) => `IP:${ip}`), ...(sans.dns ?? []).map((d) => `DNS:${d}`)].join(",");
    return this.issue(out, name, `subjectAltName=${alt}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  }

  /** A client certificate (mTLS). */
  client(name: string): Issued {
    return this.issue(name, name, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
  }

  private issue(out: string, cn: string, ext: string): Issued {
    const key = join(this.dir, `${out}.key`);
    const csr = join(this.dir, `${out}.csr`);
    const cert = join(this.dir, `${out}.pem`);
    const extFile = join(this.dir, `${out}.ext`);
    writeFileSync(extFile, ext);
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`], this.dir);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        this.cert,
        "-CAkey",
        this.key,
        "-set_serial",
        String(++this.serial + Date.now()),
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        extFile,
      ],
      this.dir,
    );
    return { cert, key, fingerprint256: fingerprint(cert) };
  }
}

export function fingerprint(certFile: string): string {
  const out = Bun.spawnSync(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", certFile], { stdout: "pipe" }).stdout.toString();
  return out.trim().split("=")[1] ?? "";
}

export function pem(path: string): string {
  return readFileSync(path, "utf8");
}
