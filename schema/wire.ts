// The agent ↔ reconciler wire (/v1). One valibot schema per message, imported by
// both programs: the agent builds messages of these types and the reconciler
// validates every body against the same schema before it touches the store.
// Every number is bounded: counters and seqs are safe integers (JSON numbers above
// 2^53 lose precision), readings are finite and physically possible, and an interval
// the agent sets a timer from fits a timer.
import * as v from "valibot";
import { isRealIsoTime } from "./time.ts";
import { READING_RANGES } from "./reading-ranges.ts";
import { show } from "./shapes.ts";
import { wellFormed } from "./text.ts";

export const WIRE_VERSION = "v1";

/** Largest request body the reconciler reads (a full event batch is far below it). */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Largest number of events in one batch; the agent splits its spool to fit. */
export const MAX_EVENTS_PER_BATCH = 500;
/** The agent's bound on one batch's JSON body: a quarter of what the reconciler reads, so a batch never meets the limit. */
export const MAX_EVENT_BATCH_BYTES = MAX_BODY_BYTES / 4;
/** Longest message an event carries; the agent cuts longer ones (with a marker) rather than lose the event. */
export const MAX_EVENT_MESSAGE = 4096;
/** GPUs one node may report; NVML indexes them from 0. */
export const MAX_GPUS = 64;
/** Longest delay a JS timer holds: above it setTimeout fires at once (and warns), so a loop spins. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The heartbeat interval a reconciler may ask for, in seconds (the config allows 1s to 10m). */
export const HEARTBEAT_INTERVAL_SECONDS = { min: 1, max: 3600 } as const;
export { READING_RANGES } from "./reading-ranges.ts";

/** Clamps a delay into what a timer holds (NaN: `fallback`). */
export function timerMs(ms: number, fallback = 0): number {
  if (Number.isNaN(ms)) return fallback;
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}

type NumberMessage = (issue: v.BaseIssue<unknown>) => string;

/** How the API parses what it is sent: a pipe stops at its first issue, so each value gets one. */
export const ONE_ISSUE_PER_VALUE = { abortPipeEarly: true } as const;

/**
 * A whole number from `min` to `max`; one issue per value when parsed with ONE_ISSUE_PER_VALUE.
 * (Not `v.config` here: its wrapper copies the parse config for every value it checks, which
 * was half of a heartbeat's validation, 15 µs then 8 µs.)
 */
function whole(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const message: NumberMessage = (issue) => `must be a whole number from ${min} to ${max}, got ${show(issue.input)}`;
  return v.pipe(v.number(message), v.safeInteger(message), v.minValue(min, message), v.maxValue(max, message));
}

/** A finite number from `min` to `max` (Infinity, from JSON's 1e999, is out of range too). */
function between(min: number, max: number, unit = "") {
  const message: NumberMessage = (issue) => `must be a number from ${min} to ${max}${unit}, got ${show(issue.input)}`;
  return v.pipe(v.number(message), v.minValue(min, message), v.maxValue(max, message));
}

const NAME_PATTERN = /^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$/i;

export const NodeId = v.pipe(v.string(), v.regex(NAME_PATTERN, "must be 1–253 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"));
// Every string of the wire is well-formed text (schema/text.ts): the store cannot hold a lone surrogate.
export const BootId = v.pipe(v.string(), wellFormed, v.minLength(1), v.maxLength(64));
const ShortText = v.pipe(v.string(), wellFormed, v.maxLength(256));
const Count = whole(0);
const GpuIndex = whole(0, MAX_GPUS - 1);
const HeartbeatIntervalSeconds = between(HEARTBEAT_INTERVAL_SECONDS.min, HEARTBEAT_INTERVAL_SECONDS.max, " seconds");
// A real calendar day too: valibot's pattern alone lets 2026-02-31 through, which Date.parse rolls over.
const IsoTime = v.pipe(
  v.string(),
  v.isoTimestamp("must be an ISO-8601 timestamp"),
  v.check(isRealIsoTime, "must be an ISO-8601 timestamp of a real date and time"),
);

/** Health verdicts, worst last. */
export const SEVERITIES = ["healthy", "degraded", "unhealthy"] as const;
export const Severity = v.picklist(SEVERITIES);
export type Severity = v.InferOutput<typeof Severity>;

/** What should be done about a finding: NVIDIA's vocabulary, in increasing cost. */
export const ACTIONS = ["none", "restart_app", "reset_gpu", "reboot", "replace", "contact_support"] as const;
export const RecommendedAction = v.picklist(ACTIONS);
export type RecommendedAction = v.InferOutput<typeof RecommendedAction>;

/** Identity of one GPU, as NVML reports it. */
export const GpuIdentity = v.object({
  index: GpuIndex,
  uuid: ShortText,
  pciBusId: ShortText,
});
export type GpuIdentity = v.InferOutput<typeof GpuIdentity>;

export const GpuInfo = v.object({
  ...GpuIdentity.entries,
  name: ShortText,
  memoryTotalBytes: v.optional(Count),
});
export type GpuInfo = v.InferOutput<typeof GpuInfo>;

/** Whether the agent could read its GPUs; when not, why (and which library paths it tried). */
export const NvmlStatus = v.object({
  available: v.boolean(),
  libraryPath: v.optional(ShortText),
  error: v.optional(v.pipe(v.string(), wellFormed, v.maxLength(4096))),
  triedPaths: v.optional(v.array(ShortText)),
});
export type NvmlStatus = v.InferOutput<typeof NvmlStatus>;

/** More open findings than any machine has (64 GPUs × its checks) would be a bug or an attack. */
export const MAX_OPEN_FINDINGS = 512;

export const RegisterRequest = v.strictObject({
  nodeId: NodeId,
  pool: v.optional(ShortText),
  provider: v.optional(ShortText),
  instanceType: v.optional(ShortText),
  hostname: ShortText,
  bootId: BootId,
  agentVersion: ShortText,
  /**
   * Identity of the agent's event spool (made when its state directory is). A new
   * one tells the reconciler the agent's seq numbering started over.
   */
  spoolId: v.pipe(v.string(), v.uuid("must be a UUID")),
  driverVersion: v.optional(ShortText),
  cudaVersion: v.optional(ShortText),
  nvml: NvmlStatus,
  // Each index once: two GPUs at one index cannot both be stored (found by Schemathesis: it was a 500).
  gpus: v.pipe(
    v.array(GpuInfo),
    v.maxLength(MAX_GPUS),
    v.check((gpus) => new Set(gpus.map((g) => g.index)).size === gpus.length, "each GPU index may appear once"),
  ),
  /**
   * The findings of this boot that are still open and were already acknowledged, as they
   * were sent. The reconciler stores those it lacks (its database was lost or restored
   * from an older copy), so a broken GPU is never forgotten.
   */
  openFindings: v.optional(v.pipe(v.array(v.lazy(() => HealthEvent)), v.maxLength(MAX_OPEN_FINDINGS))),
});
export type RegisterRequest = v.InferOutput<typeof RegisterRequest>;

export const RegisterResponse = v.object({
  nodeId: NodeId,
  /** The agent sets a timer from it: bounded so that timer never overflows. */
  heartbeatIntervalSeconds: HeartbeatIntervalSeconds,
  /** Highest event sequence number already stored for this node. */
  lastEventSeq: Count,
  /**
   * Whether `lastEventSeq` was stored from this same spool. If so the agent drops its
   * events up to it (their ack was lost); if not, it renumbers its unsent events after it.
   */
  sameSpool: v.boolean(),
  /**
   * This node's own credential, issued once when it registered with a one-time bootstrap
   * token. The agent keeps it in its state directory and sends it on every later call
   * (`Authorization: Bearer …`); it is valid for this node id only.
   */
  nodeToken: v.optional(v.pipe(v.string(), v.minLength(32), v.maxLength(256))),
});
export type RegisterResponse = v.InferOutput<typeof RegisterResponse>;

/** Point-in-time readings of one GPU, carried by each heartbeat. */
export const GpuSnapshot = v.object({
  index: GpuIndex,
  temperatureC: v.optional(between(READING_RANGES.temperatureC.min, READING_RANGES.temperatureC.max, " °C")),
  powerW: v.optional(between(READING_RANGES.powerW.min, READING_RANGES.powerW.max, " W")),
  utilizationPct: v.optional(between(READING_RANGES.utilizationPct.min, READING_RANGES.utilizationPct.max, " %")),
  memoryUsedBytes: v.optional(Count),
  eccVolatileDbe: v.optional(Count),
  eccVolatileSbe: v.optional(Count),
  clocksEventReasons: v.optional(Count),
  /** Compute processes on the GPU now (NVML): during a drain, 0 means no work, which 0 % utilisation does not. */
  processCount: v.optional(Count),
});
export type GpuSnapshot = v.InferOutput<typeof GpuSnapshot>;

/** The agent's own verdict. `checked` stays false until its first full check completed. */
export const AgentHealth = v.object({
  checked: v.boolean(),
  worst: Severity,
  openIncidents: Count,
});
export type AgentHealth = v.InferOutput<typeof AgentHealth>;

export const Heartbeat = v.strictObject({
  nodeId: NodeId,
  bootId: BootId,
  sentAt: IsoTime,
  nvml: NvmlStatus,
  health: AgentHealth,
  gpus: v.pipe(v.array(GpuSnapshot), v.maxLength(MAX_GPUS)),
});
export type Heartbeat = v.InferOutput<typeof Heartbeat>;

// ───────────────────────────── requests to the agent ─────────────────────────────
// The one way the reconciler asks an agent for something: delivered in heartbeat answers,
// answered with POST /v1/nodes/{id}/requests/{request_id}. The request names what to do; the
// agent does only what its own machine's configuration defines (schema/agent-config.ts), never
// a command from the request.

/** Most requests one heartbeat answer may carry (the reconciler holds fewer open per node). */
export const MAX_REQUESTS_PER_HEARTBEAT = 64;
/** Longest output a request's answer carries, in UTF-16 units: the last 64 KiB of what it printed. */
export const MAX_REQUEST_OUTPUT = 64 * 1024;

/** What a request asks: run a check the machine defines; later an evidence bundle, a GPU reset, a self-update. */
export const REQUEST_KINDS = ["run_check", "bundle", "reset_gpu", "update"] as const;
export const RequestKind = v.picklist(REQUEST_KINDS);
export type RequestKind = v.InferOutput<typeof RequestKind>;

/** A request's life on the reconciler: asked, in a heartbeat answer, started, and how it ended. */
export const REQUEST_STATES = ["pending", "delivered", "running", "succeeded", "failed", "refused", "timed_out", "expired"] as const;
export type RequestState = (typeof REQUEST_STATES)[number];
/** The states a request ends in: nothing changes it after. */
export const FINAL_REQUEST_STATES = ["succeeded", "failed", "refused", "timed_out", "expired"] as const satisfies readonly RequestState[];
/** What an agent answers: it started, or how it ended (`expired` is the reconciler's alone). */
export const ANSWER_STATES = ["running", "succeeded", "failed", "refused", "timed_out"] as const satisfies readonly RequestState[];
export type AnswerState = (typeof ANSWER_STATES)[number];

/** The reconciler's id for a request: safe in a URL and as a file name on the agent. */
export const RequestId = v.pipe(v.string(), v.regex(/^req_[a-z0-9]{8,60}$/, "must be a request id: req_ and 8 to 60 lowercase letters or digits"));

/** The name of a check a machine's configuration defines (`dcgm-diag`). */
export const CHECK_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;
export const CheckName = v.pipe(
  v.string(),
  v.regex(CHECK_NAME_PATTERN, "must be a check name: 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter"),
);

/**
 * `run_check`: the name of a check, and nothing else. The command, its arguments and its
 * timeout are the machine's own (schema/agent-config.ts); a request that carries more is refused.
 */
export const RunCheckArgs = v.strictObject({ check: CheckName });
export type RunCheckArgs = v.InferOutput<typeof RunCheckArgs>;

/** One request as a heartbeat answer carries it. */
export const AgentRequest = v.object({
  id: RequestId,
  kind: RequestKind,
  /** The kind's arguments (RunCheckArgs for run_check), judged by the agent per kind. */
  args: v.record(v.string(), v.unknown()),
  /** When the reconciler stops waiting for its answer (it is then `expired`); the agent does not start it later. */
  deadline: IsoTime,
});
export type AgentRequest = v.InferOutput<typeof AgentRequest>;

/** `POST /v1/nodes/{id}/requests/{request_id}`: the agent's answer, `running` first, then how it ended. */
export const RequestAnswer = v.strictObject({
  state: v.picklist(ANSWER_STATES),
  /** Why it was refused, or failed without an exit code (could not start, the agent stopped). */
  reason: v.optional(v.pipe(v.string(), wellFormed, v.maxLength(1024))),
  exitCode: v.optional(whole(0, 255)),
  /** The signal that ended the check's process (a timeout's SIGTERM or SIGKILL). */
  signal: v.optional(v.pipe(v.string(), v.regex(/^SIG[A-Z0-9]{1,12}$/, "must be a signal name like SIGKILL"))),
  /** The last MAX_REQUEST_OUTPUT characters of what it wrote to stdout and stderr, in the order written. */
  output: v.optional(v.pipe(v.string(), wellFormed, v.maxLength(MAX_REQUEST_OUTPUT))),
  /** How many bytes it wrote in all; `outputCut` says whether `output` is only their end. */
  outputBytes: v.optional(Count),
  outputCut: v.optional(v.boolean()),
  /** How long it ran, by the agent's clock. */
  durationMs: v.optional(Count),
});
export type RequestAnswer = v.InferOutput<typeof RequestAnswer>;

/** The reconciler's reply to an answer: the state it holds now (a final one: the agent stops sending). */
export const RequestAnswerResponse = v.object({ state: v.picklist(REQUEST_STATES) });
export type RequestAnswerResponse = v.InferOutput<typeof RequestAnswerResponse>;

export const HeartbeatResponse = v.object({
  /** When the agent should send the next heartbeat. */
  heartbeatIntervalSeconds: HeartbeatIntervalSeconds,
  /**
   * Highest event seq the reconciler holds for this node. Lower than what it acknowledged
   * before means it forgot (its database was restored from an older copy): the agent
   * registers again, re-sending its open findings.
   */
  lastEventSeq: v.optional(Count),
  /**
   * What the reconciler asks of this node's agent (each an `AgentRequest`), sent with every
   * answer until the agent answers it. Each is judged on its own by the agent (so one it cannot
   * read, or a kind newer than it, is refused alone and never costs a heartbeat); an older agent
   * ignores the field, an older reconciler leaves it out.
   */
  requests: v.optional(
    v.pipe(v.array(v.unknown()), v.maxLength(MAX_REQUESTS_PER_HEARTBEAT), v.description("AgentRequest objects, judged one by one by the agent")),
  ),
});
export type HeartbeatResponse = v.InferOutput<typeof HeartbeatResponse>;

/** One structured health finding. `seq` is per node, strictly increasing, never reused. */
export const HealthEvent = v.strictObject({
  seq: whole(1),
  time: IsoTime,
  bootId: BootId,
  check: v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_]{0,63}$/, "must be a lower_snake_case check name")),
  code: v.optional(ShortText),
  severity: Severity,
  action: RecommendedAction,
  gpu: v.optional(GpuIdentity),
  message: v.pipe(v.string(), wellFormed, v.maxLength(MAX_EVENT_MESSAGE)),
  /** How many times this finding repeated since it was first reported (deduplication). */
  count: v.optional(whole(1)),
});
export type HealthEvent = v.InferOutput<typeof HealthEvent>;

/**
 * Which GPU, check and code an event is about: a later event with the same key updates or
 * clears the same finding (the agent and the reconciler key findings alike).
 */
export function findingKey(event: Pick<HealthEvent, "gpu" | "check" | "code" | "message">): string {
  const gpu = event.gpu?.pciBusId || event.gpu?.uuid || "node";
  const what = event.code ?? event.message.replace(/0x[0-9a-f]+|\d+/gi, "#");
  return `${gpu}|${event.check}|${what}`;
}

export const EventBatch = v.pipe(
  v.strictObject({
    nodeId: NodeId,
    events: v.pipe(v.array(HealthEvent), v.minLength(1), v.maxLength(MAX_EVENTS_PER_BATCH)),
  }),
  v.check((batch) => batch.events.every((e, i) => i === 0 || e.seq > batch.events[i - 1]!.seq), "events must be in strictly increasing seq order"),
);
export type EventBatch = v.InferOutput<typeof EventBatch>;

export const EventBatchResponse = v.object({
  /** Highest seq now stored; every event at or below it is safe to drop from the spool. */
  ackedSeq: Count,
  /** How many events of the batch were new (the rest were duplicates). */
  stored: Count,
});
export type EventBatchResponse = v.InferOutput<typeof EventBatchResponse>;

/** Machine-readable reasons in ErrorBody.code, where a client acts on the reason. */
export const ERROR_CODES = {
  /** 404 from /v1/heartbeat or /v1/events: the node is not registered; the agent registers again. */
  unknownNode: "unknown_node",
} as const;

/** The body of every non-2xx answer. */
export const ErrorBody = v.object({
  error: v.string(),
  code: v.optional(v.string()),
  issues: v.optional(v.array(v.object({ path: v.string(), message: v.string() }))),
});
export type ErrorBody = v.InferOutput<typeof ErrorBody>;

/** Turns valibot issues into `path: message` pairs, e.g. `events[0].severity`. */
export function issuePaths(issues: readonly v.BaseIssue<unknown>[]): { path: string; message: string }[] {
  return issues.map((issue) => ({ path: formatIssuePath(issue.path) || "(body)", message: issue.message }));
}

export function formatIssuePath(path: v.BaseIssue<unknown>["path"]): string {
  let out = "";
  for (const item of path ?? []) {
    const key = item.key;
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}
