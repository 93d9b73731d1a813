// JSON over HTTP for the cloud providers that speak it (Lambda, GCP): one request
// helper with a timeout per call, Retry-After parsing, a response schema checked with
// valibot, and one hook that turns an API's error body into a ProviderError. Secrets
// (API keys, access tokens) are scrubbed from every message this module builds, so a
// server that echoes a credential back cannot put it into a log.
import * as v from "valibot";
import { ProviderError, type ProviderErrorKind } from "./provider.ts";
import { textPrefix } from "../../schema/text.ts";

/** Reads an environment variable; providers take one so tests can pass a fake environment. */
export type EnvLookup = (name: string) => string | undefined;

export const processEnv: EnvLookup = (name) => process.env[name];

/** What an API error response said, before the provider maps it to a kind. */
export interface HttpFailure {
  status: number;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  body: unknown;
  /** The body as text (cut to 500 characters), for messages. */
  text: string;
  retryAfterSeconds?: number;
  method: string;
  path: string;
}

export interface JsonHttpOptions {
  provider: string;
  /** Origin plus any path prefix, without a trailing slash. */
  baseUrl: string;
  timeoutMs: number;
  /** Headers for each request (authorization); may refresh a token. */
  headers: () => Promise<Record<string, string>>;
  /** Values that must never appear in an error message. */
  secrets: () => string[];
  /** Maps a non-2xx response to a ProviderError. */
  mapError: (failure: HttpFailure) => ProviderError;
  fetch?: typeof fetch;
}

export interface RequestOptions<TSchema extends v.GenericSchema> {
  query?: Record<string, string | undefined>;
  body?: unknown;
  schema: TSchema;
  /** Statuses answered with `undefined` instead of an error (e.g. 404 on a lookup). */
  tolerate?: readonly number[];
  /** Overrides the client's timeout for this request (long polls). */
  timeoutMs?: number;
}

/** Replaces each secret (and its base64 form, as in basic auth) with [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length < 4) continue;
    for (const form of [secret, Buffer.from(secret).toString("base64"), Buffer.from(`${secret}:`).toString("base64")]) {
      out = out.split(form).join("[redacted]");
    }
  }
  return out;
}

/**
 * Seconds from a Retry-After header: either delay-seconds or an HTTP date. Undefined
 * when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed));
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Kind for a status code when the body says nothing more specific. */
export function kindForStatus(status: number): ProviderErrorKind {
  if (status === 401 || status === 403) return "auth";
  if (status === 404) return "not_found";
  if (status === 429) return "rate_limit";
  if (status === 408 || status >= 500) return "transient";
  return "invalid";
}

/** A short description of a valibot failure for "unexpected response" messages. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path?.map((p) => String(p.key)).join(".") ?? "";
      return path === "" ? issue.message : `${path}: ${issue.message}`;
    })
    .join("; ");
}

export class JsonHttp {
  private readonly doFetch: typeof fetch;

  constructor(private readonly options: JsonHttpOptions) {
    this.doFetch = options.fetch ?? fetch;
  }

  /** An error of this provider with secrets scrubbed from the message. */
  error(kind: ProviderErrorKind, message: string, retryAfterSeconds?: number): ProviderError {
    return new ProviderError(this.options.provider, kind, redact(message, this.options.secrets()), retryAfterSeconds);
  }

  async request<TSchema extends v.GenericSchema>(method: string, path: string, opts: RequestOptions<TSchema>): Promise<v.InferOutput<TSchema> | undefined> {
    const { provider } = this.options;
    const timeoutMs = opts.timeoutMs ?? this.options.timeoutMs;
    const url = new URL(this.options.baseUrl + path);
    for (const [key, value] of Object.entries(opts.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, value);
    }
    const headers: Record<string, string> = { accept: "application/json", ...(await this.options.headers()) };
    if (opts.body !== undefined) headers["content-type"] = "application/json";

    let response: Response;
    let text: string;
    try {
      response = await this.doFetch(url, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: "error",
      });
      text = await response.text();
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      const why = timedOut ? `timed out after ${timeoutMs} ms` : err instanceof Error ? err.message : String(err);
      throw this.error("transient", `${method} ${path}: ${why}`);
    }

    if (opts.tolerate?.includes(response.status)) return undefined;

    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }

    if (!response.ok) {
      const failure: HttpFailure = {
        status: response.status,
        body,
        text: redact(textPrefix(text, 500), this.options.secrets()),
        method,
        path,
        retryAfterSeconds: parseRetryAfter(response.headers.get("retry-after")),
      };
      const mapped = this.options.mapError(failure);
      // Re-scrub: a mapper may have copied the server's message verbatim.
      throw new ProviderError(provider, mapped.kind, redact(stripProvider(mapped.message, provider), this.options.secrets()), mapped.retryAfterSeconds);
    }

    const parsed = v.safeParse(opts.schema, body);
    if (!parsed.success) {
      throw this.error("transient", `${method} ${path}: unexpected response (${describeIssues(parsed.issues)})`);
    }
    return parsed.output;
  }
}

/** ProviderError prefixes its message with the provider; undo that before re-wrapping. */
function stripProvider(message: string, provider: string): string {
  const prefix = `${provider}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

/** The base URL from config (or the default), without a trailing slash or a given API suffix. */
export function normaliseBaseUrl(configured: string | undefined, fallback: string, apiSuffix: string): string {
  let base = (configured ?? fallback).replace(/\/+$/, "");
  if (base.endsWith(apiSuffix)) base = base.slice(0, -apiSuffix.length);
  return base;
}
