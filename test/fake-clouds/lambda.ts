// A fake Lambda Cloud API v1 on 127.0.0.1: the request and response shapes of
// GET /api/v1/instance-types, GET /api/v1/instances[/{id}], POST
// /api/v1/instance-operations/{launch,terminate} and GET/POST /api/v1/ssh-keys, with
// Lambda's error body {"error": {"code", "message", "suggestion"}}. Instances live in
// memory; booting → active after `bootMs`; terminate moves them to terminating and
// they vanish (list omits them, get answers 404) after `terminateMs`.
import { randomBytes } from "node:crypto";
import {
  FaultBook,
  assignEndpoint,
  type CallContext,
  type CallRecord,
  type EndpointOption,
  type FakeCall,
  type Fault,
} from "./faults.ts";

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
}

export type LambdaFakeStatus = "booting" | "active" | "unhealthy" | "terminating" | "terminated";

export interface LambdaFakeInstance {
  id: string;
  name: string | null;
  status: LambdaFakeStatus;
  ip: string;
  sshPort?: number;
  region: string;
  instanceType: string;
  sshKeyNames: string[];
  tags: { key: string; value: string }[];
  launchedAt: number;
  terminatingSince?: number;
}

export interface LambdaFakeState {
  instances: Map<string, LambdaFakeInstance>;
  sshKeys: Map<string, { id: string; name: string; public_key: string }>;
  types: LambdaFakeType[];
  /** Every launch request body that created instances, in order. */
  launches: unknown[];
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

const REGION_DESCRIPTIONS: Record<string, string> = {
  "us-west-1": "California, USA",
  "us-west-2": "Arizona, USA",
  "us-east-1": "Virginia, USA",
};

function errorBody(code: string, message: string, suggestion?: string) {
  return { error: { code, message, ...(suggestion === undefined ? {} : { suggestion }) } };
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

  function view(inst: LambdaFakeInstance) {
    const type = state.types.find((t) => t.name === inst.instanceType);
    return {
      id: inst.id,
      name: inst.name,
      ip: inst.ip,
      private_ip: "10.19.0.2",
      status: inst.status,
      ssh_key_names: inst.sshKeyNames,
      file_system_names: [],
      region: { name: inst.region, description: REGION_DESCRIPTIONS[inst.region] ?? inst.region },
      instance_type: {
        name: inst.instanceType,
        description: `${type?.gpus ?? 1}x ${type?.gpuDescription ?? "GPU"}`,
        gpu_description: type?.gpuDescription ?? "GPU",
        price_cents_per_hour: type?.priceCentsPerHour ?? 0,
        specs: { vcpus: 26, memory_gib: 200, storage_gib: 1000, gpus: type?.gpus ?? 1 },
      },
      hostname: `${inst.ip.replaceAll(".", "-")}.cloud.lambdalabs.com`,
      is_reserved: false,
      ...(supportsTags ? { tags: inst.tags } : {}),
    };
  }

  function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
    return Response.json(body, { status, headers });
  }

  function faultResponse(fault: Fault): Response | undefined {
    switch (fault.kind) {
      case "capacity":
        return json(400, errorBody("instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", "Choose an instance type with more availability, or try again later."));
      case "quota":
        return json(400, errorBody(fault.code ?? "global/quota-exceeded", "Quota exceeded.", "Contact Support to increase your quota."));
      case "rate_limit":
        return json(429, errorBody("global/too-many-requests", "Too many requests."), fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) });
      case "server_error": {
        const status = fault.status ?? 500;
        if (status === 500) return json(500, errorBody("global/internal-error", "An internal error occurred."));
        return new Response("<html><body>Bad Gateway</body></html>", { status, headers: { "content-type": "text/html" } });
      }
      case "auth":
        return json(401, errorBody("global/invalid-api-key", "API key was invalid, expired, or deleted.", "Check your API key or create a new one, then try again."));
      case "latency":
      case "lose_response":
        return undefined;
    }
  }

  function authorised(req: Request): boolean {
    const header = req.headers.get("authorization") ?? "";
    if (header === `Bearer ${apiKey}`) return true;
    if (header.startsWith("Basic ")) {
      const decoded = Buffer.from(header.slice(6), "base64").toString();
      return decoded === `${apiKey}:` || decoded === apiKey;
    }
    return false;
  }

  function classify(method: string, path: string): FakeCall | "other" {
    if (path === "/api/v1/instance-types") return "types";
    if (path === "/api/v1/instances" && method === "GET") return "list";
    if (path.startsWith("/api/v1/instances/") && method === "GET") return "get";
    if (path === "/api/v1/instance-operations/launch") return "launch";
    if (path === "/api/v1/instance-operations/terminate") return "terminate";
    if (path === "/api/v1/ssh-keys") return "keys";
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

  async function launch(body: Record<string, unknown>, lose: boolean): Promise<Response> {
    const invalid = (message: string) => json(400, errorBody("global/invalid-parameters", message, "Check the request and try again."));
    const { region_name, instance_type_name, name } = body;
    const sshKeyNames = stringList(body.ssh_key_names);
    if (typeof region_name !== "string" || typeof instance_type_name !== "string" || sshKeyNames === undefined) {
      return invalid("region_name, instance_type_name and ssh_key_names are required.");
    }
    if (sshKeyNames.length !== 1) return invalid("Exactly one SSH key must be specified.");
    if (!state.sshKeys.has(sshKeyNames[0]!)) return invalid(`SSH key "${sshKeyNames[0]}" does not exist.`);
    if (name !== undefined && name !== null && (typeof name !== "string" || name.length > 64)) return invalid("name must be a string of at most 64 characters.");
    const quantity = body.quantity ?? 1;
    if (typeof quantity !== "number" || !Number.isInteger(quantity) || quantity < 1) return invalid("quantity must be a positive integer.");
    const tags: { key: string; value: string }[] = [];
    if (body.tags !== undefined && supportsTags) {
      if (!Array.isArray(body.tags)) return invalid("tags must be a list.");
      for (const tag of body.tags as unknown[]) {
        const t = tag as { key?: unknown; value?: unknown } | null;
        if (typeof t !== "object" || t === null || typeof t.key !== "string" || typeof t.value !== "string") return invalid("each tag needs a key and a value.");
        if (t.key.length > 55 || t.value.length > 128) return invalid("tag key or value too long.");
        tags.push({ key: t.key, value: t.value });
      }
    }
    const type = state.types.find((t) => t.name === instance_type_name);
    if (type === undefined) return invalid(`Unknown instance type "${instance_type_name}".`);
    if (!type.regions.includes(region_name)) {
      return json(400, errorBody("instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", "Choose an instance type with more availability, or try again later."));
    }
    const ids: string[] = [];
    for (let i = 0; i < quantity; i++) {
      seq += 1;
      const endpoint = assignEndpoint(options.endpoint, seq, () => `192.0.2.${seq % 250}`);
      const id = randomBytes(16).toString("hex");
      state.instances.set(id, {
        id,
        name: typeof name === "string" ? name : null,
        status: (options.bootMs ?? 0) > 0 ? "booting" : "active",
        ip: endpoint.address,
        ...(endpoint.sshPort === undefined ? {} : { sshPort: endpoint.sshPort }),
        region: region_name,
        instanceType: instance_type_name,
        sshKeyNames,
        tags,
        launchedAt: Date.now(),
      });
      ids.push(id);
    }
    state.launches.push(body);
    if (lose) return new Response("upstream connection reset", { status: 502 });
    return json(200, { data: { instance_ids: ids } });
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
    if (!authorised(req)) return faultResponse({ kind: "auth" })!;
    const fault = call === "other" ? undefined : await faults.take(call, ctx);
    if (fault !== undefined) {
      const response = faultResponse(fault);
      if (response !== undefined) return response;
    }
    const lose = fault?.kind === "lose_response";
    settle();

    if (call === "types" && req.method === "GET") {
      const data: Record<string, unknown> = {};
      for (const type of state.types) {
        const regions = type.regions.filter(
          (region) => !faults.peekKinds("launch", { instanceType: type.name, region }, ["capacity"]),
        );
        data[type.name] = {
          instance_type: {
            name: type.name,
            description: `${type.gpus}x ${type.gpuDescription}`,
            gpu_description: type.gpuDescription,
            price_cents_per_hour: type.priceCentsPerHour,
            specs: { vcpus: 26 * type.gpus, memory_gib: 225 * type.gpus, storage_gib: 2750, gpus: type.gpus },
          },
          regions_with_capacity_available: regions.map((name) => ({ name, description: REGION_DESCRIPTIONS[name] ?? name })),
        };
      }
      return json(200, { data });
    }
    if (call === "list") {
      return json(200, { data: [...state.instances.values()].map(view) });
    }
    if (call === "get") {
      const inst = state.instances.get(decodeURIComponent(path.slice("/api/v1/instances/".length)));
      if (inst === undefined) return json(404, errorBody("global/object-does-not-exist", "Specified instance does not exist."));
      return json(200, { data: view(inst) });
    }
    if (call === "launch" && req.method === "POST") {
      if (body === undefined) return json(400, errorBody("global/invalid-parameters", "Body must be a JSON object."));
      return launch(body, lose);
    }
    if (call === "terminate" && req.method === "POST") {
      const ids = stringList(body?.instance_ids);
      if (ids === undefined || ids.length === 0) return json(400, errorBody("global/invalid-parameters", "instance_ids is required."));
      if (ids.some((id) => !state.instances.has(id))) {
        return json(404, errorBody("global/object-does-not-exist", "Specified instance does not exist."));
      }
      const now = Date.now();
      const terminated = ids.map((id) => {
        const inst = state.instances.get(id)!;
        if (inst.status !== "terminating") {
          inst.status = "terminating";
          inst.terminatingSince = now;
        }
        return view(inst);
      });
      settle(now);
      if (lose) return new Response("upstream connection reset", { status: 502 });
      return json(200, { data: { terminated_instances: terminated } });
    }
    if (call === "keys" && req.method === "GET") {
      return json(200, { data: [...state.sshKeys.values()] });
    }
    if (call === "keys" && req.method === "POST") {
      const name = body?.name;
      const publicKey = body?.public_key;
      if (typeof name !== "string" || name === "") return json(400, errorBody("global/invalid-parameters", "name is required."));
      if (state.sshKeys.has(name)) return json(400, errorBody("global/invalid-parameters", "SSH key name already in use."));
      if (typeof publicKey !== "string") return json(400, errorBody("global/invalid-parameters", "Generating keys is not supported by this fake."));
      const key = { id: randomBytes(8).toString("hex"), name, public_key: publicKey };
      state.sshKeys.set(name, key);
      return json(200, { data: key });
    }
    return json(404, errorBody("global/not-found", `No route for ${req.method} ${path}.`));
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
