// Real OpenSSH servers on 127.0.0.1 for the bootstrap tests: Debian's sshd started as a
// non-daemon (`sshd -D -e -f CONFIG`) on a free port, with a throwaway host key and an
// authorized_keys for a throwaway client key, running as the current user (root in CI).
// ensureSshd() installs openssh-server first when it is missing (test/ssh/ensure-sshd.sh).
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "../support.ts";
import { waitFor } from "../support.ts";

const ENSURE = new URL("./ensure-sshd.sh", import.meta.url).pathname;

/** Installs what the SSH tests need, or throws with the reason (never skips). */
export function ensureSshd(): void {
  const r = Bun.spawnSync(["sh", ENSURE], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`test/ssh/ensure-sshd.sh failed (${r.exitCode}): ${r.stdout.toString()}${r.stderr.toString()}`);
  // sshd running as root insists on its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
}

export interface KeyPair {
  privateKeyPath: string;
  privateKey: string;
  publicKey: string;
  /** `SHA256:…` as ssh-keygen -l prints it. */
  fingerprint: string;
}

/** A fresh ed25519 key pair (no passphrase). */
export function newKeyPair(path: string, comment = "navarch-test"): KeyPair {
  rmSync(path, { force: true });
  rmSync(`${path}.pub`, { force: true });
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
  const fp = Bun.spawnSync(["ssh-keygen", "-l", "-E", "sha256", "-f", `${path}.pub`], { stdout: "pipe" }).stdout.toString();
  return {
    privateKeyPath: path,
    privateKey: readFileSync(path, "utf8"),
    publicKey: readFileSync(`${path}.pub`, "utf8").trim(),
    fingerprint: fp.split(" ")[1] ?? "",
  };
}

export interface SshdOptions {
  /** Where its config, host key and log live. */
  dir: string;
  /** Public keys allowed to log in. */
  authorizedKeys: string[];
  port?: number;
  /** Variables every session gets (sshd_config SetEnv). */
  env?: Record<string, string>;
}

export class Sshd {
  private proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
  private output = "";
  hostKey: KeyPair;
  readonly port: number;
  readonly user = currentUser();

  private constructor(private readonly opts: SshdOptions) {
    this.port = opts.port ?? freePort();
    mkdirSync(opts.dir, { recursive: true });
    this.hostKey = newKeyPair(join(opts.dir, "host_ed25519"), "navarch-test-host");
  }

  static async start(opts: SshdOptions): Promise<Sshd> {
    const sshd = new Sshd(opts);
    await sshd.run();
    return sshd;
  }

  /** Allows one more key to log in, as a cloud installs the key a launch names (sshd reads the file at each login). */
  authorize(publicKey: string): void {
    appendFileSync(join(this.opts.dir, "authorized_keys"), `${publicKey}\n`);
  }

  /** Everything sshd printed (it logs to stderr with -e). */
  get log(): string {
    return this.output;
  }

  private async run(): Promise<void> {
    const { dir } = this.opts;
    const authorized = join(dir, "authorized_keys");
    writeFileSync(authorized, `${this.opts.authorizedKeys.join("\n")}\n`);
    chmodSync(authorized, 0o600);
    const env = Object.entries(this.opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const config = join(dir, "sshd_config");
    writeFileSync(
      config,
      [
        `Port ${this.port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${this.hostKey.privateKeyPath}`,
        `AuthorizedKeysFile ${authorized}`,
        `AllowUsers ${this.user}`,
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "PidFile none",
        "LogLevel ERROR",
        ...(env.length > 0 ? [`SetEnv ${env.join(" ")}`] : []),
        "",
      ].join("\n"),
    );
    this.output = "";
    const proc = Bun.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", config], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.proc = proc;
    void this.collect(proc.stdout);
    void this.collect(proc.stderr);
    await waitFor(`sshd on 127.0.0.1:${this.port}`, async () => {
      if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}: ${this.output}`);
      return (await canConnect(this.port)) ? true : undefined;
    });
  }

  /** Stops it; a later restart() serves the same port. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    this.proc = undefined;
    proc.kill("SIGTERM");
    await proc.exited;
  }

  /** Starts again on the same port, with a new host key when asked (a "rebuilt" machine). */
  async restart(opts: { newHostKey?: boolean } = {}): Promise<void> {
    await this.stop();
    if (opts.newHostKey) this.hostKey = newKeyPair(join(this.opts.dir, "host_ed25519"), "navarch-test-host");
    await this.run();
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const chunk of stream) this.output += new TextDecoder().decode(chunk);
  }
}

/** The login name of this process (Bun's os.userInfo() can say "unknown"). */
export function currentUser(): string {
  const name = Bun.spawnSync(["id", "-un"], { stdout: "pipe" }).stdout.toString().trim();
  if (name === "") throw new Error("id -un printed nothing: cannot tell which user sshd should let in");
  return name;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Kills the process whose pid a file holds (an agent the installer started); quiet when gone. */
export function killPidFile(path: string): void {
  if (!existsSync(path)) return;
  const pid = Number(readFileSync(path, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}
