// The local provider: instances are real navarch-node processes on this machine,
// one per instance, each with its own fake GPUs (when providers.local.nvml_library
// names the fake libnvidia-ml), kernel-log file and spool. It is the provider
// behind `navarch demo` and behind end-to-end tests of the reconciler.
//
// Its state lives on disk, like a cloud's: one directory per instance under
// nodes_dir (nodes-dir.ts, the one place that knows the layout; the record in it:
// instance-record.ts). Agents run detached and survive the reconciler's death, kill -9
// included (agent-process.ts); a new LocalProvider over the same directory finds them
// again by pid + process start time. Faults reach a machine through its fake GPUs'
// control FIFO (fake-nvml.ts) or its kernel log (kernel-log.ts).
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
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import type { LocalProviderConfig } from "../../../schema/config.ts";
import { procStat, processAlive } from "../../system/processes.ts";
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
} from "../provider.ts";
import { agentInvocation, commandLineOf, resolveAgentCommand, signalGroup, spawnAgent, waitDead } from "./agent-process.ts";
import { errnoOf, errorText } from "./errors.ts";
import { FAKE_GPU_MODEL, fakeNvmlState, writeFakeNvmlControl } from "./fake-nvml.ts";
import type { LocalInstanceRecord } from "./instance-record.ts";
import { LOCAL_INSTANCE_TYPES, MAX_LOCAL_GPUS, localGpuCount } from "./instance-types.ts";
import { appendKernelLogRecord } from "./kernel-log.ts";
import { LocalNodesDir, type LocalNodeFiles } from "./nodes-dir.ts";

/** How long a machine whose interrupted reboot it finished shows as booting (pending). */
const FINISHED_BOOT_PENDING_MS = 15_000;

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
        `unknown instance type ${JSON.stringify(req.instanceType)}: expected local-<N>gpu with N from 1 to ${MAX_LOCAL_GPUS} (${LOCAL_INSTANCE_TYPES.join(", ")})`,
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
    await writeFakeNvmlControl(id, this.dir.files(o.record.name).nvmlControl, command, waitMs);
  }

  /**
   * Appends a kernel-log record (`<level>,<seq>,<usec>,-;<message>`, /dev/kmsg format) to the
   * instance's kernel log. The agent follows the file from where it was when it started.
   */
  async injectKmsg(id: string, message: string, level = 3): Promise<void> {
    const o = this.requireRunning(id);
    appendKernelLogRecord(this.dir.files(o.record.name).kmsg, message, level);
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
      writeFileSync(staged.nvmlState, fakeNvmlState(req.name, req.instanceType, gpus));
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
    const { command, env } = agentInvocation(record, files, { ...this.opts, agentCommand: this.agentCommand });
    const logFd = openSync(files.agentLog, "a");
    let pid: number;
    try {
      const note =
        this.opts.nvmlLibrary === undefined
          ? " (no providers.local.nvml_library configured: this agent runs without NVML)"
          : ` (fake NVML: ${record.gpus} GPUs)`;
      writeSync(logFd, `${new Date().toISOString()} local provider: starting ${record.name}${note}: ${command.join(" ")}\n`);
      pid = spawnAgent(command, env, files, logFd);
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
