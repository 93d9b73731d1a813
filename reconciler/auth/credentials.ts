// API tokens, bootstrap tokens and per-node credentials. A new machine gets a one-time bootstrap
// token (minted for its node id, in its setup_commands or by an operator); its agent
// registers with it once and receives its own random credential, which it keeps and
// sends on every later call. A node credential is valid for its own node id only. API tokens
// carry a role (schema/roles.ts) and an expiry, and can be revoked; an enroll token registers
// any number of nodes into its one pool, each getting its own credential the same way.
// Only sha256 hashes are stored; the tokens themselves are never logged.
import { and, asc, eq, gt, isNull } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { apiTokens, bootstrapTokens, nodeCredentials } from "../../schema/db.ts";
import type { TokenRole } from "../../schema/roles.ts";
import type { Db } from "../store/store.ts";

/** sha256 (hex) of a token: what the store keeps. */
export function hashToken(token: string): string {
  return Bun.SHA256.hash(token, "hex");
}

/** 256 random bits, URL- and shell-safe (base64url, 43 characters). */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** Mints a one-time bootstrap token for `nodeId`; returns it (the store keeps its hash). */
export async function mintBootstrapToken(
  db: Db,
  nodeId: string,
  opts: { at: number; ttlMs: number; createdBy: string },
): Promise<{ token: string; expiresAt: number }> {
  const token = newSecret();
  const expiresAt = opts.at + opts.ttlMs;
  await db.insert(bootstrapTokens).values({ tokenHash: hashToken(token), nodeId, createdBy: opts.createdBy, createdAt: opts.at, expiresAt });
  return { token, expiresAt };
}

/** Who a bearer token (other than the admin token) belongs to. */
export type Credential =
  | { kind: "token"; role: "admin" | "operator" | "viewer"; id: string; name: string }
  | { kind: "enroll"; id: string; name: string; pool: string }
  | { kind: "node"; nodeId: string }
  | { kind: "bootstrap"; nodeId: string; tokenHash: string }
  | { kind: "none"; reason: string };

/**
 * Node credentials this reconciler confirmed recently, by token hash, so that an agent's
 * heartbeat costs no store lookup (two queries a request were most of the ingest path's time).
 * An entry lives `ttlMs` (60 s: longer than the default 30 s heartbeat, or no heartbeat would
 * ever find its entry): a credential replaced through this reconciler is forgotten at once
 * (forgetNode), one replaced through another reconciler on the same store (HA) is still
 * accepted here for at most that long. Bounded: when full, the oldest entries go first.
 */
export class NodeCredentialCache {
  private readonly byHash = new Map<string, { nodeId: string; until: number }>();
  private readonly hashOf = new Map<string, string>();
  /** Counts forgetNode calls: a lookup that began before one may have read a credential it replaced. */
  private forgets = 0;

  constructor(
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 200_000,
  ) {}

  get(hash: string, at: number): string | undefined {
    const entry = this.byHash.get(hash);
    if (entry === undefined) return undefined;
    if (entry.until > at) return entry.nodeId;
    this.drop(hash, entry.nodeId);
    return undefined;
  }

  /** Where a store lookup began: pass it to set(). */
  mark(): number {
    return this.forgets;
  }

  /** Remembers what a store lookup found, unless a credential was replaced since it began (`mark`). */
  set(hash: string, nodeId: string, at: number, mark: number): void {
    if (mark !== this.forgets) return;
    this.dropNode(nodeId);
    if (this.byHash.size >= this.maxEntries) {
      const [oldest, entry] = this.byHash.entries().next().value as [string, { nodeId: string }];
      this.drop(oldest, entry.nodeId);
    }
    this.byHash.set(hash, { nodeId, until: at + this.ttlMs });
    this.hashOf.set(nodeId, hash);
  }

  /** The node got a new credential: its old one must stop working now. */
  forgetNode(nodeId: string): void {
    this.forgets++;
    this.dropNode(nodeId);
  }

  private dropNode(nodeId: string): void {
    const hash = this.hashOf.get(nodeId);
    if (hash !== undefined) this.drop(hash, nodeId);
  }

  private drop(hash: string, nodeId: string): void {
    this.byHash.delete(hash);
    if (this.hashOf.get(nodeId) === hash) this.hashOf.delete(nodeId);
  }
}

/** Looks a bearer token up: an API token, a node credential, a usable bootstrap token, or none of them (and why). */
export async function lookupCredential(db: Db, token: string, at: number, cache?: NodeCredentialCache): Promise<Credential> {
  const hash = hashToken(token);
  const cached = cache?.get(hash, at);
  if (cached !== undefined) return { kind: "node", nodeId: cached };
  const mark = cache?.mark() ?? 0;
  const [api] = await db.select().from(apiTokens).where(eq(apiTokens.tokenHash, hash));
  if (api !== undefined) {
    if (api.revokedAt !== null) return { kind: "none", reason: `token ${api.id} (${api.name}) was revoked` };
    if (api.expiresAt <= at) return { kind: "none", reason: `token ${api.id} (${api.name}) expired at ${new Date(api.expiresAt).toISOString()}` };
    if (api.role === "enroll")
      return api.pool === null
        ? { kind: "none", reason: `enroll token ${api.id} names no pool` }
        : { kind: "enroll", id: api.id, name: api.name, pool: api.pool };
    return { kind: "token", role: api.role, id: api.id, name: api.name };
  }
  const [node] = await db.select({ nodeId: nodeCredentials.nodeId }).from(nodeCredentials).where(eq(nodeCredentials.tokenHash, hash));
  if (node !== undefined) {
    cache?.set(hash, node.nodeId, at, mark);
    return { kind: "node", nodeId: node.nodeId };
  }
  const [boot] = await db.select().from(bootstrapTokens).where(eq(bootstrapTokens.tokenHash, hash));
  if (boot === undefined) return { kind: "none", reason: "missing or wrong bearer token (NAVARCH_AUTH_TOKEN, a bootstrap token or a node credential)" };
  if (boot.usedAt !== null)
    return { kind: "none", reason: `this bootstrap token was already used (node ${boot.nodeId} registered with it); a bootstrap token works once` };
  if (boot.expiresAt <= at) return { kind: "none", reason: `this bootstrap token for node ${boot.nodeId} expired` };
  return { kind: "bootstrap", nodeId: boot.nodeId, tokenHash: hash };
}

/**
 * Spends a bootstrap token and issues the node's credential, in one transaction: of two
 * registrations racing with the same token only one gets a credential. Undefined when the
 * token was spent (or expired) in the meantime. A node that had a credential gets a new
 * one (its machine was re-bootstrapped); the old one stops working.
 */
export async function redeemBootstrapToken(db: Db, tokenHash: string, nodeId: string, at: number): Promise<string | undefined> {
  return db.transaction(async (tx) => {
    const spent = await tx
      .update(bootstrapTokens)
      .set({ usedAt: at })
      .where(
        and(eq(bootstrapTokens.tokenHash, tokenHash), eq(bootstrapTokens.nodeId, nodeId), isNull(bootstrapTokens.usedAt), gt(bootstrapTokens.expiresAt, at)),
      )
      .returning({ nodeId: bootstrapTokens.nodeId });
    if (spent.length === 0) return undefined;
    return issueNodeCredential(tx, nodeId, at);
  });
}

/** A new credential for `nodeId` (an enroll token's registration, or a spent bootstrap token's); any older one stops working. */
export async function issueNodeCredential(db: Pick<Db, "insert">, nodeId: string, at: number): Promise<string> {
  const token = newSecret();
  await db
    .insert(nodeCredentials)
    .values({ nodeId, tokenHash: hashToken(token), issuedAt: at })
    .onConflictDoUpdate({ target: nodeCredentials.nodeId, set: { tokenHash: hashToken(token), issuedAt: at } });
  return token;
}

// ───────────────────────────── API tokens (navarch tokens) ─────────────────────────────

export type ApiTokenRow = typeof apiTokens.$inferSelect;

/** Mints an API token; the secret is returned once (the store keeps its hash). */
export async function mintApiToken(
  db: Db,
  opts: { role: TokenRole; pool?: string | undefined; name: string; ttlMs: number; createdBy: string; at: number },
): Promise<{ row: ApiTokenRow; token: string }> {
  // A recognisable prefix, so secret scanners and humans can tell what leaked.
  const token = `nvt_${newSecret()}`;
  const row: ApiTokenRow = {
    id: `tok_${randomBytes(6).toString("hex")}`,
    tokenHash: hashToken(token),
    name: opts.name,
    role: opts.role,
    pool: opts.role === "enroll" ? (opts.pool ?? null) : null,
    createdBy: opts.createdBy,
    createdAt: opts.at,
    expiresAt: opts.at + opts.ttlMs,
    revokedAt: null,
  };
  await db.insert(apiTokens).values(row);
  return { row, token };
}

export async function listApiTokens(db: Db): Promise<ApiTokenRow[]> {
  return db.select().from(apiTokens).orderBy(asc(apiTokens.createdAt), asc(apiTokens.id));
}

/** Revokes a token by id; undefined when there is no such token. Revoking twice keeps the first time. */
export async function revokeApiToken(db: Db, id: string, at: number): Promise<ApiTokenRow | undefined> {
  await db
    .update(apiTokens)
    .set({ revokedAt: at })
    .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)));
  const [row] = await db.select().from(apiTokens).where(eq(apiTokens.id, id));
  return row;
}
