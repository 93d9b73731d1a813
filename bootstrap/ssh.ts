// The SSH runner for setup_commands (ssh2, pure JS). One connection per bootstrap:
//
//   1. Wait until the host is reachable: connect attempts with backoff until a deadline
//      (a new machine's sshd comes up some time after the provider says "running", and
//      cloud-init may install the key after sshd starts). Retrying is safe here: nothing
//      has run yet.
//   2. Host key pinning: the key must match the fingerprints the caller knows (from the
//      provider, or recorded on first contact); a different key is refused at once, never
//      retried. On first contact the key is reported through `onHostKey` before any command
//      runs, so the caller can record it first.
//   3. Each command runs in its own exec channel, in order, with a per-command timeout;
//      the first one that fails (non-zero exit, signal, timeout) ends the run. Commands
//      are never retried: they may not be idempotent.
//
// Secrets (the bootstrap token, the private key) are masked in every command, output and
// error this module returns.
import { createHash } from "node:crypto";
import { Client, utils, type ClientChannel, type ConnectConfig } from "ssh2";
import { shellEscape } from "../schema/template.ts";
import { textSuffix } from "../schema/text.ts";

export interface BootstrapTimeouts {
  /** How long to keep trying to reach the host (connect attempts with backoff). */
  reachableMs: number;
  /** One connection attempt: TCP, handshake and authentication. */
  connectMs: number;
  /** Each command, from its start to its exit. */
  commandMs: number;
}

export const DEFAULT_TIMEOUTS: BootstrapTimeouts = { reachableMs: 5 * 60_000, connectMs: 20_000, commandMs: 10 * 60_000 };

export interface BootstrapRequest {
  host: string;
  port: number;
  user: string;
  /** OpenSSH or PEM private key text. */
  privateKey: string | Buffer;
  /**
   * Fingerprints the host key must match (OpenSSH `SHA256:…`, bare base64 SHA256, or MD5
   * `aa:bb:…`). Absent or empty: first contact, any key is accepted and returned.
   */
  knownFingerprint?: string | readonly string[];
  /** Already rendered; each runs through the login shell of `user`. */
  commands: readonly string[];
  timeouts?: Partial<BootstrapTimeouts>;
  /** Secret values to replace with `***` wherever they would appear in the result. */
  mask: readonly string[];
  /** Called once the host key is verified (or first seen), before any command runs. */
  onHostKey?: (fingerprint: string) => void | Promise<void>;
  /** Cancels the run (the connection is closed). */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Per stream and step, the last this-many bytes are kept (default 64 KiB). */
  maxOutputBytes?: number;
}

export interface BootstrapStep {
  /** As given, with secrets masked. */
  command: string;
  /** Null when the command did not exit by itself (timed out, killed by a signal, channel lost). */
  exitCode: number | null;
  /** The signal that ended it, when one did. */
  signal?: string;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
}

export interface BootstrapResult {
  ok: boolean;
  /** The host key seen (OpenSSH `SHA256:…` form), once a handshake got that far. */
  hostKeyFingerprint?: string;
  /** The commands that ran (the failing one last); commands after a failure are not run. */
  steps: BootstrapStep[];
  /** Why it failed, in one line (secrets masked). */
  error?: string;
  /** Connection attempts made. */
  attempts: number;
}

/** Raised for a host key that does not match the pinned one: never retried. */
export class HostKeyMismatchError extends Error {
  override readonly name = "HostKeyMismatchError";
  constructor(
    readonly address: string,
    readonly expected: readonly string[],
    readonly got: string,
  ) {
    super(
      `host key of ${address} changed: expected ${expected.join(" or ")}, got ${got}; refusing to connect ` +
        "(if this machine was really rebuilt, its instance is new: terminate it and let the reconciler launch another)",
    );
  }
}

// ───────────────────────────── fingerprints ─────────────────────────────

/** OpenSSH's `SHA256:<base64, no padding>` of a raw public key blob. */
export function sha256Fingerprint(key: Buffer): string {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** OpenSSH's legacy `MD5:aa:bb:…` form. */
export function md5Fingerprint(key: Buffer): string {
  return `MD5:${createHash("md5")
    .update(key)
    .digest("hex")
    .replace(/(..)(?!$)/g, "$1:")}`;
}

/**
 * One fingerprint in the form we compare: `SHA256:<base64>` (padding dropped) or
 * `MD5:<hex pairs>` (lower case). Accepts what ssh-keygen -l and providers print.
 */
export function normalizeFingerprint(text: string): string {
  const s = text.trim();
  const md5 = /^(?:MD5:)?((?:[0-9a-fA-F]{2}:){15}[0-9a-fA-F]{2})$/.exec(s);
  if (md5) return `MD5:${md5[1]!.toLowerCase()}`;
  const sha = /^(?:SHA256:)?([A-Za-z0-9+/]{43})=?$/.exec(s);
  if (sha) return `SHA256:${sha[1]}`;
  return s;
}

/** Whether a host key (raw blob) matches any of the known fingerprints. */
export function keyMatches(key: Buffer, known: readonly string[]): boolean {
  const mine = new Set([sha256Fingerprint(key), md5Fingerprint(key)]);
  return known.some((k) => mine.has(normalizeFingerprint(k)));
}

/**
 * The OpenSSH public key line (`ssh-ed25519 AAAA… comment`) of a private key: what a
 * provider installs for the bootstrap user at launch (LaunchRequest.sshPublicKey).
 */
export function publicKeyFromPrivate(privateKey: string | Buffer, comment = "navarch"): string {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error) throw new Error(`cannot read the private key: ${parsed.message}`);
  return `${parsed.type} ${parsed.getPublicSSH().toString("base64")} ${comment}`;
}

// ───────────────────────────── masking ─────────────────────────────

/** Replaces every secret (and each long line of a multi-line secret, like a PEM key) with `***`. */
export function masker(secrets: readonly (string | undefined)[]): (text: string) => string {
  const needles = new Set<string>();
  for (const secret of secrets) {
    if (secret === undefined) continue;
    const s = secret.trim();
    if (s.length >= 6) needles.add(s);
    if (s.includes("\n")) for (const line of s.split("\n")) if (line.trim().length >= 16) needles.add(line.trim());
  }
  // Longest first: a secret that contains another is masked whole.
  const ordered = [...needles].sort((a, b) => b.length - a.length);
  return (text) => ordered.reduce((out, needle) => out.replaceAll(needle, "***"), text);
}

// ───────────────────────────── addresses ─────────────────────────────

/**
 * Where to SSH to, from a provider's instance address: `host`, `host:port`, `[v6]` or
 * `[v6]:port` (port 22 when none is given; a bare IPv6 address is taken as a host).
 */
export function parseSshAddress(address: string, defaultPort = 22): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(address);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : defaultPort };
  const hostPort = /^([^:]+):(\d{1,5})$/.exec(address);
  if (hostPort) return { host: hostPort[1]!, port: Number(hostPort[2]) };
  return { host: address, port: defaultPort };
}

export function formatAddress(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

// ───────────────────────────── the run ─────────────────────────────

export async function runBootstrap(req: BootstrapRequest): Promise<BootstrapResult> {
  const timeouts: BootstrapTimeouts = { ...DEFAULT_TIMEOUTS, ...req.timeouts };
  const privateKey = typeof req.privateKey === "string" ? req.privateKey : req.privateKey.toString("utf8");
  const mask = masker([...req.mask, privateKey]);
  const log = (line: string) => req.log?.(mask(line));
  const address = formatAddress(req.host, req.port);
  const known = (typeof req.knownFingerprint === "string" ? [req.knownFingerprint] : (req.knownFingerprint ?? [])).filter((k) => k.trim() !== "");
  const steps: BootstrapStep[] = [];
  const result = (ok: boolean, attempts: number, fingerprint: string | undefined, error?: string): BootstrapResult => ({
    ok,
    ...(fingerprint === undefined ? {} : { hostKeyFingerprint: fingerprint }),
    steps,
    ...(error === undefined ? {} : { error: mask(error) }),
    attempts,
  });

  const connected = await connectWithRetry(req, privateKey, known, timeouts, address, log);
  if (!connected.ok) return result(false, connected.attempts, connected.fingerprint, connected.error);
  const { client, fingerprint, attempts } = connected;
  try {
    if (req.onHostKey !== undefined) {
      try {
        await req.onHostKey(fingerprint);
      } catch (err) {
        return result(false, attempts, fingerprint, `could not record the host key of ${address}: ${message(err)}`);
      }
    }
    for (const [i, command] of req.commands.entries()) {
      if (req.signal?.aborted) return result(false, attempts, fingerprint, "cancelled");
      const step = await runCommand(client, command, timeouts.commandMs, req.maxOutputBytes ?? 64 * 1024, req.signal);
      const masked: BootstrapStep = { ...step, command: mask(command), stdout: mask(step.stdout), stderr: mask(step.stderr) };
      steps.push(masked);
      const what = `step ${i + 1}/${req.commands.length}`;
      if (step.timedOut) return result(false, attempts, fingerprint, `${what} timed out after ${seconds(timeouts.commandMs)}${tail(masked)}`);
      if (step.exitCode !== 0) {
        const how =
          step.exitCode === null
            ? step.signal
              ? `was killed by SIG${step.signal}`
              : "ended without an exit status (channel lost)"
            : `exited ${step.exitCode}`;
        return result(false, attempts, fingerprint, `${what} ${how}${tail(masked)}`);
      }
      log(`${address}: ${what} done in ${Math.round(step.durationMs)} ms`);
    }
    return result(true, attempts, fingerprint);
  } finally {
    client.end();
  }
}

type Connected = { ok: true; client: Client; fingerprint: string; attempts: number } | { ok: false; error: string; fingerprint?: string; attempts: number };

async function connectWithRetry(
  req: BootstrapRequest,
  privateKey: string,
  known: readonly string[],
  timeouts: BootstrapTimeouts,
  address: string,
  log: (line: string) => void,
): Promise<Connected> {
  const deadline = Date.now() + timeouts.reachableMs;
  let attempts = 0;
  let delay = 250;
  let lastError = "no attempt made";
  // On first contact, the key one attempt saw is pinned for the next attempts too (an
  // attempt can get past the key exchange and still fail, e.g. before cloud-init installed
  // the login key): a different key on a retry is refused like any other change.
  let pinned = known;
  for (;;) {
    if (req.signal?.aborted) return { ok: false, error: "cancelled", attempts };
    attempts++;
    const left = deadline - Date.now();
    const outcome = await connectOnce(req, privateKey, pinned, Math.max(1000, Math.min(timeouts.connectMs, left)), address);
    if (!outcome.ok && pinned.length === 0 && outcome.fingerprint !== undefined) pinned = [outcome.fingerprint];
    if (outcome.ok) {
      if (attempts > 1) log(`${address}: reachable after ${attempts} attempts`);
      return { ...outcome, attempts };
    }
    // Never retry what retrying cannot fix: a different host key, a key we cannot parse.
    if (outcome.fatal) return { ok: false, error: outcome.error, ...(outcome.fingerprint ? { fingerprint: outcome.fingerprint } : {}), attempts };
    lastError = outcome.error;
    const wait = Math.min(delay, deadline - Date.now());
    if (wait <= 0) break;
    await sleep(wait / 2 + Math.random() * (wait / 2), req.signal);
    delay = Math.min(delay * 2, 5000);
  }
  return {
    ok: false,
    error: `${req.user}@${address} not reachable over SSH within ${seconds(timeouts.reachableMs)} (${attempts} attempts; last: ${lastError})`,
    attempts,
  };
}

type Attempt = { ok: true; client: Client; fingerprint: string } | { ok: false; fatal: boolean; error: string; fingerprint?: string };

function connectOnce(req: BootstrapRequest, privateKey: string, known: readonly string[], timeoutMs: number, address: string): Promise<Attempt> {
  return new Promise((resolve) => {
    const client = new Client();
    let seen: string | undefined;
    let mismatch: HostKeyMismatchError | undefined;
    let settled = false;
    const settle = (a: Attempt) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onAbort);
      if (!a.ok) client.end();
      resolve(a);
    };
    const onAbort = () => settle({ ok: false, fatal: true, error: "cancelled" });
    req.signal?.addEventListener("abort", onAbort);
    // ssh2's readyTimeout covers the handshake; this also covers a TCP connect that hangs.
    const timer = setTimeout(() => settle({ ok: false, fatal: false, error: `no SSH handshake within ${seconds(timeoutMs)}` }), timeoutMs + 500);
    client.on("ready", () => settle({ ok: true, client, fingerprint: seen ?? "unknown" }));
    client.on("error", (err: Error & { level?: string }) => {
      if (mismatch) return settle({ ok: false, fatal: true, error: mismatch.message, fingerprint: mismatch.got });
      settle({ ok: false, fatal: false, error: describeConnectError(err), ...(seen ? { fingerprint: seen } : {}) });
    });
    client.on("close", () => settle({ ok: false, fatal: false, error: "connection closed during the handshake", ...(seen ? { fingerprint: seen } : {}) }));
    const config: ConnectConfig = {
      host: req.host,
      port: req.port,
      username: req.user,
      privateKey,
      readyTimeout: timeoutMs,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      // Called with the raw host key blob (no hostHash set).
      hostVerifier: (key: Buffer) => {
        seen = sha256Fingerprint(key);
        if (known.length === 0 || keyMatches(key, known)) return true;
        mismatch = new HostKeyMismatchError(address, known.map(normalizeFingerprint), seen);
        return false;
      },
    };
    try {
      client.connect(config);
    } catch (err) {
      // Synchronous throws are configuration problems (an unparsable key): not worth retrying.
      settle({ ok: false, fatal: true, error: `cannot connect to ${address}: ${message(err)}` });
    }
  });
}

function describeConnectError(err: Error & { level?: string; code?: string }): string {
  if (err.level === "client-authentication") return `authentication as this user with the configured key failed (${err.message})`;
  if (err.code) return `${err.code}: ${err.message}`;
  return err.message;
}

/**
 * Runs one command. The remote side runs it under `timeout` when it has it (coreutils,
 * busybox), a little after our own deadline, so a hung command and everything it started
 * are killed on the machine too; closing a channel alone does not stop a command that
 * has no terminal.
 */
function runCommand(client: Client, command: string, timeoutMs: number, maxBytes: number, signal?: AbortSignal): Promise<Omit<BootstrapStep, "command">> {
  const remoteSeconds = Math.ceil(timeoutMs / 1000) + 2;
  const run = `"\${SHELL:-/bin/sh}" -c ${shellEscape(command)}`;
  const wrapped = `if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 ${remoteSeconds} ${run}; else exec ${run}; fi`;
  const started = performance.now();
  return new Promise((resolve) => {
    const stdout = new Tail(maxBytes);
    const stderr = new Tail(maxBytes);
    let exitCode: number | null = null;
    let exitSignal: string | undefined;
    let timedOut = false;
    let channel: ClientChannel | undefined;
    let done = false;
    const finish = (extraErr?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (extraErr) stderr.push(Buffer.from(`${stderr.length > 0 ? "\n" : ""}[navarch] ${extraErr}\n`));
      resolve({
        exitCode,
        ...(exitSignal ? { signal: exitSignal } : {}),
        stdout: stdout.text(),
        stderr: stderr.text(),
        durationMs: performance.now() - started,
        timedOut,
      });
    };
    const stop = () => {
      try {
        channel?.signal("KILL");
      } catch {
        // not every server accepts signals; the remote timeout still applies
      }
      channel?.close();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
      finish(`timed out after ${seconds(timeoutMs)}; stopped`);
    }, timeoutMs);
    const onAbort = () => {
      stop();
      finish("cancelled");
    };
    signal?.addEventListener("abort", onAbort);
    client.exec(wrapped, (err, stream) => {
      if (err) return finish(`could not start the command: ${err.message}`);
      channel = stream;
      stream.on("data", (d: Buffer) => stdout.push(d));
      stream.stderr.on("data", (d: Buffer) => stderr.push(d));
      stream.on("exit", (code: number | null, sig?: string) => {
        if (typeof code === "number") exitCode = code;
        if (sig) exitSignal = sig;
      });
      stream.on("close", () => finish());
    });
  });
}

/** Keeps the last `max` bytes of a stream, noting how much was dropped. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;
  constructor(private readonly max: number) {}
  get length(): number {
    return this.size;
  }
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.max && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      const excess = this.size - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }
  text(): string {
    const body = Buffer.concat(this.chunks).toString("utf8");
    return this.dropped > 0 ? `[… ${this.dropped} earlier bytes not kept]\n${body}` : body;
  }
}

/** The end of a failed step's output for the one-line error (the whole output is in the step). */
function tail(step: BootstrapStep): string {
  const stderr = step.stderr.replace(/\[navarch\][^\n]*\n?$/, "").trim();
  const text = stderr || step.stdout.trim();
  if (text === "") return "";
  const last = text.split("\n").slice(-3).join(" | ");
  return `: ${last.length > 300 ? `…${textSuffix(last, 300)}` : last}`;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}
