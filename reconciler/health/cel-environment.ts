// The CEL environment a `when` expression runs in (@bufbuild/cel): its variables, CEL's
// standard library, the strings extension and our history functions, and the CEL values of
// timestamps and durations. The static checker (cel-checker.ts) declares the same environment
// field by field.
//
//   event   check, code ("" when none), severity, action, message, count (int, ≥ 1), seq (int),
//           boot_id, time (timestamp), gpu { index (int, -1 when the event is not about one GPU),
//           uuid, pci_bus_id }
//   node    id, pool ("" when none), boot_id
//   xid     the catalog entry (with the policy's overrides) for an xid event's code: code (int), name,
//           meaning, known, ignored, severity, action, persistence, category, app_caused,
//           escalate { count (int, 0 = no repeat rule), window (duration), severity, action };
//           for any other event every field is empty ("", 0, false)
//   now     the evaluation time (timestamp)
//   count_events(check, code, window)       occurrences on the event's GPU (node-level events: on no
//                                           GPU) in (event.time - window, event.time], the event included
//   count_events_node(check, code, window)  the same over every GPU of the node
//   (code "*" matches any code; history.ts says what an occurrence is.)
import { CelScalar, celEnv, celFunc, mapType, objectType, type plan } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { ANY_GPU, countOccurrences, type PreparedHistory } from "./history.ts";
import type { NormalizedEvent } from "./normalized-event.ts";

const TIMESTAMP_TYPE = objectType("google.protobuf.Timestamp");
const DURATION_TYPE = objectType("google.protobuf.Duration");

interface TimestampValue {
  readonly $typeName: "google.protobuf.Timestamp";
  seconds: bigint;
  nanos: number;
}
interface DurationValue {
  readonly $typeName: "google.protobuf.Duration";
  seconds: bigint;
  nanos: number;
}

export function timestampOf(ms: number): TimestampValue {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
export function durationOf(ms: number): DurationValue {
  const seconds = Math.trunc(ms / 1000);
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** Milliseconds of a CEL duration value (what count_events receives). */
function durationMs(value: { readonly message: unknown }): number {
  const m = value.message;
  if (typeof m !== "object" || m === null) return 0;
  const seconds = "seconds" in m && typeof m.seconds === "bigint" ? Number(m.seconds) : 0;
  const nanos = "nanos" in m && typeof m.nanos === "number" ? m.nanos : 0;
  return seconds * 1000 + nanos / 1e6;
}

/** The event being evaluated and its history, for the count functions (evaluation is synchronous). */
let active: { event: NormalizedEvent; history: PreparedHistory } | undefined;

/** Runs `run` with the count functions counting `event` over `history`. */
export function whileEvaluating<T>(event: NormalizedEvent, history: PreparedHistory, run: () => T): T {
  const outer = active;
  active = { event, history };
  try {
    return run();
  } finally {
    active = outer;
  }
}

const COUNT_EVENTS = celFunc("count_events", [CelScalar.STRING, CelScalar.STRING, DURATION_TYPE], CelScalar.INT, (check, code, window) =>
  active ? BigInt(countOccurrences(active.event, active.history, active.event.gpuKey, check, code, durationMs(window))) : 0n,
);
const COUNT_EVENTS_NODE = celFunc("count_events_node", [CelScalar.STRING, CelScalar.STRING, DURATION_TYPE], CelScalar.INT, (check, code, window) =>
  active ? BigInt(countOccurrences(active.event, active.history, ANY_GPU, check, code, durationMs(window))) : 0n,
);

const VARIABLES = {
  event: mapType(CelScalar.STRING, CelScalar.DYN),
  node: mapType(CelScalar.STRING, CelScalar.DYN),
  xid: mapType(CelScalar.STRING, CelScalar.DYN),
  now: TIMESTAMP_TYPE,
} as const;

/** CEL's standard library, its strings extension (lowerAscii, split, replace, …) and ours. */
export const ENV = celEnv({ variables: VARIABLES, funcs: [...strings, COUNT_EVENTS, COUNT_EVENTS_NODE] });

/** A planned `when` expression. */
export type Program = ReturnType<typeof plan<typeof VARIABLES>>;
/** What a Program is run with: the variables above. */
export type Bindings = Parameters<Program>[0];
