// How CLI commands reach a running reconciler: server from -s/NAVARCH_SERVER,
// token from NAVARCH_AUTH_TOKEN (or, on the reconciler's own machine, the token
// file it generated in its data directory). Every failure is one clear line.
import { existsSync, readFileSync } from "node:fs";
import { authTokenFile } from "../serve.ts";

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
}

export function resolveTarget(serverFlag: string | undefined, dataDir = DEFAULT_DATA_DIR): ApiTarget {
  const raw = serverFlag ?? process.env.NAVARCH_SERVER ?? DEFAULT_SERVER;
  const server = (/^https?:\/\//.test(raw) ? raw : `http://${raw}`).replace(/\/+$/, "");
  let token = process.env.NAVARCH_AUTH_TOKEN;
  if (!token) {
    const file = authTokenFile(dataDir);
    if (existsSync(file)) token = readFileSync(file, "utf8").trim();
  }
  if (!token) throw new CliError("NAVARCH_AUTH_TOKEN is not set (and no generated token was found in ./data/auth-token)");
  return { server, token };
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

async function apiCall(target: ApiTarget, method: "GET" | "POST", path: string, body?: unknown, notFoundIsUndefined = false): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${target.server}${path}`, {
      method,
      headers: { Authorization: `Bearer ${target.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new CliError(`cannot reach the reconciler at ${target.server}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (notFoundIsUndefined && res.status === 404) return undefined;
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    throw new CliError(`${target.server}${path}: HTTP ${res.status} with a body that is not JSON (is this a navarch server?)`);
  }
  if (res.status === 401) throw new CliError(`${target.server} refused the token (HTTP 401): check NAVARCH_AUTH_TOKEN`);
  if (!res.ok) {
    const msg = typeof json === "object" && json !== null && "error" in json ? String(json.error) : `HTTP ${res.status}`;
    const issues = typeof json === "object" && json !== null && "issues" in json && Array.isArray(json.issues) ? json.issues : [];
    throw new CliError([msg, ...issues.map((i: { path?: string; message?: string }) => `${i.path}: ${i.message}`)].join("; "));
  }
  return json;
}
