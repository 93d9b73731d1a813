// `navarch tokens create|list|revoke`: API tokens with a role (schema/roles.ts) and an expiry,
// through the reconciler's /v1/tokens (admin only). The secret is printed once, at creation;
// the reconciler keeps only its sha256.
import { parseArgs } from "node:util";
import { TOKEN_ROLES, type TokenRole } from "../../schema/roles.ts";
import { MAX_TOKEN_TTL_SECONDS, TokenCreated, TokenList, TokenRevoked, type TokenInfo } from "../api/tokens.ts";
import { CliError, apiDelete, apiGet, apiPost, resolveTarget } from "./client.ts";
import { durationFlag } from "./durations.ts";
import { parseAnswer, parseFormat, render, shown, table } from "./output.ts";
import { TOKENS_USAGE } from "./usage.ts";

export async function tokensCommand(args: string[], write: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      role: { type: "string" },
      pool: { type: "string" },
      ttl: { type: "string" },
      name: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  const format = parseFormat(values.output);
  const [verb, id, ...rest] = positionals;
  const usage = () => new CliError(`usage:\n${TOKENS_USAGE}`, 2);
  if (verb === "create" && id === undefined) {
    const role = values.role;
    if (role === undefined || !(TOKEN_ROLES as readonly string[]).includes(role)) {
      throw new CliError(
        `--role: expected one of ${TOKEN_ROLES.join(", ")}${role === "node" ? " (a node's credential is issued when it registers with an enroll or bootstrap token)" : ""}, got ${JSON.stringify(role ?? "nothing")}`,
        2,
      );
    }
    if ((role === "enroll") !== (values.pool !== undefined))
      throw new CliError("--pool: an enroll token needs one (the pool its nodes register into), and only an enroll token takes one", 2);
    const body = {
      role: role as TokenRole,
      ...(values.pool !== undefined ? { pool: values.pool } : {}),
      ...(values.name !== undefined ? { name: values.name } : {}),
      ...(values.ttl !== undefined ? { ttlSeconds: durationFlag("--ttl", values.ttl, 60, MAX_TOKEN_TTL_SECONDS, "12h, 30d or 2w") } : {}),
    };
    const created = parseAnswer(TokenCreated, await apiPost(resolveTarget(values.server), "/v1/tokens", body), "tokens create");
    write(
      render(format, created, () => [tokensTable([created]), "", "The token (shown once; the reconciler keeps only its sha256):", created.token].join("\n")),
    );
    return 0;
  }
  if (verb === "list" && id === undefined) {
    const list = parseAnswer(TokenList, await apiGet(resolveTarget(values.server), "/v1/tokens"), "tokens");
    write(render(format, list, () => (list.tokens.length === 0 ? "No tokens (the admin token NAVARCH_AUTH_TOKEN is not listed)." : tokensTable(list.tokens))));
    return 0;
  }
  if (verb === "revoke" && id !== undefined && rest.length === 0) {
    const revoked = parseAnswer(TokenRevoked, await apiDelete(resolveTarget(values.server), `/v1/tokens/${encodeURIComponent(id)}`), "tokens revoke");
    write(
      render(
        format,
        revoked,
        () =>
          shown`${revoked.token.id} (${revoked.token.name}, ${revoked.token.role}) revoked ${new Date(revoked.token.revokedAt ?? Date.now()).toISOString()}`,
      ),
    );
    return 0;
  }
  throw usage();
}

function tokensTable(tokens: TokenInfo[]): string {
  const day = (ms: number | null) =>
    ms === null
      ? "-"
      : new Date(ms)
          .toISOString()
          .replace("T", " ")
          .replace(/:\d\d\.\d+Z$/, "Z");
  return table(
    ["ID", "NAME", "ROLE", "POOL", "STATE", "CREATED", "EXPIRES", "CREATED BY"],
    tokens.map((t) => [t.id, t.name, t.role, t.pool ?? "-", t.state, day(t.createdAt), day(t.expiresAt), t.createdBy]),
  );
}
