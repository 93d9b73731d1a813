// How CLI commands reach a running reconciler: server from -s/NAVARCH_SERVER,
// token from NAVARCH_AUTH_TOKEN (or, on the reconciler's own machine, the token
// file it generated in its data directory), HTTPS trust from NAVARCH_CA_FILE and
// friends (schema/client-tls.ts), and who the audit log names for their actions
// (NAVARCH_ACTOR). Every failure is one clear line, and never shows credentials
// written into the server URL.
import { readFileSync, statSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { textPrefix } from "../../schema/text.ts";
import { redactUrl } from "../../schema/url.ts";
import { ClientTlsError, clientFetch, clientTlsFromEnv } from "../../schema/client-tls.ts";
import { authTokenFile } from "../app/auth-token-file.ts";

export const DEFAULT_SERVER = "http://127.0.0.1:50051";
export const DEFAULT_DATA_DIR = "data";

/** An expected failure: printed as one line, exit code 1 (or 2 for usage errors). */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export interface ApiTarget {
  server: string;
  token: string;
  /** The server as messages show it: without a user name or password. */
  display?: string;
  /** fetch with the TLS settings of the environment. */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

export function resolveTarget(serverFlag: string | undefined, dataDir = DEFAULT_DATA_DIR): ApiTarget {
  const raw = serverFlag ?? process.env.NAVARCH_SERVER ?? DEFAULT_SERVER;
  const server = (/^https?:\/\//.test(raw) ? raw : `http://${raw}`).replace(/\/+$/, "");
  let token = process.env.NAVARCH_AUTH_TOKEN;
  if (!token) token = readTokenFile(authTokenFile(dataDir));
  if (!token) throw new CliError("NAVARCH_AUTH_TOKEN is not set (and no generated token was found in ./data/auth-token)");
  let send;
  try {
    send = clientFetch(clientTlsFromEnv());
  } catch (err) {
    if (err instanceof ClientTlsError) throw new CliError(err.message, 2);
    throw err;
  }
  return { server, token, display: redactUrl(server), fetch: send };
}

/** The token `serve` generated on this machine, if there is one; a path that is not a file is one line. */
function readTokenFile(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) throw new CliError(`${file} is not a file (it should hold the token serve generated); set NAVARCH_AUTH_TOKEN`);
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "";
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new CliError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}; set NAVARCH_AUTH_TOKEN`);
  }
}

export function apiGet(target: ApiTarget, path: string): Promise<unknown> {
  return apiCall(target, "GET", path);
}

/** A GET whose 404 is an answer, not an error (an optional endpoint, a record that may not exist). */
export function apiGetOptional(target: ApiTarget, path: string): Promise<unknown> {
  return apiCall(target, "GET", path, undefined, true);
}

export function apiPost(target: ApiTarget, path: string, body: unknown): Promise<unknown> {
  return apiCall(target, "POST", path, body);
}

export function apiDelete(target: ApiTarget, path: string): Promise<unknown> {
  return apiCall(target, "DELETE", path);
}

async function apiCall(target: ApiTarget, method: "GET" | "POST" | "DELETE", path: string, body?: unknown, notFoundIsUndefined = false): Promise<unknown> {
  const server = target.display ?? redactUrl(target.server);
  const send = target.fetch ?? ((url: string, init: RequestInit) => fetch(url, init));
  let res: Response;
  try {
    res = await send(`${target.server}${path}`, {
      method,
      headers: { Authorization: `Bearer ${target.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const text = (err instanceof Error ? err.message : String(err)).replaceAll(target.server, server);
    throw new CliError(`cannot reach the reconciler at ${server}: ${text}`);
  }
  if (notFoundIsUndefined && res.status === 404) return undefined;
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    throw new CliError(`${server}${path}: HTTP ${res.status} with a body that is not JSON (is this a navarch server?)`);
  }
  if (res.status === 401) {
    const why = typeof json === "object" && json !== null && "error" in json ? `: ${String(json.error)}` : "";
    throw new CliError(`${server} refused the token (HTTP 401)${why}; check NAVARCH_AUTH_TOKEN`);
  }
  if (!res.ok) {
    const msg = typeof json === "object" && json !== null && "error" in json ? String(json.error) : `HTTP ${res.status}`;
    const issues = typeof json === "object" && json !== null && "issues" in json && Array.isArray(json.issues) ? json.issues : [];
    throw new CliError([msg, ...issues.map((i: { path?: string; message?: string }) => `${i.path}: ${i.message}`)].join("; "));
  }
  return json;
}

/**
 * Who runs the command, for the audit log: NAVARCH_ACTOR, else the login name and host.
 * Bun's userInfo() says "unknown" where the environment has no USER, so that is not a name.
 */
export function actor(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NAVARCH_ACTOR) return textPrefix(env.NAVARCH_ACTOR, 128);
  let user = env.USER || env.LOGNAME;
  if (!user) {
    try {
      const name = userInfo().username;
      if (name && name !== "unknown") user = name;
    } catch {
      // no passwd entry for this uid
    }
  }
  return textPrefix(`${user ?? `uid ${process.getuid?.() ?? "?"}`}@${hostname()}`, 128);
}
