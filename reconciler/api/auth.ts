// Who is calling, and whether they may. Bearer tokens (the scheme name in any case, RFC 9110):
//   - the admin token (NAVARCH_AUTH_TOKEN): the admin role, as before (operators, the CLI,
//     tests, the local provider's agents);
//   - API tokens from `navarch tokens create`: admin, operator, viewer, or enroll (registers
//     nodes into its one pool, each answered with the node's own credential);
//   - a node credential (issued at registration): the node role, its own node id only;
//   - a bootstrap token: one registration, for the node it was minted for.
// What each role may call is the table in schema/roles.ts. The admin token is compared first
// and without touching the store, so the heartbeat hot path of agents that use it costs
// nothing extra.
import type { Context } from "hono";
import { timingSafeEqual } from "node:crypto";
import { eq } from "drizzle-orm";
import { nodes } from "../../schema/db.ts";
import { ROLE_PERMISSIONS, permissionFor, roleMay, type Permission, type Role } from "../../schema/roles.ts";
import type { ErrorBody } from "../../schema/wire.ts";
import { issueNodeCredential, lookupCredential, redeemBootstrapToken, type NodeCredentialCache } from "../auth/credentials.ts";
import type { Db } from "../store/store.ts";
import { readJsonBody } from "./body.ts";

export type Principal =
  /** The admin token (id "env") or an API token. */
  | { kind: "token"; role: "admin" | "operator" | "viewer"; id: string; name: string }
  | { kind: "enroll"; role: "enroll"; id: string; name: string; pool: string }
  | { kind: "node"; role: "node"; nodeId: string }
  | { kind: "bootstrap"; role: "node"; nodeId: string; tokenHash: string };

/** The calls an agent makes: the only ones node credentials, enroll and bootstrap tokens may make. */
const AGENT_CALLS = new Set(["/v1/register", "/v1/heartbeat", "/v1/events"]);
/** An agent's answer to a request: its node is the path's. */
const REQUEST_ANSWER = /^\/v1\/nodes\/([^/]+)\/requests\/[^/]+\/?$/;

const principals = new WeakMap<Request, Principal>();

export interface AuthOptions {
  db: Db;
  adminToken: string;
  now: () => number;
  /** Node credentials confirmed recently (one per API server): heartbeats skip the store lookup. */
  nodeCredentials?: NodeCredentialCache;
}

const MISSING = "missing or wrong bearer token (NAVARCH_AUTH_TOKEN, an API token, a bootstrap token or a node credential)";

/** The token of an `Authorization: Bearer …` header (any case of "Bearer"), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  return match?.[1];
}

/** Checks the bearer token and what it may do here; an error Response when refused. */
export async function authenticate(c: Context, opts: AuthOptions): Promise<Response | undefined> {
  const token = bearerToken(c.req.header("Authorization"));
  if (token === undefined) return c.json<ErrorBody>({ error: MISSING }, 401);
  const who = await identify(token, opts);
  if ("refused" in who) return c.json<ErrorBody>({ error: who.refused }, 401);
  const path = c.req.path;
  const need = permissionFor(c.req.method, path);
  if (!roleMay(who.role, need)) return c.json<ErrorBody>({ error: refusal(who, c.req.method, path, need) }, 403);
  if (need !== "any" && (who.kind === "node" || who.kind === "bootstrap" || who.kind === "enroll")) {
    const refused = await checkAgentCall(c, who, opts.db);
    if (refused !== undefined) return c.json<ErrorBody>({ error: refused }, 403);
  }
  principals.set(c.req.raw, who);
  return undefined;
}

/** The caller behind a token, or why there is none. */
async function identify(token: string, opts: AuthOptions): Promise<Principal | { refused: string }> {
  if (sameSecret(token, opts.adminToken)) return { kind: "token", role: "admin", id: "env", name: "NAVARCH_AUTH_TOKEN" };
  if (token.length < 16 || token.length > 512) return { refused: MISSING };
  const credential = await lookupCredential(opts.db, token, opts.now(), opts.nodeCredentials);
  switch (credential.kind) {
    case "none":
      return { refused: credential.reason };
    case "token":
      return { kind: "token", role: credential.role, id: credential.id, name: credential.name };
    case "enroll":
      return { kind: "enroll", role: "enroll", id: credential.id, name: credential.name, pool: credential.pool };
    case "node":
      return { kind: "node", role: "node", nodeId: credential.nodeId };
    case "bootstrap":
      return { kind: "bootstrap", role: "node", nodeId: credential.nodeId, tokenHash: credential.tokenHash };
  }
}

function refusal(who: Principal, method: string, path: string, need: Permission | "any"): string {
  if (who.kind === "node" || who.kind === "bootstrap") {
    return `a node's credential may only register, heartbeat, send events and answer requests for node ${who.nodeId}, not ${method} ${path}`;
  }
  if (who.kind === "enroll") return `an enroll token only registers nodes into pool ${who.pool}, not ${method} ${path}`;
  const roles = (Object.keys(ROLE_PERMISSIONS) as Role[]).filter((r) => r !== "node" && r !== "enroll" && roleMay(r, need)).reverse();
  return `token ${who.name} has the ${who.role} role, which may not ${method} ${path} (that needs ${roles.join(" or ")})`;
}

/** The rules an agent's credential adds: its own node, one registration, one pool. */
async function checkAgentCall(c: Context, who: Extract<Principal, { kind: "node" | "bootstrap" | "enroll" }>, db: Db): Promise<string | undefined> {
  const path = c.req.path;
  const answering = c.req.method === "POST" ? REQUEST_ANSWER.exec(path) : null;
  if (answering !== null) {
    if (who.kind !== "node") return "only a node's own credential answers its requests";
    const nodeId = decodeURIComponent(answering[1]!);
    return nodeId === who.nodeId ? undefined : `this credential belongs to node ${who.nodeId}; it cannot answer requests of node ${nodeId}`;
  }
  if (c.req.method !== "POST" || !AGENT_CALLS.has(path)) return `${c.req.method} ${path} is not an agent call`;
  if (who.kind !== "node" && path !== "/v1/register") {
    return who.kind === "bootstrap"
      ? "a bootstrap token only registers its node; use the credential the registration returned for everything after"
      : "an enroll token only registers nodes; use the credential the registration returned for everything after";
  }
  // The body's node (and pool) must be the credential's. A body that is not JSON, or has no
  // nodeId, is refused by the route's own validation.
  const read = await readJsonBody(c);
  const body = read.ok ? read.value : undefined;
  const field = (key: string): unknown => (typeof body === "object" && body !== null && key in body ? (body as Record<string, unknown>)[key] : undefined);
  const nodeId = field("nodeId");
  if (who.kind !== "enroll") {
    if (typeof nodeId === "string" && nodeId !== who.nodeId) return `this credential belongs to node ${who.nodeId}; it cannot report for node ${nodeId}`;
    return undefined;
  }
  const pool = field("pool");
  if (pool !== undefined && pool !== who.pool) return `enroll token ${who.name} registers nodes into pool ${who.pool}, not ${JSON.stringify(pool)}`;
  if (typeof nodeId === "string") {
    // Nodes of other pools are not this token's to take over.
    const [known] = await db.select({ pool: nodes.pool }).from(nodes).where(eq(nodes.id, nodeId));
    if (known !== undefined && known.pool !== who.pool)
      return `node ${nodeId} belongs to pool ${known.pool ?? "(none)"}; enroll token ${who.name} registers into pool ${who.pool} only`;
  }
  return undefined;
}

/** The caller of a request that passed `authenticate` (undefined for one that did not). */
export function principalOf(c: Context): Principal | undefined {
  return principals.get(c.req.raw);
}

/**
 * For a registration with a bootstrap token (spent here) or an enroll token: the node's own
 * credential, returned once in the answer. Nothing to do for other callers.
 */
export async function credentialForRegistration(
  c: Context,
  db: Db,
  nodeId: string,
  at: number,
  cache?: NodeCredentialCache,
): Promise<{ nodeToken?: string } | Response> {
  const who = principalOf(c);
  if (who?.kind !== "enroll" && who?.kind !== "bootstrap") return {};
  const nodeToken = who.kind === "enroll" ? await issueNodeCredential(db, nodeId, at) : await redeemBootstrapToken(db, who.tokenHash, nodeId, at);
  if (nodeToken === undefined) return c.json<ErrorBody>({ error: "this bootstrap token was already used or expired; a bootstrap token works once" }, 401);
  // The node's older credential stops working now, here too.
  cache?.forgetNode(nodeId);
  return { nodeToken };
}

/** What GET /v1/whoami answers: enough for the dashboard to show only what the caller may do. */
export function describePrincipal(who: Principal): { role: Role; name: string; permissions: Permission[]; pool?: string; nodeId?: string } {
  const permissions = [...ROLE_PERMISSIONS[who.role]];
  if (who.kind === "node" || who.kind === "bootstrap") return { role: who.role, name: `node ${who.nodeId}`, permissions, nodeId: who.nodeId };
  if (who.kind === "enroll") return { role: who.role, name: who.name, permissions, pool: who.pool };
  return { role: who.role, name: who.name, permissions };
}

function sameSecret(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}
