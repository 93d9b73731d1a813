// API tokens under /v1 (admin only, see schema/roles.ts), and who the caller is:
//
//   POST   /v1/tokens        mint a token with a role (and a pool for enroll) and an expiry;
//                           the secret is in this answer only
//   GET    /v1/tokens        every token: id, name, role, pool, expiry, revoked (never a secret)
//   DELETE /v1/tokens/{id}   revoke one; it is refused from the next request on
//   GET    /v1/whoami        the caller's role and permissions (the dashboard shows what they allow)
//
// Each mint and revoke is an audit row naming the token that asked for it.
import type { Hono } from "hono";
import * as v from "valibot";
import { auditLog } from "../../schema/db.ts";
import { PERMISSIONS, ROLES, TOKEN_ROLES } from "../../schema/roles.ts";
import { issuePaths, type ErrorBody } from "../../schema/wire.ts";
import { listApiTokens, mintApiToken, revokeApiToken, type ApiTokenRow } from "../auth/credentials.ts";
import type { Store } from "../store/store.ts";
import { describePrincipal, principalOf, type Principal } from "./auth.ts";
import { jsonBodyOr400 } from "./body.ts";

const DAY_S = 86_400;
/** Ten years: a token must expire, but a scraper's may be long-lived on purpose. */
export const MAX_TOKEN_TTL_SECONDS = 3650 * DAY_S;
export const DEFAULT_TOKEN_TTL_SECONDS = 30 * DAY_S;

const PoolName = v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "must be a pool name (a DNS label: lowercase letters, digits and '-')"));

const TokenName = v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/, "must be 1 to 64 letters, digits, '.', '_', '@', ':' or '-'")));
const TokenTtl = v.optional(v.pipe(v.number(), v.integer(), v.minValue(60), v.maxValue(MAX_TOKEN_TTL_SECONDS)), DEFAULT_TOKEN_TTL_SECONDS);
const ONLY_ENROLL = "only an enroll token takes a pool";

/** An enroll token names its pool; no other role takes one (a variant, so the OpenAPI document says so too). */
export const TokenCreate = v.variant("role", [
  v.strictObject(
    {
      role: v.literal("enroll"),
      pool: v.pipe(PoolName, v.description("the one pool its nodes register into")),
      name: TokenName,
      ttlSeconds: TokenTtl,
    },
    (issue) => (issue.kind === "schema" && issue.expected === '"pool"' ? "an enroll token needs a pool (the one its nodes register into)" : issue.message),
  ),
  v.strictObject(
    {
      role: v.picklist(TOKEN_ROLES.filter((r) => r !== "enroll")),
      name: TokenName,
      ttlSeconds: TokenTtl,
    },
    (issue) => (issue.kind === "schema" && issue.expected === "never" ? ONLY_ENROLL : issue.message),
  ),
]);

const Ms = v.pipe(v.number(), v.description("milliseconds since the epoch (UTC)"));

export const TokenInfo = v.object({
  id: v.string(),
  name: v.string(),
  role: v.picklist(TOKEN_ROLES),
  pool: v.nullable(v.string()),
  createdBy: v.string(),
  createdAt: Ms,
  expiresAt: Ms,
  revokedAt: v.nullable(Ms),
  state: v.picklist(["active", "expired", "revoked"]),
});
export type TokenInfo = v.InferOutput<typeof TokenInfo>;

export const TokenCreated = v.object({
  ...TokenInfo.entries,
  token: v.pipe(v.string(), v.description("the secret: shown once, only its sha256 is kept")),
});
export const TokenList = v.object({ tokens: v.array(TokenInfo) });
export const TokenRevoked = v.object({ ok: v.literal(true), token: TokenInfo });
export const WhoAmI = v.object({
  role: v.picklist(ROLES),
  name: v.string(),
  permissions: v.array(v.picklist(PERMISSIONS)),
  pool: v.optional(v.string()),
  nodeId: v.optional(v.string()),
});

export function tokenInfo(row: ApiTokenRow, now: number): TokenInfo {
  const { tokenHash: _hash, ...rest } = row;
  return { ...rest, state: row.revokedAt !== null ? "revoked" : row.expiresAt <= now ? "expired" : "active" };
}

/** Who the audit log names for an API call: the token, not what the body claims. */
export function actorOf(who: Principal | undefined): string {
  if (who === undefined) return "unknown";
  if (who.kind === "node" || who.kind === "bootstrap") return `node:${who.nodeId}`;
  return `token:${who.name}`;
}

export function registerTokenRoutes(v1: Hono, opts: { store: Store; now: () => number }): void {
  const { store, now } = opts;

  v1.post("/tokens", async (c) => {
    const raw = await jsonBodyOr400(c);
    if (raw instanceof Response) return raw;
    const parsed = v.safeParse(TokenCreate, raw);
    if (!parsed.success) return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(parsed.issues) }, 400);
    const b = parsed.output;
    const pool = b.role === "enroll" ? b.pool : undefined;
    const at = now();
    const actor = actorOf(principalOf(c));
    const { row, token } = await mintApiToken(store.db, {
      role: b.role,
      pool,
      name: b.name ?? `${b.role}${pool ? `-${pool}` : ""}`,
      ttlMs: b.ttlSeconds * 1000,
      createdBy: actor,
      at,
    });
    await store.db
      .insert(auditLog)
      .values({ at, actor, action: "token_created", target: row.id, details: { name: row.name, role: row.role, pool: row.pool, expiresAt: row.expiresAt } });
    return c.json({ ...tokenInfo(row, at), token });
  });

  v1.get("/tokens", async (c) => {
    const at = now();
    return c.json({ tokens: (await listApiTokens(store.db)).map((r) => tokenInfo(r, at)) });
  });

  v1.delete("/tokens/:id", async (c) => {
    const id = c.req.param("id");
    const at = now();
    const row = await revokeApiToken(store.db, id, at);
    if (row === undefined) return c.json<ErrorBody>({ error: `token ${id} not found (navarch tokens list shows the ids)` }, 404);
    const actor = actorOf(principalOf(c));
    await store.db.insert(auditLog).values({ at, actor, action: "token_revoked", target: row.id, details: { name: row.name, role: row.role } });
    return c.json({ ok: true, token: tokenInfo(row, at) });
  });

  v1.get("/whoami", (c) => {
    const who = principalOf(c);
    if (who === undefined) return c.json<ErrorBody>({ error: "not signed in" }, 401);
    return c.json(describePrincipal(who));
  });
}
