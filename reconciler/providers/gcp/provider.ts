// Google Compute Engine (compute/v1 REST, as its discovery document describes it):
// instances.insert / delete / get / reset, zones.list, aggregated instance list by label,
// aggregated machine types. Beside it: the API's answers (compute-api.ts), what its errors
// mean (errors.ts), credentials and tokens (credentials.ts), tags as labels (labels.ts), the
// insert's requestId (request-id.ts) and zone discovery (zones.ts).
//
// Zones: a launch goes to the pool's zone when it has one. Without one, the region's zones
// come from the API (zones.ts) and are tried in order: a stockout in one zone
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
import type { GcpProviderConfig } from "../../../schema/config.ts";
import { JsonHttp, normaliseBaseUrl, type EnvLookup } from "../http.ts";
import { ProviderError, TAG_OPERATION, type Instance, type InstanceState, type InstanceTypeInfo, type LaunchRequest, type Provider } from "../provider.ts";
import { AggregatedInstances, AggregatedMachineTypes, GceInstance, Operation, lastSegment } from "./compute-api.ts";
import { GcpCredentials } from "./credentials.ts";
import { mapGoogleError, operationError } from "./errors.ts";
import { labelKey, labelValue, toLabels } from "./labels.ts";
import { requestIdFor } from "./request-id.ts";
import { GcpZones } from "./zones.ts";

const GCP_DEFAULT_BASE_URL = "https://compute.googleapis.com";
const API = "/compute/v1";
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

/** `us-central1-a` → `us-central1`. */
function regionOfZone(zone: string): string {
  return zone.replace(/-[a-z]$/, "");
}

const NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Replayed failures one insert walks past before it gives up (each replay is one quick call). */
const MAX_REPLAYED_GENERATIONS = 50;

export class GcpProvider implements Provider {
  readonly name = "gcp";
  private readonly http: JsonHttp;
  private readonly now: () => number;
  private readonly credentials: GcpCredentials;
  /** Discovered zones per region and machine type. */
  private readonly zones: GcpZones;
  /** The requestId generation each (operation key, zone) is at; see the comment at the top. */
  private readonly generations = new Map<string, number>();

  constructor(
    private readonly config: GcpProviderConfig,
    private readonly env: EnvLookup,
    private readonly options: GcpProviderOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    const doFetch = options.fetch ?? fetch;
    this.credentials = new GcpCredentials(config, env, { timeoutMs: options.timeoutMs ?? 30_000, fetch: doFetch, now: this.now });
    this.http = new JsonHttp({
      provider: this.name,
      baseUrl: normaliseBaseUrl(config.base_url, GCP_DEFAULT_BASE_URL, API) + API,
      timeoutMs: options.timeoutMs ?? 30_000,
      headers: async () => ({ authorization: `Bearer ${await this.credentials.accessToken()}` }),
      secrets: () => this.credentials.secrets(),
      mapError: mapGoogleError,
      fetch: doFetch,
    });
    this.zones = new GcpZones(this.http, () => this.project(), this.now, options.zoneCacheMs ?? 3_600_000);
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
    const zones = given.length > 0 ? given : await this.zones.zonesFor(req.region, req.instanceType);
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
    const project = this.config.project ?? this.credentials.serviceAccount()?.project_id ?? this.env("GOOGLE_CLOUD_PROJECT");
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
}
