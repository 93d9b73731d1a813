// The agent's HTTP client to the reconciler's /v1 API. The agent opens every
// connection (nodes need no inbound port); answers are validated with the shared
// wire schema like requests are on the other side.
import * as v from "valibot";
import {
  ErrorBody,
  EventBatchResponse,
  HeartbeatResponse,
  RegisterResponse,
  formatIssuePath,
  type EventBatch,
  type Heartbeat,
  type RegisterRequest,
} from "../schema/wire.ts";

/** Why a call failed, as the agent's retry logic needs to know it. */
export class ReportError extends Error {
  override readonly name = "ReportError";
  constructor(
    message: string,
    /** HTTP status, or 0 when the reconciler could not be reached at all. */
    readonly status: number,
  ) {
    super(message);
  }
  /** The token was refused (401): wrong, spent or unknown to the reconciler. */
  get unauthorized(): boolean {
    return this.status === 401;
  }
  /** The reconciler does not know this node (e.g. its database was reset): register again. */
  get needsRegistration(): boolean {
    return this.status === 404;
  }
  /** Worth retrying later: unreachable, timeouts, overload, server errors. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Accepts `host:port` (as in the seed's DaemonSet) or a full http(s) URL. */
export function normalizeServerUrl(server: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `http://${server}`;
  const url = new URL(withScheme);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`--server: expected host:port or an http(s) URL, got ${JSON.stringify(server)}`);
  }
  return url.toString().replace(/\/+$/, "");
}

export class ReconcilerClient {
  /** The bearer token sent now: the one it was started with, or the node's own credential. */
  private authToken: string;

  constructor(
    private readonly baseUrl: string,
    /** NAVARCH_AUTH_TOKEN (the fleet's token) or a one-time bootstrap token. */
    private readonly initialToken: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.authToken = initialToken;
  }

  /** Sends the node's own credential from now on. */
  useNodeToken(token: string): void {
    this.authToken = token;
  }

  /** Whether it sends a node credential rather than the token it was started with. */
  get usingNodeToken(): boolean {
    return this.authToken !== this.initialToken;
  }

  /** Back to the token it was started with (the reconciler no longer knows the node credential). */
  useInitialToken(): void {
    this.authToken = this.initialToken;
  }

  register(req: RegisterRequest): Promise<RegisterResponse> {
    return this.post("/v1/register", req, RegisterResponse);
  }

  heartbeat(hb: Heartbeat): Promise<HeartbeatResponse> {
    return this.post("/v1/heartbeat", hb, HeartbeatResponse);
  }

  sendEvents(batch: EventBatch): Promise<EventBatchResponse> {
    return this.post("/v1/events", batch, EventBatchResponse);
  }

  private async post<S extends v.GenericSchema>(path: string, body: unknown, schema: S): Promise<v.InferOutput<S>> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.authToken}` },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new ReportError(`reconciler ${this.baseUrl} unreachable: ${err instanceof Error ? err.message : String(err)}`, 0);
    }
    let json: unknown;
    try {
      json = await res.json();
    } catch {
      throw new ReportError(`POST ${path}: HTTP ${res.status} with a body that is not JSON`, res.status || 502);
    }
    if (!res.ok) {
      const err = v.safeParse(ErrorBody, json);
      const detail = err.success
        ? err.output.error + (err.output.issues ?? []).map((i) => `; ${i.path}: ${i.message}`).join("")
        : JSON.stringify(json);
      throw new ReportError(`POST ${path}: HTTP ${res.status}: ${detail}`, res.status);
    }
    const parsed = v.safeParse(schema, json);
    if (!parsed.success) {
      // Refused, not repaired: e.g. a heartbeat interval no timer can hold (the loop then backs off).
      const issue = parsed.issues[0];
      const where = issue?.path ? `${formatIssuePath(issue.path)}: ` : "";
      throw new ReportError(`POST ${path}: unexpected answer from the reconciler (${where}${issue?.message ?? "invalid"})`, 502);
    }
    return parsed.output;
  }
}
