// What a new machine fetches from the reconciler, and the bootstrap records operators read:
//
//   GET  /install.sh               the agent installer (bootstrap/install.sh), this reconciler's
//                                  URL baked in: `curl -fsSL http://<reconciler>/install.sh | sh`
//   GET  /download/navarch-node    the agent binary: server.agent_release's when set (a signed
//                                  release), else this reconciler's own copy
//   GET  /download/SHA256SUMS      that release's SHA256SUMS and its minisign signature, which
//   GET  /download/SHA256SUMS.minisig   install.sh checks against the public key it carries
//   POST /v1/bootstrap-tokens      mint a one-time bootstrap token for a node (admin)
//   GET  /v1/nodes/:id/bootstrap   that node's SSH bootstrap runs: each command's exit code and
//                                  output, secrets masked (admin)
//
// The first two need no token: the binary and the script hold no secret (the token is passed
// to the script by whoever runs it).
import { desc, eq } from "drizzle-orm";
import type { Hono } from "hono";
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import * as v from "valibot";
import { renderInstaller } from "../../bootstrap/installer.ts";
import { auditLog, bootstrapRuns, hostKeys } from "../../schema/db.ts";
import { NodeId, issuePaths, type ErrorBody } from "../../schema/wire.ts";
import { mintBootstrapToken } from "../auth/credentials.ts";
import { SIGNATURE_FILE, SUMS_FILE, type ServedAgent, type ServedRelease } from "../release/agent-release.ts";
import { sha256File } from "../../schema/release.ts";
import type { Store } from "../store/store.ts";
import { jsonBodyOr400 } from "./body.ts";

export interface InstallRouteOptions {
  store: Store;
  now: () => number;
  /** The URL machines reach this reconciler at; absent: the URL the request came in on. */
  publicUrl?: () => string | undefined;
  /** The agent binary to serve (default: $NAVARCH_NODE_BINARY, else navarch-node beside this executable). */
  agentBinary?: string;
  /** server.agent_release, verified: served instead of agentBinary. */
  agentRelease?: ServedRelease;
  log?: (line: string) => void;
}

/** Where the agent binary this reconciler serves is expected. */
export function agentBinaryPath(configured?: string): string {
  return configured ?? process.env.NAVARCH_NODE_BINARY ?? join(dirname(process.execPath), "navarch-node");
}

export const TokenRequest = v.strictObject({
  nodeId: NodeId,
  /** How long the token may wait for its registration (default 1 h, at most 7 days). */
  ttlSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(60), v.maxValue(7 * 24 * 3600)), 3600),
  actor: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), "operator"),
});

export function registerInstallRoutes(app: Hono, v1: Hono, opts: InstallRouteOptions): void {
  const hashes = new Map<string, { mtimeMs: number; size: number; sha256: string }>();

  /** The agent binary and its sha256 (cached until the file changes), or why there is none. */
  async function agent(): Promise<ServedAgent> {
    if (opts.agentRelease) return opts.agentRelease.agent();
    const path = agentBinaryPath(opts.agentBinary);
    let stat;
    try {
      stat = statSync(path);
    } catch {
      return {
        problem: `this reconciler has no agent binary to serve: ${path} does not exist (put navarch-node beside the navarch binary, or set NAVARCH_NODE_BINARY)`,
      };
    }
    if (!stat.isFile()) return { problem: `this reconciler has no agent binary to serve: ${path} is not a file` };
    const cached = hashes.get(path);
    if (cached && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) return { path, size: stat.size, sha256: cached.sha256 };
    const sha256 = await sha256File(path);
    hashes.set(path, { mtimeMs: stat.mtimeMs, size: stat.size, sha256 });
    return { path, size: stat.size, sha256 };
  }

  app.get("/install.sh", async (c) => {
    const serverUrl = (opts.publicUrl?.() ?? new URL(c.req.url).origin).replace(/\/+$/, "");
    const found = await agent();
    const script = renderInstaller({
      serverUrl,
      agentSha256: "sha256" in found ? found.sha256 : "",
      releasePublicKey: opts.agentRelease?.publicKey ?? "",
      ...("problem" in found ? { problem: found.problem } : {}),
    });
    return c.body(script, 200, { "Content-Type": "text/x-shellscript; charset=utf-8", "Cache-Control": "no-store" });
  });

  app.get("/download/navarch-node", async (c) => {
    const found = await agent();
    if ("problem" in found) {
      // A signed release that changed under us is worth a line; a reconciler with no agent says so in the answer.
      if (opts.agentRelease) opts.log?.(`/download/navarch-node: ${found.problem}`);
      return c.json<ErrorBody>({ error: found.problem }, 404);
    }
    return new Response(Bun.file(found.path), {
      headers: {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="navarch-node"',
        "X-Navarch-Sha256": found.sha256,
        "Cache-Control": "no-store",
      },
    });
  });

  // A release's signed list and its signature, byte for byte as verified at start.
  const noRelease = "this reconciler serves no signed release (server.agent_release is not set), only its own agent binary";
  app.get(`/download/${SUMS_FILE}`, (c) =>
    opts.agentRelease
      ? c.body(new Uint8Array(opts.agentRelease.sums), 200, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" })
      : c.json<ErrorBody>({ error: noRelease }, 404),
  );
  app.get(`/download/${SIGNATURE_FILE}`, (c) =>
    opts.agentRelease
      ? c.body(opts.agentRelease.signature, 200, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" })
      : c.json<ErrorBody>({ error: noRelease }, 404),
  );

  v1.post("/bootstrap-tokens", async (c) => {
    const raw = await jsonBodyOr400(c);
    if (raw instanceof Response) return raw;
    const parsed = v.safeParse(TokenRequest, raw);
    if (!parsed.success) return c.json<ErrorBody>({ error: "invalid request body", issues: issuePaths(parsed.issues) }, 400);
    const { nodeId, ttlSeconds, actor } = parsed.output;
    const at = opts.now();
    const { token, expiresAt } = await mintBootstrapToken(opts.store.db, nodeId, { at, ttlMs: ttlSeconds * 1000, createdBy: `human:${actor}` });
    await opts.store.db.insert(auditLog).values({ at, actor: `human:${actor}`, action: "bootstrap_token", target: nodeId, details: { expiresAt } });
    return c.json({ nodeId, token, expiresAt: new Date(expiresAt).toISOString() });
  });

  v1.get("/nodes/:id/bootstrap", async (c) => {
    const nodeId = c.req.param("id");
    const runs = await opts.store.db.select().from(bootstrapRuns).where(eq(bootstrapRuns.nodeId, nodeId)).orderBy(desc(bootstrapRuns.id)).limit(20);
    const keys = await opts.store.db.select().from(hostKeys).where(eq(hostKeys.nodeId, nodeId));
    return c.json({ nodeId, runs, hostKeys: keys });
  });
}
