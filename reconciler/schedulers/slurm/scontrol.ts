// scontrol, for what slurmrestd cannot do: node updates before v0.0.39 (Slurm 22.05) and
// requeueing jobs (no REST version has it). Run without a shell (arguments go as they are),
// authenticated by the same JWT as the REST calls (SLURM_JWT), pointed at the cluster by
// SLURM_CONF when configured. Its one-line errors become typed SchedulerErrors.
import { SchedulerError, type SchedulerErrorKind } from "../scheduler.ts";

export interface ScontrolOptions {
  /** The binary (a name on PATH or a path). */
  binary: string;
  /** SLURM_CONF for it; absent: its own default. */
  slurmConf?: string;
  token: () => string;
  timeoutMs?: number;
}

export class Scontrol {
  /** Runs under way: a stop kills them (a stop never waits for slurmctld). */
  private readonly running = new Set<ReturnType<typeof Bun.spawn>>();
  private stopped = false;

  constructor(private readonly opts: ScontrolOptions) {}

  /** Kills every run under way, and refuses new ones. */
  stop(): void {
    this.stopped = true;
    for (const child of this.running) child.kill("SIGKILL");
  }

  /** `scontrol update NodeName=… State=… Reason=… Comment=…`; each field only when given. */
  async updateNode(name: string, fields: { state?: "DRAIN" | "RESUME"; reason?: string; comment?: string }): Promise<void> {
    const args = ["update", `NodeName=${name}`];
    if (fields.state !== undefined) args.push(`State=${fields.state}`);
    if (fields.reason !== undefined) args.push(`Reason=${fields.reason}`);
    if (fields.comment !== undefined) args.push(`Comment=${fields.comment}`);
    await this.run(args);
  }

  /** `scontrol requeue ID,ID,…`: the jobs go back to pending and leave their nodes. */
  async requeue(jobIds: readonly number[]): Promise<void> {
    if (jobIds.length === 0) return;
    await this.run(["requeue", jobIds.join(",")]);
  }

  async run(args: string[]): Promise<string> {
    const env: Record<string, string> = { ...process.env, SLURM_JWT: this.opts.token() } as Record<string, string>;
    if (this.opts.slurmConf !== undefined) env.SLURM_CONF = this.opts.slurmConf;
    let child: ReturnType<typeof Bun.spawn>;
    if (this.stopped) throw new SchedulerError("slurm", "unreachable", "scontrol: the reconciler is stopping");
    try {
      child = Bun.spawn([this.opts.binary, ...args], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    } catch (err) {
      throw new SchedulerError("slurm", "invalid", `cannot run ${this.opts.binary} (slurm.scontrol): ${err instanceof Error ? err.message : String(err)}`);
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), this.opts.timeoutMs ?? 15_000);
    this.running.add(child);
    try {
      const [stdout, stderr, code] = await Promise.all([
        new Response(child.stdout as ReadableStream).text(),
        new Response(child.stderr as ReadableStream).text(),
        child.exited,
      ]);
      if (code === 0) return stdout;
      const line = (stderr.trim() || stdout.trim() || `exit status ${code}`).split("\n").slice(-1)[0]!;
      throw new SchedulerError("slurm", classify(line, code), `scontrol ${args[0]}: ${line}`);
    } finally {
      clearTimeout(timer);
      this.running.delete(child);
    }
  }
}

/** What scontrol's last error line means for the caller. */
export function classify(line: string, code: number | null): SchedulerErrorKind {
  const text = line.toLowerCase();
  if (code === null || code === 137 || /unable to contact slurm controller|connection refused|timed out|socket timed out/.test(text)) return "unreachable";
  if (/invalid node name|invalid job id|does not exist/.test(text)) return "not_found";
  if (/authentication|credential|token|invalid user id|permission denied|access\/permission/.test(text)) return "auth";
  if (/invalid|unrecognized|requested operation not supported|job is no longer pending/.test(text)) return "refused";
  return "refused";
}
