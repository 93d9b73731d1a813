// GCP credentials and the access tokens they give. `credentials_env` names a variable holding
// either an OAuth access token or a service-account JSON key; `credentials_file` is a path to a
// service-account JSON key; with neither, the key file GOOGLE_APPLICATION_CREDENTIALS names (as
// Google's client libraries do). A key is exchanged for an access token with a signed JWT
// (RS256) at its token_uri, and the token is reused until a minute before it expires.
// Not implemented: the metadata server (GCE workload identity), authorized-user and
// external-account credentials.
//
// Secrets never reach a message: a key is never echoed, and what the token endpoint says is
// scrubbed of the key, the assertion and every token issued.
import { createSign } from "node:crypto";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { GcpProviderConfig } from "../../../schema/config.ts";
import { describeIssues, parseRetryAfter, redact, type EnvLookup } from "../http.ts";
import { ProviderError, type ProviderErrorKind } from "../provider.ts";

const PROVIDER = "gcp";
const SCOPE = "https://www.googleapis.com/auth/compute";
const DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token";

const ServiceAccountKey = v.object({
  type: v.literal("service_account"),
  client_email: v.pipe(v.string(), v.nonEmpty()),
  private_key: v.pipe(v.string(), v.nonEmpty()),
  private_key_id: v.optional(v.string()),
  project_id: v.optional(v.string()),
  token_uri: v.optional(v.string()),
});
export type ServiceAccountKey = v.InferOutput<typeof ServiceAccountKey>;
const TokenResponse = v.object({ access_token: v.pipe(v.string(), v.nonEmpty()), expires_in: v.optional(v.number(), 3600) });
const TokenError = v.object({ error: v.string(), error_description: v.optional(v.string()) });

type Credentials = { kind: "token"; token: string } | { kind: "service_account"; key: ServiceAccountKey };

export interface GcpCredentialsOptions {
  /** The token exchange's timeout. */
  timeoutMs: number;
  fetch: typeof fetch;
  now: () => number;
}

/** The credentials `providers.gcp` names, read when a call needs them; the access token they give. */
export class GcpCredentials {
  private readonly now: () => number;
  private readonly doFetch: typeof fetch;
  private readonly timeoutMs: number;
  private cachedToken: { token: string; expiresAt: number } | undefined;
  private fileKey: { path: string; key: ServiceAccountKey } | undefined;
  private secretsSeen = new Set<string>();

  constructor(
    private readonly config: Pick<GcpProviderConfig, "credentials_env" | "credentials_file">,
    private readonly env: EnvLookup,
    options: GcpCredentialsOptions,
  ) {
    this.now = options.now;
    this.doFetch = options.fetch;
    this.timeoutMs = options.timeoutMs;
  }

  /** Values no message may show: the raw credential, the key, every access token issued. */
  secrets(): string[] {
    const out = [...this.secretsSeen];
    const raw = this.config.credentials_env === undefined ? undefined : this.env(this.config.credentials_env);
    if (raw !== undefined && raw.trim() !== "") out.push(raw.trim());
    const key = this.serviceAccount();
    if (key !== undefined) out.push(key.private_key);
    return out;
  }

  private credentials(): Credentials {
    if (this.config.credentials_env !== undefined) {
      const raw = this.env(this.config.credentials_env)?.trim();
      if (raw === undefined || raw === "") {
        throw new ProviderError(PROVIDER, "auth", `environment variable ${this.config.credentials_env} (GCP credentials) is not set`);
      }
      return raw.startsWith("{") ? { kind: "service_account", key: this.parseKey(raw, this.config.credentials_env) } : { kind: "token", token: raw };
    }
    const file = this.config.credentials_file ?? this.env("GOOGLE_APPLICATION_CREDENTIALS")?.trim();
    if (file !== undefined && file !== "") {
      if (this.fileKey?.path === file) return { kind: "service_account", key: this.fileKey.key };
      const source = this.config.credentials_file === undefined ? `GOOGLE_APPLICATION_CREDENTIALS (${file})` : file;
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (err) {
        throw new ProviderError(PROVIDER, "auth", `cannot read the credentials file ${source}: ${err instanceof Error ? err.message : String(err)}`);
      }
      this.fileKey = { path: file, key: this.parseKey(text, source) };
      return { kind: "service_account", key: this.fileKey.key };
    }
    throw new ProviderError(PROVIDER, "auth", "no GCP credentials: set providers.gcp.credentials_env or credentials_file, or GOOGLE_APPLICATION_CREDENTIALS");
  }

  /** The service-account key in use, if the credentials are one (its project_id names the default project). */
  serviceAccount(): ServiceAccountKey | undefined {
    try {
      const creds = this.credentials();
      return creds.kind === "service_account" ? creds.key : undefined;
    } catch {
      return undefined;
    }
  }

  private parseKey(text: string, source: string): ServiceAccountKey {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // Never echo the text: it is a private key.
      throw new ProviderError(PROVIDER, "auth", `GCP credentials from ${source} are not valid JSON`);
    }
    const parsed = v.safeParse(ServiceAccountKey, json);
    if (!parsed.success) {
      const type = typeof json === "object" && json !== null && "type" in json ? String((json as { type: unknown }).type) : "unknown";
      throw new ProviderError(
        PROVIDER,
        "auth",
        `GCP credentials from ${source} are not a service-account key (type ${type}; only service_account keys and raw access tokens are supported)`,
      );
    }
    return parsed.output;
  }

  /** A bearer token for the next request: the raw token, or a key's cached one, exchanged again a minute before it expires. */
  async accessToken(): Promise<string> {
    const creds = this.credentials();
    if (creds.kind === "token") return creds.token;
    if (this.cachedToken !== undefined && this.cachedToken.expiresAt - 60_000 > this.now()) return this.cachedToken.token;
    const { token, expiresInSeconds } = await this.exchange(creds.key);
    this.secretsSeen.add(token);
    this.cachedToken = { token, expiresAt: this.now() + expiresInSeconds * 1000 };
    return token;
  }

  /** The JWT-bearer grant: a self-signed RS256 assertion traded for an access token. */
  private async exchange(key: ServiceAccountKey): Promise<{ token: string; expiresInSeconds: number }> {
    const tokenUri = key.token_uri ?? DEFAULT_TOKEN_URI;
    const iat = Math.floor(this.now() / 1000);
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const header = b64({ alg: "RS256", typ: "JWT", ...(key.private_key_id === undefined ? {} : { kid: key.private_key_id }) });
    const claims = b64({ iss: key.client_email, scope: SCOPE, aud: tokenUri, iat, exp: iat + 3600 });
    let signature: string;
    try {
      signature = createSign("RSA-SHA256").update(`${header}.${claims}`).sign(key.private_key).toString("base64url");
    } catch {
      throw new ProviderError(PROVIDER, "auth", `the private key of ${key.client_email} cannot sign (is it a PEM RSA key?)`);
    }
    const assertion = `${header}.${claims}.${signature}`;
    const secrets = [key.private_key, assertion, ...this.secretsSeen];
    const timeoutMs = this.timeoutMs;
    let response: Response;
    let text: string;
    try {
      response = await this.doFetch(tokenUri, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }).toString(),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: "error",
      });
      text = await response.text();
    } catch (err) {
      const why = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError") ? `timed out after ${timeoutMs} ms` : String(err);
      throw new ProviderError(PROVIDER, "transient", redact(`token exchange at ${tokenUri}: ${why}`, secrets));
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      const err = v.safeParse(TokenError, body);
      const detail = err.success ? `${err.output.error}${err.output.error_description ? `: ${err.output.error_description}` : ""}` : `HTTP ${response.status}`;
      const kind: ProviderErrorKind = response.status === 429 ? "rate_limit" : response.status >= 500 ? "transient" : "auth";
      throw new ProviderError(
        PROVIDER,
        kind,
        redact(`token exchange for ${key.client_email} refused: ${detail}`, secrets),
        parseRetryAfter(response.headers.get("retry-after")),
      );
    }
    const parsed = v.safeParse(TokenResponse, body);
    if (!parsed.success) {
      throw new ProviderError(PROVIDER, "transient", `token exchange: unexpected response (${describeIssues(parsed.issues)})`);
    }
    return { token: parsed.output.access_token, expiresInSeconds: parsed.output.expires_in };
  }
}
