// A test fleet of compiled binaries: dist/navarch and dist/navarch-node copied into
// a temp directory with no node_modules anywhere above it, started with a clean
// environment, talking over loopback. Every process it starts is killed by stop().
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { LocalProvider } from "../reconciler/providers/local/provider.ts";
import { ensureBinaries } from "./prerequisites.ts";
import { REPO_ROOT, freePort, tempDir, waitFor } from "./support.ts";

export type Proc = Subprocess<"ignore", "pipe", "pipe">;

export class CompiledFleet {
  readonly token = "compiled-test-token-0123456789";
  readonly port = freePort();
  readonly procs: Proc[] = [];
  /** Everything the processes printed, by process label, for failure messages. */
  readonly output = new Map<string, string>();

  private constructor(
    readonly dir: string,
    readonly navarch: string,
    readonly navarchNode: string,
  ) {}

  static async create(): Promise<CompiledFleet> {
    const built = await ensureBinaries();
    const dir = tempDir("navarch-compiled-");
    if (existsSync(join(dir, "node_modules")) || dir.startsWith(REPO_ROOT)) throw new Error(`${dir} is not isolated from node_modules`);
    const fleet = new CompiledFleet(dir, join(dir, "navarch"), join(dir, "navarch-node"));
    copyFileSync(built.navarch, fleet.navarch);
    copyFileSync(built.navarchNode, fleet.navarchNode);
    Bun.spawnSync(["chmod", "+x", fleet.navarch, fleet.navarchNode]);
    return fleet;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Writes navarch.yaml: the server on this fleet's port, plus `extra` YAML appended. */
  writeConfig(extra = "", heartbeat = "1s"): string {
    const path = join(this.dir, "navarch.yaml");
    writeFileSync(path, `server:\n  address: 127.0.0.1:${this.port}\n  heartbeat_interval: ${heartbeat}\n  data_dir: ${this.dir}/data\n${extra}`);
    return path;
  }

  start(label: string, cmd: string[], env: Record<string, string> = {}): Proc {
    const proc = Bun.spawn(cmd, {
      cwd: this.dir,
      // A clean environment: nothing from the repo (no NODE_PATH, no bun on PATH) leaks in.
      env: { PATH: "/usr/bin:/bin", HOME: this.dir, TMPDIR: this.dir, ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.procs.push(proc);
    void this.collect(label, proc.stdout);
    void this.collect(label, proc.stderr);
    return proc;
  }

  async run(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = Bun.spawn(cmd, {
      cwd: this.dir,
      env: { PATH: "/usr/bin:/bin", HOME: this.dir, TMPDIR: this.dir, ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code, stdout, stderr };
  }

  startServer(): Proc {
    return this.start("navarch", [this.navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: this.token });
  }

  async waitReady(): Promise<void> {
    await waitFor("reconciler /readyz", async () => {
      const res = await fetch(`${this.url}/readyz`).catch(() => undefined);
      return res?.status === 200 ? true : undefined;
    });
  }

  /**
   * An agent of this fleet. Its sysfs is an empty directory and it watches no InfiniBand ports
   * unless `args` say otherwise: the host's own (a real driver's kernel module, real ports) must
   * not turn up as findings of agents whose GPUs are fake.
   */
  startAgent(nodeId: string, args: string[] = [], env: Record<string, string> = {}): Proc {
    const sysfs = join(this.dir, "empty-sysfs");
    mkdirSync(sysfs, { recursive: true });
    const hermetic = [
      ...(args.includes("--sysfs-root") ? [] : ["--sysfs-root", sysfs]),
      ...(args.includes("--infiniband-dir") ? [] : ["--infiniband-dir", "none"]),
    ];
    return this.start(
      nodeId,
      [this.navarchNode, "--server", `127.0.0.1:${this.port}`, "--node-id", nodeId, "--state-dir", join(this.dir, "agents", nodeId), ...hermetic, ...args],
      { NAVARCH_AUTH_TOKEN: this.token, ...env },
    );
  }

  async api<T>(path: string): Promise<T | undefined> {
    const res = await fetch(`${this.url}${path}`, { headers: { Authorization: `Bearer ${this.token}` } }).catch(() => undefined);
    if (res?.status !== 200) return undefined;
    return (await res.json()) as T;
  }

  stop(): void {
    for (const proc of this.procs) proc.kill("SIGKILL");
  }

  /** The local provider's machines under `nodesDir` (detached agents), terminated through its records. */
  async terminateLocalNodes(nodesDir = join(this.dir, "data", "local-nodes")): Promise<void> {
    const local = new LocalProvider({ nodesDir, serverUrl: this.url, authToken: this.token, agentCommand: ["true"] });
    for (const i of await local.list({})) await local.terminate(i.id);
  }

  private async collect(label: string, stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const chunk of stream) this.output.set(label, (this.output.get(label) ?? "") + new TextDecoder().decode(chunk));
  }
}
