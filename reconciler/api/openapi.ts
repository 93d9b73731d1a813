// The reconciler's HTTP API as an OpenAPI 3.1 document, served at GET /openapi.json.
// Every body schema is generated (@valibot/to-json-schema, JSON Schema 2020-12) from
// the valibot schemas the server validates with and the clients read with:
// schema/wire.ts (the agent API), schema/admin.ts (nodes) and api/views/ (the
// dashboard's and the CLI's views). Only the paths, parameters and prose are written
// here by hand.
import { toJsonSchemaDefs } from "@valibot/to-json-schema";
import * as v from "valibot";
import * as admin from "../../schema/admin.ts";
import * as requests from "../../schema/agent-requests.ts";
import { NODE_STATES } from "../../schema/lifecycle.ts";
import { NAVARCH_VERSION } from "../../schema/version.ts";
import * as wire from "../../schema/wire.ts";
import * as report from "./report.ts";
import { EventList, EventView } from "./views/events.ts";
import { IncidentTimeline } from "./views/incident-timeline.ts";
import { NodeTile } from "./views/node-tiles.ts";
import { NodeTimeline } from "./views/node-timeline.ts";
import { Overview } from "./views/overview.ts";
import { PoolSummary } from "./views/pool-summary.ts";
import { PoolView } from "./views/pool-view.ts";
import { AuditList, AuditRow, BreakerList, BreakerRow, IncidentList, IncidentRow, PoolList, PoolRow } from "./views/table-rows.ts";
import * as tokens from "./tokens.ts";
import { TokenRequest } from "./install.ts";
import { ScaleBody } from "./admin.ts";
import { FAKE_NVML_LINE } from "../providers/local/fake-nvml.ts";

export const OPENAPI_PATH = "/openapi.json";

/**
 * The bodies of the admin actions. They mirror `Action` and `Fault` in api/admin.ts,
 * which does not export them; test/openapi.test.ts checks the server accepts and
 * refuses what these say. (Exporting them from admin.ts would remove the copy.)
 */
export const ActionBody = v.strictObject({
  actor: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128), v.description("who asks (recorded in the audit log)")), "operator"),
  reason: v.optional(v.pipe(v.string(), v.maxLength(1024)), "no reason given"),
  deadlineSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(7 * 24 * 3600), v.description("drain deadline (drain only)")), 1800),
});
const FaultGpu = v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(15)), 0);
const OneLine = (max: number) => v.pipe(v.string(), v.minLength(1), v.maxLength(max), v.regex(/^[^\n\r]+$/));
// Three shapes rather than one with a rule, so the document itself says "exactly one of".
export const FaultBody = v.pipe(
  v.union([
    v.strictObject({ xid: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(999)), gpu: FaultGpu }),
    v.strictObject({ nvml: v.pipe(v.string(), v.minLength(1), v.maxLength(256), v.regex(FAKE_NVML_LINE)), gpu: FaultGpu }),
    v.strictObject({ kmsg: OneLine(1024), gpu: FaultGpu }),
  ]),
  v.description("exactly one of xid, nvml or kmsg; local (simulated) nodes only"),
);
const ActionResult = v.object({ ok: v.literal(true), result: v.optional(v.unknown()) });

const SCHEMAS = {
  ErrorBody: wire.ErrorBody,
  RegisterRequest: wire.RegisterRequest,
  RegisterResponse: wire.RegisterResponse,
  Heartbeat: wire.Heartbeat,
  HeartbeatResponse: wire.HeartbeatResponse,
  HealthEvent: wire.HealthEvent,
  EventBatch: wire.EventBatch,
  EventBatchResponse: wire.EventBatchResponse,
  GpuInfo: wire.GpuInfo,
  GpuSnapshot: wire.GpuSnapshot,
  NvmlStatus: wire.NvmlStatus,
  AgentRequest: wire.AgentRequest,
  RequestAnswer: wire.RequestAnswer,
  RequestAnswerResponse: wire.RequestAnswerResponse,
  RequestCreate: requests.RequestCreate,
  RequestSummary: requests.RequestSummary,
  RequestDetail: requests.RequestDetail,
  RequestList: requests.RequestList,
  NodeRow: admin.NodeRow,
  GpuRow: admin.GpuRow,
  EventRow: admin.EventRow,
  NodeList: admin.NodeList,
  NodeDetail: admin.NodeDetail,
  ActionBody,
  ActionResult,
  FaultBody,
  ScaleBody,
  BootstrapTokenRequest: TokenRequest,
  PoolRow,
  PoolList,
  IncidentRow,
  IncidentList,
  BreakerRow,
  BreakerList,
  AuditRow,
  AuditList,
  Report: report.Report,
  NodeTile,
  PoolSummary,
  Overview,
  PoolView,
  IncidentTimeline,
  NodeTimeline,
  EventView,
  EventList,
  TokenCreate: tokens.TokenCreate,
  TokenInfo: tokens.TokenInfo,
  TokenCreated: tokens.TokenCreated,
  TokenList: tokens.TokenList,
  TokenRevoked: tokens.TokenRevoked,
  WhoAmI: tokens.WhoAmI,
  DependencyStatus: admin.DependencyStatus,
  LoopStatus: admin.LoopStatus,
  ReconcilerStatus: admin.ReconcilerStatus,
} as const;
type SchemaName = keyof typeof SCHEMAS;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
interface Operation {
  summary: string;
  operationId: string;
  tags: string[];
  description?: string;
  parameters?: Json[];
  requestBody?: Json;
  responses: Record<string, Json>;
  security?: Json[];
}

const ref = (name: SchemaName) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: SchemaName, description: string) => ({ description, content: { "application/json": { schema: ref(name) } } });
const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [
      String(code),
      json(
        "ErrorBody",
        {
          400: "invalid request (every failing field path in `issues`)",
          401: "missing, wrong, expired or revoked bearer token",
          403: "the token's role may not do this (see the roles in the description)",
          404: "not found",
          409: "not possible in the node's current state",
          413: "body too large",
        }[code] ?? "error",
      ),
    ]),
  );
const pathParam = (name: string, description: string) => ({ name, in: "path", required: true, description, schema: { type: "string" } });
const queryParam = (name: string, description: string, schema: Json = { type: "string" }) => ({ name, in: "query", required: false, description, schema });

function admin_action(verb: string, what: string, target: "node" | "pool" | "breaker", body: SchemaName = "ActionBody"): Operation {
  return {
    summary: what,
    operationId: `${verb}${target[0]!.toUpperCase()}${target.slice(1)}`,
    tags: ["admin"],
    parameters: [
      target === "node" ? pathParam("id", "node id") : target === "pool" ? pathParam("name", "pool name") : pathParam("scope", '"fleet" or "pool:<name>"'),
    ],
    // The actions' bodies are optional (defaults for all); a fault says which fault.
    requestBody: { required: body !== "ActionBody", content: { "application/json": { schema: ref(body) } } },
    responses: { "200": json("ActionResult", "done; the reconcile loop acts on it next"), ...errors(400, 401, 403, 404, 409) },
  };
}

function buildPaths(): Record<string, Record<string, Operation>> {
  const get = (operationId: string, summary: string, response: SchemaName, tags: string[], extra: Partial<Operation> = {}): Operation => ({
    summary,
    operationId,
    tags,
    ...extra,
    responses: { "200": json(response, summary), ...errors(401, 403), ...(extra.responses ?? {}) },
  });
  const post = (operationId: string, summary: string, request: SchemaName, response: SchemaName, description: string): Operation => ({
    summary,
    operationId,
    tags: ["agent"],
    description,
    requestBody: { required: true, content: { "application/json": { schema: ref(request) } } },
    responses: { "200": json(response, "accepted"), ...errors(400, 401, 403, 404, 409, 413) },
  });
  return {
    "/v1/register": {
      post: post(
        "register",
        "An agent registers its node and GPUs",
        "RegisterRequest",
        "RegisterResponse",
        "Creates or updates the node; answers the highest event seq already stored.",
      ),
    },
    "/v1/heartbeat": {
      post: post(
        "heartbeat",
        "An agent's heartbeat with GPU readings",
        "Heartbeat",
        "HeartbeatResponse",
        "Records liveness, NVML status, the agent's verdict and each GPU's readings.",
      ),
    },
    "/v1/events": {
      post: post(
        "pushEvents",
        "An agent pushes health events",
        "EventBatch",
        "EventBatchResponse",
        "Stored once per (node, seq); resends are acknowledged and dropped.",
      ),
      get: get("listEvents", "Health events with filters, oldest first", "EventList", ["views"], {
        description: "Without `after`: the newest `limit` matching events. With `after` (a previous answer's cursor): the next ones, for following.",
        parameters: [
          queryParam("node", "only this node", { type: "string", minLength: 1, maxLength: 253 }),
          queryParam("pool", "only nodes of this pool", { type: "string", minLength: 1, maxLength: 253 }),
          queryParam("severity", "at least this severity", { type: "string", enum: ["healthy", "degraded", "unhealthy"] }),
          queryParam("check", "only this check (e.g. xid)", { type: "string", minLength: 1, maxLength: 64 }),
          queryParam("since", "epoch milliseconds, or an ISO-8601 date or time of a real day (2026-02-31 is refused)", {
            anyOf: [
              { type: "string", pattern: "^[0-9]{1,15}$" },
              { type: "string", format: "date-time" },
              { type: "string", format: "date" },
            ],
          }),
          queryParam("after", "a cursor from a previous answer", { type: "string", pattern: "^[0-9]{1,15}$" }),
          queryParam("limit", "1–1000 (default 100)", { type: "integer", minimum: 1, maximum: 1000 }),
        ],
        responses: errors(400),
      }),
    },
    "/v1/nodes": {
      get: get("listNodes", "The nodes the reconciler knows, a page at a time in id order", "NodeList", ["admin"], {
        parameters: [
          queryParam("pool", "only this pool's nodes", { type: "string", minLength: 1, maxLength: 253 }),
          queryParam("state", "only nodes in this lifecycle state", { type: "string", enum: [...NODE_STATES] }),
          queryParam("unhealthy", "true: only nodes judged unhealthy, or Lost", { type: "string", enum: ["true", "false"] }),
          queryParam("after", "the previous page's `next`", { type: "string", minLength: 1, maxLength: 253 }),
          queryParam("limit", `1–${admin.NODE_PAGE_MAX} (default ${admin.NODE_PAGE_MAX})`, { type: "integer", minimum: 1, maximum: admin.NODE_PAGE_MAX }),
        ],
        responses: errors(400),
      }),
    },
    "/v1/nodes/{id}": {
      get: get("getNode", "One node with its GPUs and latest events", "NodeDetail", ["admin"], {
        parameters: [
          pathParam("id", "node id"),
          queryParam("events", "how many recent events (0–10000, default 50)", { type: "integer", minimum: 0, maximum: 10000 }),
        ],
        responses: errors(400, 404),
      }),
    },
    "/v1/nodes/{id}/timeline": {
      get: get("getNodeTimeline", "A node's GPUs, events, incidents with step durations, actions and provider calls", "NodeTimeline", ["views"], {
        parameters: [pathParam("id", "node id")],
        responses: errors(404),
      }),
    },
    "/v1/nodes/{id}/cordon": { post: admin_action("cordon", "Cordon a node (stays cordoned until a human uncordons it)", "node") },
    "/v1/nodes/{id}/uncordon": { post: admin_action("uncordon", "Return a node to service (cancels the reconciler's incident)", "node") },
    "/v1/nodes/{id}/drain": { post: admin_action("drain", "Cordon and drain a node (deadlineSeconds); it is then held", "node") },
    "/v1/nodes/{id}/replace": { post: admin_action("replace", "Take a node out and replace it", "node") },
    "/v1/nodes/{id}/reboot": {
      post: admin_action("reboot", "Take a node out, reboot it through its provider, and return it to service when its health check passes", "node"),
    },
    "/v1/nodes/{id}/requests": {
      post: {
        summary: "Ask the node's agent to run a check its machine's configuration defines",
        operationId: "createNodeRequest",
        tags: ["admin"],
        description:
          "The request goes out in the node's next heartbeat answer (as an AgentRequest). The agent runs only a check its own configuration file defines, with that file's command and timeout; any other is answered `refused` with the reason. A request not answered with a final state by its deadline becomes `expired`. Audited (`agent_request`).",
        parameters: [pathParam("id", "node id")],
        requestBody: { required: true, content: { "application/json": { schema: ref("RequestCreate") } } },
        responses: {
          "200": {
            ...json("RequestDetail", "the request, pending"),
            links: { getNodeRequest: { operationId: "getNodeRequest", parameters: { id: "$response.body#/nodeId", rid: "$response.body#/id" } } },
          },
          ...errors(400, 401, 403, 404, 409),
        },
      },
      get: get(
        "listNodeRequests",
        `The node's requests to its agent, newest first (${requests.REQUEST_LIST_MAX} at most; without output)`,
        "RequestList",
        ["admin"],
        {
          parameters: [pathParam("id", "node id")],
          responses: errors(404),
        },
      ),
    },
    "/v1/nodes/{id}/requests/{rid}": {
      get: get(
        "getNodeRequest",
        "One request to the node's agent: its state and the agent's answer, with the last 64 KiB of output",
        "RequestDetail",
        ["admin"],
        {
          parameters: [pathParam("id", "node id"), pathParam("rid", "request id (req_…)")],
          responses: errors(404),
        },
      ),
      post: {
        ...post(
          "answerNodeRequest",
          "An agent answers a request: running, then succeeded, failed, refused or timed_out",
          "RequestAnswer",
          "RequestAnswerResponse",
          "Only the node's own credential (or the admin token). Answered with the state the reconciler holds after it: a final one (expired included) tells the agent to stop sending. 404 with `code: unknown_node` when the node is not registered.",
        ),
        parameters: [pathParam("id", "node id"), pathParam("rid", "request id (req_…)")],
      },
    },
    "/v1/nodes/{id}/fault": { post: admin_action("injectFault", "Inject a fault into a local (simulated) node", "node", "FaultBody") },
    "/v1/pools": { get: get("listPools", "Pools as stored (spec from the config)", "PoolList", ["admin"]) },
    "/v1/pools/{name}": {
      get: get("getPool", "A pool: sizes, nodes, autoscaler decisions, rail refusals, breakers, incidents", "PoolView", ["views"], {
        parameters: [pathParam("name", "pool name")],
        responses: errors(404),
      }),
    },
    "/v1/pools/{name}/pause": { post: admin_action("pause", "Pause a pool: no scaling, no automatic replacement", "pool") },
    "/v1/pools/{name}/resume": { post: admin_action("resume", "Resume a paused pool", "pool") },
    "/v1/pools/{name}/scale": {
      post: admin_action(
        "scale",
        "Set the size of a pool without an autoscaler (within its bounds); it is held there, replacements included",
        "pool",
        "ScaleBody",
      ),
    },
    "/v1/incidents": {
      get: get("listIncidents", "Incidents, newest first (500 at most)", "IncidentList", ["admin"], {
        parameters: [queryParam("open", "true: only open ones", { type: "boolean" })],
        responses: errors(400),
      }),
    },
    "/v1/breakers": { get: get("listBreakers", "Tripped circuit breakers", "BreakerList", ["admin"]) },
    "/v1/breakers/{scope}/reset": { post: admin_action("reset", "Reset a tripped breaker", "breaker") },
    "/v1/audit": {
      get: get("listAudit", "The audit log, newest first", "AuditList", ["admin"], {
        parameters: [queryParam("limit", "1–1000 (default 100)", { type: "integer", minimum: 1, maximum: 1000 })],
        responses: errors(400),
      }),
    },
    "/v1/report": {
      get: get(
        "getReport",
        "What the fleet cost over a window: machines launched and terminated without ever serving, and their GPU-hours; the GPU-hours lost while nodes were out of service, by cause, rung (with the mean time to repair on each) and node, and over time",
        "Report",
        ["views"],
        {
          parameters: [
            queryParam(
              "since",
              "the window's start: epoch milliseconds, an ISO-8601 date or time of a real day, or a span before now (30m, 24h, 7d, 2w; default: seven days ago)",
              {
                anyOf: [
                  { type: "string", pattern: "^[0-9]{1,15}$" },
                  { type: "string", pattern: "^[0-9]{1,4}[mhdw]$" },
                  { type: "string", format: "date-time" },
                  { type: "string", format: "date" },
                ],
              },
            ),
          ],
          responses: errors(400),
        },
      ),
    },
    // Bootstrap routes (api/install.ts): their bodies are described loosely here.
    "/v1/bootstrap-tokens": {
      post: {
        summary: "Mint a one-time bootstrap token for a node",
        operationId: "mintBootstrapToken",
        tags: ["admin"],
        requestBody: { required: true, content: { "application/json": { schema: ref("BootstrapTokenRequest") } } },
        responses: {
          "200": {
            description: "the token (shown once)",
            content: {
              "application/json": {
                schema: { type: "object", properties: { nodeId: { type: "string" }, token: { type: "string" }, expiresAt: { type: "string" } } },
              },
            },
          },
          ...errors(400, 401, 403),
        },
      },
    },
    "/v1/nodes/{id}/bootstrap": {
      get: {
        summary: "A node's SSH bootstrap runs: each command's exit code and output (secrets masked), and its host keys",
        operationId: "getNodeBootstrap",
        tags: ["admin"],
        parameters: [pathParam("id", "node id")],
        responses: {
          "200": {
            description: "runs, newest first",
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  properties: {
                    nodeId: { type: "string" },
                    runs: { type: "array", items: { type: "object" } },
                    hostKeys: { type: "array", items: { type: "object" } },
                  },
                },
              },
            },
          },
          ...errors(401, 403),
        },
      },
    },
    "/install.sh": {
      get: {
        ...plain("installScript", "The agent installer, this reconciler's URL baked in", "a shell script", undefined, "text/x-shellscript"),
        tags: ["install"],
      },
    },
    "/download/navarch-node": {
      get: {
        summary: "The agent binary: the signed release's (server.agent_release), else this reconciler's own copy",
        operationId: "downloadAgent",
        tags: ["install"],
        security: [],
        responses: {
          "200": {
            description: "the binary",
            content: { "application/octet-stream": { schema: { type: "string", contentMediaType: "application/octet-stream" } } },
          },
          ...errors(404),
        },
      },
    },
    "/download/SHA256SUMS": { get: releaseFile("releaseSums", "The signed release's SHA256SUMS (server.agent_release): sha256sum's list of its files") },
    "/download/SHA256SUMS.minisig": { get: releaseFile("releaseSignature", "The minisign signature over that SHA256SUMS") },
    "/v1/overview": { get: get("getOverview", "The fleet at a glance: pools, live nodes, open incidents, breakers, recent refusals", "Overview", ["views"]) },
    "/v1/watch": {
      get: {
        summary: "Server-sent events: `change` whenever the views would show something new",
        operationId: "watch",
        tags: ["views"],
        description: "Events: `hello` (the current version), `change` (a new version), `ping` every 5 s while nothing changes. Data is JSON {version}.",
        responses: {
          "200": {
            description: "an event stream",
            content: {
              "text/event-stream": {
                schema: {
                  type: "object",
                  required: ["event", "data"],
                  properties: { event: { enum: ["hello", "change", "ping"] }, data: { type: "string", contentMediaType: "application/json" } },
                },
              },
            },
          },
          ...errors(401, 403),
        },
      },
    },
    "/v1/status": {
      get: get(
        "getStatus",
        "This reconciler's role, its loop, and each dependency (database, scheduler API, Prometheus, providers) with its state, last success, last error and the actions waiting for it",
        "ReconcilerStatus",
        ["admin"],
      ),
    },
    "/healthz": { get: plain("healthz", "Liveness", "ok") },
    "/readyz": {
      get: plain(
        "readyz",
        "Readiness: the store takes a write and, on the leader, the reconcile loop runs; dependencies that are down are named after `degraded:`",
        "ready",
        503,
      ),
    },
    "/metrics": {
      get: {
        ...plain("metrics", "Prometheus metrics (text exposition format)", "metrics"),
        description: "Open by default; needs a token of the viewer role or above with server.metrics_auth: viewer. On server.metrics_address when that is set.",
        security: [{ bearerAuth: [] }, {}],
        responses: { "200": { description: "metrics", content: { "text/plain": { schema: { type: "string" } } } }, ...errors(401, 403) },
      },
    },
    "/v1/tokens": {
      post: {
        summary: "Mint an API token with a role (and a pool, for enroll); the secret is in this answer only",
        operationId: "createToken",
        tags: ["admin"],
        requestBody: { required: true, content: { "application/json": { schema: ref("TokenCreate") } } },
        responses: {
          "200": {
            ...json("TokenCreated", "the token and its record"),
            links: { revokeToken: { operationId: "revokeToken", parameters: { id: "$response.body#/id" } } },
          },
          ...errors(400, 401, 403),
        },
      },
      get: get("listTokens", "Every API token (never a secret): role, pool, expiry, revoked", "TokenList", ["admin"]),
    },
    "/v1/tokens/{id}": {
      delete: {
        summary: "Revoke an API token: refused from the next request on",
        operationId: "revokeToken",
        tags: ["admin"],
        parameters: [pathParam("id", "token id (tok_…)")],
        responses: { "200": json("TokenRevoked", "revoked"), ...errors(401, 403, 404) },
      },
    },
    "/v1/whoami": { get: get("whoAmI", "The caller's role and permissions (the dashboard offers only what they allow)", "WhoAmI", ["admin"]) },
    [OPENAPI_PATH]: { get: { ...plain("openapi", "This document", "OpenAPI 3.1 JSON", undefined, "application/json"), tags: ["probes"] } },
    "/ui/": {
      get: {
        ...plain("dashboard", "The dashboard (it signs in with the API token; the page itself holds no data)", "HTML", undefined, "text/html"),
        tags: ["probes"],
      },
    },
  };
}

/**
 * OpenAPI links: where an answer names a node, pool, breaker or token, the calls on it. They
 * say how the API is used in sequence, and let a stateful fuzzer (Schemathesis) follow them.
 */
const LINKS: { path: string; method: string; from: string; to: string[]; parameter: string }[] = [
  {
    path: "/v1/register",
    method: "post",
    from: "$response.body#/nodeId",
    parameter: "id",
    to: ["getNode", "getNodeTimeline", "cordonNode", "uncordonNode", "drainNode", "rebootNode", "replaceNode"],
  },
  {
    path: "/v1/nodes",
    method: "get",
    from: "$response.body#/nodes/0/id",
    parameter: "id",
    to: [
      "getNode",
      "getNodeTimeline",
      "getNodeBootstrap",
      "cordonNode",
      "uncordonNode",
      "drainNode",
      "rebootNode",
      "replaceNode",
      "injectFaultNode",
      "listNodeRequests",
      "createNodeRequest",
    ],
  },
  { path: "/v1/bootstrap-tokens", method: "post", from: "$response.body#/nodeId", parameter: "id", to: ["getNodeBootstrap", "getNode"] },
  { path: "/v1/pools", method: "get", from: "$response.body#/pools/0/name", parameter: "name", to: ["getPool", "pausePool", "resumePool", "scalePool"] },
  { path: "/v1/breakers", method: "get", from: "$response.body#/breakers/0/scope", parameter: "scope", to: ["resetBreaker"] },
  { path: "/v1/tokens", method: "get", from: "$response.body#/tokens/0/id", parameter: "id", to: ["revokeToken"] },
];

function withLinks(paths: Record<string, Record<string, Operation>>): Record<string, Record<string, Operation>> {
  for (const l of LINKS) {
    const ok = paths[l.path]?.[l.method]?.responses["200"];
    if (typeof ok !== "object" || ok === null || Array.isArray(ok)) throw new Error(`openapi: no 200 answer of ${l.method} ${l.path} to link from`);
    const links = (ok.links ??= {}) as Record<string, Json>;
    for (const to of l.to) links[to] = { operationId: to, parameters: { [l.parameter]: l.from } };
  }
  return paths;
}

/** A file of the signed release the reconciler serves (404 with the reason when it serves none). */
function releaseFile(operationId: string, summary: string): Operation {
  return {
    summary,
    operationId,
    tags: ["install"],
    security: [],
    responses: { "200": { description: "the file as signed", content: { "text/plain": { schema: { type: "string" } } } }, ...errors(404) },
  };
}

function plain(operationId: string, summary: string, description: string, failure?: number, mediaType = "text/plain"): Operation {
  return {
    summary,
    operationId,
    tags: ["probes"],
    security: [],
    responses: {
      "200": { description, content: { [mediaType]: { schema: { type: "string" } } } },
      ...(failure ? { [String(failure)]: { description: "not ready", content: { "text/plain": { schema: { type: "string" } } } } } : {}),
    },
  };
}

let cached: string | undefined;

/** The document, built once. */
export function openApiDocument(): Record<string, unknown> {
  const schemas = toJsonSchemaDefs(SCHEMAS, {
    target: "draft-2020-12",
    // Refinements (v.check, regex flags) have no JSON Schema form: the server still enforces them.
    errorMode: "ignore",
    overrideRef: (context) => `#/components/schemas/${context.referenceId}`,
  });
  return {
    openapi: "3.1.0",
    info: {
      title: "Navarch reconciler API",
      version: NAVARCH_VERSION,
      description:
        "The agent API (register, heartbeat, events), the admin API (nodes, pools, incidents, breakers, audit, actions) and the views the dashboard and CLI read. Every /v1 call needs `Authorization: Bearer <token>`: the admin token (NAVARCH_AUTH_TOKEN), an API token of a role (admin: everything; operator: reads, cordon, uncordon, drain, replace, reboot, ask agents to run checks, pause, resume and scale pools; viewer: reads, the change stream and /metrics; enroll: registers nodes into its one pool), a node's own credential (register, heartbeat, events and answers to requests for that node), or a one-time bootstrap token (one registration). A call the role may not make is answered 403.",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    servers: [{ url: "/" }],
    security: [{ bearerAuth: [] }],
    tags: [
      { name: "agent", description: "what navarch-node calls" },
      { name: "admin", description: "what operators read and do" },
      { name: "views", description: "aggregates for the dashboard and the CLI" },
      { name: "probes", description: "unauthenticated probes and metrics" },
      { name: "install", description: "what a new machine fetches (no token)" },
    ],
    paths: withLinks(buildPaths()),
    components: {
      securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", description: "the reconciler's NAVARCH_AUTH_TOKEN" } },
      schemas,
    },
  };
}

export function openApiJson(): string {
  cached ??= JSON.stringify(openApiDocument(), null, 2);
  return cached;
}
