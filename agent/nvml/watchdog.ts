// Hung-driver detection. A C call cannot be interrupted, so the worker that makes NVML calls
// publishes "which call, since when, doing what" in a SharedArrayBuffer before each call, and a
// watchdog on the main thread reads it: when one call has not returned within its limit, it
// reports "GPU driver unresponsive" (once per stall, and once more when the call finally returns).
// The main thread never makes an NVML call itself, so it keeps serving whatever the driver does.
import type { CallObserver } from "./library.ts";
import { ALL_SYMBOLS, symbolIndex } from "./symbols.ts";

const IN_CALL = 0;
const SEQ = 1;
const SYMBOL = 2;
const DEVICE = 3;
const OPERATION = 4;
const SLOTS = 5;

/** What the worker is doing when it makes a call: named in the hang report. */
export const OPERATIONS = ["init", "snapshot", "inventory", "event wait", "full checks", "fast checks"] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Shared memory for the worker's call tracker. */
export function createTrackerBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

/** Worker side: records each NVML call in the shared buffer. */
export class SharedCallTracker implements CallObserver {
  private readonly slots: Int32Array;
  constructor(buffer: SharedArrayBuffer) {
    this.slots = new Int32Array(buffer);
  }
  /** What the next calls are part of. */
  operation(op: Operation): void {
    Atomics.store(this.slots, OPERATION, OPERATIONS.indexOf(op));
  }
  enter(symbol: string, device: number | undefined): void {
    Atomics.store(this.slots, SYMBOL, symbolIndex(symbol));
    Atomics.store(this.slots, DEVICE, device ?? -1);
    Atomics.add(this.slots, SEQ, 1);
    Atomics.store(this.slots, IN_CALL, 1);
  }
  leave(): void {
    Atomics.store(this.slots, IN_CALL, 0);
  }
}

export interface CallInProgress {
  /** The NVML symbol, e.g. "nvmlDeviceGetTemperature". */
  fn: string | null;
  device: number | null;
  operation: Operation;
}

/** Main side: what the worker is calling right now, if anything. */
export function callInProgress(buffer: SharedArrayBuffer): CallInProgress | null {
  const slots = new Int32Array(buffer);
  if (Atomics.load(slots, IN_CALL) === 0) return null;
  const sym = Atomics.load(slots, SYMBOL);
  const dev = Atomics.load(slots, DEVICE);
  return { fn: ALL_SYMBOLS[sym] ?? null, device: dev >= 0 ? dev : null, operation: OPERATIONS[Atomics.load(slots, OPERATION)] ?? "init" };
}

/** A stalled NVML call, as reported to onHang. */
export interface NvmlHang {
  /** What the worker was doing: "init", "snapshot", "inventory", "event wait", "full checks", "fast checks". */
  operation: Operation;
  /** The NVML function that has not returned, when the worker was inside one. */
  fn: string | null;
  device: number | null;
  /** ISO time the stalled call was first seen. */
  since: string;
  elapsedMs: number;
  deadlineMs: number;
  message: string;
}

export function hangMessage(h: Omit<NvmlHang, "message">): string {
  const what = h.fn ? `${h.fn}${h.device === null ? "" : ` on GPU ${h.device}`}` : h.operation;
  return `GPU driver unresponsive: ${what} has not returned after ${Math.round(h.elapsedMs)} ms (deadline ${h.deadlineMs} ms, during ${h.operation})`;
}

/**
 * Samples the tracker: a call whose sequence number has not moved for its limit while still in
 * progress is a hang. Uses only the main thread's clock.
 */
export class CallWatchdog {
  private seq = -1;
  private seenAt = 0;
  private seenAtWall = 0;
  private stalled: NvmlHang | null = null;
  private readonly slots: Int32Array;

  constructor(
    private readonly buffer: SharedArrayBuffer,
    /** How long a call made during `operation` may take. */
    private readonly limitMs: (operation: Operation) => number,
    private readonly onStall: (h: NvmlHang) => void,
    private readonly onResume: (h: NvmlHang, stalledMs: number) => void,
  ) {
    this.slots = new Int32Array(buffer);
  }

  get current(): NvmlHang | null {
    return this.stalled;
  }

  check(now = performance.now()): void {
    const inCall = Atomics.load(this.slots, IN_CALL) === 1;
    const seq = Atomics.load(this.slots, SEQ);
    if (!inCall || seq !== this.seq) {
      if (this.stalled) {
        const h = this.stalled;
        this.stalled = null;
        this.onResume(h, now - this.seenAt);
      }
      this.seq = inCall ? seq : -1;
      this.seenAt = now;
      this.seenAtWall = Date.now();
      return;
    }
    const call = callInProgress(this.buffer);
    const elapsedMs = now - this.seenAt;
    const limit = this.limitMs(call?.operation ?? "init");
    if (!this.stalled && elapsedMs > limit) {
      const base = {
        operation: call?.operation ?? "init",
        fn: call?.fn ?? null,
        device: call?.device ?? null,
        since: new Date(this.seenAtWall).toISOString(),
        elapsedMs,
        deadlineMs: limit,
      };
      this.stalled = { ...base, message: hangMessage(base) };
      this.onStall(this.stalled);
    }
  }
}
