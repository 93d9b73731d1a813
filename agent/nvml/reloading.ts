// NVML that follows its library file. The library is mapped from a sealed private copy
// (private-copy.ts), so a driver upgrade that rewrites or truncates the file cannot crash the
// agent; but the running library is then the old driver's. So the file is looked at every
// second: when it changes (device, inode, size or mtime), NVML is reported unavailable
// ("reloading") and the worker closed; once the file has stopped changing for a look, it is
// loaded again. A load that fails (the file is still half written, or the new driver's kernel
// module is not there yet) is said, and tried again at the file's next change. A library that
// could not be loaded at start is likewise tried again when its file changes.
import type { NvmlStatus } from "../../schema/wire.ts";
import { cutText } from "../../schema/text.ts";
import { failed, nvmlErrorInfo } from "./errors.ts";
import { startNvmlMonitor, type NvmlMonitor, type NvmlMonitorOptions, type NvmlOpenFailure } from "./monitor.ts";
import { fileIdentity, sameIdentity, type FileIdentity } from "./private-copy.ts";
import type { NvmlInventory, NvmlSnapshot } from "./types.ts";

export interface ReloadingNvmlOptions extends NvmlMonitorOptions {
  /** How often the library file is looked at (ms, default 1000). */
  watchIntervalMs?: number;
  /** Told when a reload begins (`status` says why) and when one ends (`status.available` says how). */
  onReload?: (monitor: NvmlMonitor, phase: "started" | "done") => void;
}

const WIRE_ERROR = 4096;

/** What changed between two versions of the file, for the message. */
function change(before: FileIdentity | undefined, after: FileIdentity | undefined): string {
  if (after === undefined) return "removed";
  if (before === undefined) return "appeared";
  if (before.dev !== after.dev || before.ino !== after.ino) return "replaced by another file";
  if (before.size !== after.size) return `size ${before.size} → ${after.size} bytes`;
  return "rewritten";
}

class ReloadingMonitor implements NvmlMonitor {
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private closed = false;
  /** Why NVML is being reloaded; undefined when it is not. */
  private reloading: string | undefined;
  /** The file's version at the last look while reloading: loaded once a look finds it unchanged. */
  private settling: FileIdentity | undefined;

  constructor(
    private inner: NvmlMonitor,
    private readonly options: ReloadingNvmlOptions,
    /** The file watched, and the version of it last loaded or tried. */
    private watched: { path: string; version: FileIdentity | undefined } | undefined,
  ) {}

  get status(): NvmlStatus {
    if (this.reloading === undefined) return this.inner.status;
    return { available: false, error: cutText(`NVML unavailable, reloading: ${this.reloading}`, WIRE_ERROR) };
  }
  get failure(): NvmlOpenFailure | null {
    return this.reloading === undefined ? this.inner.failure : { stage: "load", message: this.status.error ?? "", attempts: [...this.inner.attempts] };
  }
  get libraryPath() {
    return this.inner.libraryPath;
  }
  get file() {
    return this.inner.file;
  }
  get mappedInPlace() {
    return this.inner.mappedInPlace;
  }
  get attempts() {
    return this.inner.attempts;
  }
  get capabilities() {
    return this.reloading === undefined ? this.inner.capabilities : null;
  }
  get initialInventory() {
    return this.inner.initialInventory;
  }
  get eventRegistrations() {
    return this.reloading === undefined ? this.inner.eventRegistrations : [];
  }
  get eventsError() {
    return this.reloading === undefined ? this.inner.eventsError : "NVML is being reloaded";
  }
  hang() {
    return this.reloading === undefined ? this.inner.hang() : null;
  }
  snapshot(): Promise<NvmlSnapshot> {
    if (this.reloading === undefined) return this.inner.snapshot();
    const e = failed<number>(this.unavailable());
    return Promise.resolve({ time: new Date().toISOString(), durationMs: 0, deviceCount: e, devices: [] });
  }
  inventory(): Promise<NvmlInventory> {
    if (this.reloading === undefined) return this.inner.inventory();
    const e = failed<never>(this.unavailable());
    return Promise.resolve({ system: { driverVersion: e, nvmlVersion: e, cudaDriverVersion: e }, deviceCount: e, devices: [] });
  }
  workerHeap() {
    return this.inner.workerHeap();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.inner.close();
  }

  watch(): void {
    if (this.watched === undefined) return;
    this.timer = setInterval(() => void this.look(), this.options.watchIntervalMs ?? 1000);
    this.timer.unref();
  }

  private unavailable() {
    return nvmlErrorInfo(12, "dlopen", { detail: this.status.error ?? "NVML is being reloaded" });
  }

  /** One look at the file: a change starts a reload; a file that stopped changing is loaded. */
  private async look(): Promise<void> {
    const watched = this.watched;
    if (this.busy || this.closed || watched === undefined) return;
    const now = fileIdentity(watched.path);
    this.busy = true;
    try {
      if (this.reloading === undefined) {
        if (sameIdentity(now, watched.version)) return;
        this.reloading = `${watched.path} changed on disk (${change(watched.version, now)})`;
        this.settling = now;
        this.options.onReload?.(this, "started");
        await this.inner.close();
        return;
      }
      if (!sameIdentity(now, this.settling)) {
        this.settling = now; // still being written: wait for a look that finds it unchanged
        return;
      }
      if (now === undefined || sameIdentity(now, watched.version)) return; // gone, or this version already failed
      watched.version = now;
      const next = await startNvmlMonitor(this.options);
      if (this.closed) {
        await next.close();
        return;
      }
      this.inner = next;
      if (next.status.available) {
        this.reloading = undefined;
        if (next.file !== null) this.watched = { path: next.file.path, version: next.file };
      } else {
        this.reloading = `${watched.path} changed on disk; it cannot be loaded yet (tried again when it changes): ${next.status.error ?? "unknown"}`;
      }
      this.options.onReload?.(this, "done");
    } finally {
      this.busy = false;
    }
  }
}

/**
 * startNvmlMonitor, and then the library file watched: the monitor answers for whichever
 * library is loaded, and says "reloading" while a new version of the file is awaited.
 */
export async function startReloadingNvmlMonitor(options: ReloadingNvmlOptions = {}): Promise<NvmlMonitor> {
  const inner = await startNvmlMonitor(options);
  const m = new ReloadingMonitor(inner, options, watchedFile(inner, options));
  m.watch();
  return m;
}

/** The file loaded; or, when none could be, the one a later version of which may load (the path named, or one that was there but unusable). */
function watchedFile(m: NvmlMonitor, options: NvmlMonitorOptions): { path: string; version: FileIdentity | undefined } | undefined {
  if (m.file !== null) return { path: m.file.path, version: m.file };
  if (m.status.available) return undefined; // the loader found it alone: no file to watch
  const tried =
    m.attempts.find((a) => a.path.includes("/") && a.outcome !== "missing") ??
    (options.explicitOnly ? m.attempts.find((a) => a.path.includes("/")) : undefined);
  return tried === undefined ? undefined : { path: tried.path, version: fileIdentity(tried.path) };
}
