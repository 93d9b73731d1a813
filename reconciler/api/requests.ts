// Requests to agents under /v1 (nodes/agent-requests.ts keeps them):
//
//   POST /v1/nodes/{id}/requests                  ask the node's agent (operator): run a check
//                                                 its machine's configuration defines; audited
//   GET  /v1/nodes/{id}/requests                  the node's requests, newest first (viewer)
//   GET  /v1/nodes/{id}/requests/{request_id}     one, with its output (viewer)
//   POST /v1/nodes/{id}/requests/{request_id}     the agent's answer (its node's credential only)
//
// Requests reach the agent in its heartbeat answers (api/server.ts).
import type { Context, Hono } from "hono";
import * as v from "valibot";
import { RequestCreate } from "../../schema/agent-requests.ts";
import { ERROR_CODES, ONE_ISSUE_PER_VALUE, RequestAnswer, issuePaths, type ErrorBody, type RequestAnswerResponse } from "../../schema/wire.ts";
import { RequestError, type AgentRequests } from "../nodes/agent-requests.ts";
import { principalOf } from "./auth.ts";
import { jsonBodyOr400 } from "./body.ts";
import { actorOf } from "./tokens.ts";

async function parsed<S extends v.GenericSchema>(c: Context, schema: S): Promise<v.InferOutput<S> | Response> {
  const raw = await jsonBodyOr400(c);
  if (raw instanceof Response) return raw;
  const result = v.safeParse(schema, raw, ONE_ISSUE_PER_VALUE);
  if (!result.success) return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(result.issues) }, 400);
  return result.output;
}

export function registerRequestRoutes(v1: Hono, requests: AgentRequests): void {
  v1.post("/nodes/:id/requests", async (c) => {
    const body = await parsed(c, RequestCreate);
    if (body instanceof Response) return body;
    try {
      return c.json(await requests.create(c.req.param("id"), body, actorOf(principalOf(c))));
    } catch (err) {
      if (err instanceof RequestError) return c.json<ErrorBody>({ error: err.message }, err.status);
      throw err;
    }
  });

  v1.get("/nodes/:id/requests", async (c) => {
    const list = await requests.list(c.req.param("id"));
    if (list === undefined) return c.json<ErrorBody>({ error: `node ${c.req.param("id")} not found` }, 404);
    return c.json({ requests: list });
  });

  v1.get("/nodes/:id/requests/:rid", async (c) => {
    const row = await requests.get(c.req.param("id"), c.req.param("rid"));
    if (row === undefined) return c.json<ErrorBody>({ error: `request ${c.req.param("rid")} of node ${c.req.param("id")} not found` }, 404);
    return c.json(row);
  });

  v1.post("/nodes/:id/requests/:rid", async (c) => {
    const body = await parsed(c, RequestAnswer);
    if (body instanceof Response) return body;
    const [nodeId, id] = [c.req.param("id"), c.req.param("rid")];
    const result = await requests.answer(nodeId, id, body);
    if ("unknown" in result) {
      return result.unknown === "node"
        ? c.json<ErrorBody>({ error: `node ${nodeId} is not registered; register first`, code: ERROR_CODES.unknownNode }, 404)
        : c.json<ErrorBody>({ error: `request ${id} of node ${nodeId} not found` }, 404);
    }
    return c.json<RequestAnswerResponse>({ state: result.state });
  });
}
