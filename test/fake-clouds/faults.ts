// Behaviour the fake clouds can be told to show, shared by all three: each fake turns
// a Fault into its own API's error shape (Lambda's error JSON, Google's error JSON or
// operation error, EC2's XML). Faults match by call and, for launches, by instance
// type / region / zone; `times` makes "fail N times, then succeed".

/**
 * The calls a fake distinguishes. `reboot` is Lambda's restart, GCE's reset and EC2's
 * RebootInstances; `operation` is GCP's operation get/wait, `zones` its zones.list, `token`
 * its OAuth endpoint.
 */
export type FakeCall = "launch" | "get" | "list" | "terminate" | "reboot" | "types" | "keys" | "operation" | "zones" | "token";

export type Fault =
  /** No capacity for the matching launches (Lambda insufficient-capacity, GCE ZONE_RESOURCE_POOL_EXHAUSTED, EC2 InsufficientInstanceCapacity). */
  | ({ kind: "capacity" } & FaultScope)
  /** Account limit reached (Lambda quota-exceeded, GCE QUOTA_EXCEEDED, EC2 VcpuLimitExceeded / InstanceLimitExceeded). */
  | ({ kind: "quota"; code?: string } & FaultScope)
  /** 429 (EC2: 503 RequestLimitExceeded) with an optional Retry-After header. */
  | ({ kind: "rate_limit"; retryAfterSeconds?: number } & FaultScope)
  /** A 5xx answer (500 unless `status` says otherwise). */
  | ({ kind: "server_error"; status?: number } & FaultScope)
  /** Credentials refused, whatever was sent. */
  | ({ kind: "auth" } & FaultScope)
  /** Delay the answer; the call then goes on (and may still meet another fault). */
  | ({ kind: "latency"; ms: number } & FaultScope)
  /**
   * The fake does the work (the instance exists) and then the answer is lost: it
   * replies 502 with a non-JSON body, as a proxy that lost the upstream connection
   * would. Models "the reconciler crashed before it read the answer".
   */
  | ({ kind: "lose_response" } & FaultScope);

export interface FaultScope {
  /** Calls it applies to; every call when absent. */
  on?: FakeCall | FakeCall[];
  /** Launch filters: only launches of this type / region / zone. */
  instanceType?: string;
  region?: string;
  zone?: string;
  /** Matching calls it affects before it is spent; unlimited when absent. */
  times?: number;
}

export interface CallContext {
  instanceType?: string;
  region?: string;
  zone?: string;
}

interface Armed {
  fault: Fault;
  left: number;
}

export class FaultBook {
  private armed: Armed[] = [];

  /** Arms a fault; returns a function that disarms it. */
  add(fault: Fault): () => void {
    const entry: Armed = { fault, left: fault.times ?? Number.POSITIVE_INFINITY };
    this.armed.push(entry);
    return () => {
      this.armed = this.armed.filter((e) => e !== entry);
    };
  }

  clear(): void {
    this.armed = [];
  }

  /**
   * Applies latency faults that match (awaiting them), then returns the first failing
   * fault that matches this call, using one of its `times`.
   */
  async take(call: FakeCall, ctx: CallContext = {}): Promise<Fault | undefined> {
    for (const entry of this.matching(call, ctx)) {
      if (entry.fault.kind !== "latency") continue;
      this.use(entry);
      await Bun.sleep(entry.fault.ms);
    }
    const failing = this.matching(call, ctx).find((e) => e.fault.kind !== "latency");
    if (failing === undefined) return undefined;
    this.use(failing);
    return failing.fault;
  }

  /** Like take, but only for faults of the given kinds (GCP decides the operation's outcome separately). */
  takeKind(call: FakeCall, ctx: CallContext, kinds: readonly Fault["kind"][]): Fault | undefined {
    const entry = this.matching(call, ctx).find((e) => kinds.includes(e.fault.kind));
    if (entry === undefined) return undefined;
    this.use(entry);
    return entry.fault;
  }

  /** Whether a fault of these kinds would match, without using it (e.g. to hide a region from a listing). */
  peekKinds(call: FakeCall, ctx: CallContext, kinds: readonly Fault["kind"][]): boolean {
    return this.matching(call, ctx).some((e) => kinds.includes(e.fault.kind));
  }

  private use(entry: Armed): void {
    entry.left -= 1;
    if (entry.left <= 0) this.armed = this.armed.filter((e) => e !== entry);
  }

  private matching(call: FakeCall, ctx: CallContext): Armed[] {
    return this.armed.filter(({ fault }) => {
      const on = fault.on === undefined ? undefined : Array.isArray(fault.on) ? fault.on : [fault.on];
      if (on !== undefined && !on.includes(call)) return false;
      if (fault.instanceType !== undefined && fault.instanceType !== ctx.instanceType) return false;
      if (fault.region !== undefined && fault.region !== ctx.region) return false;
      if (fault.zone !== undefined && fault.zone !== ctx.zone) return false;
      return true;
    });
  }
}

/** Where new instances say they can be reached: the e2e tests point these at local sshd ports. */
export interface AssignedEndpoint {
  address: string;
  /** Not part of any cloud API; the harness reads it from the fake's state. */
  sshPort?: number;
}

/** A fixed endpoint for every instance, or one chosen per instance (n counts from 1). */
export type EndpointOption = AssignedEndpoint | ((n: number) => AssignedEndpoint);

export function assignEndpoint(option: EndpointOption | undefined, n: number, fallback: () => string): AssignedEndpoint {
  if (option === undefined) return { address: fallback() };
  return typeof option === "function" ? option(n) : option;
}

/** A record of every request a fake answered, for assertions like "launch was called once". */
export interface CallRecord {
  call: FakeCall | "other";
  method: string;
  path: string;
  status: number;
}
