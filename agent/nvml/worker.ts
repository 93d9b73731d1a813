// The NVML worker: every NVML call of the agent runs here, never on the main thread. One worker
// (each one is a JavaScript VM: a second costs about 3 MiB) does it all, in one loop:
//   - finds, checks, loads and initialises the library, then reads the inventory;
//   - blocks in nvmlEventSetWait_v2 for at most a slice, posting each event as it comes;
//   - between waits, answers "snapshot" / "inventory" requests and, when the agent asked for
//     scheduled checks, runs them (agent/checks/run.ts): the fast tier every second, the full
//     tier at the poll interval, posting only what the main thread needs (findings, and the
//     heartbeat's readings after a full pass).
// It records the call in progress in a SharedArrayBuffer for the main-thread watchdog. A call
// that hangs stops everything here (events included); the kernel log, read on the main thread,
// still reports Xids meanwhile.
//
// In a `bun build --compile` binary this file must be an extra entrypoint (see worker-url.ts).
import type { GpuSnapshot } from "../../schema/wire.ts";
import type { Finding } from "../checks/finding.ts";
import { incidentKey } from "../checks/incident-tracker.ts";
import { GpuCheckRunner, gpuIdentityOf } from "../checks/run.ts";
import { decodeEventTypes, EVENT_TYPES } from "./decode.ts";
import { enumerate, readFastReadings, readInventory, readSnapshot, readSnapshotAndHandles, type SnapshotOptions } from "./device.ts";
import { NvmlError, nvmlErrorInfo, reading, type NvmlErrorInfo } from "./errors.ts";
import type { NvmlLibrary } from "./library.ts";
import { openNvml } from "./open.ts";
import type { ChecksConfig, EventsConfig, MainToWorker, StartWorker, WorkerToMain } from "./protocol.ts";
import type { DeviceSnapshot, EventRegistration, EventSetHandle, NvmlDevice, NvmlEvent } from "./types.ts";
import { SharedCallTracker } from "./watchdog.ts";
import { toWireGpuSnapshot } from "./wire.ts";

// As on the main thread (agent/main.ts): the interpreter, not the JIT, for this little, frequent
// work, and a full collection every minute so old garbage does not pile up.
Bun.unsafe.setJITPolicy(1e6);
setInterval(() => Bun.gc(true), 60_000).unref();

function send(message: WorkerToMain): void {
  postMessage(message);
}

let library: NvmlLibrary | undefined;
let closing = false;
let loopDone: Promise<void> | undefined;
const requests: { id: number; op: "snapshot" | "inventory" }[] = [];
/** Ends an idle wait (no event set) when a request or close arrives. */
let wake: (() => void) | undefined;

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function shutdownLibrary(): void {
  const lib = library;
  library = undefined;
  if (!lib) return;
  try {
    lib.shutdown();
  } catch {
    // already uninitialised or driver gone: nothing more to do
  }
  lib.close();
}

const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

function idle(ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      wake = undefined;
      resolve();
    }
    wake = done;
  });
}

// ---- events ----------------------------------------------------------------------------------

interface KnownDevice {
  index: number;
  uuid: string | null;
  pciBusId: string | null;
}

/** Creates the event set and registers every GPU for `requested` ∩ its supported types. */
function setUpEvents(lib: NvmlLibrary, requested: number, known: Map<number, KnownDevice>): { set: EventSetHandle; registrations: EventRegistration[] } {
  const set = lib.eventSetCreate();
  known.clear();
  const registrations: EventRegistration[] = [];
  const { count, devices } = enumerate(lib);
  if (!count.ok) {
    reading(() => lib.eventSetFree(set));
    throw new NvmlError(count.error);
  }
  devices.forEach((d, index) => {
    if (!d.ok) {
      registrations.push({ index, uuid: null, requestedMask: requested, supportedMask: null, registeredMask: 0, error: d.error });
      return;
    }
    const dev = d.value;
    const uuid = reading(() => lib.uuid(dev));
    const pci = reading(() => lib.pciInfo(dev));
    known.set(dev.handle, { index, uuid: uuid.ok ? uuid.value : null, pciBusId: pci.ok ? pci.value.busIdNormalized : null });
    const supported = reading(() => lib.supportedEventTypes(dev));
    const mask = supported.ok ? requested & supported.value : requested;
    const reg: EventRegistration = {
      index,
      uuid: uuid.ok ? uuid.value : null,
      requestedMask: requested,
      supportedMask: supported.ok ? supported.value : null,
      registeredMask: 0,
      error: null,
    };
    if (!supported.ok && supported.error.kind !== "not_supported") reg.error = supported.error;
    else if (mask !== 0) {
      const r = reading(() => lib.registerEvents(dev, mask, set));
      if (r.ok) reg.registeredMask = mask;
      else reg.error = r.error;
    }
    registrations.push(reg);
  });
  return { set, registrations };
}

class Events {
  private set: EventSetHandle | null = null;
  private readonly known = new Map<number, KnownDevice>();
  private seq = 0;
  /** Not before this time: the pause after a wait error. */
  private retryAt = 0;

  constructor(
    private readonly lib: NvmlLibrary,
    private readonly config: EventsConfig,
    private readonly tracker: SharedCallTracker,
  ) {}

  /** The first registration, for the "started" message; throws an NvmlError when no event set can be made. */
  start(): EventRegistration[] {
    const r = setUpEvents(this.lib, this.config.mask, this.known);
    this.set = r.set;
    return r.registrations;
  }

  /** Waits up to `ms` for one event and posts it; on an error, re-creates the event set after a pause. */
  async wait(ms: number): Promise<void> {
    if (this.set === null) {
      if (Date.now() < this.retryAt) return idle(Math.min(ms, this.retryAt - Date.now()));
      try {
        const r = setUpEvents(this.lib, this.config.mask, this.known);
        this.set = r.set;
        send({ type: "registrations", registrations: r.registrations });
      } catch (err) {
        if (!(err instanceof NvmlError)) throw err;
        this.failed(err.info);
        return;
      }
    }
    this.tracker.operation("event wait");
    let data;
    try {
      data = this.lib.eventSetWait(this.set, Math.min(ms, this.config.sliceMs));
    } catch (err) {
      if (!(err instanceof NvmlError)) throw err;
      this.failed(err.info);
      return;
    }
    if (data) this.post(data);
  }

  close(): void {
    if (this.set !== null) {
      const s = this.set;
      this.set = null;
      reading(() => this.lib.eventSetFree(s));
    }
  }

  private failed(error: NvmlErrorInfo): void {
    send({ type: "eventError", error: { time: new Date().toISOString(), error, action: "recreate_event_set", retryInMs: this.config.retryDelayMs } });
    this.close();
    this.retryAt = Date.now() + this.config.retryDelayMs;
  }

  private post(data: NonNullable<ReturnType<NvmlLibrary["eventSetWait"]>>): void {
    let dev = this.known.get(data.device);
    if (!dev) {
      const idx = reading(() => this.lib.deviceIndex({ index: -1, handle: data.device }));
      dev = { index: idx.ok ? idx.value : -1, uuid: null, pciBusId: null };
    }
    const isXid = (data.eventType & EVENT_TYPES.XidCriticalError) !== 0;
    const event: NvmlEvent = {
      seq: ++this.seq,
      time: new Date().toISOString(),
      deviceIndex: dev.index >= 0 ? dev.index : null,
      uuid: dev.uuid,
      pciBusId: dev.pciBusId,
      eventType: data.eventType,
      eventTypeNames: decodeEventTypes(data.eventType),
      data: data.eventData,
      xid: isXid ? data.eventData : null,
      gpuInstanceId: data.gpuInstanceId === 0xffffffff ? null : data.gpuInstanceId,
      computeInstanceId: data.computeInstanceId === 0xffffffff ? null : data.computeInstanceId,
    };
    send({ type: "event", event });
  }
}

// ---- scheduled checks ------------------------------------------------------------------------

class Checks {
  private readonly runner: GpuCheckRunner;
  private last: { handle: NvmlDevice | null; snapshot: DeviceSnapshot }[] = [];
  private nextFull = 0;
  private nextFast = 0;
  private fastKeys = "";
  private fullPasses = 0;

  constructor(
    private readonly lib: NvmlLibrary,
    private readonly config: ChecksConfig,
    private readonly tracker: SharedCallTracker,
    private readonly snapshotOptions: SnapshotOptions,
  ) {
    this.runner = new GpuCheckRunner(config.expectedGpus !== undefined ? { expectedGpus: config.expectedGpus } : {});
  }

  /** Runs whichever tier is due; returns how long until the next one is. */
  run(): number {
    const now = Date.now();
    if (now >= this.nextFull) {
      this.full();
      this.nextFull = now + this.config.fullIntervalMs;
      this.nextFast = now + this.config.fastIntervalMs;
    } else if (now >= this.nextFast) {
      this.fast();
      // After a stall, the next tick is one interval from now, not a burst of missed ones.
      this.nextFast = Math.max(this.nextFast + this.config.fastIntervalMs, now + 1);
    }
    return Math.max(0, Math.min(this.nextFull, this.nextFast) - Date.now());
  }

  private full(): void {
    this.tracker.operation("full checks");
    // Once a minute, everything; in between, the readings that do not change come from the last
    // read and the NVLink error counters (four calls per link, judged per minute) are left out.
    // Link states, counters the checks rate and every reading the heartbeat carries: every pass.
    const everything = this.fullPasses++ % Math.max(1, Math.round(EVERYTHING_INTERVAL_MS / this.config.fullIntervalMs)) === 0;
    const steady = this.last.map((e) => e.snapshot);
    const { snapshot, handles } = readSnapshotAndHandles(this.lib, { ...this.snapshotOptions, nvlinkCounters: everything, ...(everything ? {} : { steady }) });
    this.last = snapshot.devices.map((d, i) => ({ handle: handles[i] ?? null, snapshot: d }));
    const at = Date.parse(snapshot.time);
    const findings = this.runner.full(snapshot);
    const fast = this.runner.fast(snapshot.devices, at);
    this.fastKeys = keys(fast);
    const gpus: GpuSnapshot[] = snapshot.devices.filter((d) => d.fatal === null).map(toWireGpuSnapshot);
    const identities = snapshot.devices.flatMap((d) => gpuIdentityOf(d) ?? []);
    send({ type: "checked", at, full: { findings, gpus, identities }, fast });
  }

  private fast(): void {
    this.tracker.operation("fast checks");
    const at = Date.now();
    for (const entry of this.last) if (entry.handle) entry.snapshot = readFastReadings(this.lib, entry.handle, entry.snapshot);
    const fast = this.runner.fast(
      this.last.map((e) => e.snapshot),
      at,
    );
    const now = keys(fast);
    // Unchanged conditions need no message: the main thread's incidents already hold them.
    if (now === this.fastKeys) return;
    this.fastKeys = now;
    send({ type: "checked", at, fast });
  }
}

const EVERYTHING_INTERVAL_MS = 60_000;

function keys(findings: readonly Finding[]): string {
  return findings.map(incidentKey).join("\n");
}

// ---- the loop --------------------------------------------------------------------------------

function answer(id: number, op: "snapshot" | "inventory", tracker: SharedCallTracker, options: SnapshotOptions): void {
  const lib = library;
  if (!lib) {
    send({ type: "response", id, ok: false, message: "NVML is not loaded" });
    return;
  }
  tracker.operation(op);
  try {
    if (op === "snapshot") send({ type: "response", id, ok: true, op, result: readSnapshot(lib, options) });
    else send({ type: "response", id, ok: true, op, result: readInventory(lib) });
  } catch (err) {
    send({ type: "response", id, ok: false, message: errorText(err) });
  }
}

async function run(msg: StartWorker): Promise<void> {
  const tracker = new SharedCallTracker(msg.tracker);
  const options: SnapshotOptions = msg.fieldIds ? { fieldIds: msg.fieldIds } : {};
  tracker.operation("init");
  const opened = openNvml({ ...msg.discovery, observer: tracker });
  if (!opened.ok) {
    send({ type: "started", result: opened });
    return;
  }
  const lib = opened.library;
  library = lib;
  const inventory = readInventory(lib);
  let events: Events | undefined;
  let registrations: EventRegistration[] = [];
  let eventsError: string | null = null;
  if (msg.events) {
    events = new Events(lib, msg.events, tracker);
    try {
      registrations = events.start();
    } catch (err) {
      if (!(err instanceof NvmlError)) throw err;
      eventsError = err.message;
      events = undefined;
    }
  }
  const used = opened.attempts[opened.attempts.length - 1];
  send({
    type: "started",
    result: {
      ok: true,
      libraryPath: lib.path,
      resolvedPath: used?.resolvedPath ?? null,
      file: lib.file ?? null,
      mappedInPlace: lib.mappedInPlace ?? null,
      attempts: opened.attempts,
      capabilities: lib.capabilities,
      inventory,
      registrations,
      eventsError,
    },
  });
  const checks = msg.checks ? new Checks(lib, msg.checks, tracker, options) : undefined;
  const sliceMs = msg.events?.sliceMs ?? 1000;
  while (!closing) {
    while (requests.length > 0 && !closing) {
      const r = requests.shift()!;
      answer(r.id, r.op, tracker, options);
    }
    const untilDue = checks ? checks.run() : sliceMs;
    if (closing) break;
    const waitMs = Math.min(untilDue, sliceMs);
    if (requests.length === 0) {
      if (events) await events.wait(waitMs);
      else await idle(waitMs);
    }
    await yieldToMessages();
  }
  events?.close();
}

addEventListener("message", (ev: MessageEvent) => {
  const msg = ev.data as MainToWorker;
  switch (msg.type) {
    case "start":
      loopDone = run(msg).catch((err: unknown) => {
        // A bug, not an NVML error: say so, and stop (the main thread reports the worker failed).
        send({
          type: "eventError",
          error: {
            time: new Date().toISOString(),
            error: nvmlErrorInfo(999, "NVML worker", { detail: errorText(err) }),
            action: "recreate_event_set",
            retryInMs: 0,
          },
        });
        throw err;
      });
      break;
    case "request":
      requests.push({ id: msg.id, op: msg.op });
      wake?.();
      break;
    case "heap":
      // Answered at once, between NVML calls: the worker's thread is free whenever a message runs.
      void import("bun:jsc").then(({ heapStats }) => {
        const h = heapStats();
        send({ type: "heap", heap: { sizeBytes: h.heapSize, capacityBytes: h.heapCapacity, objects: h.objectCount } });
      });
      break;
    case "close":
      closing = true;
      wake?.();
      void (loopDone ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => {
          shutdownLibrary();
          send({ type: "closed" });
        });
      break;
  }
});
