// The agent's reporting loop: register, heartbeat on the reconciler's interval,
// and push health events the moment they are found (never waiting for the next
// heartbeat). Events go through the disk spool first, so nothing is lost while
// the reconciler is unreachable; they are resent in order once it answers.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { HEARTBEAT_INTERVAL_SECONDS, MAX_OPEN_FINDINGS, findingKey, timerMs, type AgentHealth, type GpuInfo, type GpuSnapshot, type HealthEvent, type NvmlStatus, type RegisterRequest } from "../schema/wire.ts";
import { NAVARCH_VERSION } from "../schema/version.ts";
import { ReportError, type ReconcilerClient } from "./reporter.ts";
import type { NewEvent, Spool } from "./spool.ts";

/** What the agent knows about this machine's GPUs (NVML, or why it is unavailable). */
export interface GpuSource {
  status(): NvmlStatus;
  health(): AgentHealth;
  driverVersion(): string | undefined;
  cudaVersion(): string | undefined;
  inventory(): GpuInfo[];
  snapshot(): Promise<GpuSnapshot[]>;
  /** Keys (findingKey) of the conditions still open now; without it every finding reported unhealthy stays open. */
  openFindingKeys?(): ReadonlySet<string>;
  close(): void;
}

export interface AgentIdentity {
  nodeId: string;
  pool?: string;
  provider?: string;
  instanceType?: string;
  hostname: string;
  bootId: string;
}

export interface AgentOptions {
  identity: AgentIdentity;
  client: ReconcilerClient;
  spool: Spool;
  gpus: GpuSource;
  log: (line: string) => void;
  /** Used until the reconciler says otherwise in its answers; clamped like them (1 s to 1 h). */
  heartbeatIntervalMs?: number;
  /** Backoff bounds for an unreachable reconciler. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /**
   * Where the node's own credential is kept (in its state directory, mode 0600). A
   * registration with a one-time bootstrap token returns it; every later call, also
   * after a restart, sends it instead.
   */
  credentialFile?: string;
}

export class Agent {
  private registered = false;
  private heartbeatIntervalMs: number;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** Set by a kick that came while the loop was busy, so the next sleep is skipped. */
  private kicked = false;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private lastHeartbeatAt = 0;
  private loopDone: Promise<void> | undefined;
  /** The last event reported for each finding of this boot that is not healthy, by finding key. */
  private readonly openFindings = new Map<string, HealthEvent>();
  /** The highest event seq the reconciler said it holds since this agent last registered. */
  private reconcilerSeq = 0;

  constructor(private readonly opts: AgentOptions) {
    this.heartbeatIntervalMs = heartbeatIntervalMs((opts.heartbeatIntervalMs ?? 30_000) / 1000);
    const stored = readCredential(opts.credentialFile);
    if (stored !== undefined) opts.client.useNodeToken(stored);
  }

  /** Whether calls carry the node's own credential (rather than the token it was started with). */
  get usingNodeCredential(): boolean {
    return this.opts.client.usingNodeToken;
  }

  start(): void {
    this.loopDone = this.loop();
  }

  /** Records a finding and pushes it at once (through the spool). */
  report(event: Omit<NewEvent, "bootId">): HealthEvent {
    const full = this.opts.spool.append({ ...event, bootId: this.opts.identity.bootId });
    if (full.severity === "healthy") this.openFindings.delete(findingKey(full));
    else this.openFindings.set(findingKey(full), full);
    this.kick();
    return full;
  }

  /** Stops the loop after one last attempt to send what is spooled. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.kick();
    await this.loopDone;
  }

  /** Ends the current wait, unless the reconciler is failing: then the backoff holds. */
  private kick(): void {
    if (this.failures > 0 && !this.stopped) return;
    this.kicked = true;
    this.wake?.();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        if (!this.registered) await this.register();
        await this.flushEvents();
        if (Date.now() - this.lastHeartbeatAt >= this.heartbeatIntervalMs) await this.heartbeat();
        this.failures = 0;
      } catch (err) {
        this.onFailure(err);
      }
      await this.sleep(this.nextDelay());
    }
    // Best effort on the way out; whatever is not acknowledged stays spooled.
    if (this.registered) await this.flushEvents().catch(() => undefined);
  }

  private async register(): Promise<void> {
    const { identity, gpus } = this.opts;
    const req: RegisterRequest = {
      nodeId: identity.nodeId,
      hostname: identity.hostname,
      bootId: identity.bootId,
      agentVersion: NAVARCH_VERSION,
      spoolId: this.opts.spool.id,
      nvml: gpus.status(),
      gpus: gpus.inventory(),
      ...optional("pool", identity.pool),
      ...optional("provider", identity.provider),
      ...optional("instanceType", identity.instanceType),
      ...optional("driverVersion", gpus.driverVersion()),
      ...optional("cudaVersion", gpus.cudaVersion()),
      ...optional("openFindings", this.resendable()),
    };
    const res = await this.opts.client.register(req);
    if (res.nodeToken !== undefined) this.keepCredential(res.nodeToken);
    this.opts.spool.adopt(res.lastEventSeq, res.sameSpool);
    this.reconcilerSeq = res.lastEventSeq;
    this.heartbeatIntervalMs = heartbeatIntervalMs(res.heartbeatIntervalSeconds);
    this.registered = true;
    // Heartbeat right away: the reconciler gets readings and the verdict without waiting an interval.
    this.lastHeartbeatAt = 0;
    this.opts.log(
      `registered as ${identity.nodeId} (${req.gpus.length} GPUs${req.nvml.available ? "" : `; NVML unavailable: ${req.nvml.error ?? "unknown"}`})`,
    );
  }

  /**
   * The open findings the reconciler already acknowledged, sent again with every
   * registration: a reconciler whose database was lost or restored from an older copy
   * stores what it lacks, and never takes a broken GPU back into service for want of it.
   * Unacknowledged ones are still in the spool and go the usual way.
   */
  private resendable(): HealthEvent[] | undefined {
    const stillOpen = this.opts.gpus.openFindingKeys?.();
    const acked = this.opts.spool.acknowledgedSeq;
    const out = [...this.openFindings.entries()].filter(([key, e]) => e.seq <= acked && (stillOpen === undefined || stillOpen.has(key))).map(([, e]) => e);
    return out.length > 0 ? out.slice(-MAX_OPEN_FINDINGS) : undefined;
  }

  private async heartbeat(): Promise<void> {
    const res = await this.opts.client.heartbeat({
      nodeId: this.opts.identity.nodeId,
      bootId: this.opts.identity.bootId,
      sentAt: new Date().toISOString(),
      nvml: this.opts.gpus.status(),
      health: this.opts.gpus.health(),
      gpus: await this.opts.gpus.snapshot(),
    });
    this.heartbeatIntervalMs = heartbeatIntervalMs(res.heartbeatIntervalSeconds);
    this.lastHeartbeatAt = Date.now();
    if (res.lastEventSeq !== undefined && res.lastEventSeq < this.reconcilerSeq) {
      // It held more before: it lost what it stored (its database restored from an older copy).
      this.opts.log(`the reconciler now holds events up to seq ${res.lastEventSeq} only, after ${this.reconcilerSeq} before; registering again to re-send the open findings`);
      this.registered = false;
    }
  }

  /** Sends spooled events oldest first until the spool is empty; one flush at a time. */
  private flushEvents(): Promise<void> {
    if (this.flushing) return this.flushing;
    const run = async () => {
      const { spool, client, identity } = this.opts;
      while (spool.size > 0) {
        const res = await client.sendEvents({ nodeId: identity.nodeId, events: spool.nextBatch() });
        spool.acknowledge(res.ackedSeq);
        this.reconcilerSeq = Math.max(this.reconcilerSeq, res.ackedSeq);
      }
    };
    // Cleared from outside the async body: a body that finishes synchronously would
    // otherwise clear the field before it was assigned.
    const flushing = run().finally(() => {
      if (this.flushing === flushing) this.flushing = undefined;
    });
    this.flushing = flushing;
    return flushing;
  }

  /** Stores the credential a bootstrap registration returned, then uses it. */
  private keepCredential(token: string): void {
    const file = this.opts.credentialFile;
    if (file !== undefined) {
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, file);
    }
    this.opts.client.useNodeToken(token);
    this.opts.log(`received this node's own credential${file === undefined ? " (not kept: no state directory)" : ` (kept in ${file})`}; the bootstrap token is spent`);
  }

  private onFailure(err: unknown): void {
    this.failures++;
    if (err instanceof ReportError && err.unauthorized && this.opts.client.usingNodeToken) {
      // The reconciler does not know our credential (its database was replaced, or it was revoked).
      this.opts.client.useInitialToken();
      this.registered = false;
      this.opts.log(`the reconciler refused this node's credential (${err.message}); registering again with the token the agent was started with`);
      return;
    }
    if (err instanceof ReportError && err.needsRegistration) {
      this.registered = false;
      this.opts.log("reconciler does not know this node; registering again");
      return;
    }
    // Log the first failure and then every tenth, so an outage does not flood the journal.
    if (this.failures === 1 || this.failures % 10 === 0) {
      const spooled = this.opts.spool.size;
      this.opts.log(
        `${err instanceof Error ? err.message : String(err)}${spooled > 0 ? ` (${spooled} events spooled)` : ""}; retrying`,
      );
    }
  }

  private nextDelay(): number {
    if (this.failures > 0) {
      const min = this.opts.retryMinMs ?? 500;
      const max = this.opts.retryMaxMs ?? 30_000;
      const exp = Math.min(max, min * 2 ** Math.min(this.failures - 1, 16));
      return exp / 2 + Math.random() * (exp / 2); // jitter: many agents must not retry in step
    }
    if (this.opts.spool.size > 0) return 0;
    return Math.max(0, this.lastHeartbeatAt + this.heartbeatIntervalMs - Date.now());
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped || this.kicked) {
      this.kicked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // Never past what a timer holds: above it setTimeout fires at once and the loop would spin.
      const timer = setTimeout(done, timerMs(ms));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        this.kicked = false;
        done();
      };
    });
  }
}

/**
 * The interval the agent heartbeats at, in ms. The wire schema already refuses answers
 * outside 1 s to 1 h; this also holds for the constructor's option and any other caller.
 */
export function heartbeatIntervalMs(seconds: number): number {
  const { min, max } = HEARTBEAT_INTERVAL_SECONDS;
  if (Number.isNaN(seconds)) return 30_000;
  return Math.min(max, Math.max(min, seconds)) * 1000;
}

function readCredential(file: string | undefined): string | undefined {
  if (file === undefined || !existsSync(file)) return undefined;
  const token = readFileSync(file, "utf8").trim();
  return token.length >= 32 ? token : undefined;
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
