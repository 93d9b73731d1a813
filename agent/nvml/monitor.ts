// The main-thread API of the NVML binding: startNvmlMonitor() starts the worker (worker.ts) that
// owns every NVML call, and returns an object whose methods never block the main thread.
//
//   const nvml = await startNvmlMonitor({ onEvent, onHang, checks, onChecked });
//   nvml.status                  // wire NvmlStatus: available?, libraryPath, error, triedPaths
//   nvml.initialInventory        // driver/CUDA versions and every GPU's identity, read at start
//   await nvml.snapshot()        // every reading of every GPU (rejects NvmlUnresponsiveError on a hang)
//   await nvml.close()
//
// Events (Xid, ECC, …) arrive through onEvent as soon as nvmlEventSetWait_v2 returns them; with
// `checks`, the worker runs the GPU checks on its own schedule and reports through onChecked. A
// call that exceeds its deadline is reported once through onHang ("GPU driver unresponsive") and
// once through onRecover if it ever returns; meanwhile the main thread keeps serving.
import type { NvmlStatus } from "../../schema/wire.ts";
import { cutText } from "../../schema/text.ts";
import { DEFAULT_EVENT_MASK, DEFAULT_FIELD_IDS } from "./decode.ts";
import { failed, nvmlErrorInfo, type NvmlErrorInfo } from "./errors.ts";
import type { NvmlDiscoveryOptions } from "./discovery.ts";
import type { LoadAttempt } from "./open.ts";
import type { FileIdentity } from "./private-copy.ts";
import type { CheckedMessage, ChecksConfig, HeapSummary, MainToWorker, WorkerStarted, WorkerToMain } from "./protocol.ts";
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
  /** How long one NVML call may take before the driver is called unresponsive (ms, default 5000). */
  pollDeadlineMs?: number;
  /** Deadline of loading + nvmlInit (ms, default 30000: init is slow without persistence mode). */
  initDeadlineMs?: number;
  /** Deliver NVML events (default true). */
  events?: boolean;
  /** Event types to register, ANDed with each GPU's supported types (DEFAULT_EVENT_MASK). */
  eventMask?: number;
  /** Longest nvmlEventSetWait_v2 timeout (ms, default 500): requests wait at most this long to start. */
  eventWaitSliceMs?: number;
  /** Pause before re-creating the event set after a wait error (ms, default 1000). */
  eventRetryDelayMs?: number;
  /** Field ids of the per-GPU nvmlDeviceGetFieldValues batch (DEFAULT_FIELD_IDS). */
  fieldIds?: readonly number[];
  /** Run the GPU checks in the worker on this schedule, reporting through onChecked. */
  checks?: ChecksConfig;
  onChecked?: (checked: CheckedMessage) => void;
  onEvent?: (event: NvmlEvent) => void;
  /** nvmlEventSetWait_v2 failed (e.g. GPU_IS_LOST); the worker re-creates the event set. */
  onEventError?: (error: NvmlEventLoopError) => void;
  /** The event set was re-created: the new per-GPU registrations. */
  onRegistrations?: (registrations: readonly EventRegistration[]) => void;
  /** "GPU driver unresponsive": an NVML call has not returned within its deadline. */
  onHang?: (hang: NvmlHang) => void;
  /** The call reported by onHang has returned after `stalledMs`. */
  onRecover?: (hang: NvmlHang, stalledMs: number) => void;
  /** The worker failed outside NVML (a bug, or the worker module missing from a compiled binary). */
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
  /** The file on disk the library in use was loaded from, as it was then (reloading.ts watches it). */
  readonly file: FileIdentity | null;
  /** Why that file itself is mapped rather than a sealed copy (a rewrite of it would crash the agent); null when the copy is. */
  readonly mappedInPlace: string | null;
  /** Every location tried, in order, with the outcome of each. */
  readonly attempts: readonly LoadAttempt[];
  readonly capabilities: NvmlCapabilities | null;
  /** Versions and GPU identities read right after nvmlInit (null when NVML is unavailable). */
  readonly initialInventory: NvmlInventory | null;
  /** Per-GPU event registration (empty when events are off or unavailable). */
  readonly eventRegistrations: readonly EventRegistration[];
  /** Why events are not delivered, if they are not. */
  readonly eventsError: string | null;
  /** The hang in progress, if any. */
  hang(): NvmlHang | null;
  /** All readings of all GPUs. Rejects with NvmlUnresponsiveError when the driver hangs. */
  snapshot(): Promise<NvmlSnapshot>;
  /** Driver/CUDA versions and GPU identities. Rejects with NvmlUnresponsiveError on a hang. */
  inventory(): Promise<NvmlInventory>;
  /** The worker's JavaScript heap; null without a worker, or when it does not answer within a second (a hung call). */
  workerHeap(): Promise<HeapSummary | null>;
  close(): Promise<void>;
}

/** A request could not complete because an NVML call hangs (or an earlier one still does). */
export class NvmlUnresponsiveError extends Error {
  override readonly name = "NvmlUnresponsiveError";
  constructor(readonly hang: NvmlHang) {
    super(hang.message);
  }
}

const WIRE_TEXT = 256;
const WIRE_ERROR = 4096;

interface Pending {
  resolve: (value: NvmlSnapshot | NvmlInventory) => void;
  reject: (err: Error) => void;
}

class Monitor implements NvmlMonitor {
  failure: NvmlOpenFailure | null = null;
  libraryPath: string | null = null;
  file: FileIdentity | null = null;
  mappedInPlace: string | null = null;
  attempts: LoadAttempt[] = [];
  capabilities: NvmlCapabilities | null = null;
  initialInventory: NvmlInventory | null = null;
  eventRegistrations: EventRegistration[] = [];
  eventsError: string | null = null;

  worker: Worker | null = null;
  readonly tracker = createTrackerBuffer();
  private watchdog: CallWatchdog | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;
  private closedByUser = false;
  private closedWaiter: (() => void) | undefined;
  private heapWaiters: ((heap: HeapSummary | null) => void)[] = [];

  constructor(readonly options: NvmlMonitorOptions) {}

  workerHeap(): Promise<HeapSummary | null> {
    const worker = this.worker;
    if (!worker || this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), 1000);
      const done = (heap: HeapSummary | null) => {
        clearTimeout(timer);
        this.heapWaiters = this.heapWaiters.filter((w) => w !== done);
        resolve(heap);
      };
      this.heapWaiters.push(done);
      worker.postMessage({ type: "heap" } satisfies MainToWorker);
    });
  }

  get pollDeadlineMs(): number {
    return this.options.pollDeadlineMs ?? 5000;
  }

  get sliceMs(): number {
    return this.options.eventWaitSliceMs ?? 500;
  }

  get status(): NvmlStatus {
    const tried = this.attempts.map((a) => cutText(a.path, WIRE_TEXT));
    if (this.failure) {
      return { available: false, error: cutText(this.failure.message, WIRE_ERROR), ...(tried.length ? { triedPaths: tried } : {}) };
    }
    const status: NvmlStatus = { available: true, triedPaths: tried };
    if (this.libraryPath) status.libraryPath = cutText(this.libraryPath, WIRE_TEXT);
    const hang = this.hang();
    if (hang) status.error = cutText(hang.message, WIRE_ERROR);
    return status;
  }

  hang(): NvmlHang | null {
    return this.watchdog?.current ?? null;
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
    if (!this.worker || this.failure) {
      const e = failed<number>(this.unavailableError());
      return Promise.resolve({ time: new Date().toISOString(), durationMs: 0, deviceCount: e, devices: [] });
    }
    return this.request("snapshot") as Promise<NvmlSnapshot>;
  }

  inventory(): Promise<NvmlInventory> {
    if (this.closedByUser) return Promise.reject(new Error("NVML monitor is closed"));
    if (!this.worker || this.failure) {
      const e = failed<never>(this.unavailableError());
      return Promise.resolve({ system: { driverVersion: e, nvmlVersion: e, cudaDriverVersion: e }, deviceCount: e, devices: [] });
    }
    return this.request("inventory") as Promise<NvmlInventory>;
  }

  /** The worker answers requests between event waits, one at a time, in order. */
  private request(op: "snapshot" | "inventory"): Promise<NvmlSnapshot | NvmlInventory> {
    if (this.closed || !this.worker) return Promise.reject(new Error("NVML monitor is closed"));
    const hang = this.hang();
    if (hang) return Promise.reject(new NvmlUnresponsiveError(hang));
    const id = ++this.nextId;
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ type: "request", id, op } satisfies MainToWorker);
    });
  }

  // ---- messages ---------------------------------------------------------------------------

  onMessage(msg: WorkerToMain): void {
    switch (msg.type) {
      case "response": {
        // An answer to a request already rejected as hung is dropped.
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(msg.message));
        break;
      }
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
      case "checked":
        this.options.onChecked?.(msg);
        break;
      case "heap":
        for (const w of [...this.heapWaiters]) w(msg.heap);
        break;
      case "closed":
        this.closedWaiter?.();
        break;
      default:
        break;
    }
  }

  workerFailed(err: Error): void {
    this.options.onWorkerError?.(err);
    // Without its worker the monitor cannot read anything: say so instead of timing out.
    if (!this.failure && !this.closed) this.failure = { stage: "worker", message: `NVML worker failed: ${err.message}` };
    this.rejectPending(err);
  }

  private rejectPending(err: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(err);
    }
  }

  /** Watches the worker's calls: an event wait may last its slice more than other calls. */
  watch(): void {
    const deadline = this.pollDeadlineMs;
    this.watchdog = new CallWatchdog(
      this.tracker,
      (operation) => (operation === "event wait" ? deadline + Math.max(this.sliceMs, this.options.checks?.fastIntervalMs ?? 0) : deadline),
      (h) => {
        this.rejectPending(new NvmlUnresponsiveError(h));
        this.options.onHang?.(h);
      },
      (h, ms) => this.options.onRecover?.(h, ms),
    );
    // Half the deadline, at most 2.5 s: a hang is reported between 1 and 1.5 deadlines after the
    // call began, and an idle agent's main thread wakes for it every few seconds, not every second.
    const every = Math.max(10, Math.min(2500, Math.floor(deadline / 2)));
    this.ticker = setInterval(() => this.watchdog?.check(), every);
    this.ticker.unref();
  }

  // ---- close ------------------------------------------------------------------------------

  async close(): Promise<void> {
    this.closedByUser = true;
    await this.stop();
  }

  /** Stops the worker (also used when NVML turned out to be unavailable at start). */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    this.rejectPending(new Error("NVML monitor is closed"));
    const worker = this.worker;
    this.worker = null;
    if (!worker) return;
    // A worker stuck in a C call cannot close itself: do not wait for it (terminate() is all we can do).
    const waitMs = this.hang() ? 0 : this.pollDeadlineMs + this.sliceMs;
    if (waitMs > 0) {
      const closed = new Promise<void>((resolve) => (this.closedWaiter = resolve));
      try {
        worker.postMessage({ type: "close" } satisfies MainToWorker);
      } catch {
        // already gone
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
      clearTimeout(timer);
    }
    worker.terminate();
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
 * Loads NVML in the worker and starts its loop. Always resolves: when NVML cannot be used, the
 * monitor's `status.available` is false, `failure` says why (every path tried, or the typed
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

  let onStarted: (result: WorkerStarted | Error) => void = () => {};
  const started = new Promise<WorkerStarted | Error>((resolve) => (onStarted = resolve));
  try {
    m.worker = spawnWorker(
      (msg) => {
        if (msg.type === "started") onStarted(msg.result);
        else m.onMessage(msg);
      },
      (err) => {
        onStarted(err);
        m.workerFailed(err);
      },
    );
    m.worker.postMessage({
      type: "start",
      discovery,
      tracker: m.tracker,
      fieldIds: options.fieldIds ?? DEFAULT_FIELD_IDS,
      events:
        options.events === false
          ? null
          : { mask: options.eventMask ?? DEFAULT_EVENT_MASK, sliceMs: m.sliceMs, retryDelayMs: options.eventRetryDelayMs ?? 1000 },
      checks: options.checks ?? null,
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
    const call = callInProgress(m.tracker);
    const base = {
      operation: "init" as const,
      fn: call?.fn ?? null,
      device: call?.device ?? null,
      since: new Date(t0Wall).toISOString(),
      elapsedMs: performance.now() - t0,
      deadlineMs: initDeadlineMs,
    };
    const hang: NvmlHang = { ...base, message: hangMessage(base) };
    m.failure = { stage: "unresponsive", message: hang.message, hang };
    options.onHang?.(hang);
    m.worker.terminate();
    m.worker = null;
    return m;
  }
  if (first instanceof Error) {
    m.failure = { stage: "worker", message: `NVML worker failed to start: ${first.message}` };
    m.worker.terminate();
    m.worker = null;
    return m;
  }
  m.attempts = first.attempts;
  if (!first.ok) {
    m.failure =
      first.stage === "init"
        ? { stage: "init", message: first.message, attempts: first.attempts, libraryPath: first.libraryPath, error: first.error }
        : { stage: "load", message: first.message, attempts: first.attempts };
    await m.stop();
    return m;
  }
  m.libraryPath = first.resolvedPath ?? first.libraryPath;
  m.file = first.file;
  m.mappedInPlace = first.mappedInPlace;
  m.capabilities = first.capabilities;
  m.initialInventory = first.inventory;
  m.eventRegistrations = first.registrations;
  m.eventsError = options.events === false ? "events disabled" : first.eventsError;
  m.watch();
  return m;
}
