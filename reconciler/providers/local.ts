// The local provider: instances are real navarch-node processes on this machine,
// one per instance, each with its own fake GPUs (when providers.local.nvml_library
// names the fake libnvidia-ml), kernel-log file and spool. It is the provider
// behind `navarch demo` and behind end-to-end tests of the reconciler.
//
// Its state lives on disk, like a cloud's: one directory per instance under
// nodes_dir (see LocalNodesDir, the one place that knows the layout). Agents run
// detached (Bun.spawn `detached`: setsid, so each is the leader of its own session
// and process group) and survive the reconciler's death, kill -9 included; a new
// LocalProvider over the same directory finds them again by pid + process start
// time (/proc/PID/stat field 22, which guards against pid reuse).
//
// Lifecycle of an instance directory:
//   launch: a staging directory (instance.json "pending", fake-NVML state, empty
//           kernel log) is renamed into place (the atomic claim of the name), then
//           the agent is spawned through `/bin/sh -c 'echo $$ > agent.pid; exec …'`
//           so its pid is on disk before the agent runs even if we die right after
//           the spawn; instance.json is then rewritten with pid and start time.
//   a dead process means the machine is gone: get/list report it terminated and
//           record that; a later launch with the same key returns it terminated
//           (never resurrected) so the reconciler sees what happened.
//   terminate: SIGTERM to the process group, SIGKILL after a grace period, then
//           "terminated"; the directory stays as a tombstone until reap().
//
// Linux only (reads /proc). One reconciler process per nodes_dir: launches and
// terminates are serialised within a process, not across processes.
import {
  appendFileSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import * as v from "valibot";
import type { LocalProviderConfig } from "../../schema/config.ts";
import { procStat, processAlive } from "../system/processes.ts";
import {
  ProviderError,
  type InjectedFault,
  TAG_OPERATION,
  TAG_POOL,
  type Instance,
  type InstanceState,
  type InstanceTypeInfo,
  type LaunchRequest,
  type Provider,
} from "./provider.ts";

/**
 * How to start navarch-node: an explicit binary, else the one installed beside
 * this executable (dist/navarch → dist/navarch-node), else the source tree's.
 */
/**
 * The commands the fake libnvidia-ml reads from its control FIFO (test/fake-nvml/fake_nvml.c,
 * run_command; a test checks the two lists agree). A line it does not know is dropped there
 * without a word, so fault injection refuses it here.
 */
export const FAKE_NVML_COMMANDS = [
  "reset",
  "count",
  "driver",
  "nvmlversion",
  "cuda",
  "init",
  "fabricversion",
  "name",
  "uuid",
  "serial",
  "pci",
  "memory",
  "temp",
  "margin",
  "threshold",
  "power",
  "util",
  "eccmode",
  "persistence",
  "procs",
  "ecc",
  "remap",
  "retired",
  "clocks",
  "events",
  "nvlinks",
  "nvlink",
  "nvlinkerr",
  "pcie",
  "replay",
  "fabric",
  "recovery",
  "field",
  "fieldret",
  "lost",
  "resetrequired",
  "ret",
  "hang",
  "xid",
  "event",
  "eventret",
] as const;

/** One control line: a command the fake library knows, then its arguments. */
export const FAKE_NVML_LINE = new RegExp(`^(${FAKE_NVML_COMMANDS.join("|")})( [^\\n\\r]*)?$`);

export function resolveAgentCommand(explicit?: string): string[] {
  if (explicit) {
    if (!existsSync(explicit)) throw new Error(`providers.local.agent_binary: ${explicit} does not exist`);
    return [resolve(explicit)];
  }
  const sibling = join(dirname(process.execPath), "navarch-node");
  if (existsSync(sibling)) return [sibling];
  const source = resolve(import.meta.dir, "../../agent/main.ts");
  if (existsSync(source)) return [process.execPath, source];
  throw new Error(`no navarch-node found beside ${process.execPath}; build it (bun run build) or set providers.local.agent_binary`);
}

// ───────────────────────────── instance types ─────────────────────────────

/** The types instanceTypes() lists; launch accepts any `local-<N>gpu` with N from 1 to 16. */
export const LOCAL_INSTANCE_TYPES = ["local-1gpu", "local-2gpu", "local-4gpu", "local-8gpu"] as const;
const MAX_GPUS = 16; // the fake libnvidia-ml's limit
/** The fake library's default GPU model (fake_nvml.c). */
const FAKE_GPU_MODEL = "NVIDIA H100 80GB HBM3";
const FAKE_DRIVER = "570.86.15";

/** GPUs of a `local-<N>gpu` type, or undefined for anything else. */
export function localGpuCount(instanceType: string): number | undefined {
  const m = /^local-([1-9]\d?)gpu$/.exec(instanceType);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= MAX_GPUS ? n : undefined;
}

// ───────────────────────────── on-disk layout ─────────────────────────────

/** Instance names double as directory names and node ids: 1–63 of [A-Za-z0-9._-], alphanumeric at both ends. */
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const STAGING_PREFIX = ".staging-";

/** How long a machine whose interrupted reboot it finished shows as booting (pending). */
const FINISHED_BOOT_PENDING_MS = 15_000;

const StoredState = v.picklist(["pending", "running", "terminated"]);
const InstanceRecord = v.object({
  version: v.literal(1),
  id: v.string(),
  name: v.string(),
  idempotencyKey: v.string(),
  pool: v.string(),
  tags: v.record(v.string(), v.string()),
  instanceType: v.string(),
  region: v.string(),
  zone: v.optional(v.string()),
  gpus: v.pipe(v.number(), v.integer(), v.minValue(1)),
  createdAt: v.string(),
  /** pending: not spawned yet; running: spawned (alive or not: see observe); terminated: gone. */
  state: StoredState,
  pid: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** /proc/PID/stat field 22 (clock ticks after boot) of the agent process. */
  startTime: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Reboots so far: each restart of the agent is a new boot, with its own boot id. */
  boots: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /**
   * While a reboot runs: the process running it (a reconciler). Found gone before it started the
   * new agent (killed mid-reboot), the machine finishes its boot on its own, as a real one would.
   */
  /** A boot finished that way shows as pending (booting) until then (ms since the epoch), as a real machine's does. */
  bootingUntil: v.optional(v.number()),
  rebootingBy: v.optional(
    v.object({ pid: v.pipe(v.number(), v.integer(), v.minValue(1)), startTime: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))) }),
  ),
  terminatedAt: v.optional(v.string()),
  /** "terminated" (terminate()), "process exited" (found dead), "spawn failed: …". */
  terminationReason: v.optional(v.string()),
});
export type LocalInstanceRecord = v.InferOutput<typeof InstanceRecord>;

/** The files of one instance directory. */
export interface LocalNodeFiles {
  dir: string;
  /** instance.json: the record (LocalInstanceRecord), replaced atomically. */
  record: string;
  /** agent.pid: written by the spawning shell before it execs the agent. */
  pidFile: string;
  /** The fake libnvidia-ml's state file (FAKE_NVML_STATE). */
  nvmlState: string;
  /** The fake libnvidia-ml's control FIFO (FAKE_NVML_CONTROL; the library creates it). */
  nvmlControl: string;
  /** Kernel log in /dev/kmsg record format (--kmsg-path). */
  kmsg: string;
  /** The agent's --state-dir (its spool). */
  stateDir: string;
  /** stdout + stderr of the agent. */
  agentLog: string;
}

/** The one place that knows the layout of nodes_dir. */
export class LocalNodesDir {
  constructor(readonly root: string) {}

  static validName(name: string): boolean {
    return NAME.test(name);
  }

  /** The files of the instance `name` (its directory need not exist). */
  files(name: string): LocalNodeFiles {
    return LocalNodesDir.filesIn(join(this.root, name));
  }

  static filesIn(dir: string): LocalNodeFiles {
    return {
      dir,
      record: join(dir, "instance.json"),
      pidFile: join(dir, "agent.pid"),
      nvmlState: join(dir, "nvml-state"),
      nvmlControl: join(dir, "nvml-control"),
      kmsg: join(dir, "kmsg"),
      stateDir: join(dir, "agent-state"),
      agentLog: join(dir, "agent.log"),
    };
  }

  /** Names of every instance directory (staging directories excluded). */
  names(): string[] {
    let entries;
    try {
      entries = readdirSync(this.root, { withFileTypes: true });
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return [];
      throw err;
    }
    return entries
      .filter((e) => e.isDirectory() && LocalNodesDir.validName(e.name))
      .map((e) => e.name)
      .sort();
  }

  /** A fresh staging directory; renamed into place by claim(). */
  stage(name: string): LocalNodeFiles {
    mkdirSync(this.root, { recursive: true });
    return LocalNodesDir.filesIn(mkdtempSync(join(this.root, `${STAGING_PREFIX}${name}-`)));
  }

  /** Moves a staging directory into place; false when the name is already taken. */
  claim(staged: LocalNodeFiles, name: string): boolean {
    try {
      renameSync(staged.dir, join(this.root, name));
      return true;
    } catch (err) {
      const code = errnoOf(err);
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        rmSync(staged.dir, { recursive: true, force: true });
        return false;
      }
      throw err;
    }
  }

  /** Staging directories left by a crash, older than the cutoff (ms since the epoch). */
  staleStaging(cutoffMs: number): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.root);
    } catch {
      return [];
    }
    return entries
      .filter((e) => e.startsWith(STAGING_PREFIX))
      .map((e) => join(this.root, e))
      .filter((p) => {
        try {
          return statSync(p).mtimeMs < cutoffMs;
        } catch {
          return false;
        }
      });
  }

  /** The record, or undefined when missing or unreadable (the reason goes to `log`). */
  read(name: string, log: (line: string) => void): LocalInstanceRecord | undefined {
    const path = this.files(name).record;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if (errnoOf(err) !== "ENOENT") log(`local: cannot read ${path}: ${errorText(err)}`);
      return undefined;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      log(`local: ${path} is not JSON: ${errorText(err)}`);
      return undefined;
    }
    const parsed = v.safeParse(InstanceRecord, json);
    if (!parsed.success) {
      log(`local: ${path}: ${parsed.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`).join("; ")}`);
      return undefined;
    }
    return parsed.output;
  }

  /** Writes the record atomically (temp file + rename) into `files.dir`. */
  static write(files: LocalNodeFiles, record: LocalInstanceRecord): void {
    const tmp = `${files.record}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`);
    renameSync(tmp, files.record);
  }

  /** The pid the spawning shell wrote, if any. */
  readPidFile(name: string): number | undefined {
    try {
      const n = Number(readFileSync(this.files(name).pidFile, "utf8").trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  remove(name: string): void {
    rmSync(join(this.root, name), { recursive: true, force: true });
  }
}

// ───────────────────────────── processes ─────────────────────────────

function commandLineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** Signals the process group the agent leads; the process alone if it has no group (yet). */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
      return;
    } catch (err) {
      if (errnoOf(err) !== "ESRCH") throw err;
    }
  }
}

function errnoOf(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** /dev/kmsg escaping: '\' and non-printable bytes as \xHH. */
function kmsgEscape(message: string): string {
  return message.replace(/[\x00-\x1f\x7f\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function uptimeUsec(): number {
  try {
    const secs = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    if (Number.isFinite(secs)) return Math.round(secs * 1_000_000);
  } catch {
    // fall through
  }
  return Math.round(performance.now() * 1000);
}

// ───────────────────────────── the provider ─────────────────────────────

export interface LocalProviderOptions {
  /** Where instance directories live (config: providers.local.nodes_dir, default <data_dir>/local-nodes). */
  nodesDir: string;
  /** The reconciler the agents report to. */
  serverUrl: string;
  /** Passed to each agent as NAVARCH_AUTH_TOKEN. */
  authToken: string;
  /** navarch-node and any leading arguments (default: resolveAgentCommand()). */
  agentCommand?: string[];
  /**
   * The fake libnvidia-ml (config: providers.local.nvml_library). When set, each instance
   * gets its own fake GPUs (FAKE_NVML_STATE / FAKE_NVML_CONTROL); when not, agents run
   * without NVML and say so.
   */
  nvmlLibrary?: string;
  /** The agents' --poll-interval (seconds). */
  pollIntervalSeconds?: number;
  /** The agents' --nvml-deadline (seconds). */
  nvmlDeadlineSeconds?: number;
  /** Most live (pending or running) instances; a launch beyond it fails with kind "capacity". */
  capacity?: number;
  /** How long terminate() waits after SIGTERM before SIGKILL (default 10 s). */
  terminateGraceMs?: number;
  log?: (line: string) => void;
}

/** LocalProvider options from the config's `providers.local` section. */
export function localProviderOptions(
  config: LocalProviderConfig | undefined,
  ctx: { dataDir: string; serverUrl: string; authToken: string; log?: (line: string) => void },
): LocalProviderOptions {
  return {
    nodesDir: resolve(config?.nodes_dir ?? join(ctx.dataDir, "local-nodes")),
    serverUrl: ctx.serverUrl,
    authToken: ctx.authToken,
    agentCommand: resolveAgentCommand(config?.agent_binary),
    ...(config?.nvml_library !== undefined ? { nvmlLibrary: resolve(config.nvml_library) } : {}),
    ...(ctx.log ? { log: ctx.log } : {}),
  };
}

/** A record with the state as observed now. */
interface Observed {
  record: LocalInstanceRecord;
  state: InstanceState;
}

export class LocalProvider implements Provider {
  readonly name = "local";
  readonly dir: LocalNodesDir;
  private readonly agentCommand: string[];
  private readonly log: (line: string) => void;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: LocalProviderOptions) {
    if (!existsSync("/proc/self/stat")) throw new Error("the local provider needs Linux /proc");
    this.dir = new LocalNodesDir(resolve(opts.nodesDir));
    this.agentCommand = opts.agentCommand ?? resolveAgentCommand();
    if (this.agentCommand.length === 0) throw new Error("local provider: empty agent command");
    this.log = opts.log ?? (() => undefined);
    if (opts.nvmlLibrary !== undefined && !existsSync(opts.nvmlLibrary)) {
      throw new Error(`providers.local.nvml_library: ${opts.nvmlLibrary} does not exist`);
    }
  }

  // ── Provider ──

  async launch(req: LaunchRequest): Promise<Instance> {
    const name = req.name;
    if (!LocalNodesDir.validName(name)) {
      throw new ProviderError(this.name, "invalid", `instance name ${JSON.stringify(name)}: expected 1–63 of [A-Za-z0-9._-]`);
    }
    const gpus = localGpuCount(req.instanceType);
    if (gpus === undefined) {
      throw new ProviderError(
        this.name,
        "invalid",
        `unknown instance type ${JSON.stringify(req.instanceType)}: expected local-<N>gpu with N from 1 to ${MAX_GPUS} (${LOCAL_INSTANCE_TYPES.join(", ")})`,
      );
    }
    const operation = req.tags[TAG_OPERATION] ?? req.idempotencyKey;
    return this.locked(`name:${name}`, async () => {
      const existing = this.dir.read(name, this.log);
      if (existing !== undefined) return this.relaunch(existing, operation);
      // Claim the name (and count capacity) under one lock so concurrent launches cannot overshoot.
      const claimed = await this.locked("capacity", () => {
        if (this.opts.capacity !== undefined) {
          const live = this.observeAll().filter((o) => o.state === "pending" || o.state === "running").length;
          if (live >= this.opts.capacity) {
            throw new ProviderError(this.name, "capacity", `no capacity: ${live} of ${this.opts.capacity} local instances are live`);
          }
        }
        return this.stageAndClaim(req, gpus, operation);
      });
      if (claimed === undefined) {
        // Another process claimed the name between our read and our rename.
        const winner = this.dir.read(name, this.log);
        if (winner === undefined) throw new ProviderError(this.name, "transient", `instance ${name}: directory exists but has no readable record`);
        return this.relaunch(winner, operation);
      }
      return this.toInstance(this.spawn(claimed));
    });
  }

  async terminate(id: string): Promise<void> {
    if (!LocalNodesDir.validName(id)) return; // no such instance: already gone
    await this.locked(`name:${id}`, async () => {
      const record = this.dir.read(id, this.log);
      if (record === undefined || record.state === "terminated") return;
      const pid = record.pid ?? this.dir.readPidFile(id);
      const startTime = record.startTime ?? (pid !== undefined ? procStat(pid)?.startTime : undefined);
      if (pid !== undefined && processAlive(pid, startTime)) {
        this.log(`local: terminating ${id} (pid ${pid})`);
        signalGroup(pid, "SIGTERM");
        const grace = this.opts.terminateGraceMs ?? 10_000;
        if (!(await waitDead(pid, startTime, grace))) {
          this.log(`local: ${id} still running ${grace} ms after SIGTERM: SIGKILL`);
          signalGroup(pid, "SIGKILL");
          if (!(await waitDead(pid, startTime, 5000))) {
            throw new ProviderError(this.name, "transient", `instance ${id}: pid ${pid} survived SIGKILL`);
          }
        }
      }
      this.markTerminated(record, "terminated");
    });
  }

  /**
   * A reboot of a local "machine": its agent is stopped and started again with a new boot id
   * and an empty kernel log; the fake GPUs keep their state file (what a reboot does not fix
   * stays). An interrupted reboot (a crash between the stop and the start) is finished.
   */
  async reboot(id: string): Promise<void> {
    if (!LocalNodesDir.validName(id)) throw new ProviderError(this.name, "not_found", `no instance ${JSON.stringify(id)}`);
    await this.locked(`name:${id}`, async () => {
      const record = this.dir.read(id, this.log);
      if (record === undefined || record.state === "terminated") throw new ProviderError(this.name, "not_found", `no running instance ${id}`);
      const files = this.dir.files(id);
      const pid = record.pid ?? this.dir.readPidFile(id);
      const startTime = record.startTime ?? (pid !== undefined ? procStat(pid)?.startTime : undefined);
      const { pid: _pid, startTime: _start, ...rest } = record;
      const self = procStat(process.pid)?.startTime;
      const down: LocalInstanceRecord = {
        ...rest,
        state: "pending",
        boots: (record.boots ?? 0) + 1,
        rebootingBy: { pid: process.pid, ...(self !== undefined ? { startTime: self } : {}) },
      };
      // Down first: while the agent stops, observe() sees a pending machine, not a dead one.
      LocalNodesDir.write(files, down);
      rmSync(files.pidFile, { force: true });
      if (pid !== undefined && processAlive(pid, startTime)) {
        signalGroup(pid, "SIGTERM");
        if (!(await waitDead(pid, startTime, this.opts.terminateGraceMs ?? 10_000))) {
          signalGroup(pid, "SIGKILL");
          await waitDead(pid, startTime, 5000);
        }
      }
      writeFileSync(files.kmsg, "");
      this.log(`local: rebooting ${id} (boot ${down.boots})`);
      const { rebootingBy: _by, ...booted } = down;
      this.spawn(booted);
    });
  }

  async get(id: string): Promise<Instance | undefined> {
    if (!LocalNodesDir.validName(id)) return undefined;
    const record = this.dir.read(id, this.log);
    return record === undefined ? undefined : this.toInstance(this.observe(record));
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    const wanted = Object.entries(tags);
    return this.observeAll()
      .filter((o) => wanted.every(([k, val]) => o.record.tags[k] === val))
      .map((o) => this.toInstance(o));
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    return LOCAL_INSTANCE_TYPES.map((name) => ({
      name,
      gpus: localGpuCount(name) ?? 0,
      ...(this.opts.nvmlLibrary !== undefined ? { gpuModel: FAKE_GPU_MODEL } : {}),
    }));
  }

  async injectFault(id: string, fault: InjectedFault): Promise<void> {
    if ("nvml" in fault) await this.injectNvml(id, fault.nvml);
    else await this.injectKmsg(id, fault.kmsg);
  }

  // ── beyond Provider: fault injection, logs, housekeeping ──

  /**
   * One command for the instance's fake libnvidia-ml (syntax: test/fake-nvml/fake_nvml.c),
   * written to its control FIFO without blocking. Fails with kind "not_found" when the
   * instance does not exist or its agent is not reading the FIFO (not running, no fake NVML).
   */
  async injectNvml(id: string, command: string, waitMs = 2000): Promise<void> {
    if (/[\r\n]/.test(command)) throw new ProviderError(this.name, "invalid", "an NVML command is one line");
    const o = this.requireRunning(id);
    if (this.opts.nvmlLibrary === undefined) {
      throw new ProviderError(this.name, "invalid", `instance ${id} has no fake NVML (providers.local.nvml_library is not set)`);
    }
    const fifo = this.dir.files(o.record.name).nvmlControl;
    const line = Buffer.from(`${command}\n`);
    // ENXIO: no reader yet. The library's thread opens the FIFO (and keeps it open) only once
    // the agent has loaded NVML: retry briefly.
    const deadline = Date.now() + waitMs;
    for (;;) {
      let fd: number;
      try {
        fd = openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      } catch (err) {
        const code = errnoOf(err);
        if ((code === "ENXIO" || code === "ENOENT") && Date.now() < deadline) {
          await Bun.sleep(20);
          continue;
        }
        if (code === "ENXIO" || code === "ENOENT") {
          throw new ProviderError(this.name, "not_found", `instance ${id} is not running (nothing reads its NVML control FIFO)`);
        }
        throw err;
      }
      try {
        if (!fstatSync(fd).isFIFO()) throw new ProviderError(this.name, "invalid", `${fifo} is not a FIFO`);
        // Below PIPE_BUF: one atomic write, never partial.
        writeSync(fd, line);
        return;
      } catch (err) {
        if (errnoOf(err) === "EAGAIN") throw new ProviderError(this.name, "transient", `instance ${id}: NVML control FIFO is full`);
        throw err;
      } finally {
        closeSync(fd);
      }
    }
  }

  /**
   * Appends a kernel-log record (`<level>,<seq>,<usec>,-;<message>`, /dev/kmsg format) to the
   * instance's kernel log. The agent follows the file from where it was when it started.
   */
  async injectKmsg(id: string, message: string, level = 3): Promise<void> {
    const o = this.requireRunning(id);
    const path = this.dir.files(o.record.name).kmsg;
    let seq = 0;
    try {
      const text = readFileSync(path, "utf8");
      for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) seq++;
    } catch (err) {
      if (errnoOf(err) !== "ENOENT") throw err;
    }
    appendFileSync(path, `${level & 7},${seq},${uptimeUsec()},-;${kmsgEscape(message)}\n`);
  }

  /** The last `maxBytes` of the instance's agent.log (from the first whole line). */
  agentLog(id: string, maxBytes = 16_384): string {
    if (!LocalNodesDir.validName(id) || this.dir.read(id, this.log) === undefined) {
      throw new ProviderError(this.name, "not_found", `no instance ${JSON.stringify(id)}`);
    }
    let fd: number;
    try {
      fd = openSync(this.dir.files(id).agentLog, "r");
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return "";
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      const start = Math.max(0, size - maxBytes);
      const buf = Buffer.alloc(size - start);
      const n = readSync(fd, buf, 0, buf.length, start);
      let text = buf.subarray(0, n).toString("utf8");
      if (start > 0) text = text.slice(text.indexOf("\n") + 1);
      return text;
    } finally {
      closeSync(fd);
    }
  }

  /** Where an instance's files are (for the demo's messages and tests). */
  files(id: string): LocalNodeFiles {
    if (!LocalNodesDir.validName(id)) throw new ProviderError(this.name, "invalid", `instance name ${JSON.stringify(id)}`);
    return this.dir.files(id);
  }

  /**
   * Deletes tombstones (terminated instances) terminated more than `olderThanMs` ago, and
   * staging directories a crash left behind. Returns the names of the instances removed.
   */
  async reap(olderThanMs: number): Promise<string[]> {
    const cutoff = Date.now() - olderThanMs;
    const removed: string[] = [];
    for (const o of this.observeAll()) {
      const at = o.record.terminatedAt === undefined ? NaN : Date.parse(o.record.terminatedAt);
      if (o.state !== "terminated" || !(at <= cutoff)) continue;
      await this.locked(`name:${o.record.name}`, () => {
        const again = this.dir.read(o.record.name, this.log);
        if (again?.state === "terminated") {
          this.dir.remove(o.record.name);
          removed.push(o.record.name);
        }
      });
    }
    for (const staging of this.dir.staleStaging(Math.min(cutoff, Date.now() - 60_000))) rmSync(staging, { recursive: true, force: true });
    return removed;
  }

  // ── internals ──

  /** Runs fn after every earlier call with the same key has finished. */
  private async locked<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const run = previous.then(
      () => fn(),
      () => fn(),
    );
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  /** A launch whose name is taken: the same operation gets its instance back, as it is now. */
  private relaunch(existing: LocalInstanceRecord, operation: string): Instance {
    const theirs = existing.tags[TAG_OPERATION] ?? existing.idempotencyKey;
    if (theirs !== operation) {
      throw new ProviderError(
        this.name,
        "invalid",
        `instance name ${existing.name} is taken by operation ${JSON.stringify(theirs)}, not ${JSON.stringify(operation)}`,
      );
    }
    const o = this.observe(existing);
    // Claimed but never spawned (we died in between): finish the launch.
    if (o.state === "pending") return this.toInstance(this.spawn(o.record));
    return this.toInstance(o);
  }

  private stageAndClaim(req: LaunchRequest, gpus: number, operation: string): LocalInstanceRecord | undefined {
    const staged = this.dir.stage(req.name);
    const pool = req.tags[TAG_POOL] ?? req.pool;
    const record: LocalInstanceRecord = {
      version: 1,
      id: req.name,
      name: req.name,
      idempotencyKey: req.idempotencyKey,
      pool,
      tags: { ...req.tags, [TAG_OPERATION]: operation },
      instanceType: req.instanceType,
      region: req.region,
      ...(req.zone !== undefined ? { zone: req.zone } : {}),
      gpus,
      createdAt: new Date().toISOString(),
      state: "pending",
    };
    try {
      writeFileSync(staged.nvmlState, `# fake libnvidia-ml state for ${req.name} (${req.instanceType})\ncount ${gpus}\ndriver ${FAKE_DRIVER}\n`);
      writeFileSync(staged.kmsg, "");
      writeFileSync(staged.agentLog, "");
      mkdirSync(staged.stateDir, { recursive: true });
      LocalNodesDir.write(staged, record);
    } catch (err) {
      rmSync(staged.dir, { recursive: true, force: true });
      throw err;
    }
    return this.dir.claim(staged, req.name) ? record : undefined;
  }

  /** Starts the agent of a claimed, pending instance and records its pid; returns it observed. */
  private spawn(record: LocalInstanceRecord): Observed {
    const files = this.dir.files(record.name);
    const args = [
      "--server",
      this.opts.serverUrl,
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
      this.opts.nvmlLibrary ?? join(files.dir, "no-nvml-library-configured", "libnvidia-ml.so.1"),
      ...(this.opts.nvmlLibrary !== undefined ? ["--expected-gpus", String(record.gpus)] : []),
      ...(this.opts.pollIntervalSeconds !== undefined ? ["--poll-interval", String(this.opts.pollIntervalSeconds)] : []),
      ...(this.opts.nvmlDeadlineSeconds !== undefined ? ["--nvml-deadline", String(this.opts.nvmlDeadlineSeconds)] : []),
    ];
    const env: Record<string, string | undefined> = { ...process.env, NAVARCH_AUTH_TOKEN: this.opts.authToken };
    // Every local machine shares this kernel: a rebooted one gets a boot id of its own.
    if (record.boots !== undefined) env.NAVARCH_BOOT_ID = `${record.id}-boot-${record.boots}`;
    else delete env.NAVARCH_BOOT_ID;
    if (this.opts.nvmlLibrary !== undefined) {
      env.FAKE_NVML_STATE = files.nvmlState;
      env.FAKE_NVML_CONTROL = files.nvmlControl;
    } else {
      delete env.FAKE_NVML_STATE;
      delete env.FAKE_NVML_CONTROL;
    }
    const command = [...this.agentCommand, ...args];
    const logFd = openSync(files.agentLog, "a");
    let pid: number;
    try {
      const note =
        this.opts.nvmlLibrary === undefined
          ? " (no providers.local.nvml_library configured: this agent runs without NVML)"
          : ` (fake NVML: ${record.gpus} GPUs)`;
      writeSync(logFd, `${new Date().toISOString()} local provider: starting ${record.name}${note}: ${command.join(" ")}\n`);
      // setsid (detached): the agent leads its own session and process group, outlives us, and
      // terminate() signals the whole group. The shell writes its pid (= the agent's, after exec)
      // before the agent starts, so a crash right after this call cannot leave an agent nobody knows.
      const proc = Bun.spawn(["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', files.pidFile, ...command], {
        cwd: files.dir,
        env,
        detached: true,
        stdin: "ignore",
        stdout: logFd,
        stderr: logFd,
      });
      proc.unref();
      pid = proc.pid;
    } catch (err) {
      const failed = this.markTerminated(record, `spawn failed: ${errorText(err)}`);
      this.log(`local: cannot start the agent of ${record.name}: ${errorText(err)}`);
      return { record: failed, state: "terminated" };
    } finally {
      closeSync(logFd);
    }
    const st = procStat(pid);
    const running: LocalInstanceRecord = {
      ...record,
      state: "running",
      pid,
      ...(st !== undefined ? { startTime: st.startTime } : {}),
    };
    LocalNodesDir.write(files, running);
    this.log(`local: started ${record.name} (pid ${pid}, ${record.instanceType})`);
    return this.observe(running);
  }

  /** The state now: a spawned instance whose process is gone is terminated (and recorded so). */
  private observe(record: LocalInstanceRecord): Observed {
    if (record.state === "terminated") return { record, state: "terminated" };
    if (record.pid === undefined) {
      // Not recorded as spawned: a crash may have come between the spawn and the record.
      const pid = this.dir.readPidFile(record.name);
      if (pid === undefined) {
        const by = record.rebootingBy;
        if (by !== undefined && !processAlive(by.pid, by.startTime)) return this.finishBoot(record);
        return { record, state: "pending" };
      }
      const st = procStat(pid);
      // Adopt it only if it is still this instance's agent (the pid may have been reused since).
      if (st !== undefined && processAlive(pid, st.startTime) && commandLineOf(pid).includes(this.dir.files(record.name).stateDir)) {
        const adopted = this.updateIfUnchanged(record, { ...record, state: "running", pid, startTime: st.startTime });
        return { record: adopted, state: "running" };
      }
      return { record: this.markTerminated(record, "process exited", true), state: "terminated" };
    }
    if (processAlive(record.pid, record.startTime)) return { record, state: (record.bootingUntil ?? 0) > Date.now() ? "pending" : "running" };
    return { record: this.markTerminated(record, "process exited", true), state: "terminated" };
  }

  /** A reboot whose reconciler died before it started the new agent: the machine boots now. */
  private finishBoot(record: LocalInstanceRecord): Observed {
    const now = this.dir.read(record.name, this.log);
    // Another process finished it meanwhile (or the record changed): as it is now.
    if (now === undefined || now.state !== "pending" || now.rebootingBy?.pid !== record.rebootingBy?.pid) {
      return now === undefined ? { record, state: "pending" } : this.observe(now);
    }
    const { rebootingBy: _by, ...rest } = now;
    this.log(`local: ${record.name} finishes the reboot its reconciler began (pid ${record.rebootingBy?.pid}, gone) (boot ${rest.boots ?? 0})`);
    // Booting for a while, as a real machine on its way back: whoever asks meanwhile (the
    // reboot's own check, after a restart) sees that the reboot happened, not a machine to reboot again.
    const spawned = this.spawn({ ...rest, bootingUntil: Date.now() + FINISHED_BOOT_PENDING_MS });
    return { ...spawned, state: "pending" };
  }

  private observeAll(): Observed[] {
    const out: Observed[] = [];
    for (const name of this.dir.names()) {
      const record = this.dir.read(name, this.log);
      if (record !== undefined) out.push(this.observe(record));
    }
    return out;
  }

  private markTerminated(record: LocalInstanceRecord, reason: string, onlyIfUnchanged = false): LocalInstanceRecord {
    const next: LocalInstanceRecord = { ...record, state: "terminated", terminatedAt: new Date().toISOString(), terminationReason: reason };
    if (onlyIfUnchanged) return this.updateIfUnchanged(record, next);
    LocalNodesDir.write(this.dir.files(record.name), next);
    return next;
  }

  /**
   * Writes `next` unless the record on disk changed since `seen` was read (a terminate or a
   * launch got there first); returns what is on disk afterwards.
   */
  private updateIfUnchanged(seen: LocalInstanceRecord, next: LocalInstanceRecord): LocalInstanceRecord {
    const now = this.dir.read(seen.name, this.log);
    if (now === undefined || now.state !== seen.state || now.pid !== seen.pid) return now ?? seen;
    LocalNodesDir.write(this.dir.files(seen.name), next);
    return next;
  }

  private requireRunning(id: string): Observed {
    const record = LocalNodesDir.validName(id) ? this.dir.read(id, this.log) : undefined;
    if (record === undefined) throw new ProviderError(this.name, "not_found", `no instance ${JSON.stringify(id)}`);
    const o = this.observe(record);
    if (o.state === "terminated") throw new ProviderError(this.name, "not_found", `instance ${id} is not running`);
    return o;
  }

  private toInstance(o: Observed): Instance {
    const r = o.record;
    return {
      id: r.id,
      name: r.name,
      provider: this.name,
      instanceType: r.instanceType,
      region: r.region,
      ...(r.zone !== undefined ? { zone: r.zone } : {}),
      state: o.state,
      address: "127.0.0.1",
      tags: { ...r.tags },
      createdAt: r.createdAt,
    };
  }
}

async function waitDead(pid: number, startTime: number | undefined, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(pid, startTime)) {
    if (Date.now() >= deadline) return false;
    await Bun.sleep(25);
  }
  return true;
}
