// The NVML worker: every NVML call of the agent runs here, never on the main thread. The monitor
// starts two of these (same module, two roles):
//   poll   — finds/loads/initialises the library, then answers "snapshot" / "inventory" requests;
//   events — blocks in nvmlEventSetWait_v2 in short slices and posts each event as it comes.
// Each records the call in progress in a SharedArrayBuffer for the main-thread watchdog.
//
// In a `bun build --compile` binary this file must be an extra entrypoint (see worker-url.ts).
import { decodeEventTypes, EVENT_TYPES } from "./decode.ts";
import { enumerate, readInventory, readSnapshot, type SnapshotOptions } from "./device.ts";
import { NvmlError, nvmlErrorInfo, reading, type NvmlErrorInfo } from "./errors.ts";
import { openNvml, type NvmlLibrary } from "./library.ts";
import type { MainToWorker, StartEvents, StartPoll, WorkerToMain } from "./protocol.ts";
import type { EventRegistration, EventSetHandle, NvmlEvent } from "./types.ts";
import { SharedCallTracker } from "./watchdog.ts";

function send(message: WorkerToMain): void {
  postMessage(message);
}

let library: NvmlLibrary | undefined;
let closing = false;
let eventLoopDone: Promise<void> | undefined;
let snapshotOptions: SnapshotOptions = {};

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

// ---- poll role -----------------------------------------------------------------------------

function startPoll(msg: StartPoll): void {
  if (msg.fieldIds) snapshotOptions = { fieldIds: msg.fieldIds };
  const opened = openNvml({ ...msg.discovery, observer: new SharedCallTracker(msg.tracker) });
  if (!opened.ok) {
    send({ type: "started", role: "poll", result: opened });
    return;
  }
  library = opened.library;
  const used = opened.attempts[opened.attempts.length - 1];
  send({
    type: "started",
    role: "poll",
    result: {
      ok: true,
      libraryPath: library.path,
      resolvedPath: used?.resolvedPath ?? null,
      attempts: opened.attempts,
      capabilities: library.capabilities,
    },
  });
}

function answer(id: number, op: "snapshot" | "inventory"): void {
  const lib = library;
  if (!lib) {
    send({ type: "response", id, ok: false, message: "NVML is not loaded" });
    return;
  }
  try {
    if (op === "snapshot") send({ type: "response", id, ok: true, op, result: readSnapshot(lib, snapshotOptions) });
    else send({ type: "response", id, ok: true, op, result: readInventory(lib) });
  } catch (err) {
    send({ type: "response", id, ok: false, message: errorText(err) });
  }
}

// ---- events role ---------------------------------------------------------------------------

interface KnownDevice {
  index: number;
  uuid: string | null;
  pciBusId: string | null;
}

const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

async function sleepUnlessClosing(ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!closing && Date.now() < until) await new Promise<void>((resolve) => setTimeout(resolve, Math.min(50, until - Date.now())));
}

/** Creates the event set and registers every GPU for `requested` ∩ its supported types. */
function setUpEvents(lib: NvmlLibrary, requested: number, known: Map<number, KnownDevice>): { set: EventSetHandle; registrations: EventRegistration[] } {
  const set = lib.eventSetCreate();
  known.clear();
  const registrations: EventRegistration[] = [];
  const { count, devices } = enumerate(lib);
  if (!count.ok) {
    try {
      lib.eventSetFree(set);
    } catch {
      // nothing to free
    }
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

async function runEvents(msg: StartEvents): Promise<void> {
  const opened = openNvml({ libraryPath: msg.libraryPath, explicitOnly: true, observer: new SharedCallTracker(msg.tracker) });
  if (!opened.ok) {
    send({ type: "started", role: "events", ok: false, message: opened.message, error: opened.stage === "init" ? opened.error : null });
    return;
  }
  const lib = opened.library;
  library = lib;
  const known = new Map<number, KnownDevice>();
  const requested = msg.eventMask;
  let set: EventSetHandle | null = null;
  let seq = 0;
  let started = false;

  const fail = async (error: NvmlErrorInfo) => {
    send({ type: "eventError", error: { time: new Date().toISOString(), error, action: "recreate_event_set", retryInMs: msg.retryDelayMs } });
    if (set !== null) {
      const s = set;
      set = null;
      reading(() => lib.eventSetFree(s));
    }
    await sleepUnlessClosing(msg.retryDelayMs);
  };

  while (!closing) {
    if (set === null) {
      try {
        const r = setUpEvents(lib, requested, known);
        set = r.set;
        send(started ? { type: "registrations", registrations: r.registrations } : { type: "started", role: "events", ok: true, registrations: r.registrations });
        started = true;
      } catch (err) {
        if (!(err instanceof NvmlError)) throw err;
        if (!started) {
          send({ type: "started", role: "events", ok: false, message: err.message, error: err.info });
          break;
        }
        await fail(err.info);
        continue;
      }
    }
    let data;
    try {
      data = lib.eventSetWait(set, msg.sliceMs);
    } catch (err) {
      if (!(err instanceof NvmlError)) throw err;
      await fail(err.info);
      continue;
    }
    if (data) {
      let dev = known.get(data.device);
      if (!dev) {
        const idx = reading(() => lib.deviceIndex({ index: -1, handle: data.device }));
        dev = { index: idx.ok ? idx.value : -1, uuid: null, pciBusId: null };
      }
      const isXid = (data.eventType & EVENT_TYPES.XidCriticalError) !== 0;
      const event: NvmlEvent = {
        seq: ++seq,
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
    await yieldToMessages();
  }
  if (set !== null) {
    const s = set;
    reading(() => lib.eventSetFree(s));
  }
}

// ---- dispatch ------------------------------------------------------------------------------

addEventListener("message", (ev: MessageEvent) => {
  const msg = ev.data as MainToWorker;
  switch (msg.type) {
    case "start":
      if (msg.role === "poll") {
        startPoll(msg);
      } else {
        eventLoopDone = runEvents(msg).catch((err: unknown) => {
          send({
            type: "eventError",
            error: {
              time: new Date().toISOString(),
              error: nvmlErrorInfo(999, "event worker", { detail: errorText(err) }),
              action: "recreate_event_set",
              retryInMs: 0,
            },
          });
        });
      }
      break;
    case "request":
      answer(msg.id, msg.op);
      break;
    case "close":
      closing = true;
      void (eventLoopDone ?? Promise.resolve()).then(() => {
        shutdownLibrary();
        send({ type: "closed" });
      });
      break;
  }
});

export {};
