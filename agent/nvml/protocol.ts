// Messages between the main thread (monitor.ts) and the NVML workers (worker.ts).
import type { NvmlErrorInfo } from "./errors.ts";
import type { LoadAttempt, NvmlDiscoveryOptions } from "./library.ts";
import type { EventRegistration, NvmlCapabilities, NvmlEvent, NvmlEventLoopError, NvmlInventory, NvmlSnapshot } from "./types.ts";

export type StartPoll = {
  type: "start";
  role: "poll";
  discovery: NvmlDiscoveryOptions;
  tracker: SharedArrayBuffer;
  fieldIds?: readonly number[];
};

export type StartEvents = {
  type: "start";
  role: "events";
  libraryPath: string;
  tracker: SharedArrayBuffer;
  eventMask: number;
  sliceMs: number;
  retryDelayMs: number;
};

export type MainToWorker =
  | StartPoll
  | StartEvents
  | { type: "request"; id: number; op: "snapshot" | "inventory" }
  | { type: "close" };

export type PollStarted =
  | { ok: true; libraryPath: string; resolvedPath: string | null; attempts: LoadAttempt[]; capabilities: NvmlCapabilities }
  | { ok: false; stage: "load"; attempts: LoadAttempt[]; message: string }
  | { ok: false; stage: "init"; attempts: LoadAttempt[]; message: string; libraryPath: string; error: NvmlErrorInfo };

export type WorkerToMain =
  | { type: "started"; role: "poll"; result: PollStarted }
  | { type: "started"; role: "events"; ok: true; registrations: EventRegistration[] }
  | { type: "started"; role: "events"; ok: false; message: string; error: NvmlErrorInfo | null }
  | { type: "response"; id: number; ok: true; op: "snapshot"; result: NvmlSnapshot }
  | { type: "response"; id: number; ok: true; op: "inventory"; result: NvmlInventory }
  | { type: "response"; id: number; ok: false; message: string }
  | { type: "event"; event: NvmlEvent }
  | { type: "eventError"; error: NvmlEventLoopError }
  | { type: "registrations"; registrations: EventRegistration[] }
  | { type: "closed" };
