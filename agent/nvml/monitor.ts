// The main-thread API of the NVML binding: startNvmlMonitor() starts two workers (worker.ts) that
// own every NVML call, and returns an object whose methods never block the main thread.
//
//   const nvml = await startNvmlMonitor({ onEvent, onHang });
//   nvml.status                  // wire NvmlStatus: available?, libraryPath, error, triedPaths
//   await nvml.inventory()       // driver/CUDA versions and every GPU's identity
//   await nvml.snapshot()        // every reading of every GPU (rejects NvmlUnresponsiveError on a hang)
//   await nvml.close()
//
// Events (Xid, ECC, …) arrive through onEvent as soon as nvmlEventSetWait_v2 returns them. A
// call that exceeds its deadline is reported once through onHang ("GPU driver unresponsive")
// and once through onRecover if it ever returns; meanwhile the main thread keeps serving.
import type { NvmlStatus } from "../../schema/wire.ts";
import { DEFAULT_EVENT_MASK, DEFAULT_FIELD_IDS } from "./decode.ts";
import { failed, nvmlErrorInfo, type NvmlErrorInfo } from "./errors.ts";
import type { LoadAttempt, NvmlDiscoveryOptions } from "./library.ts";
import type { MainToWorker, WorkerToMain } from "./protocol.ts";
import type { EventRegistration, NvmlCapabilities, NvmlEvent, NvmlEventLoopError, NvmlInventory, NvmlSnapshot } from "./types.ts";
import { CallWatchdog, callInProgress, createTrackerBuffer, hangMessage, type NvmlHang } from "./watchdog.ts";
import { NVML_WORKER_ENTRYPOINT, NVML_WORKER_URL, NVML_WORKER_URL_OR_NULL } from "./worker-url.ts";

export interface NvmlMonitorOptions {
  /** Explicit libnvidia-ml.so.1 (tried first); default: env NAVARCH_NVML_LIBRARY. */
  libraryPath?: string;
  /** A driver root such as /run/nvidia/driver; default: env NAVARCH_NVIDIA_DRIVER_ROOT. */
  driverRoot?: string;
  /** Try only the explicit path. */
  explicitOnly?: boolean;
  /** Deadline of one snapshot()/inventory() (ms, default 5000). */
  pollDeadlineMs?: number;
  /** Deadline of loading + nvmlInit (ms, default 30000: init is slow without persistence mode). */
  initDeadlineMs?: number;
  /** Start the event worker (default true). */
  events?: boolean;
  /** Event types to register, ANDed with each GPU's supported types (DEFAULT_EVENT_MASK). */
  eventMask?: number;
  /** Timeout of each nvmlEventSetWait_v2 call (ms, default 500). */
  eventWaitSliceMs?: number;
  /** Pause before re-creating the event set after a wait error (ms, default 1000). */
  eventRetryDelayMs?: number;
  /** Field ids of the per-GPU nvmlDeviceGetFieldValues batch (DEFAULT_FIELD_IDS). */
  fieldIds?: readonly number[];
  onEvent?: (event: NvmlEvent) => void;
  /** nvmlEventSetWait_v2 failed (e.g. GPU_IS_LOST); the worker re-creates the event set. */
  onEventError?: (error: NvmlEventLoopError) => void;
  /** The event set was re-created: the new per-GPU registrations. */
  onRegistrations?: (registrations: readonly EventRegistration[]) => void;
  /** "GPU driver unresponsive": an NVML call has not returned within its deadline. */
  onHang?: (hang: NvmlHang) => void;
  /** The call reported by onHang has returned after `stalledMs`. */
  onRecover?: (hang: NvmlHang, stalledMs: number) => void;
  /** A worker failed outside NVML (a bug, or the worker module missing from a compiled binary). */
  onWorkerError?: (error: Error) => void;
}

/** Why NVML is not available. */
export type NvmlOpenFailure =
  | { stage: "load"; message: string; attempts: LoadAttempt[] }
  | { stage: "init"; message: string; attempts: LoadAttempt[]; libraryPath: string; error: NvmlErrorInfo }
  | { stage: "unresponsive"; message: string; hang: NvmlHang }
  | { stage: "worker"; message: string };

export interface NvmlMonitor {
  /** For the wire (RegisterRequest/Heartbeat.nvml). While a call hangs, `error` says so. */
  readonly status: NvmlStatus;
  /** Typed cause when status.available is false. */
  readonly failure: NvmlOpenFailure | null;
  /** The library in use (as tried, or the file the loader picked for the bare soname). */
  readonly libraryPath: string | null;
  /** Every location tried, in order, with the outcome of each. */
  readonly attempts: readonly LoadAttempt[];
  readonly capabilities: NvmlCapabilities | null;
  /** Per-GPU event registration (empty when events are off or unavailable). */
  readonly eventRegistrations: readonly EventRegistration[];
  /** Why the event worker is not running, if it is not. */
  readonly eventsError: string | null;
  /** The hang in progress, if any. */
  hang(): NvmlHang | null;
  /** All readings of all GPUs. Rejects with NvmlUnresponsiveError when the driver hangs. */
  snapshot(): Promise<NvmlSnapshot>;
  /** Driver/CUDA versions and GPU identities. Rejects with NvmlUnresponsiveError on a hang. */
  inventory(): Promise<NvmlInventory>;
  close(): Promise<void>;
}

/** snapshot()/inventory() did not complete within the deadline (or an earlier call still has not). */
export class NvmlUnresponsiveError extends Error {
  override readonly name = "NvmlUnresponsiveError";
  constructor(readonly hang: NvmlHang) {
    super(hang.message);
  }
}

const WIRE_TEXT = 256;
const WIRE_ERROR = 4096;
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

interface Pending {
  op: "snapshot" | "inventory";
  resolve: (value: NvmlSnapshot | NvmlInventory) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

class Monitor implements NvmlMonitor {
  failure: NvmlOpenFailure | null = null;
  libraryPath: string | null = null;
  attempts: LoadAttempt[] = [];
  capabilities: NvmlCapabilities | null = null;
  eventRegistrations: EventRegistration[] = [];
  eventsError: string | null = null;

  poll: Worker | null = null;
  events: Worker | null = null;
  readonly pollTracker = createTrackerBuffer();
  readonly eventsTracker = createTrackerBuffer();
  private eventsWatchdog: CallWatchdog | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private pending = new Map<number, Pending>();
  private stalledRequest: { id: number; startedAt: number } | null = null;
  private pollHang: NvmlHang | null = null;
  private nextId = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private closedByUser = false;
  private closedWaiters = new Map<Worker, () => void>();

  constructor(readonly options: NvmlMonitorOptions) {}

  get pollDeadlineMs(): number {
    return this.options.pollDeadlineMs ?? 5000;
  }

  get status(): NvmlStatus {
    const tried = this.attempts.map((a) => clip(a.path, WIRE_TEXT));
    if (this.failure) {
      return { available: false, error: clip(this.failure.message, WIRE_ERROR), ...(tried.length ? { triedPaths: tried } : {}) };
    }
    const status: NvmlStatus = { available: true, triedPaths: tried };
    if (this.libraryPath) status.libraryPath = clip(this.libraryPath, WIRE_TEXT);
    const hang = this.hang();
    if (hang) status.error = clip(hang.message, WIRE_ERROR);
    return status;
  }

  hang(): NvmlHang | null {
    if (this.pollHang && this.stalledRequest) {
      const elapsedMs = performance.now() - this.stalledRequest.startedAt;
      const h = { ...this.pollHang, elapsedMs };
      return { ...h, message: hangMessage(h) };
    }
    return this.eventsWatchdog?.current ?? null;
  }

  /** The error every reading carries while NVML is unavailable. */
  private unavailableError(): NvmlErrorInfo {
    const f = this.failure;
    if (f?.stage === "init") return f.error;
    if (f?.stage === "unresponsive") return nvmlErrorInfo(10, f.hang.fn ?? "nvmlInit", { detail: f.message });
    return nvmlErrorInfo(12, "dlopen", { detail: f?.message ?? "NVML monitor closed" });
  }

  snapshot(): Promise<NvmlSnapshot> {
    if (this.closedByUser) return Promise.reject(new Error("NVML monitor is closed"));
    if (!this.poll || this.failure) {
      const e = failed<number>(this.unavailableError());
      return Promise.resolve({ time: new Date().toISOString(), durationMs: 0, deviceCount: e, devices: [] });
    }
    return this.enqueue("snapshot") as Promise<NvmlSnapshot>;
  }

  inventory(): Promise<NvmlInventory> {
    if (this.closedByUser) return Promise.reject(new Error("NVML monitor is closed"));
    if (!this.poll || this.failure) {
      const e = failed<never>(this.unavailableError());
      return Promise.resolve({ system: { driverVersion: e, nvmlVersion: e, cudaDriverVersion: e }, deviceCount: e, devices: [] });
    }
    return this.enqueue("inventory") as Promise<NvmlInventory>;
  }

  /** Requests run one at a time, each with its own deadline from when it is sent. */
  private enqueue(op: "snapshot" | "inventory"): Promise<NvmlSnapshot | NvmlInventory> {
    const run = () => this.request(op);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private request(op: "snapshot" | "inventory"): Promise<NvmlSnapshot | NvmlInventory> {
    if (this.closed || !this.poll) return Promise.reject(new Error("NVML monitor is closed"));
    const hang = this.hang();
    if (this.pollHang && hang) return Promise.reject(new NvmlUnresponsiveError(hang));
    const id = ++this.nextId;
    const poll = this.poll;
    return new Promise((resolve, reject) => {
      const startedAt = performance.now();
      const startedWall = Date.now();
      const deadlineMs = this.pollDeadlineMs;
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        const call = callInProgress(this.pollTracker);
        const base = {
          worker: "poll" as const,
          operation: op,
          fn: call?.fn ?? null,
          device: call?.device ?? null,
          since: new Date(startedWall).toISOString(),
          elapsedMs: performance.now() - startedAt,
          deadlineMs,
        };
        this.pollHang = { ...base, message: hangMessage(base) };
        this.stalledRequest = { id, startedAt };
        this.options.onHang?.(this.pollHang);
        reject(new NvmlUnresponsiveError(this.pollHang));
      }, deadlineMs);
      this.pending.set(id, { op, resolve, reject, timer });
      poll.postMessage({ type: "request", id, op } satisfies MainToWorker);
    });
  }

  // ---- messages ---------------------------------------------------------------------------

  onPollMessage(msg: WorkerToMain): void {
    if (msg.type === "response") {
      const p = this.pending.get(msg.id);
      if (p) {
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(msg.message));
      } else if (this.stalledRequest?.id === msg.id && this.pollHang) {
        const hang = this.pollHang;
        const stalledMs = performance.now() - this.stalledRequest.startedAt;
        this.pollHang = null;
        this.stalledRequest = null;
        this.options.onRecover?.(hang, stalledMs);
      }
    } else if (msg.type === "closed") {
      this.closedWaiters.get(this.poll!)?.();
    }
  }

  onEventsMessage(msg: WorkerToMain): void {
    switch (msg.type) {
      case "event":
        this.options.onEvent?.(msg.event);
        break;
      case "eventError":
        this.options.onEventError?.(msg.error);
        break;
      case "registrations":
        this.eventRegistrations = msg.registrations;
        this.options.onRegistrations?.(msg.registrations);
        break;
      case "closed":
        if (this.events) this.closedWaiters.get(this.events)?.();
        break;
      default:
        break;
    }
  }

  workerFailed(which: "poll" | "events", err: Error): void {
    this.options.onWorkerError?.(err);
    if (which === "poll") {
      // Without its poll worker the monitor cannot read anything: say so instead of timing out.
      if (!this.failure && !this.closed) this.failure = { stage: "worker", message: `NVML worker failed: ${err.message}` };
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(err);
        this.pending.delete(id);
      }
    } else {
      this.eventsError = err.message;
    }
  }

  startTicker(): void {
    const slice = this.options.eventWaitSliceMs ?? 500;
    const every = Math.max(10, Math.min(250, Math.floor(Math.min(this.pollDeadlineMs, slice) / 4)));
    this.ticker = setInterval(() => this.eventsWatchdog?.check(), every);
    this.ticker.unref();
  }

  watchEvents(): void {
    const limit = (this.options.eventWaitSliceMs ?? 500) + this.pollDeadlineMs;
    this.eventsWatchdog = new CallWatchdog(
      this.eventsTracker,
      "events",
      "event wait",
      limit,
      (h) => this.options.onHang?.(h),
      (h, ms) => this.options.onRecover?.(h, ms),
    );
  }

  // ---- close ------------------------------------------------------------------------------

  private async stopWorker(worker: Worker | null, waitMs: number): Promise<void> {
    if (!worker) return;
    if (waitMs > 0) {
      const closed = new Promise<void>((resolve) => this.closedWaiters.set(worker, resolve));
      try {
        worker.postMessage({ type: "close" } satisfies MainToWorker);
      } catch {
        // already gone
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
      clearTimeout(timer);
    }
    this.closedWaiters.delete(worker);
    worker.terminate();
  }

  async close(): Promise<void> {
    this.closedByUser = true;
    await this.stop();
  }

  /** Stops the workers (also used when NVML turned out to be unavailable at start). */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error("NVML monitor is closed"));
      this.pending.delete(id);
    }
    const slice = this.options.eventWaitSliceMs ?? 500;
    // A worker stuck in a C call cannot close itself: do not wait for it (terminate() is all we can do).
    const pollWait = this.pollHang ? 0 : this.pollDeadlineMs;
    const eventsWait = this.eventsWatchdog?.current ? 0 : slice + this.pollDeadlineMs;
    await Promise.all([this.stopWorker(this.events, eventsWait), this.stopWorker(this.poll, pollWait)]);
    this.events = null;
    this.poll = null;
  }
}

function spawnWorker(onMessage: (msg: WorkerToMain) => void, onError: (err: Error) => void): Worker {
  const worker = new Worker(NVML_WORKER_URL);
  worker.addEventListener("message", (ev: MessageEvent) => onMessage(ev.data as WorkerToMain));
  worker.addEventListener("error", (ev: Event) => {
    const message = "message" in ev && typeof ev.message === "string" ? ev.message : "NVML worker failed";
    onError(new Error(message));
  });
  worker.addEventListener("messageerror", () => onError(new Error("NVML worker sent an unreadable message")));
  worker.unref();
  return worker;
}

/**
 * Loads NVML in a worker and starts the event worker. Always resolves: when NVML cannot be used,
 * the monitor's `status.available` is false, `failure` says why (every path tried, or the typed
 * nvmlInit error, or an init that hung), and snapshot()/inventory() return empty results.
 */
export async function startNvmlMonitor(options: NvmlMonitorOptions = {}): Promise<NvmlMonitor> {
  const m = new Monitor(options);
  const discovery: NvmlDiscoveryOptions = {
    env: { NAVARCH_NVML_LIBRARY: process.env.NAVARCH_NVML_LIBRARY, NAVARCH_NVIDIA_DRIVER_ROOT: process.env.NAVARCH_NVIDIA_DRIVER_ROOT },
  };
  if (options.libraryPath !== undefined) discovery.libraryPath = options.libraryPath;
  if (options.driverRoot !== undefined) discovery.driverRoot = options.driverRoot;
  if (options.explicitOnly !== undefined) discovery.explicitOnly = options.explicitOnly;
  const initDeadlineMs = options.initDeadlineMs ?? 30_000;

  if (!NVML_WORKER_URL_OR_NULL) {
    m.failure = {
      stage: "worker",
      message: `the NVML worker is not embedded in this binary: build it with ${NVML_WORKER_ENTRYPOINT} as an extra bun build --compile entrypoint`,
    };
    return m;
  }

  // ---- poll worker: discovery, dlopen, nvmlInit
  let pollStarted: (msg: Extract<WorkerToMain, { type: "started"; role: "poll" }> | Error) => void = () => {};
  const started = new Promise<Extract<WorkerToMain, { type: "started"; role: "poll" }> | Error>((resolve) => (pollStarted = resolve));
  try {
    m.poll = spawnWorker(
      (msg) => {
        if (msg.type === "started" && msg.role === "poll") pollStarted(msg);
        else m.onPollMessage(msg);
      },
      (err) => {
        pollStarted(err);
        m.workerFailed("poll", err);
      },
    );
    m.poll.postMessage({
      type: "start",
      role: "poll",
      discovery,
      tracker: m.pollTracker,
      fieldIds: options.fieldIds ?? DEFAULT_FIELD_IDS,
    } satisfies MainToWorker);
  } catch (err) {
    m.failure = { stage: "worker", message: `cannot start the NVML worker (${NVML_WORKER_URL.href}): ${err instanceof Error ? err.message : String(err)}` };
    return m;
  }

  const t0 = performance.now();
  const t0Wall = Date.now();
  let initTimer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (initTimer = setTimeout(() => resolve("timeout"), initDeadlineMs)));
  const first = await Promise.race([started, timedOut]);
  clearTimeout(initTimer);

  if (first === "timeout") {
    const call = callInProgress(m.pollTracker);
    const base = {
      worker: "poll" as const,
      operation: "init",
      fn: call?.fn ?? null,
      device: call?.device ?? null,
      since: new Date(t0Wall).toISOString(),
      elapsedMs: performance.now() - t0,
      deadlineMs: initDeadlineMs,
    };
    const hang: NvmlHang = { ...base, message: hangMessage(base) };
    m.failure = { stage: "unresponsive", message: hang.message, hang };
    options.onHang?.(hang);
    m.poll.terminate();
    m.poll = null;
    return m;
  }
  if (first instanceof Error) {
    m.failure = { stage: "worker", message: `NVML worker failed to start: ${first.message}` };
    m.poll.terminate();
    m.poll = null;
    return m;
  }
  const result = first.result;
  m.attempts = result.attempts;
  if (!result.ok) {
    m.failure =
      result.stage === "init"
        ? { stage: "init", message: result.message, attempts: result.attempts, libraryPath: result.libraryPath, error: result.error }
        : { stage: "load", message: result.message, attempts: result.attempts };
    await m.stop();
    return m;
  }
  m.libraryPath = result.resolvedPath ?? result.libraryPath;
  m.capabilities = result.capabilities;
  m.startTicker();

  // ---- event worker
  if (options.events === false) {
    m.eventsError = "events disabled";
    return m;
  }
  let eventsStarted: (msg: Extract<WorkerToMain, { type: "started"; role: "events" }> | Error) => void = () => {};
  const evStarted = new Promise<Extract<WorkerToMain, { type: "started"; role: "events" }> | Error>((resolve) => (eventsStarted = resolve));
  try {
    m.events = spawnWorker(
      (msg) => {
        if (msg.type === "started" && msg.role === "events") eventsStarted(msg);
        else m.onEventsMessage(msg);
      },
      (err) => {
        eventsStarted(err);
        m.workerFailed("events", err);
      },
    );
    m.watchEvents();
    m.events.postMessage({
      type: "start",
      role: "events",
      libraryPath: result.libraryPath,
      tracker: m.eventsTracker,
      eventMask: options.eventMask ?? DEFAULT_EVENT_MASK,
      sliceMs: options.eventWaitSliceMs ?? 500,
      retryDelayMs: options.eventRetryDelayMs ?? 1000,
    } satisfies MainToWorker);
  } catch (err) {
    m.eventsError = `cannot start the NVML event worker: ${err instanceof Error ? err.message : String(err)}`;
    return m;
  }
  const evFirst = await Promise.race([
    evStarted,
    new Promise<"timeout">((resolve) => (initTimer = setTimeout(() => resolve("timeout"), initDeadlineMs))),
  ]);
  clearTimeout(initTimer);
  if (evFirst === "timeout") {
    m.eventsError = `the NVML event worker did not start within ${initDeadlineMs} ms`;
  } else if (evFirst instanceof Error) {
    m.eventsError = evFirst.message;
  } else if (!evFirst.ok) {
    m.eventsError = evFirst.message;
  } else {
    m.eventRegistrations = evFirst.registrations;
  }
  return m;
}
