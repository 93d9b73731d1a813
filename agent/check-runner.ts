// Runs one check of the agent's configuration (schema/agent-config.ts) for a request: the
// command the machine's owner wrote, in a process group of its own (spawned detached: setsid),
// with the owner's timeout. At the timeout the whole group gets SIGTERM, then SIGKILL after a
// grace period; when the check's first process ends, whatever it left in its group is killed
// too, so nothing a check started outlives it. What it writes to stdout and stderr is kept
// bounded: the last 64 KiB, cut on a character boundary.
import { readFileSync } from "node:fs";
import { textSuffix } from "../schema/text.ts";
import { MAX_REQUEST_OUTPUT } from "../schema/wire.ts";
import { commandOf, type AgentCheck } from "../schema/agent-config.ts";

/** How a check ended. */
export interface CheckResult {
  state: "succeeded" | "failed" | "timed_out";
  exitCode?: number;
  signal?: string;
  /** Why it failed without an exit code of its own (it could not start, the agent stopped it). */
  reason?: string;
  output: string;
  outputBytes: number;
  outputCut: boolean;
  durationMs: number;
}

/** The part of a spawned process the runner uses (Bun.spawn's Subprocess has it). */
export interface CheckProcess {
  readonly pid: number;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | number | null;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
}

/** Starts a check's process: detached (its own session and process group), stdin closed, both outputs piped. */
export type Spawner = (argv: string[], env: Record<string, string | undefined>) => CheckProcess;

export const spawnDetached: Spawner = (argv, env) => Bun.spawn(argv, { env, detached: true, stdin: "ignore", stdout: "pipe", stderr: "pipe" });

/** The agent's secrets, which no check needs: never in a check's environment. */
const WITHHELD_ENV = ["NAVARCH_AUTH_TOKEN", "NAVARCH_BOOTSTRAP_TOKEN"];

export interface RunOptions {
  spawn?: Spawner;
  /** Between the timeout's SIGTERM and its SIGKILL (default 5 s). */
  graceMs?: number;
  /** Most bytes of output kept (default MAX_REQUEST_OUTPUT). */
  maxOutputBytes?: number;
  /** Added to the check's environment (NAVARCH_REQUEST_ID, NAVARCH_CHECK). */
  env?: Record<string, string>;
}

/** A check under way. */
export interface RunningCheck {
  /** The check's first process, which leads its process group (undefined when it could not start). */
  readonly pid: number | undefined;
  readonly result: Promise<CheckResult>;
  /** Ends it early (the agent stops): the group is killed as at a timeout, and the result says `reason`. */
  stop(reason: string): void;
}

/** Starts `check`; its result says how it ended. */
export function runCheck(name: string, check: AgentCheck, opts: RunOptions = {}): RunningCheck {
  const started = performance.now();
  const tail = new OutputTail(opts.maxOutputBytes ?? MAX_REQUEST_OUTPUT);
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  for (const key of WITHHELD_ENV) delete env[key];
  const argv = commandOf(check);
  let proc: CheckProcess;
  try {
    proc = (opts.spawn ?? spawnDetached)(argv, env);
  } catch (err) {
    const result: CheckResult = {
      state: "failed",
      reason: `check ${name} could not start ${argv[0]}: ${err instanceof Error ? err.message : String(err)}`,
      ...tail.result(),
      durationMs: Math.round(performance.now() - started),
    };
    return { pid: undefined, result: Promise.resolve(result), stop: () => undefined };
  }
  const pid = proc.pid;
  const graceMs = opts.graceMs ?? 5000;
  let timedOut = false;
  let stoppedFor: string | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const terminate = () => {
    if (killTimer !== undefined) return;
    killGroup(pid, "SIGTERM");
    killTimer = setTimeout(() => killGroup(pid, "SIGKILL"), graceMs);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    terminate();
  }, check.timeout);
  const readers = [read(proc.stdout, tail), read(proc.stderr, tail)];
  const result = (async (): Promise<CheckResult> => {
    await proc.exited;
    clearTimeout(timer);
    clearTimeout(killTimer);
    // What the check left in its group (a process it put in the background) goes with it.
    killGroup(pid, "SIGKILL");
    // A process that left the group (setsid) may still hold a pipe: its output is not waited for.
    await Promise.race([Promise.all(readers.map((r) => r.done)), Bun.sleep(2000)]);
    for (const r of readers) r.cancel();
    const durationMs = Math.round(performance.now() - started);
    const ended = {
      ...(proc.exitCode !== null ? { exitCode: proc.exitCode } : {}),
      ...(typeof proc.signalCode === "string" ? { signal: proc.signalCode } : {}),
      ...tail.result(),
      durationMs,
    };
    if (stoppedFor !== undefined) return { state: "failed", reason: stoppedFor, ...ended };
    if (timedOut)
      return { state: "timed_out", reason: `check ${name} ran past its timeout of ${shortDuration(check.timeout)}; its process group was killed`, ...ended };
    return { state: proc.exitCode === 0 ? "succeeded" : "failed", ...ended };
  })();
  return {
    pid,
    result,
    stop(reason) {
      stoppedFor ??= reason;
      clearTimeout(timer);
      terminate();
    },
  };
}

/** 600000 → `10m`, 5400000 → `1h30m`, 500 → `500ms`: as a timeout is written in the file. */
export function shortDuration(ms: number): string {
  let rest = Math.round(ms);
  let out = "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out === "" ? "0s" : out;
}

/** Signals a process group; one that is gone already is no error. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left in the group
  }
}

/** A process's start time (clock ticks since boot, /proc/PID/stat field 22): with the pid, it names one process, not a reused pid. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

function read(stream: ReadableStream<Uint8Array>, tail: OutputTail): { done: Promise<void>; cancel: () => void } {
  const reader = stream.getReader();
  const done = (async () => {
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) return;
        tail.push(value);
      }
    } catch {
      // cancelled
    }
  })();
  return { done, cancel: () => void reader.cancel().catch(() => undefined) };
}

/** The last `max` bytes of a check's output (both streams, in the order they arrive), and how much there was. */
export class OutputTail {
  private chunks: Uint8Array[] = [];
  private kept = 0;
  private total = 0;

  constructor(private readonly max: number) {}

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.total += chunk.length;
    this.chunks.push(chunk);
    this.kept += chunk.length;
    while (this.chunks.length > 1 && this.kept - this.chunks[0]!.length >= this.max) this.kept -= this.chunks.shift()!.length;
  }

  /** The kept bytes as text: cut on a character boundary, bytes that are not UTF-8 shown as U+FFFD. */
  result(): { output: string; outputBytes: number; outputCut: boolean } {
    let bytes = Buffer.concat(this.chunks);
    const cut = this.total > Math.min(bytes.length, this.max);
    if (bytes.length > this.max) bytes = bytes.subarray(bytes.length - this.max);
    // A cut inside a character leaves its continuation bytes first: they go, not a U+FFFD.
    let start = 0;
    if (cut) while (start < 3 && start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
    const text = new TextDecoder().decode(bytes.subarray(start));
    return { output: textSuffix(text, MAX_REQUEST_OUTPUT), outputBytes: this.total, outputCut: cut };
  }
}
