// The agent's HTTP client to the reconciler's /v1 API. The agent opens every connection (nodes
// need no inbound port); answers are validated with the shared wire schema like requests are on
// the other side. Credentials in the --server URL are used but never written anywhere: every
// message names the URL without them.
import { redactUrl } from "../schema/url.ts";
import * as v from "valibot";
import { wellFormedJson } from "../schema/text.ts";
import {
  ERROR_CODES,
  ErrorBody,
  EventBatchResponse,
  HeartbeatResponse,
  RegisterResponse,
  RequestAnswerResponse,
  formatIssuePath,
  type EventBatch,
  type Heartbeat,
  type RegisterRequest,
  type RequestAnswer,
} from "../schema/wire.ts";

/** Why a call failed, as the agent's retry logic needs to know it. */
export type FailureKind =
  /** No answer at all: refused, reset, timed out. */
  | "unreachable"
  /** 401: the token was refused (wrong, spent or unknown to the reconciler). */
  | "unauthorized"
  /** The reconciler's own 404 for a node it does not know (its ErrorBody says so): register again. */
  | "unknown_node"
  /** An answer that is not the reconciler's API: a 404 without its error body (wrong --server path, a proxy), or a body that is not JSON. */
  | "not_reconciler"
  /** 413: the body is larger than whatever is in between accepts. */
  | "too_large"
  /** Any other refusal, or an answer that does not validate. */
  | "refused";

export class ReportError extends Error {
  override readonly name = "ReportError";
  constructor(
    message: string,
    /** HTTP status, or 0 when the reconciler could not be reached at all. */
    readonly status: number,
    readonly kind: FailureKind,
  ) {
    super(message);
  }
  /** The token was refused (401): wrong, spent or unknown to the reconciler. */
  get unauthorized(): boolean {
    return this.kind === "unauthorized";
  }
  /** The reconciler does not know this node (e.g. its database was reset): register again. */
  get needsRegistration(): boolean {
    return this.kind === "unknown_node";
  }
}

/** Accepts `host:port` (as in the seed's DaemonSet) or a full http(s) URL. */
export function normalizeServerUrl(server: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `http://${server}`;
  const url = new URL(withScheme);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`--server: expected host:port or an http(s) URL, got ${JSON.stringify(redactUrl(server))}`);
  }
  return url.toString().replace(/\/+$/, "");
}

const NOT_JSON = Symbol("not JSON");

/** The reconciler's 404 for an unknown node; older reconcilers say so only in the text. */
function isUnknownNode(body: ErrorBody): boolean {
  return body.code === ERROR_CODES.unknownNode || (body.code === undefined && /is not registered/.test(body.error));
}

export class ReconcilerClient {
  /** The bearer token sent now: the one it was started with, or the node's own credential. */
  private authToken: string;
  /** The server's URL as messages name it. */
  readonly displayUrl: string;

  constructor(
    private readonly baseUrl: string,
    /** NAVARCH_AUTH_TOKEN (the fleet's token) or a one-time bootstrap token. */
    private readonly initialToken: string,
    private readonly timeoutMs = 10_000,
    /** fetch with the reconciler's TLS trust (--ca-file, --pin-sha256: schema/client-tls.ts). */
    private readonly send: (url: string, init: RequestInit) => Promise<Response> = (url, init) => fetch(url, init),
  ) {
    this.authToken = initialToken;
    this.displayUrl = redactUrl(baseUrl);
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

  /** Answers a request of the reconciler: it started, or how it ended. */
  answerRequest(nodeId: string, requestId: string, answer: RequestAnswer): Promise<RequestAnswerResponse> {
    return this.post(`/v1/nodes/${encodeURIComponent(nodeId)}/requests/${encodeURIComponent(requestId)}`, answer, RequestAnswerResponse);
  }

  private async post<S extends v.GenericSchema>(path: string, body: unknown, schema: S): Promise<v.InferOutput<S>> {
    const where = `POST ${this.displayUrl}${path}`;
    // A timer of our own, cleared with the answer: AbortSignal.timeout() keeps each signal alive
    // until its timer fires, long after the call.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    let res: Response;
    let json: unknown;
    try {
      try {
        res = await this.send(`${this.baseUrl}${path}`, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.authToken}` },
          // The agent's own report of outside text: a string UTF-8 cannot encode goes as U+FFFD.
          body: wellFormedJson(body),
          signal: abort.signal,
        });
      } catch (err) {
        throw new ReportError(`${where}: unreachable: ${this.scrub(err instanceof Error ? err.message : String(err))}`, 0, "unreachable");
      }
      json = await res.json().catch(() => NOT_JSON);
    } finally {
      clearTimeout(timer);
    }
    if (json === NOT_JSON) {
      if (res.status === 413) throw new ReportError(`${where}: HTTP 413: the body is too large for the server`, 413, "too_large");
      throw new ReportError(
        `${where}: HTTP ${res.status} with a body that is not JSON: not the reconciler's API (check --server)`,
        res.status,
        "not_reconciler",
      );
    }
    if (!res.ok) {
      const err = v.safeParse(ErrorBody, json);
      if (!err.success) {
        throw new ReportError(
          `${where}: HTTP ${res.status} without the reconciler's error body: not the reconciler's API (check --server)`,
          res.status,
          res.status === 413 ? "too_large" : "not_reconciler",
        );
      }
      const detail = err.output.error + (err.output.issues ?? []).map((i) => `; ${i.path}: ${i.message}`).join("");
      const kind: FailureKind =
        res.status === 401 ? "unauthorized" : res.status === 413 ? "too_large" : res.status === 404 && isUnknownNode(err.output) ? "unknown_node" : "refused";
      throw new ReportError(`${where}: HTTP ${res.status}: ${this.scrub(detail)}`, res.status, kind);
    }
    const parsed = v.safeParse(schema, json);
    if (!parsed.success) {
      // Refused, not repaired: e.g. a heartbeat interval no timer can hold (the loop then backs off).
      const issue = parsed.issues[0];
      const at = issue?.path ? `${formatIssuePath(issue.path)}: ` : "";
      throw new ReportError(`${where}: unexpected answer from the reconciler (${at}${issue?.message ?? "invalid"})`, 502, "refused");
    }
    return parsed.output;
  }

  /** Removes the URL's credentials from text that may quote the URL. */
  private scrub(text: string): string {
    return this.displayUrl === this.baseUrl ? text : text.replaceAll(this.baseUrl, this.displayUrl);
  }
}
