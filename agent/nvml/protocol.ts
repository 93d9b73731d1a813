// Messages between the main thread (monitor.ts) and the NVML worker (worker.ts).
import type { Finding } from "../checks/finding.ts";
import type { GpuIdentity, GpuSnapshot } from "../../schema/wire.ts";
import type { NvmlErrorInfo } from "./errors.ts";
import type { NvmlDiscoveryOptions } from "./discovery.ts";
import type { LoadAttempt } from "./open.ts";
import type { FileIdentity } from "./private-copy.ts";
import type { EventRegistration, NvmlCapabilities, NvmlEvent, NvmlEventLoopError, NvmlInventory, NvmlSnapshot } from "./types.ts";

export interface EventsConfig {
  mask: number;
  /** Longest nvmlEventSetWait_v2 timeout: requests wait at most this long to be picked up. */
  sliceMs: number;
  retryDelayMs: number;
}

/** The GPU checks the worker runs on its own schedule (agent/checks/gpu-check-list.ts). */
export interface ChecksConfig {
  fullIntervalMs: number;
  fastIntervalMs: number;
  expectedGpus?: number;
}

export type StartWorker = {
  type: "start";
  discovery: NvmlDiscoveryOptions;
  tracker: SharedArrayBuffer;
  fieldIds?: readonly number[];
  events: EventsConfig | null;
  checks: ChecksConfig | null;
};

export type MainToWorker = StartWorker | { type: "request"; id: number; op: "snapshot" | "inventory" } | { type: "heap" } | { type: "close" };

/** One JavaScript VM's heap (bun:jsc heapStats), for the agent's memory report. */
export interface HeapSummary {
  sizeBytes: number;
  capacityBytes: number;
  objects: number;
}

export type WorkerStarted =
  | {
      ok: true;
      libraryPath: string;
      resolvedPath: string | null;
      /** The file on disk it was loaded from, as it was then (null: the loader found it alone). */
      file: FileIdentity | null;
      /** Why that file itself is mapped, not a sealed copy of it (null: the copy is). */
      mappedInPlace: string | null;
      attempts: LoadAttempt[];
      capabilities: NvmlCapabilities;
      inventory: NvmlInventory;
      registrations: EventRegistration[];
      /** Why events are not delivered (null when they are, or were not asked for). */
      eventsError: string | null;
    }
  | { ok: false; stage: "load"; attempts: LoadAttempt[]; message: string }
  | { ok: false; stage: "init"; attempts: LoadAttempt[]; message: string; libraryPath: string; error: NvmlErrorInfo };

/** What the scheduled checks found: every condition of each tier that holds now. */
export interface CheckedMessage {
  type: "checked";
  at: number;
  /** Present after a full pass (every full tier check), with the heartbeat's readings. */
  full?: { findings: Finding[]; gpus: GpuSnapshot[]; identities: GpuIdentity[] };
  /** The fast tier's findings; sent after every full pass, and between them only when they changed. */
  fast: Finding[];
}

export type WorkerToMain =
  | { type: "started"; result: WorkerStarted }
  | { type: "response"; id: number; ok: true; op: "snapshot"; result: NvmlSnapshot }
  | { type: "response"; id: number; ok: true; op: "inventory"; result: NvmlInventory }
  | { type: "response"; id: number; ok: false; message: string }
  | { type: "event"; event: NvmlEvent }
  | { type: "eventError"; error: NvmlEventLoopError }
  | { type: "registrations"; registrations: EventRegistration[] }
  | CheckedMessage
  | { type: "heap"; heap: HeapSummary }
  | { type: "closed" };
