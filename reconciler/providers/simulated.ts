// A simulated cloud in the reconciler's process: the simulator's provider (and
// the lifecycle tests'). Instances are records with launch latency; capacity,
// quota, rate-limit and API failures can be injected. Time comes from the clock
// the reconciler uses, so it runs on virtual time too. Idempotent like the real
// APIs: a launch with a known idempotency key returns the same instance.
import type { Clock } from "../fleet/registry.ts";
import { ProviderError, type Instance, type InstanceTypeInfo, type LaunchRequest, type Provider, type ProviderErrorKind } from "./provider.ts";

export interface SimulatedFault {
  on: "launch" | "terminate" | "get" | "list";
  kind: ProviderErrorKind;
  /** How many calls fail (then the fault is spent); Infinity for an outage until cleared. */
  times: number;
  instanceType?: string;
}

export interface SimulatedCloudOptions {
  name?: string;
  now: Clock;
  /** From launch to running. */
  launchLatencyMs?: number;
  /** Instances of each type that may run at once (capacity). */
  capacity?: Record<string, number>;
  instanceTypes?: InstanceTypeInfo[];
}

interface Record_ {
  instance: Instance;
  launchedAt: number;
  key: string;
  /** Terminate calls that reached this instance (a crash-safe reconciler makes at most one). */
  terminateCalls: number;
}

/** Everything the cloud holds, as plain data (a cloud outlives the reconciler that crashed). */
export interface SimulatedCloudState {
  records: Record_[];
  next: number;
  calls: SimulatedCloud["calls"];
}

export class SimulatedCloud implements Provider {
  readonly name: string;
  private readonly byId = new Map<string, Record_>();
  private readonly byKey = new Map<string, string>();
  private faults: SimulatedFault[] = [];
  private next = 1;
  /** Calls made, by method (for tests and reports). */
  readonly calls = { launch: 0, terminate: 0, get: 0, list: 0 };

  constructor(private readonly opts: SimulatedCloudOptions) {
    this.name = opts.name ?? "simulated";
  }

  snapshot(): SimulatedCloudState {
    return structuredClone({ records: [...this.byId.values()], next: this.next, calls: this.calls });
  }

  restore(state: SimulatedCloudState): void {
    this.byId.clear();
    this.byKey.clear();
    for (const r of state.records) {
      this.byId.set(r.instance.id, r);
      this.byKey.set(r.key, r.instance.id);
    }
    this.next = state.next;
    Object.assign(this.calls, state.calls);
  }

  /** Terminate calls per instance id. */
  terminateCalls(): Map<string, number> {
    return new Map([...this.byId.values()].map((r) => [r.instance.id, r.terminateCalls]));
  }

  inject(fault: SimulatedFault): void {
    this.faults.push({ ...fault });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Instances not terminated. */
  running(): Instance[] {
    return [...this.byId.values()].map((r) => this.view(r)).filter((i) => i.state !== "terminated");
  }

  /** The instance as the cloud sees it, bypassing faults (for tests and agents). */
  peek(id: string): Instance | undefined {
    const r = this.byId.get(id);
    return r && this.view(r);
  }

  /** Makes an instance vanish behind the reconciler's back (a host failure). */
  vanish(id: string): void {
    const r = this.byId.get(id);
    if (r) r.instance = { ...r.instance, state: "terminated" };
  }

  async launch(req: LaunchRequest): Promise<Instance> {
    this.calls.launch++;
    const existing = this.byKey.get(req.idempotencyKey);
    if (existing !== undefined) return this.view(this.byId.get(existing)!);
    this.fail("launch", req.instanceType);
    const cap = this.opts.capacity?.[req.instanceType];
    if (cap !== undefined && this.running().filter((i) => i.instanceType === req.instanceType).length >= cap) {
      throw new ProviderError(this.name, "capacity", `no capacity for ${req.instanceType} in ${req.region}`);
    }
    const id = `sim-${(this.next++).toString().padStart(6, "0")}`;
    const record: Record_ = {
      key: req.idempotencyKey,
      terminateCalls: 0,
      launchedAt: this.opts.now(),
      instance: {
        id,
        name: req.name,
        provider: this.name,
        instanceType: req.instanceType,
        region: req.region,
        state: "pending",
        address: "127.0.0.1",
        tags: { ...req.tags },
        createdAt: new Date(this.opts.now()).toISOString(),
      },
    };
    this.byId.set(id, record);
    this.byKey.set(req.idempotencyKey, id);
    return this.view(record);
  }

  async terminate(id: string): Promise<void> {
    this.calls.terminate++;
    this.fail("terminate");
    const r = this.byId.get(id);
    if (r) {
      r.terminateCalls++;
      r.instance = { ...r.instance, state: "terminated" };
    }
  }

  async get(id: string): Promise<Instance | undefined> {
    this.calls.get++;
    this.fail("get");
    const r = this.byId.get(id);
    return r && this.view(r);
  }

  async list(tags: Record<string, string>): Promise<Instance[]> {
    this.calls.list++;
    this.fail("list");
    return [...this.byId.values()].map((r) => this.view(r)).filter((i) => Object.entries(tags).every(([k, v]) => i.tags[k] === v));
  }

  async instanceTypes(): Promise<InstanceTypeInfo[]> {
    return this.opts.instanceTypes ?? [{ name: "dgxh100.80g", gpus: 8, gpuModel: "H100 80GB" }];
  }

  private view(r: Record_): Instance {
    if (r.instance.state === "pending" && this.opts.now() - r.launchedAt >= (this.opts.launchLatencyMs ?? 0)) {
      r.instance = { ...r.instance, state: "running" };
    }
    return { ...r.instance, tags: { ...r.instance.tags } };
  }

  private fail(on: SimulatedFault["on"], instanceType?: string): void {
    const fault = this.faults.find((f) => f.on === on && f.times > 0 && (f.instanceType === undefined || f.instanceType === instanceType));
    if (fault === undefined) return;
    fault.times--;
    throw new ProviderError(this.name, fault.kind, `injected ${fault.kind} on ${on}`, fault.kind === "rate_limit" ? 1 : undefined);
  }
}
