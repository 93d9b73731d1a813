// The agent's reporting: register, heartbeat on the reconciler's interval, and push health events
// the moment they are found. Two loops that never wait on each other: heartbeats go out whatever
// happens to events (a backlog, a 413, a full disk), and events go out as soon as they are found.
// Events go through the spool first, so nothing is lost while the reconciler is unreachable; they
// are resent in order, in batches bounded by bytes, once it answers.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { NAVARCH_VERSION } from "../schema/version.ts";
import {
  HEARTBEAT_INTERVAL_SECONDS,
  MAX_EVENT_BATCH_BYTES,
  MAX_EVENTS_PER_BATCH,
  MAX_OPEN_FINDINGS,
  findingKey,
  timerMs,
  type AgentHealth,
  type EventBatchResponse,
  type GpuInfo,
  type GpuSnapshot,
  type HealthEvent,
  type NvmlStatus,
  type RegisterRequest,
} from "../schema/wire.ts";
import { Backoff } from "./backoff.ts";
import { ReportError, type ReconcilerClient } from "./reporter.ts";
import { cutMessage, type NewEvent, type Spool } from "./spool.ts";

/** What the agent knows about this machine's GPUs (NVML, or why it is unavailable). */
export interface GpuSource {
  status(): NvmlStatus;
  health(): AgentHealth;
  driverVersion(): string | undefined;
  cudaVersion(): string | undefined;
  inventory(): GpuInfo[];
  /** The latest readings; never waits on the driver. */
  snapshot(): GpuSnapshot[];
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
  /** Backoff bounds for an unreachable reconciler (backoff.ts has the defaults). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /**
   * Where the node's own credential is kept (in its state directory, mode 0600). A
   * registration with a one-time bootstrap token returns it; every later call, also
   * after a restart, sends it instead.
   */
  credentialFile?: string;
  /** Takes the reconciler's requests from heartbeat answers (requests.ts); without it they are ignored. */
  requests?: RequestReceiver;
}

/** What the agent hands the requests of each heartbeat answer to. */
export interface RequestReceiver {
  start(): void;
  offer(items: readonly unknown[]): void;
  stop(): Promise<void>;
}

/** A message that fits any proxy: what an event is cut to when even one event alone is refused as too large. */
const LAST_RESORT_MESSAGE = 512;

/** A wait that another loop can end early. */
class Sleeper {
  private wake: (() => void) | undefined;
  private woken = false;

  sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // Never past what a timer holds: above it setTimeout fires at once and the loop would spin.
      const timer = setTimeout(done, timerMs(ms));
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = undefined;
        self.woken = false;
        resolve();
      }
      this.wake = done;
    });
  }

  /** Ends the current sleep, or the next one before it starts. */
  interrupt(): void {
    if (this.wake) this.wake();
    else this.woken = true;
  }
}

/** Logs a failing call once per change of what is wrong, and once when it works again. */
class FailureLog {
  private current: string | undefined;
  private failures = 0;
  private since = 0;

  constructor(
    private readonly what: string,
    private readonly log: (line: string) => void,
  ) {}

  failed(err: unknown, detail = ""): void {
    this.failures++;
    const key = err instanceof ReportError ? `${err.kind}:${err.status}` : "other";
    if (key === this.current) return;
    if (this.current === undefined) this.since = Date.now();
    this.current = key;
    this.log(`${this.what}: ${err instanceof Error ? err.message : String(err)}${detail}; retrying (logged again when this changes)`);
  }

  succeeded(): void {
    if (this.current !== undefined)
      this.log(`${this.what}: the reconciler answers again (after ${this.failures} failed attempts over ${Math.round((Date.now() - this.since) / 1000)} s)`);
    this.current = undefined;
    this.failures = 0;
  }
}

export class Agent {
  private registered = false;
  private heartbeatIntervalMs: number;
  private stopped = false;
  private readonly beats = new Sleeper();
  private readonly sends = new Sleeper();
  private readonly beatBackoff: Backoff;
  private readonly sendBackoff: Backoff;
  private readonly beatLog: FailureLog;
  private readonly sendLog: FailureLog;
  private loops: Promise<void>[] = [];
  /** The last event reported for each finding of this boot that is not healthy, by finding key. */
  private readonly openFindings = new Map<string, HealthEvent>();
  /** Findings the agent raised about itself (its spool): open while their key is here. */
  private readonly ownFindings = new Set<string>();
  /** The highest event seq the reconciler said it holds since this agent last registered. */
  private reconcilerSeq = 0;
  private spoolFindingOpen = false;
  private watchingSpool = false;

  constructor(private readonly opts: AgentOptions) {
    this.heartbeatIntervalMs = heartbeatIntervalMs((opts.heartbeatIntervalMs ?? 30_000) / 1000);
    const backoff = {
      ...(opts.retryMinMs !== undefined ? { minMs: opts.retryMinMs } : {}),
      ...(opts.retryMaxMs !== undefined ? { maxMs: opts.retryMaxMs } : {}),
    };
    this.beatBackoff = new Backoff(backoff);
    this.sendBackoff = new Backoff(backoff);
    this.beatLog = new FailureLog("heartbeat", opts.log);
    this.sendLog = new FailureLog("events", opts.log);
    const stored = readCredential(opts.credentialFile);
    if (stored !== undefined) opts.client.useNodeToken(stored);
  }

  /** Whether calls carry the node's own credential (rather than the token it was started with). */
  get usingNodeCredential(): boolean {
    return this.opts.client.usingNodeToken;
  }

  start(): void {
    // A spool that could not be opened is reported before anything else.
    this.watchSpool();
    this.opts.requests?.start();
    this.loops = [this.heartbeatLoop(), this.eventLoop()];
  }

  /** Records a finding and pushes it at once (through the spool). */
  report(event: Omit<NewEvent, "bootId">): HealthEvent {
    const full = this.opts.spool.append({ ...event, bootId: this.opts.identity.bootId });
    if (full.severity === "healthy") this.openFindings.delete(findingKey(full));
    else this.openFindings.set(findingKey(full), full);
    this.watchSpool();
    // While sending fails the back-off holds: a burst of findings must not become a burst of retries.
    if (this.sendBackoff.count === 0) this.sends.interrupt();
    return full;
  }

  /** Stops both loops, then makes one last attempt to send what is spooled. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.beats.interrupt();
    this.sends.interrupt();
    await Promise.all(this.loops);
    await this.opts.requests?.stop();
    // Best effort on the way out; whatever is not acknowledged stays spooled.
    if (this.registered) await this.flushEvents().catch(() => undefined);
  }

  private async heartbeatLoop(): Promise<void> {
    while (!this.stopped) {
      let delay: number;
      try {
        if (!this.registered) await this.register();
        await this.heartbeat();
        this.beatBackoff.succeed();
        this.beatLog.succeeded();
        // The reconciler is back: spooled events need not wait out their own back-off.
        if (this.opts.spool.size > 0) this.sends.interrupt();
        delay = this.registered ? this.heartbeatIntervalMs : 0;
      } catch (err) {
        delay = this.failed(err, this.beatBackoff, this.beatLog);
      }
      this.watchSpool();
      if (!this.stopped) await this.beats.sleep(delay);
    }
  }

  private async eventLoop(): Promise<void> {
    while (!this.stopped) {
      if (!this.registered || this.opts.spool.size === 0) {
        await this.sends.sleep(this.heartbeatIntervalMs);
        continue;
      }
      let delay = 0;
      try {
        await this.flushEvents();
        this.sendBackoff.succeed();
        this.sendLog.succeeded();
      } catch (err) {
        delay = this.failed(err, this.sendBackoff, this.sendLog);
      }
      if (delay > 0 && !this.stopped) await this.sends.sleep(delay);
    }
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
    this.sends.interrupt();
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
    const out = [...this.openFindings.entries()]
      .filter(([key, e]) => e.seq <= acked && (stillOpen === undefined || stillOpen.has(key) || this.ownFindings.has(key)))
      .map(([, e]) => e);
    return out.length > 0 ? out.slice(-MAX_OPEN_FINDINGS) : undefined;
  }

  private async heartbeat(): Promise<void> {
    const res = await this.opts.client.heartbeat({
      nodeId: this.opts.identity.nodeId,
      bootId: this.opts.identity.bootId,
      sentAt: new Date().toISOString(),
      nvml: this.opts.gpus.status(),
      health: this.opts.gpus.health(),
      gpus: this.opts.gpus.snapshot(),
    });
    this.heartbeatIntervalMs = heartbeatIntervalMs(res.heartbeatIntervalSeconds);
    if (res.requests !== undefined && res.requests.length > 0) this.opts.requests?.offer(res.requests);
    if (res.lastEventSeq !== undefined && res.lastEventSeq < this.reconcilerSeq) {
      // It held more before: it lost what it stored (its database restored from an older copy).
      this.opts.log(
        `the reconciler now holds events up to seq ${res.lastEventSeq} only, after ${this.reconcilerSeq} before; registering again to re-send the open findings`,
      );
      this.registered = false;
    }
  }

  /**
   * Sends spooled events oldest first until the spool is empty, in batches bounded by count and
   * bytes. A batch refused as too large (413, from the reconciler or anything in between) is
   * split in half; one event alone that is still too large goes with its message cut short.
   */
  private async flushEvents(): Promise<void> {
    const { spool, client, identity } = this.opts;
    let maxEvents = MAX_EVENTS_PER_BATCH;
    let maxBytes = MAX_EVENT_BATCH_BYTES;
    while (spool.size > 0 && this.registered) {
      const batch = spool.nextBatch(maxEvents, maxBytes);
      let res: EventBatchResponse;
      try {
        res = await client.sendEvents({ nodeId: identity.nodeId, events: batch });
      } catch (err) {
        if (!(err instanceof ReportError && err.kind === "too_large")) throw err;
        if (batch.length > 1) {
          maxEvents = Math.ceil(batch.length / 2);
          maxBytes = Math.max(1024, Math.floor(maxBytes / 2));
          continue;
        }
        const [one] = batch as [HealthEvent];
        if (one.message.length <= LAST_RESORT_MESSAGE) throw err;
        res = await client.sendEvents({ nodeId: identity.nodeId, events: [{ ...one, message: cutMessage(one.message, LAST_RESORT_MESSAGE) }] });
      }
      spool.acknowledge(res.ackedSeq);
      this.reconcilerSeq = Math.max(this.reconcilerSeq, res.ackedSeq);
      this.watchSpool();
    }
  }

  /** What a failed call means for the loop that made it; returns how long that loop waits. */
  private failed(err: unknown, backoff: Backoff, log: FailureLog): number {
    if (err instanceof ReportError && err.unauthorized && this.opts.client.usingNodeToken) {
      // The reconciler does not know our credential (its database was replaced, or it was revoked).
      this.opts.client.useInitialToken();
      this.registered = false;
      this.opts.log(`the reconciler refused this node's credential (${err.message}); registering again with the token the agent was started with`);
      this.beats.interrupt();
      return 0;
    }
    if (err instanceof ReportError && err.needsRegistration) {
      this.registered = false;
      log.failed(err, "; registering again");
      this.beats.interrupt();
      return backoff.fail();
    }
    const spooled = this.opts.spool.size;
    log.failed(err, spooled > 0 ? ` (${spooled} events spooled)` : "");
    return backoff.fail();
  }

  /**
   * Raises "event spool unwritable" while the disk refuses the spool (the events are in memory
   * and are sent all the same), and clears it once the disk takes them again.
   */
  private watchSpool(): void {
    if (this.watchingSpool) return;
    this.watchingSpool = true;
    try {
      const { spool } = this.opts;
      if (this.spoolFindingOpen) spool.retryDisk();
      const problem = spool.problem;
      if ((problem !== undefined) === this.spoolFindingOpen) return;
      this.spoolFindingOpen = problem !== undefined;
      const dropped = spool.dropped > 0 ? `; ${spool.dropped} superseded or oldest events given up` : "";
      const message =
        problem !== undefined
          ? `event spool unwritable: ${problem}; events are kept in memory (${spool.size} now) and sent as usual${dropped}`
          : `event spool writable again: ${spool.dir}${dropped}`;
      this.opts.log(message);
      const full = this.report({
        check: "spool",
        code: "unwritable",
        severity: problem !== undefined ? "degraded" : "healthy",
        action: "none",
        message,
        time: new Date().toISOString(),
      });
      if (problem !== undefined) this.ownFindings.add(findingKey(full));
      else this.ownFindings.delete(findingKey(full));
    } finally {
      this.watchingSpool = false;
    }
  }

  /** Stores the credential a bootstrap registration returned, then uses it. */
  private keepCredential(token: string): void {
    const file = this.opts.credentialFile;
    let kept = "(not kept: no state directory)";
    if (file !== undefined) {
      try {
        const tmp = `${file}.tmp`;
        writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
        chmodSync(tmp, 0o600);
        renameSync(tmp, file);
        kept = `(kept in ${file})`;
      } catch (err) {
        // Used from memory: after a restart the agent needs a fresh bootstrap token or the fleet's token.
        kept = `(not kept: ${err instanceof Error ? err.message : String(err)})`;
      }
    }
    this.opts.client.useNodeToken(token);
    this.opts.log(`received this node's own credential ${kept}; the bootstrap token is spent`);
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
  try {
    if (file === undefined || !existsSync(file)) return undefined;
    const token = readFileSync(file, "utf8").trim();
    return token.length >= 32 ? token : undefined;
  } catch {
    return undefined;
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
