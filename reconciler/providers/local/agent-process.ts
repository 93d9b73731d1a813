// The navarch-node process that is a local machine: which binary runs it, its command line
// and environment, how it is started, and how it is found and signalled again.
//
// Agents run detached (Bun.spawn `detached`: setsid, so each is the leader of its own session
// and process group) and survive the reconciler's death, kill -9 included; the spawning shell
// writes the agent's pid to disk before the agent runs, and a pid is trusted only together
// with its process start time (/proc/PID/stat field 22, which guards against pid reuse).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { processAlive } from "../../system/processes.ts";
import { errnoOf } from "./errors.ts";
import type { LocalInstanceRecord } from "./instance-record.ts";
import type { LocalNodeFiles } from "./nodes-dir.ts";

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
  const source = resolve(import.meta.dir, "../../../agent/main.ts");
  if (existsSync(source)) return [process.execPath, source];
  throw new Error(`no navarch-node found beside ${process.execPath}; build it (bun run build) or set providers.local.agent_binary`);
}

/** What every agent of one provider is started with. */
export interface AgentSettings {
  /** navarch-node and any leading arguments. */
  agentCommand: string[];
  serverUrl: string;
  /** Passed to each agent as NAVARCH_AUTH_TOKEN. */
  authToken: string;
  /** The fake libnvidia-ml, when the machines have fake GPUs. */
  nvmlLibrary?: string;
  pollIntervalSeconds?: number;
  nvmlDeadlineSeconds?: number;
}

/** The command line and environment of the agent of `record`. */
export function agentInvocation(
  record: LocalInstanceRecord,
  files: LocalNodeFiles,
  settings: AgentSettings,
): { command: string[]; env: Record<string, string | undefined> } {
  const args = [
    "--server",
    settings.serverUrl,
    "--node-id",
    record.name,
    "--pool",
    record.pool,
    "--provider",
    "local",
    "--instance-type",
    record.instanceType,
    "--state-dir",
    files.stateDir,
    "--kmsg-path",
    files.kmsg,
    // Never the host's real driver: the configured fake, or a path that says why there is none.
    "--nvml-library",
    settings.nvmlLibrary ?? join(files.dir, "no-nvml-library-configured", "libnvidia-ml.so.1"),
    ...(settings.nvmlLibrary !== undefined ? ["--expected-gpus", String(record.gpus)] : []),
    ...(settings.pollIntervalSeconds !== undefined ? ["--poll-interval", String(settings.pollIntervalSeconds)] : []),
    ...(settings.nvmlDeadlineSeconds !== undefined ? ["--nvml-deadline", String(settings.nvmlDeadlineSeconds)] : []),
  ];
  const env: Record<string, string | undefined> = { ...process.env, NAVARCH_AUTH_TOKEN: settings.authToken };
  // Every local machine shares this kernel: a rebooted one gets a boot id of its own.
  if (record.boots !== undefined) env.NAVARCH_BOOT_ID = `${record.id}-boot-${record.boots}`;
  else delete env.NAVARCH_BOOT_ID;
  if (settings.nvmlLibrary !== undefined) {
    env.FAKE_NVML_STATE = files.nvmlState;
    env.FAKE_NVML_CONTROL = files.nvmlControl;
  } else {
    delete env.FAKE_NVML_STATE;
    delete env.FAKE_NVML_CONTROL;
  }
  return { command: [...settings.agentCommand, ...args], env };
}

/**
 * Starts the agent detached, its output to `logFd`; returns its pid. setsid (detached): the
 * agent leads its own session and process group, outlives us, and terminate() signals the
 * whole group. The shell writes its pid (= the agent's, after exec) to files.pidFile before the
 * agent starts, so a crash right after this call cannot leave an agent nobody knows.
 */
export function spawnAgent(command: string[], env: Record<string, string | undefined>, files: LocalNodeFiles, logFd: number): number {
  const proc = Bun.spawn(["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', files.pidFile, ...command], {
    cwd: files.dir,
    env,
    detached: true,
    stdin: "ignore",
    stdout: logFd,
    stderr: logFd,
  });
  proc.unref();
  return proc.pid;
}

/** The command line of a process, empty when it cannot be read (gone). */
export function commandLineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** Signals the process group the agent leads; the process alone if it has no group (yet). */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
      return;
    } catch (err) {
      if (errnoOf(err) !== "ESRCH") throw err;
    }
  }
}

/** Waits up to `ms` for the process to be gone; false when it is still there. */
export async function waitDead(pid: number, startTime: number | undefined, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(pid, startTime)) {
    if (Date.now() >= deadline) return false;
    await Bun.sleep(25);
  }
  return true;
}
