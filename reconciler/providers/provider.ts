// The contract every cloud provider implements. The reconciler writes an
// operation row before each call; the operation's key becomes the instance's
// name and idempotency token, so a retried launch after a crash finds or reuses
// the instance instead of creating a second one.

/** Tags every instance Navarch creates carries; inventory sweeps list by them. */
export const TAG_MANAGED_BY = "navarch-managed-by";
export const TAG_POOL = "navarch-pool";
export const TAG_OPERATION = "navarch-operation";

export interface LaunchRequest {
  /**
   * Deterministic name derived from the operation (e.g. `nv-training-3f9a1c`): DNS-safe,
   * at most 63 characters. Used as the instance name where the API has one.
   */
  name: string;
  /** The operation key; passed as the API's idempotency token (ClientToken, requestId, …). */
  idempotencyKey: string;
  pool: string;
  instanceType: string;
  region: string;
  /** The pool's first zone, for providers that take one. */
  zone?: string;
  /** Every zone the pool allows, in order: a provider that can fails over between them when one has no capacity. */
  zones?: string[];
  /** Includes TAG_MANAGED_BY, TAG_POOL and TAG_OPERATION. */
  tags: Record<string, string>;
  /** Public key installed for the bootstrap user, when the provider supports it. */
  sshPublicKey?: string;
  /** Bootstrap will log in with the provider's own key (Provider.sshPrivateKey): install that one. */
  sshOwnKey?: boolean;
}

export type InstanceState = "pending" | "running" | "stopping" | "terminated" | "unknown";

export interface Instance {
  /** The provider's own id. */
  id: string;
  name: string;
  provider: string;
  instanceType: string;
  region: string;
  zone?: string;
  state: InstanceState;
  /** Address the reconciler can SSH to, once known. */
  address?: string;
  /** Host key fingerprints the provider reports, when it does (pinned at bootstrap). */
  hostKeyFingerprints?: string[];
  tags: Record<string, string>;
  createdAt?: string;
}

export interface InstanceTypeInfo {
  name: string;
  gpus: number;
  gpuModel?: string;
  /** Regions with capacity right now, where the API says. */
  regionsWithCapacity?: string[];
}

/** Why a provider call failed, as the reconciler must react to it. */
export type ProviderErrorKind =
  | "capacity" // no machines of this type here now: back off, fail over
  | "quota" // account limit reached: back off longer, fail over
  | "rate_limit" // slow down and retry
  | "auth" // credentials wrong or expired: stop and tell a human
  | "not_found" // the instance (or type, or region) does not exist
  | "invalid" // the request itself is wrong (config): do not retry
  | "transient"; // 5xx, timeouts, connection resets: retry with backoff

export class ProviderError extends Error {
  override readonly name = "ProviderError";
  constructor(
    readonly provider: string,
    readonly kind: ProviderErrorKind,
    message: string,
    /** Seconds the API asked us to wait (Retry-After), when it did. */
    readonly retryAfterSeconds?: number,
  ) {
    super(`${provider}: ${message}`);
  }

  get retryable(): boolean {
    return this.kind === "capacity" || this.kind === "quota" || this.kind === "rate_limit" || this.kind === "transient";
  }
}

/** A fault to inject: a command for the machine's fake libnvidia-ml, or a kernel-log message. */
export type InjectedFault = { nvml: string } | { kmsg: string };

export interface Provider {
  /** The provider type as in the config (`lambda`, `gcp`, `aws`, `coreweave`, `local`). */
  readonly name: string;
  /**
   * Creates an instance, or returns the one an earlier call with the same
   * idempotency key created. Resolves once the provider has accepted the request
   * (the instance may still be pending); rejects with ProviderError.
   */
  launch(req: LaunchRequest): Promise<Instance>;
  /** Terminates an instance; terminating one that is already gone succeeds. */
  terminate(id: string): Promise<void>;
  /**
   * Restarts the machine (a new boot), for the remediation ladder; resolves once the
   * provider has accepted the request. Undefined when the provider cannot: Navarch then
   * replaces where it would have rebooted.
   */
  reboot?(id: string): Promise<void>;
  /**
   * Breaks the machine on purpose: a command for its GPUs' library or a kernel-log line. Only
   * a provider of test machines has it (the local provider: the demo and tests), never a cloud.
   */
  injectFault?(id: string, fault: InjectedFault): Promise<void>;
  /** One instance, or undefined when the provider does not know it. */
  get(id: string): Promise<Instance | undefined>;
  /**
   * The id of this provider's instance behind a Kubernetes Node's `spec.providerID`
   * (`gce://PROJECT/ZONE/NAME`, `aws:///ZONE/i-…`), or undefined when it names none of
   * this provider's machines. How Navarch can name a machine it did not launch (a
   * DaemonSet's node) when it must terminate it for its owner to replace.
   */
  instanceOfKubernetesNode?(providerId: string): string | undefined;
  /** Every instance carrying all of these tags (inventory sweeps). */
  list(tags: Record<string, string>): Promise<Instance[]>;
  instanceTypes(): Promise<InstanceTypeInfo[]>;
  /**
   * The private half of the SSH key this provider installs when a launch asks for its own
   * (LaunchRequest.sshOwnKey): the key Navarch keeps for a pool with setup_commands but no
   * ssh_private_key_path. Undefined where the provider has none.
   */
  sshPrivateKey?(): Promise<string>;
}
