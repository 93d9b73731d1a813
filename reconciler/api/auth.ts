// Who is calling /v1. Three kinds of bearer token:
//   - the admin token (NAVARCH_AUTH_TOKEN): everything, as before (operators, the CLI, tests,
//     the local provider's agents);
//   - a node credential (issued at registration with a bootstrap token): only the agent's own
//     calls (register, heartbeat, events), and only for its own node id;
//   - a bootstrap token: only one registration, for the node it was minted for.
// The admin token is compared first and without touching the store, so the heartbeat hot
// path of agents that use it costs nothing extra.
import type { Context } from "hono";
import { timingSafeEqual } from "node:crypto";
import type { ErrorBody } from "../../schema/wire.ts";
import { lookupCredential, redeemBootstrapToken } from "../fleet/credentials.ts";
import type { Db } from "../store/store.ts";

export type Principal = { kind: "admin" } | { kind: "node"; nodeId: string } | { kind: "bootstrap"; nodeId: string; tokenHash: string };

/** The calls an agent makes; the only ones a node credential or bootstrap token may make. */
const AGENT_CALLS = new Set(["/v1/register", "/v1/heartbeat", "/v1/events"]);

const principals = new WeakMap<Request, Principal>();

export interface AuthOptions {
  db: Db;
  adminToken: string;
  now: () => number;
}

/** Checks the bearer token and what it may do here; an error Response when refused. */
export async function authenticate(c: Context, opts: AuthOptions): Promise<Response | undefined> {
  const header = c.req.header("Authorization");
  if (header === undefined || !header.startsWith("Bearer ")) {
    return c.json<ErrorBody>({ error: "missing or wrong bearer token (NAVARCH_AUTH_TOKEN)" }, 401);
  }
  const token = header.slice("Bearer ".length).trim();
  if (sameSecret(token, opts.adminToken)) {
    principals.set(c.req.raw, { kind: "admin" });
    return undefined;
  }
  if (token.length < 16 || token.length > 512) return c.json<ErrorBody>({ error: "missing or wrong bearer token (NAVARCH_AUTH_TOKEN)" }, 401);
  const credential = await lookupCredential(opts.db, token, opts.now());
  if (credential.kind === "none") return c.json<ErrorBody>({ error: credential.reason }, 401);
  const path = c.req.path;
  if (c.req.method !== "POST" || !AGENT_CALLS.has(path)) {
    return c.json<ErrorBody>({ error: `a node's credential may only register, heartbeat and send events for node ${credential.nodeId}, not ${c.req.method} ${path}` }, 403);
  }
  if (credential.kind === "bootstrap" && path !== "/v1/register") {
    return c.json<ErrorBody>({ error: "a bootstrap token only registers its node; use the credential the registration returned for everything after" }, 403);
  }
  // The body's node must be the credential's. A body that is not JSON, or has no nodeId,
  // is refused by the route's own validation.
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    body = undefined;
  }
  const nodeId = typeof body === "object" && body !== null && "nodeId" in body ? (body as { nodeId: unknown }).nodeId : undefined;
  if (typeof nodeId === "string" && nodeId !== credential.nodeId) {
    return c.json<ErrorBody>({ error: `this credential belongs to node ${credential.nodeId}; it cannot report for node ${nodeId}` }, 403);
  }
  principals.set(c.req.raw, credential);
  return undefined;
}

/** The caller of a request that passed `authenticate` (undefined for one that did not). */
export function principalOf(c: Context): Principal | undefined {
  return principals.get(c.req.raw);
}

/**
 * For a registration with a bootstrap token: spends the token and issues the node's own
 * credential (returned once, in the answer). Nothing to do for other callers.
 */
export async function credentialForRegistration(c: Context, db: Db, nodeId: string, at: number): Promise<{ nodeToken?: string } | Response> {
  const who = principalOf(c);
  if (who?.kind !== "bootstrap") return {};
  const nodeToken = await redeemBootstrapToken(db, who.tokenHash, nodeId, at);
  if (nodeToken === undefined) return c.json<ErrorBody>({ error: "this bootstrap token was already used or expired; a bootstrap token works once" }, 401);
  return { nodeToken };
}

function sameSecret(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}
