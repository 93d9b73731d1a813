// The operator's side of requests to agents (the wire's side is in wire.ts): what
// `POST /v1/nodes/{id}/requests` takes, and what `GET /v1/nodes/{id}/requests[/{request_id}]`
// answers. Read by the API, which validates with them, the CLI (`navarch nodes run-check`) and
// the OpenAPI document. Answers are loose objects: the server may add fields.
import * as v from "valibot";
import { REQUEST_KINDS, REQUEST_STATES, RunCheckArgs } from "./wire.ts";

/** How long the reconciler waits for an answer by default, and at most. */
export const DEFAULT_REQUEST_DEADLINE_SECONDS = 3600;
export const MAX_REQUEST_DEADLINE_SECONDS = 86_400;
/** Requests one node may have open (not answered yet) at once: more are refused (409). */
export const MAX_OPEN_REQUESTS_PER_NODE = 16;
/** Requests GET /v1/nodes/{id}/requests lists, newest first. */
export const REQUEST_LIST_MAX = 100;

const Actor = v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128), v.description("who asks (recorded in the audit log)")), "operator");
const Reason = v.optional(v.pipe(v.string(), v.maxLength(1024), v.description("why (recorded in the audit log)")), "no reason given");
const DeadlineSeconds = v.optional(
  v.pipe(
    v.number(),
    v.integer(),
    v.minValue(1),
    v.maxValue(MAX_REQUEST_DEADLINE_SECONDS),
    v.description("seconds the reconciler waits for the agent's final answer; then the request is expired (longer than the check's timeout on the machine)"),
  ),
  DEFAULT_REQUEST_DEADLINE_SECONDS,
);

/** The kinds an operator may ask for now; the others are named in wire.ts for later. */
const SERVED = ["run_check"] as const;

/** `POST /v1/nodes/{id}/requests`. */
export const RequestCreate = v.variant(
  "kind",
  [
    v.strictObject({
      kind: v.literal("run_check"),
      args: v.pipe(RunCheckArgs, v.description("the check to run, by the name the machine's agent configuration gives it")),
      deadlineSeconds: DeadlineSeconds,
      actor: Actor,
      reason: Reason,
    }),
  ],
  (issue) =>
    typeof issue.input === "string" && (REQUEST_KINDS as readonly string[]).includes(issue.input)
      ? `${issue.input} requests are not served yet (this reconciler asks for ${SERVED.join(", ")})`
      : `expected one of ${SERVED.join(", ")}, got ${JSON.stringify(issue.input) ?? "nothing"}`,
);
export type RequestCreate = v.InferOutput<typeof RequestCreate>;

const Ms = v.pipe(v.number(), v.description("milliseconds since the epoch (UTC)"));
const Nullable = <T extends v.GenericSchema>(s: T) => v.nullable(s);

/** One request as listed (without its output). */
export const RequestSummary = v.object({
  id: v.string(),
  nodeId: v.string(),
  kind: v.picklist(REQUEST_KINDS),
  args: v.record(v.string(), v.unknown()),
  state: v.picklist(REQUEST_STATES),
  requestedBy: v.string(),
  token: v.pipe(v.string(), v.description("the credential it was asked with (token:NAME)")),
  reason: v.string(),
  createdAt: Ms,
  deadlineAt: Ms,
  deliveredAt: Nullable(Ms),
  startedAt: Nullable(Ms),
  finishedAt: Nullable(Ms),
  exitCode: Nullable(v.number()),
  signal: Nullable(v.string()),
  outputBytes: Nullable(v.number()),
  outputCut: Nullable(v.boolean()),
  durationMs: Nullable(v.number()),
  detail: Nullable(v.pipe(v.string(), v.description("why it ended so: the agent's reason, or why it expired"))),
});
export type RequestSummary = v.InferOutput<typeof RequestSummary>;

/** One request with its output: the last 64 KiB of what the check printed. */
export const RequestDetail = v.object({ ...RequestSummary.entries, output: Nullable(v.string()) });
export type RequestDetail = v.InferOutput<typeof RequestDetail>;

export const RequestList = v.object({ requests: v.array(RequestSummary) });
export type RequestList = v.InferOutput<typeof RequestList>;
