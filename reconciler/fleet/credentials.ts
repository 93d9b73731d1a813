// Bootstrap tokens and per-node credentials. A new machine gets a one-time bootstrap
// token (minted for its node id, in its setup_commands or by an operator); its agent
// registers with it once and receives its own random credential, which it keeps and
// sends on every later call. A node credential is valid for its own node id only.
// Only sha256 hashes are stored; the tokens themselves are never logged.
import { and, eq, gt, isNull } from "drizzle-orm";
import { createHash, randomBytes } from "node:crypto";
import { bootstrapTokens, nodeCredentials } from "../../schema/db.ts";
import type { Db } from "../store/store.ts";

/** sha256 (hex) of a token: what the store keeps. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** 256 random bits, URL- and shell-safe (base64url, 43 characters). */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** Mints a one-time bootstrap token for `nodeId`; returns it (the store keeps its hash). */
export async function mintBootstrapToken(db: Db, nodeId: string, opts: { at: number; ttlMs: number; createdBy: string }): Promise<{ token: string; expiresAt: number }> {
  const token = newSecret();
  const expiresAt = opts.at + opts.ttlMs;
  await db.insert(bootstrapTokens).values({ tokenHash: hashToken(token), nodeId, createdBy: opts.createdBy, createdAt: opts.at, expiresAt });
  return { token, expiresAt };
}

/** Who a bearer token (other than the admin token) belongs to. */
export type Credential =
  | { kind: "node"; nodeId: string }
  | { kind: "bootstrap"; nodeId: string; tokenHash: string }
  | { kind: "none"; reason: string };

/** Looks a bearer token up: a node credential, a usable bootstrap token, or neither (and why). */
export async function lookupCredential(db: Db, token: string, at: number): Promise<Credential> {
  const hash = hashToken(token);
  const [node] = await db.select({ nodeId: nodeCredentials.nodeId }).from(nodeCredentials).where(eq(nodeCredentials.tokenHash, hash));
  if (node !== undefined) return { kind: "node", nodeId: node.nodeId };
  const [boot] = await db.select().from(bootstrapTokens).where(eq(bootstrapTokens.tokenHash, hash));
  if (boot === undefined) return { kind: "none", reason: "missing or wrong bearer token (NAVARCH_AUTH_TOKEN, a bootstrap token or a node credential)" };
  if (boot.usedAt !== null) return { kind: "none", reason: `this bootstrap token was already used (node ${boot.nodeId} registered with it); a bootstrap token works once` };
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
      .where(and(eq(bootstrapTokens.tokenHash, tokenHash), eq(bootstrapTokens.nodeId, nodeId), isNull(bootstrapTokens.usedAt), gt(bootstrapTokens.expiresAt, at)))
      .returning({ nodeId: bootstrapTokens.nodeId });
    if (spent.length === 0) return undefined;
    const token = newSecret();
    await tx
      .insert(nodeCredentials)
      .values({ nodeId, tokenHash: hashToken(token), issuedAt: at })
      .onConflictDoUpdate({ target: nodeCredentials.nodeId, set: { tokenHash: hashToken(token), issuedAt: at } });
    return token;
  });
}
