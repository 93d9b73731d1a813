// Lambda Cloud (the public Cloud API v1, as its OpenAPI document describes it): launch,
// restart, terminate, get, list and instance types over JSON, with a bearer API key read
// from the environment variable the config names.
//
// SSH keys: the launch call requires `ssh_key_names` (exactly one) of a key registered with
// Lambda. Every launch sends the pool's `ssh_key_names`, else `providers.lambda.ssh_key_names`.
// With neither:
// - a pool with setup_commands and ssh_private_key_path registers its bootstrap key
//   (`navarch-<fingerprint>`) and sends that;
// - any other launch lists the account's keys (`GET /ssh-keys`) and sends the key this
//   reconciler created earlier, else the account's one key; with none or several, it creates
//   one named for this reconciler (`POST /ssh-keys` without a public key: Lambda generates the
//   pair and returns the private key once), keeps the private key in the data directory
//   (`lambda-ssh-key`, 0600, its name beside it) and sends that. A pool with setup_commands
//   but no ssh_private_key_path bootstraps with that kept key.
// With configured names and a bootstrap key, the bootstrap key is installed through
// cloud-init `user_data`.
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
//
// Rate limits: Lambda allows about one request a second and one launch per 12 seconds;
// a refusal is a rate_limit error and the pool backs off.
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
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
import { textPrefix } from "../../schema/text.ts";

export const LAMBDA_DEFAULT_BASE_URL = "https://cloud.lambda.ai";
const API = "/api/v1";

/** A pool's own SSH key names, and where the pool is in the config (for messages). */
export interface LambdaPoolKeys {
  /** The pool's key path, e.g. `pools[0]`. */
  path: string;
  sshKeyNames?: readonly string[];
}

export interface LambdaProviderOptions {
  /** Per pool name: its `ssh_key_names` and key path (pools not listed use the provider's default). */
  pools?: ReadonlyMap<string, LambdaPoolKeys>;
  /** The data directory: where the key this reconciler creates in the account is kept. */
  dataDir?: string;
  log?: (line: string) => void;
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
    suggestion: v.optional(v.nullable(v.string())),
  }),
});

const Tag = v.object({ key: v.string(), value: v.string() });

const ActionAvailability = v.object({
  available: v.boolean(),
  reason_code: v.optional(v.string()),
  reason_description: v.optional(v.string()),
});

const LambdaInstance = v.object({
  id: v.pipe(v.string(), v.nonEmpty()),
  name: v.nullish(v.string()),
  ip: v.nullish(v.string()),
  status: v.string(),
  region: v.nullish(v.object({ name: v.string() })),
  instance_type: v.nullish(v.object({ name: v.string() })),
  actions: v.optional(v.object({ restart: v.optional(ActionAvailability) })),
  tags: v.nullish(v.array(Tag)),
});
type LambdaInstance = v.InferOutput<typeof LambdaInstance>;

const InstanceList = v.object({ data: v.array(LambdaInstance) });
const InstanceOne = v.object({ data: LambdaInstance });
const LaunchResponse = v.object({ data: v.object({ instance_ids: v.pipe(v.array(v.string()), v.minLength(1)) }) });
const TerminateResponse = v.object({ data: v.object({ terminated_instances: v.array(v.unknown()) }) });
const RestartResponse = v.object({ data: v.object({ restarted_instances: v.array(v.object({ id: v.string() })) }) });
const SshKeyList = v.object({ data: v.array(v.object({ name: v.string(), public_key: v.optional(v.string()) })) });
const SshKeyCreated = v.object({ data: v.object({ name: v.string(), private_key: v.optional(v.string()) }) });
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
  // A billing address Lambda refuses: an account problem only a human can fix.
  "global/invalid-address": "auth",
  "global/object-does-not-exist": "not_found",
  "global/invalid-parameters": "invalid",
  "global/duplicate": "invalid",
  "instance-operations/launch/file-system-in-wrong-region": "invalid",
  "global/internal-error": "transient",
};

export function mapLambdaError(failure: HttpFailure): ProviderError {
  const parsed = v.safeParse(ErrorBody, failure.body);
  const code = parsed.success ? parsed.output.error.code : undefined;
  const detail = parsed.success
    ? [parsed.output.error.message, parsed.output.error.suggestion].filter((x) => typeof x === "string" && x !== "").join(" ")
    : textPrefix(failure.text.replace(/\s+/g, " ").trim(), 200);
  let kind: ProviderErrorKind = (code === undefined ? undefined : CODE_KINDS[code]) ?? kindForStatus(failure.status);
  // `provider/…` codes come from Lambda's upstream services (outages, exhaustion): retry later.
  if (code?.startsWith("provider/") === true) kind = "transient";
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

/** Why Lambda will not restart an instance now (`actions.restart.reason_code`), as a kind. */
const RESTART_REFUSALS: Record<string, ProviderErrorKind> = {
  "vm-has-not-launched": "transient",
  "vm-is-terminating": "not_found",
  "vm-is-too-old": "invalid",
};

/** Lambda's hostname rule; the instance's name is its hostname when it fits. */
const HOSTNAME = /^[a-z0-9][0-9a-z-]{0,62}$/;

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
    const tags = lambdaTags(req.tags);
    const configured = this.configuredKeyNames(req);

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

    const bootstrapKey = normalisePublicKey(req.sshPublicKey);
    const sshKeyNames = configured ?? [bootstrapKey !== undefined ? await this.registeredKey(bootstrapKey) : await this.accountKey(req.sshOwnKey === true)];
    const body = {
      region_name: req.region,
      instance_type_name: req.instanceType,
      ssh_key_names: sshKeyNames,
      name: req.name,
      ...(HOSTNAME.test(req.name) ? { hostname: req.name } : {}),
      // The configured keys took the one ssh_key_names slot: the bootstrap key comes through cloud-init.
      ...(configured !== undefined && bootstrapKey !== undefined ? { user_data: cloudConfig(bootstrapKey) } : {}),
      tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
    };
    let launched: v.InferOutput<typeof LaunchResponse> | undefined;
    try {
      launched = await this.http.request("POST", "/instance-operations/launch", { body, schema: LaunchResponse });
    } catch (err) {
      // A launch's 404 names a resource of the request (an SSH key, a file system): the config is wrong.
      if (err instanceof ProviderError && err.kind === "not_found") {
        // The key may have been deleted in the console: look again next time.
        this.ownKey = this.anyKey = undefined;
        throw new ProviderError(this.name, "invalid", `${stripProvider(err.message)} (ssh_key_names sent: ${sshKeyNames.join(", ")})`);
      }
      throw err;
    }
    const id = launched!.data.instance_ids[0]!;
    return {
      id,
      name: req.name,
      provider: this.name,
      instanceType: req.instanceType,
      region: req.region,
      state: "pending",
      tags,
    };
  }

  async reboot(id: string): Promise<void> {
    // 404 is an error here: a machine that is gone cannot come back with a new boot.
    const answer = await this.http.request("POST", "/instance-operations/restart", { body: { instance_ids: [id] }, schema: RestartResponse });
    if (answer!.data.restarted_instances.some((i) => i.id === id)) return;
    // Lambda leaves out what it would not restart; the instance's `actions` say why.
    const found = await this.http.request("GET", `/instances/${encodeURIComponent(id)}`, { schema: InstanceOne, tolerate: [404] });
    if (found === undefined) throw this.http.error("not_found", `restart ${id}: the instance does not exist`);
    const refusal = found.data.actions?.restart;
    const code = refusal?.reason_code;
    const kind = (code === undefined ? undefined : RESTART_REFUSALS[code]) ?? "transient";
    const why = [found.data.status, code].filter((x) => x !== undefined).join(", ");
    const detail = refusal?.reason_description ? `: ${refusal.reason_description}` : "";
    throw this.http.error(kind, `restart ${id}: Lambda did not restart it (${why}${detail})`);
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
    return (await this.listRaw()).map((raw) => this.toInstance(raw)).filter((inst) => wanted.every(([key, value]) => inst.tags[key] === value));
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

  /** The key names this launch sends from the config (the pool's, else the provider's), or undefined. */
  private configuredKeyNames(req: LaunchRequest): string[] | undefined {
    const names = this.options.pools?.get(req.pool)?.sshKeyNames ?? this.config.ssh_key_names;
    return names !== undefined && names.length > 0 ? [...names] : undefined;
  }

  /** Where the private key of the key this reconciler created in the account is kept (0600), and its name beside it. */
  private ownKeyPaths(): { key: string; name: string } {
    const dir = this.options.dataDir;
    if (dir === undefined) throw this.http.error("invalid", "no data directory to keep an SSH key in: set ssh_key_names");
    return { key: join(dir, "lambda-ssh-key"), name: join(dir, "lambda-ssh-key.name") };
  }

  /** The name of the key this reconciler keeps, when its private key is there too. */
  private ownKeyName(): string | undefined {
    try {
      const { key, name } = this.ownKeyPaths();
      readFileSync(key);
      return readFileSync(name, "utf8").trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The account's key for a launch no key is configured for: the one this reconciler keeps,
   * else (unless `own` asks for a key whose private half Navarch has) the account's only key,
   * else a key created now. One lookup at a time; the answer is kept.
   */
  private accountKey(own: boolean): Promise<string> {
    const cached = own ? this.ownKey : (this.ownKey ?? this.anyKey);
    if (cached !== undefined) return cached;
    const found = this.findAccountKey(own);
    if (own) this.ownKey = found;
    else this.anyKey = found;
    found.catch(() => {
      if (own) this.ownKey = undefined;
      else this.anyKey = undefined;
    });
    return found;
  }

  private ownKey: Promise<string> | undefined;
  private anyKey: Promise<string> | undefined;

  private async findAccountKey(own: boolean): Promise<string> {
    const keys = (await this.http.request("GET", "/ssh-keys", { schema: SshKeyList }))!.data;
    const mine = this.ownKeyName();
    if (mine !== undefined && keys.some((k) => k.name === mine)) return mine;
    if (!own && keys.length === 1) {
      this.options.log?.(`lambda: no ssh_key_names configured: launching with the account's one SSH key, ${keys[0]!.name}`);
      return keys[0]!.name;
    }
    return this.createOwnKey(keys.length);
  }

  /** Creates a key named for this reconciler; Lambda generates the pair and returns the private key once, which is kept. */
  private async createOwnKey(existing: number): Promise<string> {
    const paths = this.ownKeyPaths();
    const host = hostname()
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .slice(0, 40);
    const name = `navarch-${host}-${randomBytes(3).toString("hex")}`;
    const created = (await this.http.request("POST", "/ssh-keys", { body: { name }, schema: SshKeyCreated }))!.data;
    if (created.private_key === undefined || created.private_key.trim() === "") {
      throw this.http.error("transient", `POST /ssh-keys: Lambda created ${created.name} but returned no private key`);
    }
    // The key first, then its name: a name file always has its key.
    mkdirSync(this.options.dataDir!, { recursive: true, mode: 0o700 });
    for (const [path, text] of [
      [paths.key, created.private_key.endsWith("\n") ? created.private_key : `${created.private_key}\n`],
      [paths.name, `${created.name}\n`],
    ] as const) {
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, path);
    }
    this.options.log?.(
      `lambda: no ssh_key_names configured and the account has ${existing === 0 ? "no SSH key" : `${existing} SSH keys`}: created ${created.name}; its private key is in ${paths.key}`,
    );
    return created.name;
  }

  /** The private key of the key this reconciler keeps (created if needed): SSH bootstrap logs in with it. */
  async sshPrivateKey(): Promise<string> {
    await this.accountKey(true);
    return readFileSync(this.ownKeyPaths().key, "utf8");
  }

  /**
   * Lambda installs SSH keys by name. A bootstrap key is registered once under a name
   * derived from its fingerprint (`navarch-<12 hex>`) and reused after that.
   */
  private async registeredKey(publicKey: string): Promise<string> {
    const name = `navarch-${createHash("sha256").update(publicKey).digest("hex").slice(0, 12)}`;
    if (this.knownKeys.has(name)) return name;
    const keys = await this.http.request("GET", "/ssh-keys", { schema: SshKeyList });
    const same = keys!.data.find((k) => k.name === name || (k.public_key !== undefined && normalisePublicKey(k.public_key) === publicKey));
    if (same !== undefined) {
      this.knownKeys.add(same.name);
      return same.name;
    }
    const created = await this.http.request("POST", "/ssh-keys", { body: { name, public_key: publicKey }, schema: SshKeyCreated });
    this.knownKeys.add(created!.data.name);
    return created!.data.name;
  }
}

/**
 * Tags as Lambda takes them: keys `^[a-z][a-z0-9-:]+$` of at most 55 characters, values of at
 * most 128. A pool's labels (`navarch.dev/tier`) are made to fit (`navarch-dev:tier`), as GCP's
 * labels are; Navarch's own tags already do. What is read back is the fitted form.
 */
export function lambdaTags(tags: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) {
    let k = key
      .toLowerCase()
      .replaceAll("/", ":")
      .replace(/[^a-z0-9:-]/g, "-");
    if (!/^[a-z]/.test(k)) k = `k-${k}`;
    out[k.slice(0, 55)] = value.slice(0, 128);
  }
  return out;
}

/** `type base64` of an OpenSSH public key (the comment dropped), or undefined when blank. */
function normalisePublicKey(publicKey: string | undefined): string | undefined {
  if (publicKey === undefined || publicKey.trim() === "") return undefined;
  return publicKey.trim().split(/\s+/).slice(0, 2).join(" ");
}

/** cloud-init user data that authorises `publicKey` for the image's default user. */
function cloudConfig(publicKey: string): string {
  return `#cloud-config\nssh_authorized_keys:\n  - ${JSON.stringify(publicKey)}\n`;
}

/** ProviderError prefixes its message with the provider; undo that before re-wrapping. */
function stripProvider(message: string): string {
  return message.startsWith("lambda: ") ? message.slice("lambda: ".length) : message;
}

/** `gpu_8x_h100_sxm5` → 8, when the API leaves out specs. */
function gpusFromName(name: string): number {
  const match = /_(\d+)x_/.exec(name);
  return match === null ? 0 : Number(match[1]);
}
