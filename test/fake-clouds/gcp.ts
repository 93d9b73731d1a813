// A fake Compute Engine API on 127.0.0.1, following the Compute Engine API v1 discovery
// document (compute:v1, revision 20201005, as vendored in google-api-go-client's
// compute/v1/compute-api.json) and the v1 REST reference pages for what that revision
// predates (the PENDING, PENDING_STOP and DEPROVISIONING instance statuses):
//   POST   /compute/v1/projects/{p}/zones/{z}/instances?requestId=UUID  → Operation (instances.insert)
//   GET    /compute/v1/projects/{p}/zones/{z}/instances/{name}          → Instance
//   DELETE /compute/v1/projects/{p}/zones/{z}/instances/{name}          → Operation
//   POST   /compute/v1/projects/{p}/zones/{z}/instances/{name}/reset    → Operation (a RUNNING instance)
//   POST   /compute/v1/projects/{p}/zones/{z}/instances/{name}/start    → Operation (a TERMINATED instance)
//   GET    /compute/v1/projects/{p}/zones/{z}/operations/{op}           → Operation
//   POST   /compute/v1/projects/{p}/zones/{z}/operations/{op}/wait      → Operation
//   GET    /compute/v1/projects/{p}/zones                               → ZoneList (zones.list)
//   GET    /compute/v1/projects/{p}/aggregated/instances?filter=…       → {items: {"zones/z": {instances}}}
//   GET    /compute/v1/projects/{p}/aggregated/machineTypes?filter=…
//   POST   /token  (OAuth JWT-bearer grant, when a service account is configured)
// Google's error JSON {"error": {code, message, errors: [{reason, domain, message}], status}}.
// requestId (a UUID, not the zero UUID) deduplicates inserts: the same id returns the same
// operation, whatever became of it. A fresh insert answers with its operation RUNNING;
// capacity and quota faults on launches surface in the operation's error, as GCE reports
// stockouts (ZONE_RESOURCE_POOL_EXHAUSTED, per the resource-availability troubleshooting
// page). Assumed, not in the reference: reset of an instance that is not RUNNING is a 400
// with reason resourceNotReady.
import { createPublicKey, randomBytes, verify } from "node:crypto";
import { FaultBook, assignEndpoint, type CallContext, type CallRecord, type EndpointOption, type FakeCall, type Fault } from "./faults.ts";

export interface GcpFakeMachineType {
  name: string;
  zones: string[];
  guestCpus: number;
  memoryMb: number;
  accelerator?: { type: string; count: number };
}

export interface GcpFakeOptions {
  project?: string;
  /** The access token requests must carry. */
  token?: string;
  machineTypes?: GcpFakeMachineType[];
  endpoint?: EndpointOption;
  /** How long insert and delete operations run before they are DONE (default 20 ms). */
  operationMs?: number;
  /** After the insert is done, how long the instance stays STAGING (default 0: RUNNING at once). */
  bootMs?: number;
  /** operations.wait returns after at most this long even when not done (real GCE: ~2 min). */
  waitMaxMs?: number;
  /** Page size of aggregated lists when the request sets no maxResults. */
  pageSize?: number;
  /** Enables POST /token: JWT assertions signed by this account's key get `token`. */
  serviceAccount?: { clientEmail: string; publicKeyPem: string };
  /**
   * zones.list's zones (default: every zone a machine type names, plus us-central1-f and
   * us-east1-b, which offer none of them). A zone's region is its name less the last part.
   */
  zones?: { name: string; status?: "UP" | "DOWN" }[];
}

export type GceStatus = "PROVISIONING" | "STAGING" | "RUNNING" | "STOPPING" | "TERMINATED";

export interface GcpFakeInstance {
  id: string;
  name: string;
  zone: string;
  machineType: string;
  status: GceStatus;
  labels: Record<string, string>;
  metadata: unknown;
  address: string;
  sshPort?: number;
  createdAt: number;
  /** When the insert operation finishes (the instance is RUNNING `bootMs` later). */
  readyAt: number;
  deletedAt?: number;
  /** Stopped (TERMINATED in GCE's words) until started again. */
  stopped?: boolean;
  /** Boots so far: 1 once created, one more per reset or start. */
  boots: number;
}

export interface GcpFakeOperation {
  id: string;
  name: string;
  zone: string;
  operationType: "insert" | "delete" | "reset" | "start";
  targetName: string;
  doneAt: number;
  error?: { code: string; message: string; httpStatus: number; httpMessage: string };
  requestId?: string;
  insertTime: number;
}

export interface GcpFakeState {
  project: string;
  /** Keyed by `zone/name`. */
  instances: Map<string, GcpFakeInstance>;
  operations: Map<string, GcpFakeOperation>;
  requestIds: Map<string, string>;
  machineTypes: GcpFakeMachineType[];
  /** Insert request bodies that were accepted, in order. */
  inserts: unknown[];
  zones: { name: string; status: "UP" | "DOWN" }[];
  calls: CallRecord[];
}

export interface GcpFake {
  url: string;
  token: string;
  project: string;
  /** Where a service-account key should send its token requests. */
  tokenUri: string;
  state: GcpFakeState;
  inject(fault: Fault): () => void;
  clearFaults(): void;
  live(): GcpFakeInstance[];
  stop(): Promise<void>;
}

export const DEFAULT_GCP_MACHINE_TYPES: GcpFakeMachineType[] = [
  {
    name: "a3-highgpu-8g",
    zones: ["us-central1-a", "us-central1-b"],
    guestCpus: 208,
    memoryMb: 1_916_928,
    accelerator: { type: "nvidia-h100-80gb", count: 8 },
  },
  { name: "a2-highgpu-1g", zones: ["us-central1-a", "us-central1-c"], guestCpus: 12, memoryMb: 87_040, accelerator: { type: "nvidia-tesla-a100", count: 1 } },
  { name: "g2-standard-4", zones: ["us-central1-a"], guestCpus: 4, memoryMb: 16_384, accelerator: { type: "nvidia-l4", count: 1 } },
  { name: "n2-standard-8", zones: ["us-central1-a"], guestCpus: 8, memoryMb: 32_768 },
];

const NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function googleError(code: number, status: string, reason: string, message: string, domain = "global") {
  return { error: { code, message, errors: [{ message, domain, reason }], status } };
}

/** Parses the filters the provider sends: `(labels.k = "v") AND (name = "x")`, `name eq "regex"`. */
function parseFilter(filter: string | null): ((fields: Record<string, string | undefined>) => boolean) | string {
  if (filter === null || filter.trim() === "") return () => true;
  const terms: { field: string; op: string; value: string }[] = [];
  const rest = filter.replace(
    /\(?\s*([a-zA-Z][\w.-]*)\s*(=|!=|eq|ne)\s*(?:"([^"]*)"|'([^']*)'|([^\s)]+))\s*\)?/g,
    (_m, field: string, op: string, a?: string, b?: string, c?: string) => {
      terms.push({ field, op, value: a ?? b ?? c ?? "" });
      return " ";
    },
  );
  if (rest.replace(/\bAND\b/g, " ").trim() !== "" || terms.length === 0)
    return `Invalid value for field 'filter': '${filter}'. Invalid list filter expression.`;
  return (fields) =>
    terms.every(({ field, op, value }) => {
      const actual = fields[field];
      if (op === "eq" || op === "ne") {
        const hit = actual !== undefined && new RegExp(`^(?:${value})$`).test(actual);
        return op === "eq" ? hit : !hit;
      }
      return op === "=" ? actual === value : actual !== value;
    });
}

export function startGcpFake(options: GcpFakeOptions = {}): GcpFake {
  const project = options.project ?? "navarch-test";
  const token = options.token ?? "gcp-test-token";
  const faults = new FaultBook();
  const state: GcpFakeState = {
    project,
    instances: new Map(),
    operations: new Map(),
    requestIds: new Map(),
    machineTypes: options.machineTypes ?? DEFAULT_GCP_MACHINE_TYPES,
    inserts: [],
    zones: [],
    calls: [],
  };
  const zoneList: { name: string; status?: "UP" | "DOWN" }[] =
    options.zones ?? [...new Set([...state.machineTypes.flatMap((m) => m.zones), "us-central1-f", "us-east1-b"])].map((name) => ({ name }));
  state.zones = zoneList.map((z) => ({ name: z.name, status: z.status ?? "UP" }));
  let seq = 0;
  let base = "";
  const zones = () => state.zones.map((z) => z.name).sort();

  function settle(now = Date.now()): void {
    for (const [key, inst] of state.instances) {
      if (inst.deletedAt !== undefined) {
        if (now >= inst.deletedAt) state.instances.delete(key);
        continue;
      }
      if (inst.stopped === true) inst.status = "TERMINATED";
      else if (now >= inst.readyAt + (options.bootMs ?? 0)) inst.status = "RUNNING";
      else if (now >= inst.readyAt) inst.status = "STAGING";
    }
  }

  const selfBase = () => `${base}/compute/v1/projects/${project}`;

  /** An operation as GCE shows it; `fresh` is the answer to the call that started it (never DONE yet). */
  function viewOperation(op: GcpFakeOperation, fresh = false) {
    const done = !fresh && Date.now() >= op.doneAt;
    return {
      kind: "compute#operation",
      id: op.id,
      name: op.name,
      zone: `${selfBase()}/zones/${op.zone}`,
      operationType: op.operationType,
      targetLink: `${selfBase()}/zones/${op.zone}/instances/${op.targetName}`,
      status: done ? "DONE" : "RUNNING",
      progress: done ? 100 : 0,
      insertTime: new Date(op.insertTime).toISOString(),
      startTime: new Date(op.insertTime).toISOString(),
      ...(done ? { endTime: new Date(op.doneAt).toISOString() } : {}),
      selfLink: `${selfBase()}/zones/${op.zone}/operations/${op.name}`,
      user: "navarch@navarch-test.iam.gserviceaccount.com",
      ...(done && op.error !== undefined
        ? {
            error: { errors: [{ code: op.error.code, message: op.error.message }] },
            httpErrorStatusCode: op.error.httpStatus,
            httpErrorMessage: op.error.httpMessage,
          }
        : {}),
    };
  }

  function viewInstance(inst: GcpFakeInstance) {
    return {
      kind: "compute#instance",
      id: inst.id,
      creationTimestamp: new Date(inst.createdAt).toISOString(),
      name: inst.name,
      zone: `${selfBase()}/zones/${inst.zone}`,
      machineType: `${selfBase()}/zones/${inst.zone}/machineTypes/${inst.machineType}`,
      status: inst.status,
      labels: inst.labels,
      metadata: inst.metadata,
      networkInterfaces: [
        {
          name: "nic0",
          network: `${selfBase()}/global/networks/default`,
          networkIP: `10.128.0.${(Number(inst.id) % 250) + 2}`,
          accessConfigs: [{ type: "ONE_TO_ONE_NAT", name: "External NAT", natIP: inst.address }],
        },
      ],
      scheduling: { onHostMaintenance: "TERMINATE", automaticRestart: true },
      selfLink: `${selfBase()}/zones/${inst.zone}/instances/${inst.name}`,
    };
  }

  function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
    return Response.json(body, { status, headers });
  }

  function faultResponse(fault: Fault): Response | undefined {
    switch (fault.kind) {
      case "rate_limit":
        return json(
          429,
          googleError(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits"),
          fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) },
        );
      case "server_error": {
        const status = fault.status ?? 500;
        if (status === 502) return new Response("<html><title>502 Bad Gateway</title></html>", { status, headers: { "content-type": "text/html" } });
        return json(
          status,
          googleError(
            status,
            status === 503 ? "UNAVAILABLE" : "INTERNAL",
            "backendError",
            status === 503 ? "The service is currently unavailable." : "Internal error. Please try again or contact Google Support.",
          ),
        );
      }
      case "auth":
        return unauthenticated();
      case "capacity":
      case "quota":
        // Outside a launch (which reports them in the operation) these are synchronous 403s / 503s.
        return fault.kind === "quota"
          ? json(
              403,
              googleError(
                403,
                "PERMISSION_DENIED",
                "quotaExceeded",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'.",
                "usageLimits",
              ),
            )
          : json(
              503,
              googleError(503, "UNAVAILABLE", "ZONE_RESOURCE_POOL_EXHAUSTED", "The zone does not have enough resources available to fulfill the request."),
            );
      case "latency":
      case "lose_response":
        return undefined;
    }
  }

  function unauthenticated(): Response {
    return json(401, {
      error: {
        code: 401,
        message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        errors: [{ message: "Invalid Credentials", domain: "global", reason: "authError", location: "Authorization", locationType: "header" }],
        status: "UNAUTHENTICATED",
      },
    });
  }

  function notFound(what: string): Response {
    return json(404, googleError(404, "NOT_FOUND", "notFound", `The resource '${what}' was not found`));
  }

  function invalid(message: string): Response {
    return json(400, googleError(400, "INVALID_ARGUMENT", "invalid", message));
  }

  function newOperation(zone: string, type: GcpFakeOperation["operationType"], targetName: string, error?: GcpFakeOperation["error"]): GcpFakeOperation {
    seq += 1;
    const now = Date.now();
    const op: GcpFakeOperation = {
      id: String(7_000_000_000_000 + seq),
      name: `operation-${now}-${randomBytes(6).toString("hex")}`,
      zone,
      operationType: type,
      targetName,
      doneAt: now + (options.operationMs ?? 20),
      insertTime: now,
      ...(error === undefined ? {} : { error }),
    };
    state.operations.set(op.name, op);
    return op;
  }

  async function insert(req: Request, zone: string, url: URL): Promise<Response> {
    const requestId = url.searchParams.get("requestId");
    if (requestId !== null && (!UUID.test(requestId) || /^[0-]+$/.test(requestId))) {
      return invalid(`Invalid value for field 'requestId': '${requestId}'. Must be a UUID other than the zero UUID.`);
    }
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = await req.json();
      if (typeof parsed !== "object" || parsed === null) return invalid("Invalid JSON payload received.");
      body = parsed as Record<string, unknown>;
    } catch {
      return invalid("Invalid JSON payload received.");
    }
    const name = body.name;
    const machineTypeUrl = body.machineType;
    if (typeof name !== "string" || !NAME.test(name))
      return invalid(`Invalid value for field 'resource.name': '${String(name)}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'`);
    if (typeof machineTypeUrl !== "string") return invalid("Invalid value for field 'resource.machineType': ''.");
    const machineType = machineTypeUrl.slice(machineTypeUrl.lastIndexOf("/") + 1);
    const labels = (body.labels ?? {}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(labels)) {
      if (!LABEL_KEY.test(key) || typeof value !== "string" || !LABEL_VALUE.test(value)) {
        return invalid(`Invalid value for field 'resource.labels': '${key}'. Label keys and values must be lowercase letters, digits, '_' or '-'.`);
      }
    }
    if (!Array.isArray(body.disks) || body.disks.length === 0) return invalid("Invalid value for field 'resource.disks': ''. At least one disk is required.");
    if (!Array.isArray(body.networkInterfaces) || body.networkInterfaces.length === 0)
      return invalid("Invalid value for field 'resource.networkInterfaces': ''.");
    const type = state.machineTypes.find((m) => m.name === machineType);
    if (type === undefined || !type.zones.includes(zone)) {
      return invalid(
        `Invalid value for field 'resource.machineType': '${machineTypeUrl}'. Machine type with name '${machineType}' does not exist in zone '${zone}'.`,
      );
    }

    const ctx: CallContext = { instanceType: machineType, region: zone.replace(/-[a-z]$/, ""), zone };
    // requestId replay: the same operation, whatever happened to it.
    if (requestId !== null) {
      const earlier = state.requestIds.get(requestId);
      const op = earlier === undefined ? undefined : state.operations.get(earlier);
      if (op !== undefined) return json(200, viewOperation(op));
    }
    const fault = await faults.take("launch", ctx);
    if (fault !== undefined && fault.kind !== "capacity" && fault.kind !== "quota") {
      const response = faultResponse(fault);
      if (response !== undefined) return response;
    }
    if ([...state.instances.values()].some((i) => i.zone === zone && i.name === name && i.deletedAt === undefined)) {
      return json(
        409,
        googleError(409, "ALREADY_EXISTS", "alreadyExists", `The resource 'projects/${project}/zones/${zone}/instances/${name}' already exists`),
      );
    }

    let error: GcpFakeOperation["error"];
    if (fault?.kind === "capacity") {
      error = {
        code: "ZONE_RESOURCE_POOL_EXHAUSTED",
        message: `The zone 'projects/${project}/zones/${zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.`,
        httpStatus: 503,
        httpMessage: "SERVICE UNAVAILABLE",
      };
    } else if (fault?.kind === "quota") {
      error = {
        code: fault.code ?? "QUOTA_EXCEEDED",
        message: `Quota '${(type.accelerator?.type ?? "CPUS").toUpperCase().replaceAll("-", "_")}_GPUS' exceeded.  Limit: 0.0 in region ${ctx.region}.`,
        httpStatus: 403,
        httpMessage: "FORBIDDEN",
      };
    }
    const op = newOperation(zone, "insert", name, error);
    if (requestId !== null) {
      op.requestId = requestId;
      state.requestIds.set(requestId, op.name);
    }
    if (error === undefined) {
      const endpoint = assignEndpoint(options.endpoint, seq, () => `203.0.113.${seq % 250}`);
      state.instances.set(`${zone}/${name}`, {
        id: String(4_000_000_000_000_000 + seq),
        name,
        zone,
        machineType,
        status: "PROVISIONING",
        labels: labels as Record<string, string>,
        metadata: body.metadata ?? {},
        address: endpoint.address,
        ...(endpoint.sshPort === undefined ? {} : { sshPort: endpoint.sshPort }),
        createdAt: Date.now(),
        readyAt: op.doneAt,
        boots: 1,
      });
      state.inserts.push(body);
    }
    if (fault?.kind === "lose_response") return new Response("upstream connect error or disconnect/reset before headers", { status: 502 });
    return json(200, viewOperation(op, true));
  }

  function aggregated<T>(url: URL, all: { zone: string; item: T; fields: Record<string, string | undefined> }[], key: "instances" | "machineTypes"): Response {
    const matcher = parseFilter(url.searchParams.get("filter"));
    if (typeof matcher === "string") return invalid(matcher);
    const matching = all.filter((x) => matcher(x.fields));
    const pageSize = Math.min(Number(url.searchParams.get("maxResults") ?? options.pageSize ?? 500), options.pageSize ?? 500);
    const offset = Number(url.searchParams.get("pageToken") ?? "0");
    const page = matching.slice(offset, offset + pageSize);
    const items: Record<string, unknown> = {};
    for (const zone of zones()) {
      const here = page.filter((x) => x.zone === zone).map((x) => x.item);
      items[`zones/${zone}`] =
        here.length > 0
          ? { [key]: here }
          : {
              warning: {
                code: "NO_RESULTS_ON_PAGE",
                message: `There are no results for scope 'zones/${zone}' on this page.`,
                data: [{ key: "scope", value: `zones/${zone}` }],
              },
            };
    }
    const next = offset + pageSize < matching.length ? String(offset + pageSize) : undefined;
    return json(200, {
      kind: key === "instances" ? "compute#instanceAggregatedList" : "compute#machineTypeAggregatedList",
      id: `projects/${project}/aggregated/${key}`,
      items,
      ...(next === undefined ? {} : { nextPageToken: next }),
      selfLink: `${selfBase()}/aggregated/${key}`,
    });
  }

  async function tokenGrant(req: Request): Promise<Response> {
    const sa = options.serviceAccount;
    if (sa === undefined) return json(404, { error: "not_found" });
    const form = new URLSearchParams(await req.text());
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      return json(400, { error: "unsupported_grant_type", error_description: "Invalid grant_type" });
    }
    const assertion = form.get("assertion") ?? "";
    const [header, claims, signature] = assertion.split(".");
    if (header === undefined || claims === undefined || signature === undefined)
      return json(400, { error: "invalid_grant", error_description: "Invalid JWT." });
    const ok = verify("RSA-SHA256", Buffer.from(`${header}.${claims}`), createPublicKey(sa.publicKeyPem), Buffer.from(signature, "base64url"));
    if (!ok) return json(400, { error: "invalid_grant", error_description: "Invalid JWT Signature." });
    const payload = JSON.parse(Buffer.from(claims, "base64url").toString()) as { iss?: string; aud?: string; exp?: number; scope?: string };
    if (payload.iss !== sa.clientEmail) return json(400, { error: "invalid_grant", error_description: "Invalid issuer." });
    if (payload.aud !== `${base}/token`) return json(400, { error: "invalid_grant", error_description: "Invalid audience." });
    if (typeof payload.exp !== "number" || payload.exp * 1000 < Date.now())
      return json(400, { error: "invalid_grant", error_description: "Token has expired." });
    return json(200, { access_token: token, expires_in: 3599, token_type: "Bearer" });
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const url = new URL(req.url);
      const { call, response } = await handle(req, url);
      state.calls.push({ call, method: req.method, path: url.pathname, status: response.status });
      return response;
    },
  });
  base = `http://127.0.0.1:${server.port}`;

  async function handle(req: Request, url: URL): Promise<{ call: FakeCall | "other"; response: Response }> {
    const path = url.pathname;
    if (path === "/token" && req.method === "POST") {
      const fault = await faults.take("token");
      const faulted = fault === undefined ? undefined : faultResponse(fault);
      return { call: "token", response: faulted ?? (await tokenGrant(req)) };
    }
    const prefix = `/compute/v1/projects/${project}/`;
    if (!path.startsWith("/compute/v1/projects/")) return { call: "other", response: notFound(path) };
    const rest = path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
    const m = {
      instances: rest === undefined ? null : /^zones\/([^/]+)\/instances$/.exec(rest),
      instance: rest === undefined ? null : /^zones\/([^/]+)\/instances\/([^/]+)$/.exec(rest),
      action: rest === undefined ? null : /^zones\/([^/]+)\/instances\/([^/]+)\/(reset|start)$/.exec(rest),
      operation: rest === undefined ? null : /^zones\/([^/]+)\/operations\/([^/]+?)(\/wait)?$/.exec(rest),
    };
    const call: FakeCall | "other" =
      m.action !== null && req.method === "POST"
        ? "reboot"
        : rest === "zones" && req.method === "GET"
          ? "zones"
          : m.instances !== null && req.method === "POST"
            ? "launch"
            : m.instance !== null && req.method === "DELETE"
              ? "terminate"
              : m.instance !== null
                ? "get"
                : m.operation !== null
                  ? "operation"
                  : rest === "aggregated/instances"
                    ? "list"
                    : rest === "aggregated/machineTypes"
                      ? "types"
                      : "other";
    if (req.headers.get("authorization") !== `Bearer ${token}`) return { call, response: unauthenticated() };
    if (rest === undefined) {
      return { call, response: json(403, googleError(403, "PERMISSION_DENIED", "forbidden", `Required 'compute.instances.list' permission for '${path}'`)) };
    }
    if (call === "launch") return { call, response: await insert(req, m.instances![1]!, url) };

    const fault = call === "other" ? undefined : await faults.take(call);
    if (fault !== undefined) {
      const response = faultResponse(fault);
      if (response !== undefined) return { call, response };
    }
    settle();

    if (m.action !== null) {
      const [, zone, name, verb] = m.action;
      const inst = state.instances.get(`${zone}/${name}`);
      if (inst === undefined || inst.deletedAt !== undefined) return { call, response: notFound(`projects/${project}/zones/${zone}/instances/${name}`) };
      const wanted = verb === "reset" ? "RUNNING" : "TERMINATED";
      if (inst.status !== wanted) {
        return {
          call,
          response: json(
            400,
            googleError(400, "FAILED_PRECONDITION", "resourceNotReady", `The resource 'projects/${project}/zones/${zone}/instances/${name}' is not ready`),
          ),
        };
      }
      const op = newOperation(zone!, verb === "reset" ? "reset" : "start", name!);
      // A new boot: STAGING until the operation is done and bootMs has passed.
      inst.boots += 1;
      inst.stopped = false;
      inst.readyAt = op.doneAt;
      inst.status = "STAGING";
      if (fault?.kind === "lose_response") return { call, response: new Response("upstream reset", { status: 502 }) };
      return { call, response: json(200, viewOperation(op, true)) };
    }
    if (call === "zones") {
      const items = state.zones.map((z, i) => {
        const region = z.name.replace(/-[a-z]$/, "");
        return {
          kind: "compute#zone",
          id: String(2000 + i),
          creationTimestamp: "1969-12-31T16:00:00.000-08:00",
          name: z.name,
          description: z.name,
          status: z.status,
          region: `${selfBase()}/regions/${region}`,
          selfLink: `${selfBase()}/zones/${z.name}`,
          availableCpuPlatforms: ["Intel Sapphire Rapids", "AMD Milan"],
          supportsPzs: false,
        };
      });
      const pageSize = Math.min(Number(url.searchParams.get("maxResults") ?? options.pageSize ?? 500), options.pageSize ?? 500);
      const offset = Number(url.searchParams.get("pageToken") ?? "0");
      const next = offset + pageSize < items.length ? String(offset + pageSize) : undefined;
      return {
        call,
        response: json(200, {
          kind: "compute#zoneList",
          id: `projects/${project}/zones`,
          items: items.slice(offset, offset + pageSize),
          ...(next === undefined ? {} : { nextPageToken: next }),
          selfLink: `${selfBase()}/zones`,
        }),
      };
    }
    if (m.instance !== null) {
      const [, zone, name] = m.instance;
      const inst = state.instances.get(`${zone}/${name}`);
      if (inst === undefined) return { call, response: notFound(`projects/${project}/zones/${zone}/instances/${name}`) };
      if (req.method === "GET") return { call, response: json(200, viewInstance(inst)) };
      if (req.method === "DELETE") {
        const op = newOperation(zone!, "delete", name!);
        if (inst.deletedAt === undefined) {
          inst.deletedAt = op.doneAt;
          inst.status = "STOPPING";
        }
        if (fault?.kind === "lose_response") return { call, response: new Response("upstream reset", { status: 502 }) };
        return { call, response: json(200, viewOperation(op, true)) };
      }
    }
    if (m.operation !== null) {
      const [, , name, wait] = m.operation;
      const op = state.operations.get(name!);
      if (op === undefined) return { call, response: notFound(`projects/${project}/zones/${m.operation[1]}/operations/${name}`) };
      if (wait !== undefined && req.method === "POST") {
        const until = Math.min(op.doneAt, Date.now() + (options.waitMaxMs ?? 2000));
        if (until > Date.now()) await Bun.sleep(until - Date.now());
        settle();
      }
      return { call, response: json(200, viewOperation(op)) };
    }
    if (call === "list" && req.method === "GET") {
      const all = [...state.instances.values()].map((inst) => {
        const fields: Record<string, string | undefined> = { name: inst.name, status: inst.status, zone: inst.zone };
        for (const [k, v] of Object.entries(inst.labels)) fields[`labels.${k}`] = v;
        return { zone: inst.zone, item: viewInstance(inst), fields };
      });
      return { call, response: aggregated(url, all, "instances") };
    }
    if (call === "types" && req.method === "GET") {
      const all = state.machineTypes.flatMap((mt) =>
        mt.zones.map((zone) => ({
          zone,
          fields: { name: mt.name, zone },
          item: {
            kind: "compute#machineType",
            name: mt.name,
            description: `${mt.guestCpus} vCPUs, ${Math.round(mt.memoryMb / 1024)} GB RAM`,
            guestCpus: mt.guestCpus,
            memoryMb: mt.memoryMb,
            zone,
            ...(mt.accelerator === undefined
              ? {}
              : { accelerators: [{ guestAcceleratorType: mt.accelerator.type, guestAcceleratorCount: mt.accelerator.count }] }),
          },
        })),
      );
      return { call, response: aggregated(url, all, "machineTypes") };
    }
    return { call, response: notFound(path) };
  }

  return {
    url: base,
    token,
    project,
    tokenUri: `${base}/token`,
    state,
    inject: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    live: () => {
      settle();
      return [...state.instances.values()].filter((i) => i.deletedAt === undefined);
    },
    stop: async () => {
      await server.stop(true);
    },
  };
}
