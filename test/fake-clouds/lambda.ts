// A fake Lambda Cloud API on 127.0.0.1, following Lambda's published OpenAPI document
// "Lambda Cloud API" version 1.8.3 (https://cloud.lambda.ai/api/v1/openapi.json):
//   GET  /api/v1/instance-types                   → {data: {<name>: InstanceTypesItem}}
//   GET  /api/v1/instances, /api/v1/instances/{id} → {data: Instance[] | Instance}; 404 global/object-does-not-exist
//   POST /api/v1/instance-operations/launch        → {data: {instance_ids}}; one instance per call
//   POST /api/v1/instance-operations/restart       → {data: {restarted_instances}}; 404 for an unknown id
//   POST /api/v1/instance-operations/terminate     → {data: {terminated_instances}}; 404 for an unknown id
//   GET /api/v1/ssh-keys → {data: SSHKey[]}; POST /api/v1/ssh-keys {name, public_key?}: without a public
//   key Lambda generates the pair and answers its private_key once; DELETE /api/v1/ssh-keys/{id}
// Errors are {"error": {"code", "message", "suggestion"}} with the document's codes and
// statuses: launch 400 (invalid-parameters, insufficient-capacity, quota-exceeded,
// file-system-in-wrong-region), 401 invalid-api-key, 403 account-inactive, 404 for a
// launch resource (an SSH key) that does not exist. The launch body is checked against
// InstanceLaunchRequest: its required fields (region_name, instance_type_name,
// ssh_key_names with exactly one name), the field rules (name ≤ 64, hostname, tag keys
// and lengths) and no fields the document does not define. Not in the document, and
// modelled on common HTTP practice: 429 with Retry-After for throttling, a non-JSON 502.
//
// Instances live in memory; booting → active after `bootMs`; terminate moves them to
// terminating and they vanish (list omits them, get answers 404) after `terminateMs`. A
// restart moves an active or unhealthy instance back to booting and counts a boot; one
// still booting or terminating is left out of restarted_instances, its `actions.restart`
// saying why.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { FaultBook, assignEndpoint, type CallContext, type CallRecord, type EndpointOption, type FakeCall, type Fault } from "./faults.ts";

export interface LambdaFakeType {
  name: string;
  gpus: number;
  /** e.g. "H100 (80 GB SXM5)". */
  gpuDescription: string;
  priceCentsPerHour: number;
  /** Regions with capacity; a launch elsewhere fails with insufficient-capacity. */
  regions: string[];
}

export interface LambdaFakeOptions {
  apiKey?: string;
  instanceTypes?: LambdaFakeType[];
  /** Address (and SSH port, kept in state only) each new instance gets. */
  endpoint?: EndpointOption;
  /** How long an instance stays `booting`; 0 means it is `active` from the start. */
  bootMs?: number;
  /** How long a terminated instance stays `terminating` before it is gone. */
  terminateMs?: number;
  /** False emulates an API without instance tags: `tags` on launch is ignored and never returned. */
  supportsTags?: boolean;
  /** SSH keys registered before the first request (as an operator would in Lambda's console). */
  sshKeys?: { name: string; publicKey: string }[];
}

export type LambdaFakeStatus = "booting" | "active" | "unhealthy" | "terminating" | "terminated";

export interface LambdaFakeInstance {
  id: string;
  name: string | null;
  hostname: string | null;
  status: LambdaFakeStatus;
  ip: string;
  sshPort?: number;
  region: string;
  instanceType: string;
  sshKeyNames: string[];
  userData?: string;
  tags: { key: string; value: string }[];
  launchedAt: number;
  /** Boots so far: 1 after launch, one more per restart. */
  boots: number;
  terminatingSince?: number;
}

export interface LambdaFakeState {
  instances: Map<string, LambdaFakeInstance>;
  sshKeys: Map<string, { id: string; name: string; public_key: string }>;
  types: LambdaFakeType[];
  /** Every launch request body that created an instance, in order. */
  launches: Record<string, unknown>[];
  calls: CallRecord[];
}

export interface LambdaFake {
  url: string;
  apiKey: string;
  state: LambdaFakeState;
  /** Arms a fault; returns a function that disarms it. */
  inject(fault: Fault): () => void;
  clearFaults(): void;
  /** Live (not terminated) instances. */
  live(): LambdaFakeInstance[];
  stop(): Promise<void>;
}

export const DEFAULT_LAMBDA_TYPES: LambdaFakeType[] = [
  { name: "gpu_8x_h100_sxm5", gpus: 8, gpuDescription: "H100 (80 GB SXM5)", priceCentsPerHour: 2392, regions: ["us-west-2", "us-east-1"] },
  { name: "gpu_1x_a10", gpus: 1, gpuDescription: "A10 (24 GB PCIe)", priceCentsPerHour: 75, regions: ["us-west-1", "us-east-1"] },
  { name: "gpu_1x_gh200", gpus: 1, gpuDescription: "GH200 (96 GB)", priceCentsPerHour: 149, regions: [] },
];

/** PublicRegionCode in the document; a Region's description is the code where no example gives one. */
const REGION_CODES = new Set([
  "europe-central-1",
  "asia-south-1",
  "australia-east-1",
  "me-west-1",
  "asia-northeast-1",
  "asia-northeast-2",
  "us-east-1",
  "us-west-2",
  "us-west-1",
  "us-south-1",
  "us-west-3",
  "us-midwest-1",
  "us-east-2",
  "us-south-2",
  "us-south-3",
  "us-east-3",
  "us-midwest-2",
]);
const REGION_DESCRIPTIONS: Record<string, string> = { "us-west-1": "California, USA" };
const region = (name: string) => ({ name, description: REGION_DESCRIPTIONS[name] ?? name });

/** The fields InstanceLaunchRequest defines. */
const LAUNCH_FIELDS = new Set([
  "region_name",
  "instance_type_name",
  "ssh_key_names",
  "file_system_names",
  "file_system_mounts",
  "hostname",
  "name",
  "image",
  "user_data",
  "tags",
  "firewall_rulesets",
]);
const TAG_KEY = /^[a-z][a-z0-9-:]+$/;
const HOSTNAME = /^[a-z0-9][0-9a-z-]{0,62}$/;

function errorBody(code: string, message: string, suggestion?: string) {
  return { error: { code, message, ...(suggestion === undefined ? {} : { suggestion }) } };
}

/** An ed25519 key pair as Lambda answers a generated key: OpenSSH public key, PEM private key. */
/**
 * What `POST /ssh-keys` without a public key makes: an RSA pair, the private key in PEM (the
 * document's GeneratedSSHKey example is `-----BEGIN RSA PRIVATE KEY-----…`), returned once.
 */
function generatedKeyPair(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const field = (bytes: Buffer) => {
    const out = Buffer.alloc(4 + bytes.length);
    out.writeUInt32BE(bytes.length, 0);
    bytes.copy(out, 4);
    return out;
  };
  // An mpint: big-endian, with a zero byte before a leading byte that has its top bit set.
  const mpint = (b64url: string) => {
    const raw = Buffer.from(b64url, "base64url");
    return field((raw[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), raw]) : raw);
  };
  const jwk = publicKey.export({ format: "jwk" });
  const blob = Buffer.concat([field(Buffer.from("ssh-rsa")), mpint(jwk.e!), mpint(jwk.n!)]);
  return { publicKey: `ssh-rsa ${blob.toString("base64")}`, privateKey: privateKey.export({ format: "pem", type: "pkcs1" }).toString() };
}

export function startLambdaFake(options: LambdaFakeOptions = {}): LambdaFake {
  const apiKey = options.apiKey ?? "lambda-test-key";
  const faults = new FaultBook();
  const supportsTags = options.supportsTags ?? true;
  const state: LambdaFakeState = {
    instances: new Map(),
    sshKeys: new Map(),
    types: options.instanceTypes ?? DEFAULT_LAMBDA_TYPES,
    launches: [],
    calls: [],
  };
  for (const key of options.sshKeys ?? []) {
    state.sshKeys.set(key.name, { id: randomBytes(16).toString("hex"), name: key.name, public_key: key.publicKey });
  }
  let seq = 0;

  /** Applies the passage of time: booting → active, terminating → gone. */
  function settle(now = Date.now()): void {
    for (const [id, inst] of state.instances) {
      if (inst.status === "booting" && now - inst.launchedAt >= (options.bootMs ?? 0)) inst.status = "active";
      if (inst.status === "terminating" && now - (inst.terminatingSince ?? now) >= (options.terminateMs ?? 0)) {
        state.instances.delete(id);
      }
    }
  }

  /** InstanceActionAvailability: what can be done to the instance now, and why not. */
  function actions(inst: LambdaFakeInstance) {
    const refused =
      inst.status === "booting"
        ? { available: false, reason_code: "vm-has-not-launched", reason_description: "The instance has not finished launching." }
        : inst.status === "terminating" || inst.status === "terminated"
          ? { available: false, reason_code: "vm-is-terminating", reason_description: "The instance is terminating." }
          : undefined;
    const restart = refused ?? { available: true };
    return {
      migrate: { available: false, reason_code: "vm-is-too-old" },
      rebuild: restart,
      restart,
      cold_reboot: restart,
      terminate: inst.status === "terminating" ? refused! : { available: true },
    };
  }

  function view(inst: LambdaFakeInstance) {
    const type = state.types.find((t) => t.name === inst.instanceType);
    return {
      id: inst.id,
      ...(inst.name === null ? {} : { name: inst.name }),
      ip: inst.ip,
      private_ip: "10.19.0.2",
      status: inst.status,
      ssh_key_names: inst.sshKeyNames,
      file_system_names: [],
      region: region(inst.region),
      instance_type: {
        name: inst.instanceType,
        description: `${type?.gpus ?? 1}x ${type?.gpuDescription ?? "GPU"}`,
        gpu_description: type?.gpuDescription ?? "GPU",
        price_cents_per_hour: type?.priceCentsPerHour ?? 0,
        specs: { vcpus: 26, memory_gib: 200, storage_gib: 1000, gpus: type?.gpus ?? 1 },
      },
      hostname: inst.hostname ?? `${inst.ip.replaceAll(".", "-")}.cloud.lambda.ai`,
      actions: actions(inst),
      ...(supportsTags ? { tags: inst.tags } : {}),
    };
  }

  function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
    return Response.json(body, { status, headers });
  }

  const insufficientCapacity = () =>
    json(
      400,
      errorBody(
        "instance-operations/launch/insufficient-capacity",
        "Not enough capacity to fulfill launch request.",
        "Choose an instance type with more availability, or try again later.",
      ),
    );

  function faultResponse(fault: Fault): Response | undefined {
    switch (fault.kind) {
      case "capacity":
        return insufficientCapacity();
      case "quota":
        return json(400, errorBody(fault.code ?? "global/quota-exceeded", "Quota exceeded.", "Contact Support to increase your quota."));
      case "rate_limit":
        return json(
          429,
          errorBody("global/too-many-requests", "Too many requests."),
          fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) },
        );
      case "server_error": {
        const status = fault.status ?? 500;
        if (status === 500)
          return json(
            500,
            errorBody("global/internal-error", "An internal server error occurred.", "Try again later. Contact Support if the problem persists."),
          );
        return new Response("<html><body>Bad Gateway</body></html>", { status, headers: { "content-type": "text/html" } });
      }
      case "auth":
        return unauthorised();
      case "latency":
      case "lose_response":
        return undefined;
    }
  }

  function unauthorised(): Response {
    return json(
      401,
      errorBody("global/invalid-api-key", "API key was invalid, expired, or deleted.", "Check your API key or create a new one, then try again."),
    );
  }

  /** Bearer <key>, Basic base64(<key>:), or Basic <key> (the document's securitySchemes). */
  function authorised(req: Request): boolean {
    const header = req.headers.get("authorization") ?? "";
    if (header === `Bearer ${apiKey}`) return true;
    if (header.startsWith("Basic ")) {
      const value = header.slice(6);
      if (value === apiKey) return true;
      const decoded = Buffer.from(value, "base64").toString();
      return decoded === `${apiKey}:`;
    }
    return false;
  }

  function classify(method: string, path: string): FakeCall | "other" {
    if (path === "/api/v1/instance-types" && method === "GET") return "types";
    if (path === "/api/v1/instances" && method === "GET") return "list";
    if (path.startsWith("/api/v1/instances/") && method === "GET") return "get";
    if (path === "/api/v1/instance-operations/launch" && method === "POST") return "launch";
    if (path === "/api/v1/instance-operations/restart" && method === "POST") return "reboot";
    if (path === "/api/v1/instance-operations/terminate" && method === "POST") return "terminate";
    if (path === "/api/v1/ssh-keys" || path.startsWith("/api/v1/ssh-keys/")) return "keys";
    return "other";
  }

  async function readJson(req: Request): Promise<Record<string, unknown> | undefined> {
    try {
      const body: unknown = await req.json();
      return typeof body === "object" && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }

  function stringList(value: unknown): string[] | undefined {
    return Array.isArray(value) && value.every((x) => typeof x === "string") ? (value as string[]) : undefined;
  }

  const invalid = (message: string) => json(400, errorBody("global/invalid-parameters", message, "Check the request and try again."));

  async function launch(body: Record<string, unknown>, lose: boolean): Promise<Response> {
    const unknown = Object.keys(body).filter((k) => !LAUNCH_FIELDS.has(k));
    if (unknown.length > 0) return invalid(`Unknown field(s): ${unknown.join(", ")}.`);
    const { region_name, instance_type_name, name, hostname, user_data } = body;
    const sshKeyNames = stringList(body.ssh_key_names);
    if (typeof region_name !== "string" || typeof instance_type_name !== "string" || sshKeyNames === undefined) {
      return invalid("region_name, instance_type_name and ssh_key_names are required.");
    }
    if (!REGION_CODES.has(region_name)) return invalid(`region_name: "${region_name}" is not a valid region code.`);
    if (sshKeyNames.length !== 1) return invalid("Currently, exactly one SSH key must be specified.");
    if (name !== undefined && (typeof name !== "string" || name.length > 64)) return invalid("name must be a string of at most 64 characters.");
    if (hostname !== undefined && (typeof hostname !== "string" || !HOSTNAME.test(hostname))) return invalid("hostname must match ^[a-z0-9][0-9a-z-]{0,62}$.");
    if (user_data !== undefined && (typeof user_data !== "string" || user_data.length > 1_000_000))
      return invalid("user_data must be plain text of at most 1MB.");
    const tags: { key: string; value: string }[] = [];
    if (body.tags !== undefined) {
      if (!Array.isArray(body.tags)) return invalid("tags must be a list.");
      for (const tag of body.tags as unknown[]) {
        const t = tag as { key?: unknown; value?: unknown } | null;
        if (typeof t !== "object" || t === null || typeof t.key !== "string" || typeof t.value !== "string")
          return invalid("each tag needs a key and a value.");
        if (!TAG_KEY.test(t.key) || t.key.length > 55 || t.value.length > 128) return invalid(`tag key "${t.key}" or its value does not match the tag rules.`);
        if (supportsTags) tags.push({ key: t.key, value: t.value });
      }
    }
    const type = state.types.find((t) => t.name === instance_type_name);
    if (type === undefined) return invalid(`Unknown instance type "${instance_type_name}".`);
    const missingKey = sshKeyNames.find((k) => !state.sshKeys.has(k));
    if (missingKey !== undefined) {
      return json(404, errorBody("global/object-does-not-exist", `SSH key "${missingKey}" does not exist.`, "Check the SSH key names, or add the key first."));
    }
    if (!type.regions.includes(region_name)) return insufficientCapacity();
    seq += 1;
    const endpoint = assignEndpoint(options.endpoint, seq, () => `192.0.2.${seq % 250}`);
    const id = randomBytes(16).toString("hex");
    state.instances.set(id, {
      id,
      name: typeof name === "string" ? name : null,
      hostname: typeof hostname === "string" ? hostname : null,
      status: (options.bootMs ?? 0) > 0 ? "booting" : "active",
      ip: endpoint.address,
      ...(endpoint.sshPort === undefined ? {} : { sshPort: endpoint.sshPort }),
      region: region_name,
      instanceType: instance_type_name,
      sshKeyNames,
      ...(typeof user_data === "string" ? { userData: user_data } : {}),
      tags,
      launchedAt: Date.now(),
      boots: 1,
    });
    state.launches.push(body);
    if (lose) return new Response("upstream connection reset", { status: 502 });
    return json(200, { data: { instance_ids: [id] } });
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const url = new URL(req.url);
      const call = classify(req.method, url.pathname);
      const response = await handle(req, url, call);
      state.calls.push({ call, method: req.method, path: url.pathname, status: response.status });
      return response;
    },
  });

  const notFound = () => json(404, errorBody("global/object-does-not-exist", "Specified instance does not exist."));

  async function handle(req: Request, url: URL, call: FakeCall | "other"): Promise<Response> {
    const path = url.pathname;
    const body = req.method === "POST" ? await readJson(req) : undefined;
    const ctx: CallContext =
      call === "launch" && body !== undefined
        ? {
            ...(typeof body.instance_type_name === "string" ? { instanceType: body.instance_type_name } : {}),
            ...(typeof body.region_name === "string" ? { region: body.region_name } : {}),
          }
        : {};
    if (!authorised(req)) return unauthorised();
    const fault = call === "other" ? undefined : await faults.take(call, ctx);
    if (fault !== undefined) {
      const response = faultResponse(fault);
      if (response !== undefined) return response;
    }
    const lose = fault?.kind === "lose_response";
    settle();

    if (call === "types") {
      const data: Record<string, unknown> = {};
      for (const type of state.types) {
        const regions = type.regions.filter((region) => !faults.peekKinds("launch", { instanceType: type.name, region }, ["capacity"]));
        data[type.name] = {
          instance_type: {
            name: type.name,
            description: `${type.gpus}x ${type.gpuDescription}`,
            gpu_description: type.gpuDescription,
            price_cents_per_hour: type.priceCentsPerHour,
            specs: { vcpus: 26 * type.gpus, memory_gib: 225 * type.gpus, storage_gib: 2750, gpus: type.gpus },
          },
          regions_with_capacity_available: regions.map(region),
        };
      }
      return json(200, { data });
    }
    if (call === "list") {
      return json(200, { data: [...state.instances.values()].map(view) });
    }
    if (call === "get") {
      const inst = state.instances.get(decodeURIComponent(path.slice("/api/v1/instances/".length)));
      return inst === undefined ? notFound() : json(200, { data: view(inst) });
    }
    if (call === "launch") {
      if (body === undefined) return invalid("Body must be a JSON object.");
      return launch(body, lose);
    }
    if (call === "reboot" || call === "terminate") {
      const ids = stringList(body?.instance_ids);
      if (ids === undefined || ids.length === 0) return invalid("instance_ids is required.");
      if (ids.some((id) => !state.instances.has(id))) return notFound();
      const now = Date.now();
      const done = [];
      for (const id of ids) {
        const inst = state.instances.get(id)!;
        if (call === "terminate") {
          if (inst.status !== "terminating") {
            inst.status = "terminating";
            inst.terminatingSince = now;
          }
          done.push(view(inst));
        } else if (actions(inst).restart.available) {
          // A restart is a new boot: booting again until bootMs has passed.
          inst.boots += 1;
          inst.launchedAt = now;
          if ((options.bootMs ?? 0) > 0) inst.status = "booting";
          else inst.status = "active";
          done.push(view(inst));
        }
      }
      if (call === "terminate") settle(now);
      if (lose) return new Response("upstream connection reset", { status: 502 });
      return json(200, { data: call === "terminate" ? { terminated_instances: done } : { restarted_instances: done } });
    }
    if (call === "keys" && path === "/api/v1/ssh-keys" && req.method === "GET") {
      return json(200, { data: [...state.sshKeys.values()] });
    }
    if (call === "keys" && path === "/api/v1/ssh-keys" && req.method === "POST") {
      const name = body?.name;
      const publicKey = body?.public_key;
      if (typeof name !== "string" || name === "" || name.length > 64) return invalid("name must be 1 to 64 characters.");
      if (state.sshKeys.has(name)) return invalid("SSH key name already in use.");
      if (publicKey !== undefined && (typeof publicKey !== "string" || publicKey === "" || publicKey.length > 4096))
        return invalid("public_key must be 1 to 4096 characters.");
      const id = randomBytes(16).toString("hex");
      if (publicKey === undefined) {
        // No public key: Lambda generates the pair and returns the private key once.
        const pair = generatedKeyPair();
        state.sshKeys.set(name, { id, name, public_key: pair.publicKey });
        return json(200, { data: { id, name, public_key: pair.publicKey, private_key: pair.privateKey } });
      }
      const key = { id, name, public_key: publicKey };
      state.sshKeys.set(name, key);
      return json(200, { data: key });
    }
    if (call === "keys" && req.method === "DELETE") {
      const id = decodeURIComponent(path.slice("/api/v1/ssh-keys/".length));
      const key = [...state.sshKeys.values()].find((k) => k.id === id);
      if (key === undefined) return invalid(`SSH key ${id} does not exist.`);
      state.sshKeys.delete(key.name);
      return json(200, { data: {} });
    }
    return json(404, errorBody("global/object-does-not-exist", `No route for ${req.method} ${path}.`));
  }

  return {
    url: `http://127.0.0.1:${server.port}`,
    apiKey,
    state,
    inject: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    live: () => {
      settle();
      return [...state.instances.values()].filter((i) => i.status !== "terminating" && i.status !== "terminated");
    },
    stop: async () => {
      await server.stop(true);
    },
  };
}
