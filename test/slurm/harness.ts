// A real Slurm for tests, on 127.0.0.1 and free ports, from Debian's packages
// (test/slurm/ensure-slurm.sh installs them when missing): munged with its own key and
// socket, slurmctld with its own slurm.conf, JWT key and state directory, one
// `slurmd -N SLOT` per node slot (started when a test's machine boots, so jobs really run),
// and slurmrestd serving the REST API with JWT auth. Nothing is installed as a service and
// nothing outside the harness's directory is used. SlurmUser is `slurm` (the package's),
// so tokens for `slurm` may drain and resume; the test's own commands run as root over munge.
//
//   const slurm = await startSlurmHarness({ slots: 4, partitions: { train: ["slot1", "slot2"] } });
//   await slurm.bootMachine("slot1", "train-1a2b3c4d");      // NodeHostname, then slurmd
//   const job = await slurm.sbatch(["-w", "slot1", "--wrap", "sleep 5"]);
//   await slurm.stop();
import type { Subprocess } from "bun";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort, harnessChildren } from "../support.ts";

const ENSURE = new URL("./ensure-slurm.sh", import.meta.url).pathname;

/** Installs Debian's Slurm and munge when missing; says how long that took when it did. */
export function ensureSlurm(): { installedInMs?: number } {
  const started = performance.now();
  const r = Bun.spawnSync(["sh", ENSURE], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`test/slurm/ensure-slurm.sh failed (${r.exitCode}): ${r.stdout.toString()}${r.stderr.toString()}`);
  return r.stderr.toString().includes("installed") ? { installedInMs: Math.round(performance.now() - started) } : {};
}

export interface SlurmHarnessOptions {
  /** Node slots slot1…slotN (default 4); each is a NodeName with its own slurmd port. */
  slots?: number;
  /** Partitions and their slots (default: one partition `train` with every slot). */
  partitions?: Record<string, string[]>;
  log?: (line: string) => void;
}

/** A Slurm node as `scontrol show node -o` prints it (parsed here, independently of reconciler/schedulers/slurm). */
export interface ShownNode {
  name: string;
  /** `IDLE`, `MIXED+DRAIN`, `DOWN+DRAIN+NOT_RESPONDING`, … */
  state: string;
  hostname: string;
  reason: string;
  comment: string;
}

export interface ShownJob {
  id: number;
  state: string;
  nodes: string;
  partition: string;
  reason: string;
}

export interface SlurmHarness {
  dir: string;
  confPath: string;
  jwtKeyPath: string;
  restUrl: string;
  /** The user Navarch acts as (SlurmUser). */
  user: string;
  slots: string[];
  /** Milliseconds from the first process started to everything ready. */
  startMs: number;
  /** Sets the slot's NodeHostname (what a cloud node's resume script does), then starts its slurmd. */
  bootMachine(slot: string, hostname: string): Promise<void>;
  /** Kills the slot's slurmd, as a terminated machine would. */
  shutdownMachine(slot: string): Promise<void>;
  /** Slots whose slurmd runs. */
  running(): string[];
  /** Runs a Slurm client command as root (munge); resolves with stdout, rejects with stderr. */
  run(command: "scontrol" | "sbatch" | "squeue" | "sinfo" | "scancel", args: string[]): Promise<string>;
  /** Submits a batch job; resolves with its id. */
  sbatch(args: string[]): Promise<number>;
  node(name: string): Promise<ShownNode>;
  job(id: number): Promise<ShownJob | undefined>;
  logs(component: "slurmctld" | "slurmrestd" | "munged" | string): Promise<string>;
  /** Pauses (SIGSTOP) or resumes (SIGCONT) a daemon: its connections stay open and nothing answers. */
  signal(component: "slurmctld" | "slurmrestd", signal: "SIGSTOP" | "SIGCONT"): void;
  /** Between tests: every job cancelled, every machine gone, every slot resumed with its own hostname and no comment. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

function uidOf(user: string): { uid: number; gid: number } {
  const r = Bun.spawnSync(["id", "-u", user]);
  const g = Bun.spawnSync(["id", "-g", user]);
  if (r.exitCode !== 0 || g.exitCode !== 0)
    throw new Error(`user ${user} does not exist (Debian's ${user === "munge" ? "munge" : "slurmctld"} package creates it)`);
  return { uid: Number(r.stdout.toString().trim()), gid: Number(g.stdout.toString().trim()) };
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number, logs: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await Bun.sleep(50);
  }
  throw new Error(`slurm harness: timed out after ${timeoutMs} ms waiting for ${what}\n${await logs()}`);
}

export async function startSlurmHarness(opts: SlurmHarnessOptions = {}): Promise<SlurmHarness> {
  if (userInfo().uid !== 0) throw new Error("the Slurm harness runs slurmctld and slurmd, which need root");
  const log = opts.log ?? (() => undefined);
  const started = performance.now();
  const slurm = uidOf("slurm");
  const munge = uidOf("munge");
  const dir = mkdtempSync(join(tmpdir(), "navarch-slurm-"));
  // slurmctld (as slurm) and slurmrestd (as nobody) must reach the munge socket and slurm.conf.
  chmodSync(dir, 0o755);
  const path = (...p: string[]) => join(dir, ...p);
  for (const d of ["munge", "state", "spool", "log", "run", "jobs"]) mkdirSync(path(d), { recursive: true, mode: 0o755 });
  chownSync(path("munge"), munge.uid, munge.gid);
  for (const d of ["state", "log", "run"]) chownSync(path(d), slurm.uid, slurm.gid);
  chmodSync(path("jobs"), 0o777);
  writeFileSync(path("munge", "munge.key"), randomBytes(1024), { mode: 0o400 });
  chownSync(path("munge", "munge.key"), munge.uid, munge.gid);
  writeFileSync(path("jwt.key"), randomBytes(32), { mode: 0o400 });
  chownSync(path("jwt.key"), slurm.uid, slurm.gid);

  const slots = Array.from({ length: opts.slots ?? 4 }, (_, i) => `slot${i + 1}`);
  const partitions = opts.partitions ?? { train: slots };
  const ctldPort = await freePort();
  const restPort = await freePort();
  const slotPorts = new Map<string, number>();
  for (const slot of slots) {
    slotPorts.set(slot, await freePort());
    mkdirSync(path("spool", slot), { recursive: true });
  }
  const socket = path("munge", "munge.sock");
  const conf = [
    "ClusterName=navarch-test",
    `SlurmctldHost=localhost(127.0.0.1)`,
    `SlurmctldPort=${ctldPort}`,
    "SlurmUser=slurm",
    "SlurmdUser=root",
    "AuthType=auth/munge",
    `AuthInfo=socket=${socket}`,
    "CredType=cred/munge",
    "AuthAltTypes=auth/jwt",
    `AuthAltParameters=jwt_key=${path("jwt.key")}`,
    `StateSaveLocation=${path("state")}`,
    `SlurmdSpoolDir=${path("spool")}/%n`,
    `SlurmctldPidFile=${path("run", "slurmctld.pid")}`,
    `SlurmdPidFile=${path("spool")}/%n/slurmd.pid`,
    `SlurmctldLogFile=${path("log", "slurmctld.log")}`,
    `SlurmdLogFile=${path("log")}/slurmd-%n.log`,
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/none",
    "SelectType=select/cons_tres",
    "SelectTypeParameters=CR_CPU",
    // One CPU per slot whatever the machine has: slurmd takes the configured size as it is.
    "SlurmdParameters=config_overrides",
    "SchedulerType=sched/builtin",
    // Test all pending jobs every second, not every minute: a job placed on a node just
    // resumed or just booted starts at once.
    "SchedulerParameters=sched_interval=1",
    "AccountingStorageType=accounting_storage/none",
    "JobCompType=jobcomp/none",
    "JobAcctGatherType=jobacct_gather/none",
    "MpiDefault=none",
    "ReturnToService=2",
    // slurmctld pings nodes every SlurmdTimeout/3 s, and a resumed node takes jobs after its next ping.
    "SlurmdTimeout=10",
    "MinJobAge=60",
    "KillWait=2",
    ...slots.map((slot) => `NodeName=${slot} NodeAddr=127.0.0.1 Port=${slotPorts.get(slot)} CPUs=1 State=UNKNOWN`),
    ...Object.entries(partitions).map(
      ([name, nodes], i) => `PartitionName=${name} Nodes=${nodes.join(",")} ${i === 0 ? "Default=YES " : ""}MaxTime=INFINITE State=UP`,
    ),
  ];
  const confPath = path("slurm.conf");
  writeFileSync(confPath, `${conf.join("\n")}\n`, { mode: 0o644 });
  const env = { ...process.env, SLURM_CONF: confPath } as Record<string, string>;
  delete env.SLURM_JWT;

  const procs = new Map<string, Subprocess>();
  const spawn = (name: string, cmd: string[], extraEnv: Record<string, string> = {}): Subprocess => {
    const out = openSync(path("log", `${name}.out`), "a");
    const proc = Bun.spawn(cmd, { cwd: dir, env: { ...env, ...extraEnv }, stdout: out, stderr: out, stdin: "ignore" });
    harnessChildren.add(proc);
    procs.set(name, proc);
    log(`slurm harness: started ${name} (pid ${proc.pid})`);
    return proc;
  };
  const logs = async (component: string): Promise<string> => {
    const files =
      component === "slurmctld"
        ? ["slurmctld.log", "slurmctld.out"]
        : component.startsWith("slot")
          ? [`slurmd-${component}.log`, `${component}.out`]
          : [`${component}.out`];
    const texts = await Promise.all(
      files.map((f) =>
        Bun.file(path("log", f))
          .text()
          .catch(() => ""),
      ),
    );
    return texts.join("\n").split("\n").slice(-40).join("\n");
  };
  const run = async (command: string, args: string[]): Promise<string> => {
    const proc = Bun.spawn([command, ...args], { cwd: path("jobs"), env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${code}): ${err.trim() || out.trim()}`);
    return out;
  };

  try {
    // munged, as munge, with every path its own.
    spawn("munged", [
      "runuser",
      "-u",
      "munge",
      "--",
      "/usr/sbin/munged",
      "--foreground",
      "--force",
      `--key-file=${path("munge", "munge.key")}`,
      `--socket=${socket}`,
      `--pid-file=${path("munge", "munged.pid")}`,
      `--log-file=${path("munge", "munged.log")}`,
      `--seed-file=${path("munge", "munged.seed")}`,
    ]);
    await until(
      "munged",
      async () => (await Bun.spawn(["sh", "-c", `munge -n -S ${socket} | unmunge -S ${socket}`], { stdout: "ignore", stderr: "ignore" }).exited) === 0,
      10_000,
      () => logs("munged"),
    );
    // slurmctld (drops to SlurmUser), in the foreground, state cleared.
    spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-c", "-i", "-f", confPath]);
    await until(
      "slurmctld",
      async () => (await run("scontrol", ["ping"])).includes("UP"),
      20_000,
      () => logs("slurmctld"),
    );
    // slurmrestd refuses root: it runs as nobody; SLURM_JWT=daemon has it pass each request's token on.
    spawn(
      "slurmrestd",
      ["/usr/sbin/slurmrestd", "-f", confPath, "-a", "rest_auth/jwt", "-u", "nobody", "-g", "nogroup", "-s", "openapi/v0.0.38", `127.0.0.1:${restPort}`],
      { SLURM_JWT: "daemon" },
    );
    await until(
      "slurmrestd",
      async () => (await fetch(`http://127.0.0.1:${restPort}/openapi/v3`).catch(() => undefined))?.status !== undefined,
      10_000,
      () => logs("slurmrestd"),
    );
  } catch (err) {
    for (const proc of procs.values()) proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const shown = (line: string): Record<string, string> => {
    // `Key=Value Key=Value …`; values with spaces (Reason, Comment) run to the next ` Key=`
    // (scontrol's keys are capitalised; `node=` inside our comment is not one).
    const out: Record<string, string> = {};
    const re = /(?:^|\s)([A-Z][A-Za-z_]*)=/g;
    const keys: { key: string; start: number; valueStart: number }[] = [];
    for (let m = re.exec(line); m !== null; m = re.exec(line)) keys.push({ key: m[1]!, start: m.index, valueStart: m.index + m[0].length });
    keys.forEach((k, i) => (out[k.key] = line.slice(k.valueStart, i + 1 < keys.length ? keys[i + 1]!.start : undefined).trim()));
    return out;
  };

  const harness: SlurmHarness = {
    dir,
    confPath,
    jwtKeyPath: path("jwt.key"),
    restUrl: `http://127.0.0.1:${restPort}`,
    user: "slurm",
    slots,
    startMs: Math.round(performance.now() - started),
    async bootMachine(slot, hostname) {
      await run("scontrol", ["update", `NodeName=${slot}`, `NodeHostname=${hostname}`]);
      if (procs.get(slot)?.exitCode === null) return;
      spawn(slot, ["/usr/sbin/slurmd", "-D", "-N", slot, "-f", confPath]);
      await until(
        `slurmd of ${slot} registered`,
        async () => !/NOT_RESPONDING|\*|UNKNOWN|^DOWN/.test((await harness.node(slot)).state),
        20_000,
        () => logs(slot),
      );
    },
    async shutdownMachine(slot) {
      const proc = procs.get(slot);
      if (proc === undefined || proc.exitCode !== null) return;
      proc.kill("SIGKILL");
      await proc.exited;
      harnessChildren.delete(proc);
      procs.delete(slot);
      log(`slurm harness: ${slot}'s machine is gone (slurmd killed)`);
    },
    running() {
      return slots.filter((slot) => procs.get(slot)?.exitCode === null);
    },
    run,
    async sbatch(args) {
      const out = await run("sbatch", ["--parsable", "-o", path("jobs", "%j.out"), ...args]);
      return Number(out.trim().split(";")[0]);
    },
    async node(name) {
      const fields = shown((await run("scontrol", ["show", "node", name, "-o"])).trim());
      return {
        name: fields.NodeName ?? name,
        state: fields.State ?? "",
        hostname: fields.NodeHostName ?? "",
        reason: (fields.Reason ?? "").replace(/ \[[^\]]*@[^\]]*\]$/, ""),
        comment: fields.Comment === "(null)" ? "" : (fields.Comment ?? ""),
      };
    },
    async job(id) {
      const out = (await run("squeue", ["-h", "-j", String(id), "-t", "all", "-o", "%i|%T|%N|%P|%r"]).catch(() => "")).trim();
      if (out === "") return undefined;
      const [jobId, state, nodes, partition, reason] = out.split("\n")[0]!.split("|");
      return { id: Number(jobId), state: state ?? "", nodes: nodes ?? "", partition: partition ?? "", reason: reason ?? "" };
    },
    logs,
    signal(component, signal) {
      procs.get(component)?.kill(signal);
    },
    async reset() {
      const ids = (await run("squeue", ["-h", "-o", "%i"])).split("\n").filter((x) => x.trim() !== "");
      if (ids.length > 0) await run("scancel", ids).catch(() => undefined);
      for (const slot of slots) {
        await harness.shutdownMachine(slot);
        // Resume is refused for a node that is not drained or down: that is fine.
        await run("scontrol", ["update", `NodeName=${slot}`, "State=RESUME"]).catch(() => undefined);
        await run("scontrol", ["update", `NodeName=${slot}`, `NodeHostname=${slot}`, "Comment="]);
      }
    },
    async stop() {
      for (const [name, proc] of [...procs].reverse()) {
        proc.kill("SIGTERM");
        const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
        if (!exited) proc.kill("SIGKILL");
        harnessChildren.delete(proc);
        procs.delete(name);
      }
      killProcessesIn(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/**
 * Jobs' slurmstepd and scripts are not slurmd's children (slurmstepd detaches), so stopping the
 * daemons leaves a long job running: every process working in the harness's directory goes.
 */
function killProcessesIn(dir: string): void {
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) process.kill(pid, "SIGKILL");
    } catch {
      // gone already, or not ours to look at
    }
  }
}
