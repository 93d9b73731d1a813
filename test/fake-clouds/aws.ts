// A fake EC2 query API on 127.0.0.1, following the EC2 API models of @aws-sdk/client-ec2
// 3.1169.0 (EC2 API version 2016-11-15) and EC2's developer guide ("Error codes for the
// Amazon EC2 API", "Ensuring idempotency in Amazon EC2 API requests"): form-encoded POSTs
// (`Action=RunInstances&Version=2016-11-15&…`) signed with SigV4, answered in EC2's XML,
// with errors as <Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>
// <RequestID>…, client errors 4xx and server errors (InsufficientInstanceCapacity,
// InternalError, Unavailable) 5xx.
// Supports RunInstances (ClientToken idempotency, TagSpecification, Placement),
// TerminateInstances, RebootInstances, DescribeInstances (InstanceId.N, Filter.N: tag:K,
// tag-key, instance-state-name, instance-id; MaxResults 5–1000 / NextToken, MaxResults not
// with InstanceId) and DescribeInstanceTypes.
// ClientToken, as the guide describes it: only a RunInstances that succeeded keeps its token
// (per region); a retry with the same parameters returns the original reservation, also
// after the instance terminated; other parameters, except the Availability Zone, are
// IdempotentParameterMismatch. RebootInstances ignores terminated instances (the model's
// documentation); rebooting one that is not running is IncorrectInstanceState (assumed:
// the reference lists the code, not when RebootInstances returns it).
// The region is the one in the request's credential scope; the signature is verified
// against the configured secret.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { FaultBook, assignEndpoint, type CallContext, type CallRecord, type EndpointOption, type FakeCall, type Fault } from "./faults.ts";

export interface AwsFakeInstanceType {
  name: string;
  vcpus: number;
  gpu?: { name: string; manufacturer: string; count: number; memoryMiB: number };
}

export interface AwsFakeOptions {
  accessKeyId?: string;
  secretAccessKey?: string;
  instanceTypes?: AwsFakeInstanceType[];
  /** Availability zones per region (default us-east-1a–c and us-west-2a–b). */
  zones?: Record<string, string[]>;
  endpoint?: EndpointOption;
  /** pending → running after this long (default 0). */
  bootMs?: number;
  /** shutting-down → terminated after this long (default 0). */
  terminateMs?: number;
  /** DescribeInstanceTypes page size (default 2, to exercise paging). */
  typesPageSize?: number;
}

export type Ec2StateName = "pending" | "running" | "shutting-down" | "terminated" | "stopping" | "stopped";
const STATE_CODES: Record<Ec2StateName, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48, stopping: 64, stopped: 80 };

export interface AwsFakeInstance {
  instanceId: string;
  region: string;
  zone: string;
  instanceType: string;
  imageId: string;
  state: Ec2StateName;
  tags: Map<string, string>;
  clientToken?: string;
  userData?: string;
  publicIp: string;
  privateIp: string;
  sshPort?: number;
  launchedAt: number;
  terminatingSince?: number;
  /** Boots so far: 1 once launched, one more per reboot. */
  boots: number;
}

export interface AwsFakeState {
  instances: Map<string, AwsFakeInstance>;
  /** ClientToken → the instance and a digest of the parameters it was used with. */
  clientTokens: Map<string, { instanceId: string; reservationId: string; digest: string }>;
  instanceTypes: AwsFakeInstanceType[];
  /** Every RunInstances that created an instance, as its decoded parameters. */
  runs: Record<string, string>[];
  calls: CallRecord[];
}

export interface AwsFake {
  url: string;
  accessKeyId: string;
  secretAccessKey: string;
  state: AwsFakeState;
  inject(fault: Fault): () => void;
  clearFaults(): void;
  /** Instances neither terminated nor shutting down. */
  live(): AwsFakeInstance[];
  stop(): Promise<void>;
}

export const DEFAULT_AWS_TYPES: AwsFakeInstanceType[] = [
  { name: "p5.48xlarge", vcpus: 192, gpu: { name: "H100", manufacturer: "NVIDIA", count: 8, memoryMiB: 81_920 } },
  { name: "p4d.24xlarge", vcpus: 96, gpu: { name: "A100", manufacturer: "NVIDIA", count: 8, memoryMiB: 40_960 } },
  { name: "m7i.large", vcpus: 2 },
  { name: "g5.xlarge", vcpus: 4, gpu: { name: "A10G", manufacturer: "NVIDIA", count: 1, memoryMiB: 24_576 } },
];

const DEFAULT_ZONES: Record<string, string[]> = {
  "us-east-1": ["us-east-1a", "us-east-1b", "us-east-1c"],
  "us-west-2": ["us-west-2a", "us-west-2b"],
};

const ACTIONS: Record<string, FakeCall> = {
  RunInstances: "launch",
  TerminateInstances: "terminate",
  RebootInstances: "reboot",
  DescribeInstances: "list",
  DescribeInstanceTypes: "types",
};

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** `<tag>…</tag>` from text or nested elements. */
function el(tag: string, ...children: (string | number | undefined)[]): string {
  return `<${tag}>${children.filter((c) => c !== undefined).join("")}</${tag}>`;
}
const text = (tag: string, value: string | number) => el(tag, esc(String(value)));
const items = (tag: string, list: string[]) => el(tag, ...list.map((x) => el("item", x)));

function xmlResponse(action: string, body: string, requestId: string): Response {
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">${text("requestId", requestId)}${body}</${action}Response>`,
    { status: 200, headers: { "content-type": "text/xml;charset=UTF-8" } },
  );
}

function errorResponse(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  const requestId = crypto.randomUUID();
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>${text("Code", code)}${text("Message", message)}</Error></Errors>${text("RequestID", requestId)}</Response>`,
    { status, headers: { "content-type": "text/xml;charset=UTF-8", ...headers } },
  );
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();

type SigCheck = { ok: true; region: string } | { ok: false; code: "AuthFailure" | "SignatureDoesNotMatch"; message: string };

/** Verifies an AWS4-HMAC-SHA256 signature on a query-protocol POST. */
function verifySignature(req: Request, body: string, accessKeyId: string, secret: string): SigCheck {
  const auth = req.headers.get("authorization") ?? "";
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (m === null) return { ok: false, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials" };
  const [, keyId, date, region, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string, string];
  if (keyId !== accessKeyId) return { ok: false, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials" };
  const amzDate = req.headers.get("x-amz-date") ?? "";
  const payloadHash = sha256(body);
  const declared = req.headers.get("x-amz-content-sha256");
  if (declared !== null && declared !== payloadHash)
    return { ok: false, code: "SignatureDoesNotMatch", message: "The request body does not match its declared hash." };
  const url = new URL(req.url);
  const canonicalHeaders = signedHeaders
    .split(";")
    .map((h) => `${h}:${(req.headers.get(h) ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const canonicalRequest = [req.method, url.pathname || "/", url.search.slice(1), canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), "aws4_request");
  const expected = Buffer.from(hmac(signingKey, stringToSign).toString("hex"));
  if (!timingSafeEqual(expected, Buffer.from(signature))) {
    return { ok: false, code: "SignatureDoesNotMatch", message: "The request signature we calculated does not match the signature you provided." };
  }
  return { ok: true, region };
}

export function startAwsFake(options: AwsFakeOptions = {}): AwsFake {
  const accessKeyId = options.accessKeyId ?? "AKIAFAKEEC2NAVARCH01";
  const secretAccessKey = options.secretAccessKey ?? "fake/Secret+Access/Key0000000000000000000";
  const zonesByRegion = options.zones ?? DEFAULT_ZONES;
  const faults = new FaultBook();
  const state: AwsFakeState = {
    instances: new Map(),
    clientTokens: new Map(),
    instanceTypes: options.instanceTypes ?? DEFAULT_AWS_TYPES,
    runs: [],
    calls: [],
  };
  let seq = 0;

  function settle(now = Date.now()): void {
    for (const inst of state.instances.values()) {
      if (inst.state === "pending" && now - inst.launchedAt >= (options.bootMs ?? 0)) inst.state = "running";
      if (inst.state === "shutting-down" && now - (inst.terminatingSince ?? now) >= (options.terminateMs ?? 0)) inst.state = "terminated";
    }
  }

  /** The fields of one instancesSet item. */
  function instanceXml(inst: AwsFakeInstance): string {
    const running = inst.state !== "terminated";
    return [
      text("instanceId", inst.instanceId),
      text("imageId", inst.imageId),
      el("instanceState", text("code", STATE_CODES[inst.state]), text("name", inst.state)),
      text("privateDnsName", running ? `ip-${inst.privateIp.replaceAll(".", "-")}.ec2.internal` : ""),
      text("dnsName", ""),
      text("amiLaunchIndex", 0),
      text("instanceType", inst.instanceType),
      text("launchTime", new Date(inst.launchedAt).toISOString()),
      el("placement", text("availabilityZone", inst.zone), text("groupName", ""), text("tenancy", "default")),
      el("monitoring", text("state", "disabled")),
      running ? text("privateIpAddress", inst.privateIp) : undefined,
      running && inst.state !== "pending" ? text("ipAddress", inst.publicIp) : undefined,
      inst.clientToken === undefined ? undefined : text("clientToken", inst.clientToken),
      inst.tags.size === 0
        ? undefined
        : items(
            "tagSet",
            [...inst.tags].map(([k, val]) => text("key", k) + text("value", val)),
          ),
      text("architecture", "x86_64"),
      text("rootDeviceType", "ebs"),
      text("rootDeviceName", "/dev/sda1"),
    ]
      .filter((x) => x !== undefined)
      .join("");
  }

  function reservationXml(reservationId: string, list: AwsFakeInstance[]): string {
    return text("reservationId", reservationId) + text("ownerId", "123456789012") + el("groupSet") + items("instancesSet", list.map(instanceXml));
  }

  function faultResponse(fault: Fault): Response | undefined {
    switch (fault.kind) {
      case "capacity":
        return errorResponse(
          500,
          "InsufficientInstanceCapacity",
          "We currently do not have sufficient capacity in the Availability Zone you requested. Our system will be working on provisioning additional capacity.",
        );
      case "quota":
        return errorResponse(
          400,
          fault.code ?? "VcpuLimitExceeded",
          "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
        );
      case "rate_limit":
        return errorResponse(
          503,
          "RequestLimitExceeded",
          "Request limit exceeded.",
          fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) },
        );
      case "server_error": {
        const status = fault.status ?? 500;
        if (status === 502) return new Response("<html><body>502 Bad Gateway</body></html>", { status, headers: { "content-type": "text/html" } });
        return errorResponse(
          status,
          status === 503 ? "Unavailable" : "InternalError",
          status === 503 ? "The server is overloaded and can't handle the request." : "An internal error has occurred.",
        );
      }
      case "auth":
        return errorResponse(401, "AuthFailure", "AWS was not able to validate the provided access credentials");
      case "latency":
      case "lose_response":
        return undefined;
    }
  }

  /** `Prefix.1`, `Prefix.2`, … */
  function indexed(params: URLSearchParams, prefix: string): string[] {
    const out: string[] = [];
    for (let i = 1; params.has(`${prefix}.${i}`); i++) out.push(params.get(`${prefix}.${i}`)!);
    return out;
  }

  function filtersOf(params: URLSearchParams): { name: string; values: string[] }[] {
    const out: { name: string; values: string[] }[] = [];
    for (let i = 1; params.has(`Filter.${i}.Name`); i++) out.push({ name: params.get(`Filter.${i}.Name`)!, values: indexed(params, `Filter.${i}.Value`) });
    return out;
  }

  function matchesFilter(inst: AwsFakeInstance, filter: { name: string; values: string[] }): boolean {
    // EC2 wildcards: * any run, ? one character; a backslash escapes either (and itself).
    const wildcard = (pattern: string, value: string) => {
      let re = "";
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i]!;
        if (c === "\\" && i + 1 < pattern.length) re += pattern[++i]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        else if (c === "*") re += ".*";
        else if (c === "?") re += ".";
        else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
      }
      return new RegExp(`^${re}$`, "s").test(value);
    };
    const matchesAny = (value: string | undefined) => value !== undefined && filter.values.some((p) => wildcard(p, value));
    if (filter.name.startsWith("tag:")) return matchesAny(inst.tags.get(filter.name.slice(4)));
    switch (filter.name) {
      case "tag-key":
        return [...inst.tags.keys()].some((k) => matchesAny(k));
      case "instance-state-name":
        return matchesAny(inst.state);
      case "instance-id":
        return matchesAny(inst.instanceId);
      case "instance-type":
        return matchesAny(inst.instanceType);
      case "availability-zone":
        return matchesAny(inst.zone);
      default:
        return false;
    }
  }

  function run(params: URLSearchParams, region: string, lose: boolean): Response {
    const requestId = crypto.randomUUID();
    const invalid = (message: string, code = "InvalidParameterValue") => errorResponse(400, code, message);
    const imageId = params.get("ImageId");
    const instanceType = params.get("InstanceType");
    const min = params.get("MinCount");
    const max = params.get("MaxCount");
    if (imageId === null) return invalid("The request must contain the parameter ImageId", "MissingParameter");
    if (instanceType === null) return invalid("The request must contain the parameter InstanceType", "MissingParameter");
    if (min !== "1" || max !== "1") return invalid("This fake launches exactly one instance per call (MinCount = MaxCount = 1).");
    const clientToken = params.get("ClientToken") ?? undefined;
    if (clientToken !== undefined && (clientToken.length > 64 || !/^[\x20-\x7e]+$/.test(clientToken))) {
      return invalid("Value for parameter ClientToken is invalid: it must be at most 64 ASCII characters.");
    }
    // The Availability Zone may differ on a retry (the guide: parameters other than the Region or AZ).
    const digestParams = new URLSearchParams(
      [...params].filter(([k]) => k !== "ClientToken" && k !== "Placement.AvailabilityZone").sort(([a], [b]) => a.localeCompare(b)),
    );
    const digest = sha256(digestParams.toString());
    if (clientToken !== undefined) {
      const earlier = state.clientTokens.get(`${region}/${clientToken}`);
      if (earlier !== undefined) {
        if (earlier.digest !== digest) {
          return errorResponse(
            400,
            "IdempotentParameterMismatch",
            "The client token you have provided is associated with a resource that is already deleted or uses different parameters. Please use a different client token.",
          );
        }
        settle();
        const inst = state.instances.get(earlier.instanceId)!;
        return xmlResponse("RunInstances", reservationXml(earlier.reservationId, [inst]), requestId);
      }
    }
    const type = state.instanceTypes.find((t) => t.name === instanceType);
    if (type === undefined) return invalid(`The instance type '${instanceType}' does not exist`);
    const zones = zonesByRegion[region] ?? [];
    const zone = params.get("Placement.AvailabilityZone") ?? zones[0];
    if (zone === undefined || !zones.includes(zone)) return invalid(`Invalid availability zone: [${zone ?? ""}]`);
    const tags = new Map<string, string>();
    for (let i = 1; params.has(`TagSpecification.${i}.ResourceType`); i++) {
      if (params.get(`TagSpecification.${i}.ResourceType`) !== "instance") continue;
      for (let j = 1; params.has(`TagSpecification.${i}.Tag.${j}.Key`); j++) {
        const key = params.get(`TagSpecification.${i}.Tag.${j}.Key`)!;
        if (key.startsWith("aws:")) return invalid("Tag keys starting with 'aws:' are reserved for internal use");
        tags.set(key, params.get(`TagSpecification.${i}.Tag.${j}.Value`) ?? "");
      }
    }
    seq += 1;
    const endpoint = assignEndpoint(options.endpoint, seq, () => `198.51.100.${seq % 250}`);
    const inst: AwsFakeInstance = {
      instanceId: `i-${randomBytes(8).toString("hex").slice(0, 17)}`,
      region,
      zone,
      instanceType,
      imageId: imageId.startsWith("resolve:ssm:") ? "ami-0fakeubuntu2204" : imageId,
      state: "pending",
      tags,
      ...(clientToken === undefined ? {} : { clientToken }),
      ...(params.has("UserData") ? { userData: params.get("UserData")! } : {}),
      publicIp: endpoint.address,
      privateIp: `172.31.0.${(seq % 250) + 2}`,
      ...(endpoint.sshPort === undefined ? {} : { sshPort: endpoint.sshPort }),
      launchedAt: Date.now(),
      boots: 1,
    };
    state.instances.set(inst.instanceId, inst);
    const reservationId = `r-${randomBytes(8).toString("hex").slice(0, 17)}`;
    if (clientToken !== undefined) state.clientTokens.set(`${region}/${clientToken}`, { instanceId: inst.instanceId, reservationId, digest });
    state.runs.push(Object.fromEntries(params));
    if (lose) return new Response("upstream connection reset", { status: 502 });
    // RunInstances answers with the instance as it was launched: pending.
    return xmlResponse("RunInstances", reservationXml(reservationId, [inst]), requestId);
  }

  function describe(params: URLSearchParams, region: string): Response {
    settle();
    const ids = indexed(params, "InstanceId");
    const filters = filtersOf(params);
    if (params.has("MaxResults")) {
      const max = Number(params.get("MaxResults"));
      if (ids.length > 0) return errorResponse(400, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults");
      if (!Number.isInteger(max) || max < 5 || max > 1000)
        return errorResponse(
          400,
          "InvalidParameterValue",
          `Value ( ${params.get("MaxResults")} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`,
        );
    }
    for (const id of ids) {
      if (!/^i-[0-9a-f]{8,17}$/.test(id)) return errorResponse(400, "InvalidInstanceID.Malformed", `Invalid id: "${id}"`);
      const inst = state.instances.get(id);
      if (inst === undefined || inst.region !== region) return errorResponse(400, "InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
    }
    let list = [...state.instances.values()].filter((i) => i.region === region);
    if (ids.length > 0) list = list.filter((i) => ids.includes(i.instanceId));
    list = list.filter((i) => filters.every((f) => matchesFilter(i, f)));
    const maxResults = Number(params.get("MaxResults") ?? "1000");
    const offset = Number(params.get("NextToken") ?? "0");
    const page = list.slice(offset, offset + maxResults);
    const next = offset + maxResults < list.length ? String(offset + maxResults) : undefined;
    const reservations = page.map((inst) => reservationXml(`r-${inst.instanceId.slice(2)}`, [inst]));
    return xmlResponse("DescribeInstances", items("reservationSet", reservations) + (next === undefined ? "" : text("nextToken", next)), crypto.randomUUID());
  }

  function terminate(params: URLSearchParams, region: string, lose: boolean): Response {
    settle();
    const ids = indexed(params, "InstanceId");
    if (ids.length === 0) return errorResponse(400, "MissingParameter", "The request must contain the parameter InstanceId");
    for (const id of ids) {
      const inst = state.instances.get(id);
      if (inst === undefined || inst.region !== region) return errorResponse(400, "InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
    }
    const now = Date.now();
    const changes = ids.map((id) => {
      const inst = state.instances.get(id)!;
      const previous = inst.state;
      if (inst.state !== "terminated" && inst.state !== "shutting-down") {
        inst.state = "shutting-down";
        inst.terminatingSince = now;
      }
      return (
        text("instanceId", id) +
        el("currentState", text("code", STATE_CODES[inst.state]), text("name", inst.state)) +
        el("previousState", text("code", STATE_CODES[previous]), text("name", previous))
      );
    });
    settle(now);
    if (lose) return new Response("upstream connection reset", { status: 502 });
    return xmlResponse("TerminateInstances", items("instancesSet", changes), crypto.randomUUID());
  }

  function reboot(params: URLSearchParams, region: string, lose: boolean): Response {
    settle();
    const ids = indexed(params, "InstanceId");
    if (ids.length === 0) return errorResponse(400, "MissingParameter", "The request must contain the parameter InstanceId");
    for (const id of ids) {
      if (!/^i-[0-9a-f]{8,17}$/.test(id)) return errorResponse(400, "InvalidInstanceID.Malformed", `Invalid id: "${id}"`);
      const inst = state.instances.get(id);
      if (inst === undefined || inst.region !== region) return errorResponse(400, "InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
      if (inst.state !== "running" && inst.state !== "terminated") {
        return errorResponse(400, "IncorrectInstanceState", `The instance '${id}' is not in a state from which it can be rebooted.`);
      }
    }
    // Terminated instances are ignored; the others boot again and stay running.
    for (const id of ids) {
      const inst = state.instances.get(id)!;
      if (inst.state === "running") inst.boots += 1;
    }
    if (lose) return new Response("upstream connection reset", { status: 502 });
    return xmlResponse("RebootInstances", text("return", "true"), crypto.randomUUID());
  }

  function describeTypes(params: URLSearchParams): Response {
    const pageSize = Math.min(Number(params.get("MaxResults") ?? "100"), options.typesPageSize ?? 2);
    const offset = Number(params.get("NextToken") ?? "0");
    const page = state.instanceTypes.slice(offset, offset + pageSize);
    const next = offset + pageSize < state.instanceTypes.length ? String(offset + pageSize) : undefined;
    const typeXml = page.map((t) =>
      [
        text("instanceType", t.name),
        el("vCpuInfo", text("defaultVCpus", t.vcpus)),
        t.gpu === undefined
          ? ""
          : el(
              "gpuInfo",
              items("gpus", [
                text("name", t.gpu.name) +
                  text("manufacturer", t.gpu.manufacturer) +
                  text("count", t.gpu.count) +
                  el("memoryInfo", text("sizeInMiB", t.gpu.memoryMiB)),
              ]),
              text("totalGpuMemoryInMiB", t.gpu.memoryMiB * t.gpu.count),
            ),
      ].join(""),
    );
    return xmlResponse("DescribeInstanceTypes", items("instanceTypeSet", typeXml) + (next === undefined ? "" : text("nextToken", next)), crypto.randomUUID());
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const url = new URL(req.url);
      const body = req.method === "POST" ? await req.text() : "";
      const params = new URLSearchParams(req.method === "POST" ? body : url.search);
      const action = params.get("Action") ?? "";
      const call: FakeCall | "other" = ACTIONS[action] ?? "other";
      const response = await handle(req, body, params, action, call);
      state.calls.push({ call, method: req.method, path: `/?Action=${action}`, status: response.status });
      return response;
    },
  });

  async function handle(req: Request, body: string, params: URLSearchParams, action: string, call: FakeCall | "other"): Promise<Response> {
    const sig = verifySignature(req, body, accessKeyId, secretAccessKey);
    if (!sig.ok) return errorResponse(sig.code === "AuthFailure" ? 401 : 403, sig.code, sig.message);
    if (params.get("Version") !== "2016-11-15") return errorResponse(400, "InvalidParameterValue", "Unsupported API version");
    const region = sig.region;
    const ctx: CallContext = {
      region,
      ...(params.has("InstanceType") ? { instanceType: params.get("InstanceType")! } : {}),
      ...(params.has("Placement.AvailabilityZone") ? { zone: params.get("Placement.AvailabilityZone")! } : {}),
    };
    // A replayed ClientToken gets the original answer before any new fault applies.
    const replay = call === "launch" && params.has("ClientToken") && state.clientTokens.has(`${region}/${params.get("ClientToken")}`);
    const fault = call === "other" || replay ? undefined : await faults.take(call, ctx);
    if (fault !== undefined) {
      const response = faultResponse(fault);
      if (response !== undefined) return response;
    }
    const lose = fault?.kind === "lose_response";
    switch (action) {
      case "RunInstances":
        return run(params, region, lose);
      case "DescribeInstances":
        return describe(params, region);
      case "TerminateInstances":
        return terminate(params, region, lose);
      case "RebootInstances":
        return reboot(params, region, lose);
      case "DescribeInstanceTypes":
        return describeTypes(params);
      default:
        return errorResponse(400, "InvalidAction", `The action ${action} is not valid for this web service.`);
    }
  }

  return {
    url: `http://127.0.0.1:${server.port}`,
    accessKeyId,
    secretAccessKey,
    state,
    inject: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    live: () => {
      settle();
      return [...state.instances.values()].filter((i) => i.state !== "terminated" && i.state !== "shutting-down");
    },
    stop: async () => {
      await server.stop(true);
    },
  };
}
