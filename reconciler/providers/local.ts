// Runs real navarch-node processes on this machine, one per node: the local
// pool of the embedded defaults and the demo. Each agent gets its own state
// directory and its output is prefixed with its node id.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Subprocess } from "bun";

export interface LocalAgentSpec {
  nodeId: string;
  pool: string;
  serverUrl: string;
  authToken: string;
  stateDir: string;
  /** libnvidia-ml to load; chosen explicitly (never a silent fake). */
  nvmlLibrary?: string;
  /** Extra environment for the agent process (e.g. a fake library's state file). */
  env?: Record<string, string>;
}

/**
 * How to start navarch-node: an explicit binary, else the one installed beside
 * this executable (dist/navarch → dist/navarch-node), else the source tree's.
 */
export function resolveAgentCommand(explicit?: string): string[] {
  if (explicit) {
    if (!existsSync(explicit)) throw new Error(`providers.local.agent_binary: ${explicit} does not exist`);
    return [resolve(explicit)];
  }
  const sibling = join(dirname(process.execPath), "navarch-node");
  if (existsSync(sibling)) return [sibling];
  const source = resolve(import.meta.dir, "../../agent/main.ts");
  if (existsSync(source)) return [process.execPath, source];
  throw new Error(
    `no navarch-node found beside ${process.execPath}; build it (bun run build) or set providers.local.agent_binary`,
  );
}

export class LocalAgent {
  private proc: Subprocess | undefined;

  constructor(
    readonly spec: LocalAgentSpec,
    private readonly command: string[],
    private readonly log: (line: string) => void,
  ) {}

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  start(): void {
    const { spec } = this;
    const args = [
      ...this.command,
      "--server",
      spec.serverUrl,
      "--node-id",
      spec.nodeId,
      "--pool",
      spec.pool,
      "--provider",
      "local",
      "--state-dir",
      spec.stateDir,
      ...(spec.nvmlLibrary ? ["--nvml-library", spec.nvmlLibrary] : []),
    ];
    this.proc = Bun.spawn(args, {
      env: { ...process.env, ...spec.env, NAVARCH_AUTH_TOKEN: spec.authToken },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    void this.relay(this.proc.stdout);
    void this.relay(this.proc.stderr);
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || !this.running) return;
    proc.kill(signal);
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
    if (!exited) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }

  private async relay(stream: ReadableStream<Uint8Array> | number | undefined): Promise<void> {
    if (stream === undefined || typeof stream === "number") return;
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        this.log(`[${this.spec.nodeId}] ${buffered.slice(0, nl)}`);
        buffered = buffered.slice(nl + 1);
      }
    }
    if (buffered) this.log(`[${this.spec.nodeId}] ${buffered}`);
  }
}
