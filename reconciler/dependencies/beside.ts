// Calls that run beside the reconcile loop: a provider's launch, terminate, reboot, get and
// list, a metrics source's query. A pass asks for a call by key and never waits for it: the
// call starts, and its outcome is handed to the step that asks for the same key in a later
// pass (the loop is woken when it settles). A call that answers within the same turn of the
// event loop (an in-process provider: the simulator's cloud) is handed back at once, so a pass
// on virtual time acts as it always did. Every call has a deadline and an abort signal; one
// that hangs delays only what waits for its own key, never a pass, another pool or a signal.
import type { Dependency, QueuedAction } from "./status.ts";

/** A call that ran past its deadline (the call itself was aborted). */
export class CallDeadlineError extends Error {
  override readonly name = "CallDeadlineError";
}

const UNREAD_KEPT_MS = 10 * 60_000;

export type CallOutcome<T> = { settled: true; ok: true; value: T } | { settled: true; ok: false; error: unknown } | { settled: false; since: number };

export interface CallOptions {
  /** How long the call may take (default: the runner's). */
  deadlineMs?: number;
  /** Told of each answer and each failure of the call. */
  dependency?: Dependency;
  /** Whether an error is the dependency failing (default: every error). Refusals it answered with are not. */
  isOutage?: (err: unknown) => boolean;
  /** What is waiting, for GET /v1/status (`launch` of node X). */
  action?: QueuedAction["action"];
  node?: string;
}

interface Entry {
  promise: Promise<unknown>;
  /** When it settled (ms); an outcome nobody asked for again is dropped after a while. */
  settledAt?: number;
  outcome: CallOutcome<unknown>;
  since: number;
  abort: AbortController;
  dependency: Dependency | undefined;
  action: string | undefined;
  node: string | undefined;
}

export class BesideCalls {
  private readonly calls = new Map<string, Entry>();
  private stopped = false;

  constructor(
    private readonly opts: {
      /** Run a pass soon: a call settled. */
      wake: () => void;
      /** Default deadline of a call. */
      deadlineMs?: number;
      /** Wall clock for the `since` stamps. */
      now?: () => number;
    },
  ) {}

  /**
   * The outcome of call `key`: starts `call` when none of that key runs, and hands its outcome
   * out once it settled (to one caller, once). Waits at most for this turn of the event loop.
   */
  async run<T>(key: string, call: (signal: AbortSignal) => Promise<T>, options: CallOptions = {}): Promise<CallOutcome<T>> {
    let entry = this.calls.get(key);
    if (entry === undefined) {
      this.forgetUnread();
      entry = this.start(key, call, options);
      // An in-process call answers within this turn: hand its outcome back at once.
      await Promise.race([entry.promise, nextTurn()]);
    }
    if (!entry.outcome.settled) return entry.outcome as CallOutcome<T>;
    this.calls.delete(key);
    return entry.outcome as CallOutcome<T>;
  }

  /** Whether a call of `key` is under way (or settled and not yet handed out). */
  has(key: string): boolean {
    return this.calls.has(key);
  }

  /** The calls under way for a dependency, for its queue of waiting actions. */
  waitingFor(dependency: Dependency): QueuedAction[] {
    const out: QueuedAction[] = [];
    for (const e of this.calls.values()) {
      if (e.dependency !== dependency || e.outcome.settled) continue;
      out.push({ action: e.action ?? "call", ...(e.node !== undefined ? { node: e.node } : {}), since: e.since });
    }
    return out;
  }

  /**
   * Resolves once every call under way now has settled: for whoever drives passes by hand on
   * virtual time against a provider that answers over the network (a test, a tool), so that
   * the next pass reads what the calls of this one answered.
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.calls.values()].map((e) => e.promise));
  }

  /** How many calls are under way (not settled yet). */
  underWay(): number {
    let n = 0;
    for (const e of this.calls.values()) if (!e.outcome.settled) n++;
    return n;
  }

  /** Aborts every call under way; nothing waits for them (a stop never does). */
  stop(): void {
    this.stopped = true;
    for (const e of this.calls.values()) e.abort.abort(new CallDeadlineError("the reconciler is stopping"));
  }

  /** Outcomes nobody came back for (the node moved on): kept ten minutes, then dropped. */
  private forgetUnread(): void {
    const before = (this.opts.now ?? Date.now)() - UNREAD_KEPT_MS;
    for (const [key, e] of this.calls) if (e.settledAt !== undefined && e.settledAt < before) this.calls.delete(key);
  }

  private start<T>(key: string, call: (signal: AbortSignal) => Promise<T>, options: CallOptions): Entry {
    const now = this.opts.now ?? Date.now;
    const since = now();
    const abort = new AbortController();
    const deadlineMs = options.deadlineMs ?? this.opts.deadlineMs ?? 120_000;
    const entry: Entry = {
      promise: Promise.resolve(),
      outcome: { settled: false, since },
      since,
      abort,
      dependency: options.dependency,
      action: options.action,
      node: options.node,
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const within = deadlineMs < 1000 ? `${deadlineMs} ms` : `${Math.round(deadlineMs / 1000)} s`;
        const err = new CallDeadlineError(`${options.action ?? key}: no answer within ${within}`);
        abort.abort(err);
        reject(err);
      }, deadlineMs);
    });
    entry.promise = Promise.race([Promise.resolve().then(() => call(abort.signal)), deadline])
      .then(
        (value) => {
          entry.outcome = { settled: true, ok: true, value };
          options.dependency?.ok();
        },
        (error: unknown) => {
          entry.outcome = { settled: true, ok: false, error };
          if (options.dependency !== undefined) {
            if (options.isOutage === undefined || options.isOutage(error)) options.dependency.failed(error);
            else options.dependency.ok();
          }
        },
      )
      .finally(() => {
        entry.settledAt = now();
        clearTimeout(timer);
        if (!this.stopped) this.opts.wake();
      });
    this.calls.set(key, entry);
    return entry;
  }
}

/** Resolves after everything already queued on the event loop (microtasks, I/O callbacks due now) ran. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
