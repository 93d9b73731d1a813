// Throwaway certificates for the TLS tests, made with openssl at test time in a temp
// directory (never committed): a CA, server certificates for given IPs and names, client
// certificates for mTLS. EC P-256 keys: fast to make, and what production certificates use.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
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

  /**
   * A server certificate valid only from `notBefore` to `notAfter` (`YYYYMMDDHHMMSSZ`): one that
   * expired, or one not valid yet. Through `openssl ca`, the one OpenSSL 3.0 command that takes
   * dates (`x509 -req` takes only a positive number of days from now).
   */
  serverValid(name: string, sans: { ips?: string[]; dns?: string[] }, notBefore: string, notAfter: string, out = name): Issued {
    const alt = [...(sans.ips ?? []).map((ip) => `IP:${ip}`), ...(sans.dns ?? []).map((d) => `DNS:${d}`)].join(",");
    const key = join(this.dir, `${out}.key`);
    const csr = join(this.dir, `${out}.csr`);
    const cert = join(this.dir, `${out}.pem`);
    const db = join(this.dir, `${out}.ca`);
    mkdirSync(db, { recursive: true });
    writeFileSync(join(db, "index.txt"), "");
    const serial = (++this.serial + Date.now()).toString(16);
    writeFileSync(join(db, "serial"), `${serial.length % 2 === 0 ? serial : `0${serial}`}\n`); // whole bytes of hex
    const config = join(db, "ca.cnf");
    writeFileSync(
      config,
      `[ca]\ndefault_ca = d\n[d]\ndatabase = ${db}/index.txt\nnew_certs_dir = ${db}\nserial = ${db}/serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n[ext]\nsubjectAltName=${alt}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
    );
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], this.dir);
    openssl(
      [
        "ca",
        "-batch",
        "-config",
        config,
        "-cert",
        this.cert,
        "-keyfile",
        this.key,
        "-in",
        csr,
        "-out",
        cert,
        "-startdate",
        notBefore,
        "-enddate",
        notAfter,
        "-notext",
        "-extensions",
        "ext",
      ],
      this.dir,
    );
    return { cert, key, fingerprint256: fingerprint(cert) };
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
