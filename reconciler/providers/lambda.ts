// Lambda Cloud (API v1): launch, terminate, get, list and instance types over
// JSON with a bearer API key read from the environment variable the config names.
//
// Idempotency: the launch API has no idempotency token, so launch first lists the
// account's instances and returns the one whose `name` equals the request's name
// (names are derived from the operation key). The window this leaves open: a launch
// whose request reached Lambda but whose instance Lambda does not list yet (or two
// launches with the same name racing) can still create a second instance; it carries
// the same name and tags, so the inventory sweep finds and reaps it.
//
// Tags: instances carry key/value `tags` (sent on launch, read back on list). For
// instances without tags (created elsewhere, or an API that drops them) the optional
// `tagsFromName` derives them from the name instead.
import { createHash } from "node:crypto";
import * as v from "valibot";
import type { LambdaProviderConfig } from "../../schema/config.ts";
import { JsonHttp, kindForStatus, normaliseBaseUrl, type EnvLookup, type HttpFailure } from "./http.ts";
import {
  ProviderError,
  TAG_OPERATION,
  type Instance,
  type InstanceState,
  type InstanceTypeInfo,
  type LaunchRequest,
  type Provider,
  type ProviderErrorKind,
} from "./provider.ts";

export const LAMBDA_DEFAULT_BASE_URL = "https://cloud.lambdalabs.com";
const API = "/api/v1";

export interface LambdaProviderOptions {
  /** An SSH key already registered with Lambda, used when a launch brings no public key. */
  sshKeyName?: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** Tags for instances that carry none, derived from their name. */
  tagsFromName?: (name: string) => Record<string, string> | undefined;
  fetch?: typeof fetch;
}

// ───────────────────────────── response schemas ─────────────────────────────

const ErrorBody = v.object({
  error: v.object({
    code: v.optional(v.string()),
    message: v.optional(v.string()),
    suggestion: v.optional(v.string()),
  }),
});

const Tag = v.object({ key: v.string(), value: v.string() });

const LambdaInstance = v.object({
  id: v.pipe(v.string(), v.nonEmpty()),
  name: v.nullish(v.string()),
  ip: v.nullish(v.string()),
  status: v.string(),
  region: v.nullish(v.object({ name: v.string() })),
  instance_type: v.nullish(v.object({ name: v.string() })),
  tags: v.nullish(v.array(Tag)),
});
type LambdaInstance = v.InferOutput<typeof LambdaInstance>;

const InstanceList = v.object({ data: v.array(LambdaInstance) });
const InstanceOne = v.object({ data: LambdaInstance });
const LaunchResponse = v.object({ data: v.object({ instance_ids: v.pipe(v.array(v.string()), v.minLength(1)) }) });
const TerminateResponse = v.object({ data: v.object({ terminated_instances: v.array(v.unknown()) }) });
const SshKeyList = v.object({ data: v.array(v.object({ name: v.string(), public_key: v.optional(v.string()) })) });
const SshKeyCreated = v.object({ data: v.object({ name: v.string() }) });
const InstanceTypes = v.object({
  data: v.record(
    v.string(),
    v.object({
      instance_type: v.object({
        name: v.string(),
        gpu_description: v.optional(v.string()),
        description: v.optional(v.string()),
        specs: v.optional(v.object({ gpus: v.optional(v.number()) })),
      }),
      regions_with_capacity_available: v.optional(v.array(v.object({ name: v.string() })), []),
    }),
  ),
});

// ───────────────────────────── error mapping ─────────────────────────────

const CODE_KINDS: Record<string, ProviderErrorKind> = {
  "instance-operations/launch/insufficient-capacity": "capacity",
  "global/quota-exceeded": "quota",
  "global/invalid-api-key": "auth",
  "global/account-inactive": "auth",
  "global/forbidden": "auth",
  "global/object-does-not-exist": "not_found",
  "global/not-found": "not_found",
  "global/invalid-parameters": "invalid",
  "global/invalid-address": "invalid",
  "instance-operations/launch/file-system-in-wrong-region": "invalid",
  "global/internal-error": "transient",
  "global/conflict": "transient",
};

export function mapLambdaError(failure: HttpFailure): ProviderError {
  const parsed = v.safeParse(ErrorBody, failure.body);
  const code = parsed.success ? parsed.output.error.code : undefined;
  const detail = parsed.success
    ? [parsed.output.error.message, parsed.output.error.suggestion].filter((x) => x !== undefined).join(" ")
    : failure.text.replace(/\s+/g, " ").trim().slice(0, 200);
  let kind: ProviderErrorKind = (code === undefined ? undefined : CODE_KINDS[code]) ?? kindForStatus(failure.status);
  // The status wins for throttling and outages whatever the body says.
  if (failure.status === 429) kind = "rate_limit";
  else if (failure.status >= 500 && kind !== "capacity") kind = "transient";
  const what = code === undefined ? `HTTP ${failure.status}` : `HTTP ${failure.status} ${code}`;
  return new ProviderError("lambda", kind, `${failure.method} ${failure.path}: ${what}${detail ? `: ${detail}` : ""}`, failure.retryAfterSeconds);
}

// ───────────────────────────── provider ─────────────────────────────

const STATES: Record<string, InstanceState> = {
  booting: "pending",
  active: "running",
  unhealthy: "unknown",
  terminating: "stopping",
  terminated: "terminated",
  preempted: "terminated",
};

export class LambdaProvider implements Provider {
  readonly name = "lambda";
  private readonly http: JsonHttp;
  private readonly knownKeys = new Set<string>();

  constructor(
    private readonly config: LambdaProviderConfig,
    private readonly env: EnvLookup,
    private readonly options: LambdaProviderOptions = {},
  ) {
    this.http = new JsonHttp({
      provider: this.name,
      baseUrl: normaliseBaseUrl(config.base_url, LAMBDA_DEFAULT_BASE_URL, API) + API,
      timeoutMs: options.timeoutMs ?? 30_000,
      headers: async () => ({ authorization: `Bearer ${this.apiKey()}` }),
      secrets: () => {
        const key = this.env(this.config.api_key_env);
        return key === undefined ? [] : [key];
      },
      mapError: mapLambdaError,
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    });
  }

  private apiKey(): string {
    const key = this.env(this.config.api_key_env);
    if (key === undefined || key.trim() === "") {
      throw new ProviderError(this.name, "auth", `environment variable ${this.config.api_key_env} (the API key) is not set`);
    }
    return key.trim();
  }

  async launch(req: LaunchRequest): Promise<Instance> {
    if (req.name.length > 64) throw this.http.error("invalid", `instance name "${req.name}" is longer than 64 characters`);
    for (const [key, value] of Object.entries(req.tags)) {
      if (key.length > 55 || value.length > 128) throw this.http.error("invalid", `tag ${key} is too long for Lambda (key ≤ 55, value ≤ 128 characters)`);
    }

    // No idempotency token: an instance with this name means an earlier attempt got through.
    const existing = (await this.listRaw()).filter((i) => i.name === req.name);
    if (existing.length > 0) {
      const live = existing.find((i) => STATES[i.status] !== "terminated") ?? existing[0]!;
      const instance = this.toInstance(live);
      const op = instance.tags[TAG_OPERATION];
      if (op !== undefined && req.tags[TAG_OPERATION] !== undefined && op !== req.tags[TAG_OPERATION]) {
        throw this.http.error("invalid", `an instance named ${req.name} already exists for another operation`);
      }
      return instance;
    }

    const sshKeyName = await this.sshKeyFor(req.sshPublicKey);
    const body = {
      region_name: req.region,
      instance_type_name: req.instanceType,
      ssh_key_names: [sshKeyName],
      name: req.name,
      quantity: 1,
      tags: Object.entries(req.tags).map(([key, value]) => ({ key, value })),
    };
    const launched = await this.http.request("POST", "/instance-operations/launch", { body, schema: LaunchResponse });
    const id = launched!.data.instance_ids[0]!;
    return {
      id,
      name: req.name,
      provider: this.name,
      instanceType: req.instanceType,
      region: req.region,
      state: "pending",
      tags: { ...req.tags },
    };
  }

  async terminate(id: string): Promise<void> {
    // 404: the instance is already gone, which is what terminate wants.
    await this.http.request("POST", "/instance-operations/terminate", {
      body: { instance_ids: [id] },
      schema: TerminateResponse,
      tolerate: [404],
    });
  }

  async get(id: string): Promise<Instance | undefined> {
    const found = await this.http.request("GET", `/instances/${encodeURIComponent(id)}`, { schema: InstanceOne, tolerate: [404] });
    return found === undefined ? undefined : this.toInstance(found.data);
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    const wanted = Object.entries(tags);
    return (await this.listRaw())
      .map((raw) => this.toInstance(raw))
      .filter((inst) => wanted.every(([key, value]) => inst.tags[key] === value));
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    const types = await this.http.request("GET", "/instance-types", { schema: InstanceTypes });
    return Object.values(types!.data).map(({ instance_type: t, regions_with_capacity_available: regions }) => ({
      name: t.name,
      gpus: t.specs?.gpus ?? gpusFromName(t.name),
      ...(t.gpu_description === undefined ? {} : { gpuModel: t.gpu_description }),
      regionsWithCapacity: regions.map((r) => r.name),
    }));
  }

  private async listRaw(): Promise<LambdaInstance[]> {
    const list = await this.http.request("GET", "/instances", { schema: InstanceList });
    return list!.data;
  }

  private toInstance(raw: LambdaInstance): Instance {
    const name = raw.name ?? "";
    let tags: Record<string, string> = {};
    if (raw.tags !== undefined && raw.tags !== null && raw.tags.length > 0) {
      for (const { key, value } of raw.tags) tags[key] = value;
    } else if (this.options.tagsFromName !== undefined && name !== "") {
      tags = { ...this.options.tagsFromName(name) };
    }
    return {
      id: raw.id,
      name,
      provider: this.name,
      instanceType: raw.instance_type?.name ?? "",
      region: raw.region?.name ?? "",
      state: STATES[raw.status] ?? "unknown",
      ...(raw.ip === undefined || raw.ip === null || raw.ip === "" ? {} : { address: raw.ip }),
      tags,
    };
  }

  /**
   * Lambda installs SSH keys by name. A launch's public key is registered once under a
   * name derived from its fingerprint (`navarch-<12 hex>`) and reused after that.
   */
  private async sshKeyFor(publicKey: string | undefined): Promise<string> {
    if (publicKey === undefined || publicKey.trim() === "") {
      if (this.options.sshKeyName !== undefined) return this.options.sshKeyName;
      throw this.http.error("invalid", "Lambda needs an SSH key: the launch brought no public key and no sshKeyName is configured");
    }
    const normalised = publicKey.trim().split(/\s+/).slice(0, 2).join(" ");
    const name = `navarch-${createHash("sha256").update(normalised).digest("hex").slice(0, 12)}`;
    if (this.knownKeys.has(name)) return name;
    const keys = await this.http.request("GET", "/ssh-keys", { schema: SshKeyList });
    const same = keys!.data.find((k) => k.name === name || (k.public_key !== undefined && k.public_key.trim().split(/\s+/).slice(0, 2).join(" ") === normalised));
    if (same !== undefined) {
      this.knownKeys.add(same.name);
      return same.name;
    }
    const created = await this.http.request("POST", "/ssh-keys", { body: { name, public_key: normalised }, schema: SshKeyCreated });
    this.knownKeys.add(created!.data.name);
    return created!.data.name;
  }
}

/** `gpu_8x_h100_sxm5` → 8, when the API leaves out specs. */
function gpusFromName(name: string): number {
  const match = /_(\d+)x_/.exec(name);
  return match === null ? 0 : Number(match[1]);
}
