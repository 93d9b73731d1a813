// One HTTP or HTTPS listener of the reconciler. With TLS it serves only TLS (a plain request
// on that port gets no HTTP answer), optionally verifies client certificates (mTLS), and
// re-reads the certificate and key when either file changes: Bun cannot swap a running
// server's certificate, so a second server with the new files starts on the same port
// (SO_REUSEPORT) and the old one stops accepting, finishing the requests it has.
import type { Server } from "bun";
import type { ServerTlsConfig } from "../../schema/config.ts";
import { TlsError, loadTlsMaterial, notValidNow, tlsStamp, type TlsMaterial } from "./tls.ts";

export class ListenError extends Error {
  override readonly name = "ListenError";
}

export interface ListenerOptions {
  host: string;
  port: number;
  fetch: (request: Request, server: Server<undefined>) => Response | Promise<Response>;
  tls?: ServerTlsConfig;
  /** The config key the address came from, for messages (`server.address`). */
  key: string;
  log: (line: string) => void;
  /** How often the TLS files are looked at (default 2 s). */
  tlsPollMs?: number;
  /** Told of each reload refused (the files changed but will not do); the served certificate stays. */
  onReloadRefused?: () => void;
}

export class Listener {
  private server: Server<undefined>;
  private material: TlsMaterial | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The stamp of files already found unusable, so a broken file is logged once, not every poll. */
  private refused: string | undefined;
  readonly port: number;

  private constructor(private readonly opts: ListenerOptions) {
    this.material = opts.tls === undefined ? undefined : loadTlsMaterial(opts.tls);
    if (this.material !== undefined && opts.port !== 0) assertPortFree(opts);
    this.server = this.bind(opts.port);
    this.port = this.server.port ?? opts.port;
    if (opts.tls !== undefined) this.timer = setInterval(() => this.reloadIfChanged(), opts.tlsPollMs ?? 2000);
  }

  /** Starts listening; a TlsError or ListenError (one line, naming the config key) when it cannot. */
  static open(opts: ListenerOptions): Listener {
    return new Listener(opts);
  }

  get url(): string {
    const host = this.opts.host.includes(":") ? `[${this.opts.host}]` : this.opts.host;
    return `${this.material === undefined ? "http" : "https"}://${host}:${this.port}`;
  }

  /** SHA-256 of the certificate served now (`AA:BB:…`), with TLS. */
  get fingerprint256(): string | undefined {
    return this.material?.fingerprint256;
  }

  async stop(closeActiveConnections = true): Promise<void> {
    clearInterval(this.timer);
    await this.server.stop(closeActiveConnections);
  }

  private bind(port: number): Server<undefined> {
    const { host, fetch } = this.opts;
    const m = this.material;
    try {
      return Bun.serve({
        hostname: host,
        port,
        fetch,
        ...(m === undefined
          ? {}
          : {
              // The reload starts its server beside this one on the same port.
              reusePort: true,
              tls: { cert: m.cert, key: m.key, ...(m.ca === undefined ? {} : { ca: m.ca, requestCert: true, rejectUnauthorized: true }) },
            }),
      });
    } catch (err) {
      throw new ListenError(`cannot listen on ${host}:${port}: ${err instanceof Error ? err.message : String(err)} (set ${this.opts.key})`);
    }
  }

  /** New files that load and match replace the served ones; anything else keeps the old ones, said once. */
  private reloadIfChanged(): void {
    const tls = this.opts.tls;
    if (tls === undefined || this.material === undefined) return;
    const stamp = tlsStamp(tls);
    if (stamp === this.material.stamp || stamp === this.refused) return;
    let next: TlsMaterial;
    try {
      next = loadTlsMaterial(tls);
      // Expired or not valid yet: every client would fail, where the one served still works.
      const invalid = notValidNow(next, Date.now());
      if (invalid !== undefined) throw new TlsError(invalid);
    } catch (err) {
      // Often a renewal half written (the certificate before its key): the next change retries.
      this.refused = stamp;
      this.opts.log(
        `tls: not reloading: ${err instanceof TlsError ? err.message : String(err)}; still serving the certificate ${this.material.fingerprint256}`,
      );
      this.opts.onReloadRefused?.();
      return;
    }
    const previous = { server: this.server, material: this.material };
    this.material = next;
    try {
      this.server = this.bind(this.port);
    } catch (err) {
      this.material = previous.material;
      this.refused = stamp;
      this.opts.log(`tls: not reloading: ${err instanceof Error ? err.message : String(err)}`);
      this.opts.onReloadRefused?.();
      return;
    }
    this.refused = undefined;
    void previous.server.stop(false);
    this.opts.log(`tls: reloaded ${tls.cert_file}: serving certificate sha256 ${next.fingerprint256}, valid until ${next.notAfter.toISOString()}`);
  }
}

/**
 * SO_REUSEPORT would let a second reconciler share a port silently (the kernel splitting
 * connections between them): refuse a port that is taken, as a plain listener would.
 */
function assertPortFree(opts: ListenerOptions): void {
  try {
    Bun.listen({ hostname: opts.host, port: opts.port, socket: { data() {} } }).stop(true);
  } catch (err) {
    throw new ListenError(`cannot listen on ${opts.host}:${opts.port}: ${err instanceof Error ? err.message : String(err)} (set ${opts.key})`);
  }
}
