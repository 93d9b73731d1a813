// AWS EC2 through @aws-sdk/client-ec2 (query protocol, SigV4), with static credentials
// read from the environment variables the config names (default AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY, plus AWS_SESSION_TOKEN with the defaults). The SDK's own
// retries are off (maxAttempts 1): the reconciler owns retry and backoff, driven by
// the ProviderError kinds. The SDK is loaded on first use, so a fleet without AWS pools
// does not pay for it.
//
// Requests and errors follow the EC2 API models in @aws-sdk/client-ec2 (API version
// 2016-11-15) and EC2's published error codes.
//
// Idempotency: RunInstances carries ClientToken = the operation key (a SHA-256 hex of it
// when the key is not ≤ 64 printable ASCII characters), so a retried launch returns the
// instance the first one created. Reusing a key with different parameters is
// IdempotentParameterMismatch → "invalid". A RunInstances that failed (no capacity) used up
// nothing: EC2 keeps a token only for a request that succeeded, so the same key tries again.
//
// Reboot: RebootInstances, which EC2 answers with success even for a terminated instance
// (it ignores those); the instance is described first so that a gone one is not_found.
//
// Instance ids are `<region>/<instance-id>` (EC2 ids are regional); get/terminate also
// take a bare `i-…` and look in the regions this provider knows (options.regions, the
// config's region, and every region it launched into). list() covers the same regions.
//
// Not used: the SDK's default credential chain (profiles, SSO, instance metadata), which
// would bypass the environment the reconciler hands in.
import type { _InstanceType, EC2Client, Filter, Tag } from "@aws-sdk/client-ec2";
import { createHash } from "node:crypto";
import * as v from "valibot";
import type { AwsProviderConfig } from "../../schema/config.ts";
import { describeIssues, kindForStatus, parseRetryAfter, redact, type EnvLookup } from "./http.ts";
import {
  ProviderError,
  type Instance,
  type InstanceState,
  type InstanceTypeInfo,
  type LaunchRequest,
  type Provider,
  type ProviderErrorKind,
} from "./provider.ts";

/** Ubuntu 22.04 through the public SSM parameter, so no per-region AMI id is needed. */
const DEFAULT_IMAGE = "resolve:ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id";

export interface AwsProviderOptions {
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** AMI id or `resolve:ssm:` parameter (default Ubuntu 22.04). */
  imageId?: string;
  /** Regions list() sweeps and bare ids are looked up in (besides the config's region). */
  regions?: string[];
  subnetId?: string;
  securityGroupIds?: string[];
  /** An existing EC2 key pair; the launch's public key is installed by cloud-init either way. */
  keyName?: string;
}

// ───────────────────────────── schemas (SDK outputs are edges too) ─────────────────────────────

const Ec2Tag = v.object({ Key: v.optional(v.string()), Value: v.optional(v.string()) });
const Ec2Instance = v.object({
  InstanceId: v.pipe(v.string(), v.nonEmpty()),
  InstanceType: v.optional(v.string()),
  State: v.optional(v.object({ Name: v.optional(v.string()) })),
  Placement: v.optional(v.object({ AvailabilityZone: v.optional(v.string()) })),
  PublicIpAddress: v.optional(v.string()),
  PrivateIpAddress: v.optional(v.string()),
  LaunchTime: v.optional(v.date()),
  Tags: v.optional(v.array(Ec2Tag), []),
});
type Ec2Instance = v.InferOutput<typeof Ec2Instance>;

const RunOutput = v.object({ Instances: v.pipe(v.array(Ec2Instance), v.minLength(1)) });
const DescribeOutput = v.object({
  Reservations: v.optional(v.array(v.object({ Instances: v.optional(v.array(Ec2Instance), []) })), []),
  NextToken: v.optional(v.string()),
});
const TypesOutput = v.object({
  InstanceTypes: v.optional(
    v.array(
      v.object({
        InstanceType: v.string(),
        GpuInfo: v.optional(
          v.object({
            Gpus: v.optional(v.array(v.object({ Name: v.optional(v.string()), Manufacturer: v.optional(v.string()), Count: v.optional(v.number()) })), []),
          }),
        ),
      }),
    ),
    [],
  ),
  NextToken: v.optional(v.string()),
});

/** What the SDK throws: a ServiceException (name = EC2 error code) or a network error. */
const SdkError = v.object({
  name: v.string(),
  message: v.optional(v.string(), ""),
  $metadata: v.optional(v.object({ httpStatusCode: v.optional(v.number()) })),
});
const SdkResponse = v.object({ headers: v.optional(v.record(v.string(), v.string()), {}) });

// ───────────────────────────── error mapping ─────────────────────────────

const CODE_KINDS: Record<string, ProviderErrorKind> = {
  InsufficientInstanceCapacity: "capacity",
  InsufficientHostCapacity: "capacity",
  InsufficientReservedInstanceCapacity: "capacity",
  InsufficientCapacity: "capacity",
  InsufficientAddressCapacity: "capacity",
  Unsupported: "capacity", // the type is not offered in this AZ: fail over
  InstanceLimitExceeded: "quota",
  VcpuLimitExceeded: "quota",
  MaxSpotInstanceCountExceeded: "quota",
  ResourceLimitExceeded: "quota",
  RequestLimitExceeded: "rate_limit",
  Throttling: "rate_limit",
  ThrottlingException: "rate_limit",
  RequestThrottled: "rate_limit",
  AuthFailure: "auth",
  UnauthorizedOperation: "auth",
  InvalidClientTokenId: "auth",
  SignatureDoesNotMatch: "auth",
  IncompleteSignature: "auth",
  MissingAuthenticationToken: "auth",
  ExpiredToken: "auth",
  RequestExpired: "auth",
  OptInRequired: "auth",
  Blocked: "auth",
  "InvalidInstanceID.NotFound": "not_found",
  "InvalidInstanceID.Malformed": "not_found",
  IncorrectInstanceState: "invalid",
  IncorrectState: "invalid",
  IdempotentParameterMismatch: "invalid",
  InvalidParameterValue: "invalid",
  InvalidParameterCombination: "invalid",
  InvalidParameter: "invalid",
  MissingParameter: "invalid",
  UnknownParameter: "invalid",
  "InvalidAMIID.NotFound": "invalid",
  "InvalidAMIID.Malformed": "invalid",
  "InvalidSubnetID.NotFound": "invalid",
  "InvalidGroup.NotFound": "invalid",
  "InvalidKeyPair.NotFound": "invalid",
  InternalError: "transient",
  InternalFailure: "transient",
  ServiceUnavailable: "transient",
  Unavailable: "transient",
};

/** A ProviderError for whatever the SDK threw; `secrets` are scrubbed from the message. */
export function mapAwsError(err: unknown, what: string, secrets: readonly string[]): ProviderError {
  if (err instanceof ProviderError) return err;
  const parsed = v.safeParse(SdkError, err);
  if (!parsed.success) return new ProviderError("aws", "transient", redact(`${what}: ${String(err)}`, secrets));
  const { name, message } = parsed.output;
  const status = parsed.output.$metadata?.httpStatusCode;
  let kind = CODE_KINDS[name];
  if (kind === undefined) {
    if (status !== undefined) kind = kindForStatus(status);
    else kind = "transient"; // no HTTP answer at all: timeouts, refused connections, resets
  }
  const response = v.safeParse(SdkResponse, typeof err === "object" && err !== null ? Reflect.get(err, "$response") : undefined);
  const retryAfter = response.success ? parseRetryAfter(response.output.headers["retry-after"]) : undefined;
  const statusText = status === undefined ? "" : `HTTP ${status} `;
  return new ProviderError("aws", kind, redact(`${what}: ${statusText}${name}${message ? `: ${message}` : ""}`, secrets), retryAfter);
}

const STATES: Record<string, InstanceState> = {
  pending: "pending",
  running: "running",
  "shutting-down": "stopping",
  stopping: "stopping",
  stopped: "stopping",
  terminated: "terminated",
};

/** ClientToken: the key itself when EC2 accepts it (≤ 64 printable ASCII), else its SHA-256. */
export function clientTokenFor(key: string): string {
  return /^[\x20-\x7e]{1,64}$/.test(key) ? key : createHash("sha256").update(key).digest("hex");
}

function cloudConfig(publicKey: string): string {
  return Buffer.from(`#cloud-config\nssh_authorized_keys:\n  - ${JSON.stringify(publicKey.trim())}\n`).toString("base64");
}

type Sdk = typeof import("@aws-sdk/client-ec2");
let sdkPromise: Promise<Sdk> | undefined;
const loadSdk = (): Promise<Sdk> => (sdkPromise ??= import("@aws-sdk/client-ec2"));

// ───────────────────────────── provider ─────────────────────────────

interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export class AwsProvider implements Provider {
  readonly name = "aws";
  private readonly clients = new Map<string, { fingerprint: string; client: EC2Client }>();
  private readonly regions: Set<string>;

  constructor(
    private readonly config: AwsProviderConfig,
    private readonly env: EnvLookup,
    private readonly options: AwsProviderOptions = {},
  ) {
    this.regions = new Set([...(config.region === undefined ? [] : [config.region]), ...(options.regions ?? [])]);
  }

  async launch(req: LaunchRequest): Promise<Instance> {
    this.regions.add(req.region);
    if (req.zone !== undefined && !req.zone.startsWith(req.region)) {
      throw new ProviderError(this.name, "invalid", `zone ${req.zone} is not in region ${req.region}`);
    }
    const tags: Tag[] = [{ Key: "Name", Value: req.name }, ...Object.entries(req.tags).map(([Key, Value]) => ({ Key, Value }))];
    const sdk = await loadSdk();
    const output = await this.call(req.region, `RunInstances ${req.name}`, RunOutput, (client) =>
      client.send(
        new sdk.RunInstancesCommand({
          ImageId: this.options.imageId ?? DEFAULT_IMAGE,
          // The SDK types this as its list of known types; EC2 itself rejects unknown ones (→ invalid).
          InstanceType: req.instanceType as _InstanceType,
          MinCount: 1,
          MaxCount: 1,
          ClientToken: clientTokenFor(req.idempotencyKey),
          TagSpecifications: [
            { ResourceType: "instance", Tags: tags },
            { ResourceType: "volume", Tags: tags },
          ],
          MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled" },
          ...(req.zone === undefined ? {} : { Placement: { AvailabilityZone: req.zone } }),
          ...(req.sshPublicKey === undefined ? {} : { UserData: cloudConfig(req.sshPublicKey) }),
          ...(this.options.keyName === undefined ? {} : { KeyName: this.options.keyName }),
          ...(this.options.subnetId === undefined ? {} : { SubnetId: this.options.subnetId }),
          ...(this.options.securityGroupIds === undefined ? {} : { SecurityGroupIds: this.options.securityGroupIds }),
        }),
      ),
    );
    return this.toInstance(req.region, output.Instances[0]!);
  }

  async terminate(id: string): Promise<void> {
    const located = await this.locate(id);
    if (located === undefined) return;
    const [region, instanceId] = located;
    const sdk = await loadSdk();
    try {
      await this.call(region, `TerminateInstances ${instanceId}`, v.unknown(), (client) =>
        client.send(new sdk.TerminateInstancesCommand({ InstanceIds: [instanceId] })),
      );
    } catch (err) {
      if (err instanceof ProviderError && err.kind === "not_found") return;
      throw err;
    }
  }

  async reboot(id: string): Promise<void> {
    const located = await this.locate(id);
    if (located === undefined) throw new ProviderError(this.name, "not_found", `RebootInstances ${id}: no such instance`);
    const [region, instanceId] = located;
    const current = await this.describeOne(region, instanceId);
    if (current === undefined || current.state === "terminated") {
      throw new ProviderError(
        this.name,
        "not_found",
        `RebootInstances ${instanceId} in ${region}: the instance is ${current === undefined ? "gone" : "terminated"}`,
      );
    }
    const sdk = await loadSdk();
    await this.call(region, `RebootInstances ${instanceId}`, v.unknown(), (client) =>
      client.send(new sdk.RebootInstancesCommand({ InstanceIds: [instanceId] })),
    );
  }

  instanceOfKubernetesNode(providerId: string): string | undefined {
    // aws:///ZONE/i-… (the zone is informational): a bare id, looked up in the known regions.
    return /^aws:\/\/\/?[a-z0-9-]*\/(i-[0-9a-f]{8,17})$/.exec(providerId)?.[1];
  }

  async get(id: string): Promise<Instance | undefined> {
    const located = await this.locate(id);
    if (located === undefined) return undefined;
    return this.describeOne(located[0], located[1]);
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    // EC2 filter values treat * and ? as wildcards; escape them so tags match exactly.
    const literal = (value: string) => value.replace(/[\\*?]/g, (c) => `\\${c}`);
    const filters: Filter[] = [
      ...Object.entries(tags).map(([key, value]) => ({ Name: `tag:${key}`, Values: [literal(value)] })),
      { Name: "instance-state-name", Values: ["pending", "running", "shutting-down", "stopping", "stopped"] },
    ];
    const out: Instance[] = [];
    for (const region of this.knownRegions()) {
      const raw = await this.describe(region, filters);
      const wanted = Object.entries(tags);
      out.push(...raw.map((i) => this.toInstance(region, i)).filter((i) => wanted.every(([k, value]) => i.tags[k] === value)));
    }
    return out;
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    const region = this.knownRegions()[0]!;
    const sdk = await loadSdk();
    const out: InstanceTypeInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(region, "DescribeInstanceTypes", TypesOutput, (client) =>
        client.send(new sdk.DescribeInstanceTypesCommand({ MaxResults: 100, ...(token === undefined ? {} : { NextToken: token }) })),
      );
      for (const t of page.InstanceTypes) {
        const gpus = t.GpuInfo?.Gpus ?? [];
        if (gpus.length === 0) continue;
        const first = gpus[0]!;
        const model = [first.Manufacturer, first.Name].filter((x) => x !== undefined).join(" ");
        out.push({ name: t.InstanceType, gpus: gpus.reduce((n, g) => n + (g.Count ?? 0), 0), ...(model === "" ? {} : { gpuModel: model }) });
      }
      token = page.NextToken === "" ? undefined : page.NextToken;
    } while (token !== undefined);
    return out;
  }

  // ── internals ──

  private knownRegions(): string[] {
    return this.regions.size === 0 ? ["us-east-1"] : [...this.regions];
  }

  private async locate(id: string): Promise<[string, string] | undefined> {
    const slash = id.indexOf("/");
    if (slash > 0) return [id.slice(0, slash), id.slice(slash + 1)];
    if (!/^i-[0-9a-f]+$/.test(id)) return undefined;
    for (const region of this.knownRegions()) {
      if ((await this.describeOne(region, id)) !== undefined) return [region, id];
    }
    return undefined;
  }

  private async describeOne(region: string, instanceId: string): Promise<Instance | undefined> {
    const sdk = await loadSdk();
    try {
      const out = await this.call(region, `DescribeInstances ${instanceId}`, DescribeOutput, (client) =>
        client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [instanceId] })),
      );
      const raw = out.Reservations.flatMap((r) => r.Instances).find((i) => i.InstanceId === instanceId);
      return raw === undefined ? undefined : this.toInstance(region, raw);
    } catch (err) {
      if (err instanceof ProviderError && err.kind === "not_found") return undefined;
      throw err;
    }
  }

  private async describe(region: string, filters: Filter[]): Promise<Ec2Instance[]> {
    const sdk = await loadSdk();
    const out: Ec2Instance[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(region, "DescribeInstances", DescribeOutput, (client) =>
        client.send(new sdk.DescribeInstancesCommand({ Filters: filters, MaxResults: 1000, ...(token === undefined ? {} : { NextToken: token }) })),
      );
      out.push(...page.Reservations.flatMap((r) => r.Instances));
      token = page.NextToken === "" ? undefined : page.NextToken;
    } while (token !== undefined);
    return out;
  }

  private toInstance(region: string, raw: Ec2Instance): Instance {
    const tags: Record<string, string> = {};
    for (const t of raw.Tags) if (t.Key !== undefined) tags[t.Key] = t.Value ?? "";
    const address = raw.PublicIpAddress ?? raw.PrivateIpAddress;
    const zone = raw.Placement?.AvailabilityZone;
    return {
      id: `${region}/${raw.InstanceId}`,
      name: tags.Name ?? raw.InstanceId,
      provider: this.name,
      instanceType: raw.InstanceType ?? "",
      region,
      ...(zone === undefined ? {} : { zone }),
      state: STATES[raw.State?.Name ?? ""] ?? "unknown",
      ...(address === undefined ? {} : { address }),
      tags,
      ...(raw.LaunchTime === undefined ? {} : { createdAt: raw.LaunchTime.toISOString() }),
    };
  }

  private credentials(): Credentials {
    const idEnv = this.config.access_key_id_env ?? "AWS_ACCESS_KEY_ID";
    const secretEnv = this.config.secret_access_key_env ?? "AWS_SECRET_ACCESS_KEY";
    const accessKeyId = this.env(idEnv)?.trim();
    const secretAccessKey = this.env(secretEnv)?.trim();
    if (accessKeyId === undefined || accessKeyId === "")
      throw new ProviderError(this.name, "auth", `environment variable ${idEnv} (the access key id) is not set`);
    if (secretAccessKey === undefined || secretAccessKey === "")
      throw new ProviderError(this.name, "auth", `environment variable ${secretEnv} (the secret access key) is not set`);
    const sessionToken = this.config.access_key_id_env === undefined ? this.env("AWS_SESSION_TOKEN")?.trim() : undefined;
    return { accessKeyId, secretAccessKey, ...(sessionToken === undefined || sessionToken === "" ? {} : { sessionToken }) };
  }

  private async client(region: string, creds: Credentials): Promise<EC2Client> {
    const fingerprint = createHash("sha256")
      .update(`${creds.accessKeyId}\0${creds.secretAccessKey}\0${creds.sessionToken ?? ""}`)
      .digest("hex");
    const cached = this.clients.get(region);
    if (cached !== undefined && cached.fingerprint === fingerprint) return cached.client;
    const sdk = await loadSdk();
    const timeout = this.options.timeoutMs ?? 30_000;
    const client = new sdk.EC2Client({
      region,
      credentials: { ...creds },
      maxAttempts: 1,
      requestHandler: { requestTimeout: timeout, connectionTimeout: Math.min(timeout, 10_000), throwOnRequestTimeout: true },
      ...(this.config.endpoint === undefined ? {} : { endpoint: this.config.endpoint }),
    });
    cached?.client.destroy();
    this.clients.set(region, { fingerprint, client });
    return client;
  }

  /** Runs one SDK call, validating its output and mapping its errors. */
  private async call<TSchema extends v.GenericSchema>(
    region: string,
    what: string,
    schema: TSchema,
    send: (client: EC2Client) => Promise<unknown>,
  ): Promise<v.InferOutput<TSchema>> {
    const creds = this.credentials();
    const secrets = [creds.secretAccessKey, creds.accessKeyId, ...(creds.sessionToken === undefined ? [] : [creds.sessionToken])];
    const client = await this.client(region, creds);
    let output: unknown;
    try {
      output = await send(client);
    } catch (err) {
      throw mapAwsError(err, `${what} in ${region}`, secrets);
    }
    const parsed = v.safeParse(schema, output);
    if (!parsed.success) throw new ProviderError(this.name, "transient", `${what} in ${region}: unexpected response (${describeIssues(parsed.issues)})`);
    return parsed.output;
  }
}
