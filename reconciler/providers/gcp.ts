// Google Compute Engine (compute/v1 REST, as its discovery document describes it):
// instances.insert / delete / get / reset, zones.list, aggregated instance list by label,
// aggregated machine types.
//
// Zones: a launch goes to the pool's zone when it has one. Without one, the region's zones
// come from the API (zones.list, those UP, narrowed to the zones that offer the machine
// type; cached for zoneCacheMs) and are tried in order: a stockout in one zone
// (ZONE_RESOURCE_POOL_EXHAUSTED and friends) moves on to the next; quota and every other
// error stop there (quota is regional).
//
// Idempotency: every insert carries `requestId`, a UUID derived from the operation key,
// the zone and a generation (UUIDv5-style SHA-1), so a retried insert returns the first
// insert's Operation instead of creating a second VM; and the instance name is the
// request's name, so after the requestId window a retry gets 409 alreadyExists and adopts
// the existing instance. An insert whose operation failed created nothing, and GCE would
// replay that failure for as long as it remembers the requestId, so the next attempt in
// that zone uses the next generation's requestId: after a failure seen by this process
// at once, after a restart when the insert answers with an operation already DONE with an
// error (a fresh insert answers PENDING or RUNNING). Before trying several zones, a launch
// looks for an instance of its name in any zone, so a retry after a crash adopts what an
// earlier attempt created elsewhere. The window this leaves: an instance that an insert
// created but the aggregated list does not show yet; it carries the same name and labels,
// so the inventory sweep finds and reaps the extra one.
//
// launch waits for the insert operation, because a stockout (ZONE_RESOURCE_POOL_EXHAUSTED)
// or quota error is often reported only there, not in the HTTP answer.
//
// Instance ids are `<zone>/<name>` (GCE addresses instances by zone and name); a bare
// name is also accepted by get/terminate, which then look it up across zones.
//
// Labels: tags become labels, sanitised to GCE's rules (lowercase letters, digits, `_`
// and `-`, at most 63 characters, keys starting with a letter; longer values keep a hash
// suffix). list() sanitises its query the same way, so tags round-trip through it; the
// tags read back are the sanitised labels.
//
// Credentials: `credentials_env` names a variable holding either an OAuth access token
// or a service-account JSON key; `credentials_file` is a path to a service-account JSON
// key; with neither, the key file GOOGLE_APPLICATION_CREDENTIALS names (as Google's
// client libraries do). A key is exchanged for an access token with a signed JWT (RS256)
// at its token_uri.
// Not implemented: the metadata server (GCE workload identity), authorized-user and
// external-account credentials.
import { createHash, createSign } from "node:crypto";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { GcpProviderConfig } from "../../schema/config.ts";
import { JsonHttp, describeIssues, kindForStatus, normaliseBaseUrl, parseRetryAfter, redact, type EnvLookup, type HttpFailure } from "./http.ts";
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

export const GCP_DEFAULT_BASE_URL = "https://compute.googleapis.com";
const API = "/compute/v1";
const SCOPE = "https://www.googleapis.com/auth/compute";
const DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token";
const DEFAULT_IMAGE = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts";
/** Machine families with GPUs built in (the accelerator-optimised A and G series). */
const DEFAULT_MACHINE_TYPE_FILTER = 'name eq "(a2|a3|a4|a4x|g2|g4)-.*"';

export interface GcpProviderOptions {
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** How long launch waits for the insert operation (default 10 min). */
  operationTimeoutMs?: number;
  /** Boot image (default the Ubuntu 22.04 LTS family). */
  image?: string;
  bootDiskGb?: number;
  /** Network for the instance's interface (default `global/networks/default`). */
  network?: string;
  /** User the launch's SSH key is installed for (`ssh-keys` metadata; default `ubuntu`). */
  sshUser?: string;
  /** The aggregated machine-type filter instanceTypes() uses. */
  machineTypeFilter?: string;
  /** How long a region's discovered zones are reused (default 1 h). */
  zoneCacheMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

// ───────────────────────────── schemas ─────────────────────────────

const GoogleError = v.object({
  error: v.object({
    code: v.optional(v.number()),
    message: v.optional(v.string()),
    status: v.optional(v.string()),
    errors: v.optional(v.array(v.object({ reason: v.optional(v.string()), message: v.optional(v.string()) })), []),
  }),
});

const Operation = v.object({
  name: v.string(),
  status: v.picklist(["PENDING", "RUNNING", "DONE"]),
  targetLink: v.optional(v.string()),
  error: v.optional(v.object({ errors: v.optional(v.array(v.object({ code: v.optional(v.string()), message: v.optional(v.string()) })), []) })),
  httpErrorStatusCode: v.optional(v.number()),
  httpErrorMessage: v.optional(v.string()),
});
type Operation = v.InferOutput<typeof Operation>;

const GceInstance = v.object({
  id: v.optional(v.string()),
  name: v.string(),
  zone: v.string(),
  machineType: v.string(),
  status: v.string(),
  creationTimestamp: v.optional(v.string()),
  labels: v.optional(v.record(v.string(), v.string()), {}),
  networkInterfaces: v.optional(
    v.array(
      v.object({
        networkIP: v.optional(v.string()),
        accessConfigs: v.optional(v.array(v.object({ natIP: v.optional(v.string()) })), []),
      }),
    ),
    [],
  ),
});
type GceInstance = v.InferOutput<typeof GceInstance>;

const ScopedWarning = v.optional(v.object({ code: v.optional(v.string()) }));
const AggregatedInstances = v.object({
  items: v.optional(v.record(v.string(), v.object({ instances: v.optional(v.array(GceInstance), []), warning: ScopedWarning })), {}),
  nextPageToken: v.optional(v.string()),
});
const AggregatedMachineTypes = v.object({
  items: v.optional(
    v.record(
      v.string(),
      v.object({
        machineTypes: v.optional(
          v.array(
            v.object({
              name: v.string(),
              zone: v.optional(v.string()),
              accelerators: v.optional(v.array(v.object({ guestAcceleratorType: v.string(), guestAcceleratorCount: v.number() })), []),
            }),
          ),
          [],
        ),
        warning: ScopedWarning,
      }),
    ),
    {},
  ),
  nextPageToken: v.optional(v.string()),
});

const ZoneList = v.object({
  items: v.optional(
    v.array(
      v.object({
        name: v.string(),
        region: v.optional(v.string()),
        status: v.optional(v.string()),
        deprecated: v.optional(v.object({ state: v.optional(v.string()) })),
      }),
    ),
    [],
  ),
  nextPageToken: v.optional(v.string()),
});

const ServiceAccountKey = v.object({
  type: v.literal("service_account"),
  client_email: v.pipe(v.string(), v.nonEmpty()),
  private_key: v.pipe(v.string(), v.nonEmpty()),
  private_key_id: v.optional(v.string()),
  project_id: v.optional(v.string()),
  token_uri: v.optional(v.string()),
});
type ServiceAccountKey = v.InferOutput<typeof ServiceAccountKey>;
const TokenResponse = v.object({ access_token: v.pipe(v.string(), v.nonEmpty()), expires_in: v.optional(v.number(), 3600) });
const TokenError = v.object({ error: v.string(), error_description: v.optional(v.string()) });

// ───────────────────────────── pure helpers ─────────────────────────────

const NAVARCH_NAMESPACE = "6b3c1d0e-4f5a-4c7b-9e21-0a8d5f3b7c19";

/**
 * The insert's requestId: a UUID (version 5 layout: SHA-1 of a namespace and the name) that
 * is stable for an operation key, a zone and a generation.
 */
export function requestIdFor(key: string, zone: string, generation = 0): string {
  const ns = Buffer.from(NAVARCH_NAMESPACE.replaceAll("-", ""), "hex");
  const bytes = createHash("sha1").update(ns).update(`${key}\n${zone}\n${generation}`, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function sanitiseLabelPart(text: string): string {
  let out = text.toLowerCase().replace(/[^a-z0-9_-]/g, "_");
  if (out.length > 63) out = `${out.slice(0, 54)}-${createHash("sha256").update(text).digest("hex").slice(0, 8)}`;
  return out;
}

/** A GCE label key for a tag key: lowercase, allowed characters, starts with a letter, ≤ 63. */
export function labelKey(key: string): string {
  const out = sanitiseLabelPart(key);
  return /^[a-z]/.test(out) ? out : sanitiseLabelPart(`k-${key}`);
}

/** A GCE label value for a tag value. */
export function labelValue(value: string): string {
  return sanitiseLabelPart(value);
}

export function toLabels(tags: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) labels[labelKey(key)] = labelValue(value);
  return labels;
}

const OPERATION_CODE_KINDS: Record<string, ProviderErrorKind> = {
  ZONE_RESOURCE_POOL_EXHAUSTED: "capacity",
  ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: "capacity",
  RESOURCE_POOL_EXHAUSTED: "capacity",
  STOCKOUT: "capacity",
  QUOTA_EXCEEDED: "quota",
  RATE_LIMIT_EXCEEDED: "rate_limit",
  RESOURCE_OPERATION_RATE_EXCEEDED: "rate_limit",
  RESOURCE_NOT_FOUND: "not_found",
  NOT_FOUND: "not_found",
  PERMISSION_DENIED: "auth",
  FORBIDDEN: "auth",
  INVALID_USAGE: "invalid",
  INVALID_FIELD_VALUE: "invalid",
  BAD_REQUEST: "invalid",
  UNSUPPORTED_OPERATION: "invalid",
  CONDITION_NOT_MET: "invalid",
  INTERNAL_ERROR: "transient",
  UNAVAILABLE: "transient",
  TIMEOUT: "transient",
};

/** The ProviderError for a finished operation with an error, or undefined when it succeeded. */
export function operationError(op: Operation): ProviderError | undefined {
  const errors = op.error?.errors ?? [];
  if (op.status !== "DONE" || (errors.length === 0 && op.error === undefined)) return undefined;
  let kind: ProviderErrorKind | undefined;
  for (const e of errors) {
    kind = e.code === undefined ? undefined : OPERATION_CODE_KINDS[e.code];
    if (kind !== undefined) break;
  }
  kind ??= op.httpErrorStatusCode === undefined ? "invalid" : kindForStatus(op.httpErrorStatusCode);
  const detail = errors.map((e) => [e.code, e.message].filter((x) => x !== undefined).join(": ")).join("; ");
  return new ProviderError("gcp", kind, `operation ${op.name} failed: ${detail || op.httpErrorMessage || "unknown error"}`);
}

const REASON_KINDS: Record<string, ProviderErrorKind> = {
  rateLimitExceeded: "rate_limit",
  userRateLimitExceeded: "rate_limit",
  RATE_LIMIT_EXCEEDED: "rate_limit",
  quotaExceeded: "quota",
  QUOTA_EXCEEDED: "quota",
  ZONE_RESOURCE_POOL_EXHAUSTED: "capacity",
  ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: "capacity",
  resourceExhausted: "capacity",
  authError: "auth",
  forbidden: "auth",
  insufficientPermissions: "auth",
  accessNotConfigured: "auth",
  notFound: "not_found",
  invalid: "invalid",
  badRequest: "invalid",
  required: "invalid",
  alreadyExists: "invalid",
  conditionNotMet: "invalid",
  backendError: "transient",
  internalError: "transient",
  resourceNotReady: "transient", // e.g. a delete while the instance is still being created or deleted
};

/** Maps a Google error response (`{"error": {code, message, errors: [{reason}], status}}`). */
export function mapGoogleError(failure: HttpFailure): ProviderError {
  const parsed = v.safeParse(GoogleError, failure.body);
  const reasons = parsed.success ? parsed.output.error.errors.map((e) => e.reason).filter((r) => r !== undefined) : [];
  let kind: ProviderErrorKind | undefined;
  for (const reason of reasons) {
    kind = REASON_KINDS[reason];
    if (kind !== undefined) break;
  }
  if (failure.status === 429) kind = kind === "quota" ? "quota" : "rate_limit";
  else if (failure.status === 401) kind = "auth";
  else if (failure.status >= 500 && kind !== "capacity") kind = "transient";
  kind ??= kindForStatus(failure.status);
  const message = parsed.success ? (parsed.output.error.message ?? "") : textPrefix(failure.text.replace(/\s+/g, " ").trim(), 200);
  const label = [parsed.success ? parsed.output.error.status : undefined, reasons[0]].filter((x) => x !== undefined).join(" ");
  return new ProviderError(
    "gcp",
    kind,
    `${failure.method} ${failure.path}: HTTP ${failure.status}${label ? ` ${label}` : ""}${message ? `: ${message}` : ""}`,
    failure.retryAfterSeconds,
  );
}

const STATES: Record<string, InstanceState> = {
  // Flex-start instances wait in PENDING for capacity.
  PENDING: "pending",
  PROVISIONING: "pending",
  STAGING: "pending",
  RUNNING: "running",
  REPAIRING: "unknown",
  STOPPING: "stopping",
  PENDING_STOP: "stopping",
  DEPROVISIONING: "stopping",
  SUSPENDING: "stopping",
  SUSPENDED: "stopping",
  STOPPED: "stopping",
  // GCE's TERMINATED is a stopped VM that still exists (and can be started again).
  TERMINATED: "stopping",
};

function lastSegment(url: string): string {
  return url.slice(url.lastIndexOf("/") + 1);
}

/** `us-central1-a` → `us-central1`. */
function regionOfZone(zone: string): string {
  return zone.replace(/-[a-z]$/, "");
}

const NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Replayed failures one insert walks past before it gives up (each replay is one quick call). */
const MAX_REPLAYED_GENERATIONS = 50;

// ───────────────────────────── credentials ─────────────────────────────

type Credentials = { kind: "token"; token: string } | { kind: "service_account"; key: ServiceAccountKey };

// ───────────────────────────── provider ─────────────────────────────

export class GcpProvider implements Provider {
  readonly name = "gcp";
  private readonly http: JsonHttp;
  private readonly now: () => number;
  private readonly doFetch: typeof fetch;
  private cachedToken: { token: string; expiresAt: number } | undefined;
  private fileKey: { path: string; key: ServiceAccountKey } | undefined;
  /** Discovered zones per region and machine type. */
  private readonly zoneCache = new Map<string, { zones: string[]; expiresAt: number }>();
  /** The requestId generation each (operation key, zone) is at; see the comment at the top. */
  private readonly generations = new Map<string, number>();
  private secretsSeen = new Set<string>();

  constructor(
    private readonly config: GcpProviderConfig,
    private readonly env: EnvLookup,
    private readonly options: GcpProviderOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.doFetch = options.fetch ?? fetch;
    this.http = new JsonHttp({
      provider: this.name,
      baseUrl: normaliseBaseUrl(config.base_url, GCP_DEFAULT_BASE_URL, API) + API,
      timeoutMs: options.timeoutMs ?? 30_000,
      headers: async () => ({ authorization: `Bearer ${await this.accessToken()}` }),
      secrets: () => this.secrets(),
      mapError: mapGoogleError,
      fetch: this.doFetch,
    });
  }

  // ── Provider ──

  async launch(req: LaunchRequest): Promise<Instance> {
    if (!NAME.test(req.name)) {
      throw this.http.error("invalid", `instance name "${req.name}" is not a valid GCE name (lowercase RFC 1035 label, ≤ 63 characters)`);
    }
    const given = req.zones !== undefined && req.zones.length > 0 ? req.zones : req.zone !== undefined && req.zone !== "" ? [req.zone] : [];
    for (const zone of given) {
      if (regionOfZone(zone) !== req.region) throw this.http.error("invalid", `launch ${req.name}: zone ${zone} is not in region ${req.region}`);
    }
    const zones = given.length > 0 ? given : await this.zonesFor(req.region, req.instanceType);
    if (zones.length > 1) {
      // A retry after a crash: an earlier attempt may have created the instance in any zone.
      const existing = (await this.aggregatedInstances(`name = "${req.name}"`)).find((i) => i.name === req.name);
      if (existing !== undefined) return this.adoptable(this.toInstance(existing), req);
    }
    const stockouts: string[] = [];
    for (const zone of zones) {
      try {
        return await this.launchIn(zone, req);
      } catch (err) {
        if (!(err instanceof ProviderError) || err.kind !== "capacity" || zones.length === 1) throw err;
        stockouts.push(`${zone}: ${err.message.replace(/^gcp: /, "")}`);
      }
    }
    throw this.http.error("capacity", `launch ${req.name}: no zone of ${req.region} has capacity for ${req.instanceType} (${stockouts.join("; ")})`);
  }

  /**
   * A new boot, waited for like an insert: instances.reset for a running instance (a hard
   * reset), instances.start for a stopped one (GCE's TERMINATED), which reset refuses.
   */
  async reboot(id: string): Promise<void> {
    const located = await this.locate(id);
    const instance = located === undefined ? undefined : await this.getRaw(located[0], located[1]);
    if (located === undefined || instance === undefined) throw this.http.error("not_found", `reboot ${id}: no such instance`);
    const [zone, name] = located;
    const zonePath = `/projects/${this.project()}/zones/${encodeURIComponent(zone)}`;
    const verb = instance.status === "TERMINATED" ? "start" : "reset";
    // No requestId: every reboot asked for is a new one, and a 404 is reported, not tolerated.
    const started = await this.http.request("POST", `${zonePath}/instances/${encodeURIComponent(name)}/${verb}`, { schema: Operation });
    const failed = operationError(await this.waitFor(zonePath, started!));
    if (failed !== undefined) throw failed;
  }

  async terminate(id: string): Promise<void> {
    const located = await this.locate(id);
    if (located === undefined) return;
    const [zone, name] = located;
    await this.http.request("DELETE", `/projects/${this.project()}/zones/${encodeURIComponent(zone)}/instances/${encodeURIComponent(name)}`, {
      schema: Operation,
      tolerate: [404],
    });
  }

  instanceOfKubernetesNode(providerId: string): string | undefined {
    const m = /^gce:\/\/([^/]+)\/([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(providerId);
    if (m === null) return undefined;
    let project: string;
    try {
      project = this.project();
    } catch {
      return undefined;
    }
    // Another project's machine is not ours to touch, whatever its name.
    return m[1] === project ? `${m[2]}/${m[3]}` : undefined;
  }

  async get(id: string): Promise<Instance | undefined> {
    const located = await this.locate(id);
    return located === undefined ? undefined : this.getIn(located[0], located[1]);
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    const labels = toLabels(tags);
    const filter = Object.entries(labels)
      .map(([key, value]) => `(labels.${key} = "${value}")`)
      .join(" AND ");
    const raw = await this.aggregatedInstances(filter === "" ? undefined : filter);
    return raw.filter((i) => Object.entries(labels).every(([k, val]) => i.labels[k] === val)).map((i) => this.toInstance(i));
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    const byName = new Map<string, InstanceTypeInfo>();
    let pageToken: string | undefined;
    do {
      const page = await this.http.request("GET", `/projects/${this.project()}/aggregated/machineTypes`, {
        query: { filter: this.options.machineTypeFilter ?? DEFAULT_MACHINE_TYPE_FILTER, maxResults: "500", pageToken },
        schema: AggregatedMachineTypes,
      });
      for (const scoped of Object.values(page!.items)) {
        for (const mt of scoped.machineTypes) {
          const accelerator = mt.accelerators[0];
          if (accelerator === undefined || byName.has(mt.name)) continue;
          byName.set(mt.name, { name: mt.name, gpus: accelerator.guestAcceleratorCount, gpuModel: accelerator.guestAcceleratorType });
        }
      }
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    return [...byName.values()];
  }

  // ── internals ──

  private project(): string {
    const project = this.config.project ?? this.serviceAccount()?.project_id ?? this.env("GOOGLE_CLOUD_PROJECT");
    if (project === undefined || project === "") {
      throw this.http.error("invalid", "no GCP project: set providers.gcp.project (or GOOGLE_CLOUD_PROJECT)");
    }
    return project;
  }

  /**
   * Polls the operation (with operations.wait) until DONE or operationTimeoutMs. A failed
   * poll (5xx, throttling, a timeout) is retried until the deadline: waiting is a read.
   */
  private async waitFor(zonePath: string, op: Operation): Promise<Operation> {
    const budget = this.options.operationTimeoutMs ?? 600_000;
    const deadline = this.now() + budget;
    const perRequest = this.options.timeoutMs ?? 30_000;
    let current = op;
    let failedPolls = 0;
    while (current.status !== "DONE") {
      const left = deadline - this.now();
      if (left <= 0) {
        throw this.http.error(
          "transient",
          `operation ${current.name} still ${current.status} after ${budget} ms; retry the launch with the same key to keep waiting`,
        );
      }
      try {
        // operations.wait returns when the operation is done or after about two minutes.
        const next = await this.http.request("POST", `${zonePath}/operations/${encodeURIComponent(current.name)}/wait`, {
          schema: Operation,
          timeoutMs: Math.min(left, 150_000 + perRequest),
        });
        current = next!;
      } catch (err) {
        if (!(err instanceof ProviderError) || (err.kind !== "transient" && err.kind !== "rate_limit")) throw err;
        failedPolls += 1;
        const backoff = err.retryAfterSeconds === undefined ? Math.min(5000, 100 * 2 ** failedPolls) : err.retryAfterSeconds * 1000;
        const pause = Math.min(Math.max(0, deadline - this.now()), backoff);
        if (pause > 0) await Bun.sleep(pause);
      }
    }
    return current;
  }

  /** One zone's insert: requestId replays, 409 adoption, the operation waited for. */
  private async launchIn(zone: string, req: LaunchRequest): Promise<Instance> {
    const zonePath = `/projects/${this.project()}/zones/${encodeURIComponent(zone)}`;
    const body = {
      name: req.name,
      machineType: `zones/${zone}/machineTypes/${req.instanceType}`,
      labels: toLabels(req.tags),
      disks: [
        {
          boot: true,
          autoDelete: true,
          initializeParams: { sourceImage: this.options.image ?? DEFAULT_IMAGE, diskSizeGb: String(this.options.bootDiskGb ?? 200) },
        },
      ],
      networkInterfaces: [{ network: this.options.network ?? "global/networks/default", accessConfigs: [{ type: "ONE_TO_ONE_NAT", name: "External NAT" }] }],
      // GPU VMs cannot live-migrate.
      scheduling: { onHostMaintenance: "TERMINATE", automaticRestart: true },
      ...(req.sshPublicKey === undefined
        ? {}
        : { metadata: { items: [{ key: "ssh-keys", value: `${this.options.sshUser ?? "ubuntu"}:${req.sshPublicKey.trim()}` }] } }),
    };
    const slot = `${req.idempotencyKey}\n${zone}`;
    let generation = this.generations.get(slot) ?? 0;
    for (let replays = 0; ; replays += 1) {
      const inserted = await this.http.request("POST", `${zonePath}/instances`, {
        query: { requestId: requestIdFor(req.idempotencyKey, zone, generation) },
        body,
        schema: Operation,
        tolerate: [409],
      });
      if (inserted === undefined) {
        // 409 alreadyExists: an earlier attempt (outside the requestId window) created it.
        return this.adopt(zone, req);
      }
      if (inserted.status === "DONE" && operationError(inserted) !== undefined && replays < MAX_REPLAYED_GENERATIONS) {
        // An earlier attempt's failure, replayed: it created nothing, so insert under the next requestId.
        generation += 1;
        this.generations.set(slot, generation);
        continue;
      }
      const failed = operationError(await this.waitFor(zonePath, inserted));
      if (failed !== undefined) {
        this.generations.set(slot, generation + 1);
        throw failed;
      }
      const created = await this.getIn(zone, req.name);
      return (
        created ?? {
          id: `${zone}/${req.name}`,
          name: req.name,
          provider: this.name,
          instanceType: req.instanceType,
          region: req.region,
          zone,
          state: "pending",
          tags: toLabels(req.tags),
        }
      );
    }
  }

  /**
   * The zones of `region` to launch `machineType` in, in order: zones.list's zones of the
   * region that are UP, narrowed to those offering the machine type. Cached for zoneCacheMs.
   */
  private async zonesFor(region: string, machineType: string): Promise<string[]> {
    const key = `${region}\n${machineType}`;
    const cached = this.zoneCache.get(key);
    if (cached !== undefined && cached.expiresAt > this.now()) return cached.zones;
    const project = this.project();
    const inRegion: { name: string; up: boolean }[] = [];
    let pageToken: string | undefined;
    do {
      const page: v.InferOutput<typeof ZoneList> | undefined = await this.http.request("GET", `/projects/${project}/zones`, {
        query: { maxResults: "500", pageToken },
        schema: ZoneList,
      });
      for (const zone of page!.items) {
        if (zone.region === undefined || lastSegment(zone.region) !== region) continue;
        const retired = zone.deprecated?.state === "DELETED" || zone.deprecated?.state === "OBSOLETE";
        if (!retired) inRegion.push({ name: zone.name, up: (zone.status ?? "UP") === "UP" });
      }
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    if (inRegion.length === 0) {
      throw this.http.error(
        "invalid",
        `region ${region} has no zones in project ${project} (set the pool's region to a GCE region like us-central1, or set zones)`,
      );
    }
    const up = inRegion.filter((z) => z.up).map((z) => z.name);
    if (up.length === 0) throw this.http.error("transient", `every zone of ${region} is DOWN (${inRegion.map((z) => z.name).join(", ")})`);
    const offering = new Set<string>();
    pageToken = undefined;
    do {
      const path = `/projects/${project}/aggregated/machineTypes`;
      const page: v.InferOutput<typeof AggregatedMachineTypes> | undefined = await this.http.request("GET", path, {
        query: { filter: `name = "${machineType}"`, maxResults: "500", pageToken },
        schema: AggregatedMachineTypes,
      });
      for (const scoped of Object.values(page!.items)) {
        for (const mt of scoped.machineTypes) if (mt.name === machineType && mt.zone !== undefined) offering.add(lastSegment(mt.zone));
      }
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    const zones = up.filter((z) => offering.has(z)).sort();
    if (zones.length === 0) {
      throw this.http.error("invalid", `machine type ${machineType} is not offered in any zone of ${region} that is UP (${up.sort().join(", ")})`);
    }
    this.zoneCache.set(key, { zones, expiresAt: this.now() + (this.options.zoneCacheMs ?? 3_600_000) });
    return zones;
  }

  private async adopt(zone: string, req: LaunchRequest): Promise<Instance> {
    const existing = await this.getIn(zone, req.name);
    if (existing === undefined) throw this.http.error("transient", `instance ${req.name} exists but cannot be read yet`);
    return this.adoptable(existing, req);
  }

  /** An instance of the launch's name, unless its labels say another operation made it. */
  private adoptable(existing: Instance, req: LaunchRequest): Instance {
    const op = existing.tags[labelKey(TAG_OPERATION)];
    const want = req.tags[TAG_OPERATION];
    if (op !== undefined && want !== undefined && op !== labelValue(want)) {
      throw this.http.error("invalid", `an instance named ${req.name} already exists in ${existing.zone ?? "a zone"} for another operation`);
    }
    return existing;
  }

  private async getIn(zone: string, name: string): Promise<Instance | undefined> {
    const raw = await this.getRaw(zone, name);
    return raw === undefined ? undefined : this.toInstance(raw);
  }

  private getRaw(zone: string, name: string): Promise<GceInstance | undefined> {
    return this.http.request("GET", `/projects/${this.project()}/zones/${encodeURIComponent(zone)}/instances/${encodeURIComponent(name)}`, {
      schema: GceInstance,
      tolerate: [404],
    });
  }

  /** `zone/name` (or a zonal instance URL) → [zone, name]; a bare name is looked up across zones. */
  private async locate(id: string): Promise<[string, string] | undefined> {
    const url = /zones\/([^/]+)\/instances\/([^/]+)$/.exec(id);
    if (url !== null) return [url[1]!, url[2]!];
    const parts = id.split("/");
    if (parts.length === 2 && parts[0] !== "" && parts[1] !== "") return [parts[0]!, parts[1]!];
    if (!NAME.test(id)) return undefined;
    const found = await this.aggregatedInstances(`name = "${id}"`);
    const match = found.find((i) => i.name === id);
    return match === undefined ? undefined : [lastSegment(match.zone), match.name];
  }

  private async aggregatedInstances(filter: string | undefined): Promise<GceInstance[]> {
    const out: GceInstance[] = [];
    let pageToken: string | undefined;
    do {
      const page = await this.http.request("GET", `/projects/${this.project()}/aggregated/instances`, {
        query: { filter, maxResults: "500", pageToken },
        schema: AggregatedInstances,
      });
      for (const scoped of Object.values(page!.items)) out.push(...scoped.instances);
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    return out;
  }

  private toInstance(raw: GceInstance): Instance {
    const zone = lastSegment(raw.zone);
    const nic = raw.networkInterfaces[0];
    const address = nic?.accessConfigs.find((a) => a.natIP !== undefined)?.natIP ?? nic?.networkIP;
    return {
      id: `${zone}/${raw.name}`,
      name: raw.name,
      provider: this.name,
      instanceType: lastSegment(raw.machineType),
      region: regionOfZone(zone),
      zone,
      state: STATES[raw.status] ?? "unknown",
      ...(address === undefined ? {} : { address }),
      tags: { ...raw.labels },
      ...(raw.creationTimestamp === undefined ? {} : { createdAt: raw.creationTimestamp }),
    };
  }

  // ── credentials ──

  private secrets(): string[] {
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
        throw new ProviderError(this.name, "auth", `environment variable ${this.config.credentials_env} (GCP credentials) is not set`);
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
        throw new ProviderError(this.name, "auth", `cannot read the credentials file ${source}: ${err instanceof Error ? err.message : String(err)}`);
      }
      this.fileKey = { path: file, key: this.parseKey(text, source) };
      return { kind: "service_account", key: this.fileKey.key };
    }
    throw new ProviderError(this.name, "auth", "no GCP credentials: set providers.gcp.credentials_env or credentials_file, or GOOGLE_APPLICATION_CREDENTIALS");
  }

  private serviceAccount(): ServiceAccountKey | undefined {
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
      throw new ProviderError(this.name, "auth", `GCP credentials from ${source} are not valid JSON`);
    }
    const parsed = v.safeParse(ServiceAccountKey, json);
    if (!parsed.success) {
      const type = typeof json === "object" && json !== null && "type" in json ? String((json as { type: unknown }).type) : "unknown";
      throw new ProviderError(
        this.name,
        "auth",
        `GCP credentials from ${source} are not a service-account key (type ${type}; only service_account keys and raw access tokens are supported)`,
      );
    }
    return parsed.output;
  }

  private async accessToken(): Promise<string> {
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
      throw new ProviderError(this.name, "auth", `the private key of ${key.client_email} cannot sign (is it a PEM RSA key?)`);
    }
    const assertion = `${header}.${claims}.${signature}`;
    const secrets = [key.private_key, assertion, ...this.secretsSeen];
    const timeoutMs = this.options.timeoutMs ?? 30_000;
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
      throw new ProviderError(this.name, "transient", redact(`token exchange at ${tokenUri}: ${why}`, secrets));
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
        this.name,
        kind,
        redact(`token exchange for ${key.client_email} refused: ${detail}`, secrets),
        parseRetryAfter(response.headers.get("retry-after")),
      );
    }
    const parsed = v.safeParse(TokenResponse, body);
    if (!parsed.success) {
      throw new ProviderError(this.name, "transient", `token exchange: unexpected response (${describeIssues(parsed.issues)})`);
    }
    return { token: parsed.output.access_token, expiresInSeconds: parsed.output.expires_in };
  }
}
