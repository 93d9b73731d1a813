// A simulated cloud in the reconciler's process: the simulator's provider (and
// the lifecycle tests'). Instances are records with launch latency; capacity,
// quota, rate-limit and API failures can be injected. Time comes from the clock
// the reconciler uses, so it runs on virtual time too. Idempotent like the real
// APIs: a launch with a known idempotency key returns the same instance.
import type { Clock } from "../../schema/time.ts";
import { ProviderError, type Instance, type InstanceTypeInfo, type LaunchRequest, type Provider, type ProviderErrorKind } from "./provider.ts";

export interface SimulatedFault {
  on: "launch" | "terminate" | "get" | "list" | "reboot";
  kind: ProviderErrorKind;
  /** How many calls fail (then the fault is spent); Infinity for an outage until cleared. */
  times: number;
  instanceType?: string;
  /** Only for launches in this region. */
  region?: string;
  /** The fault is active until this time (clock ms), then spent: an outage window. */
  until?: number;
}

export interface SimulatedCloudOptions {
  name?: string;
  now: Clock;
  /** From launch to running. */
  launchLatencyMs?: number;
  /** From a reboot call to running again, with a new boot. */
  rebootLatencyMs?: number;
  /** Instances of each type that may run at once (capacity). */
  capacity?: Record<string, number>;
  /** Instances of any type that may run at once (the account's quota). */
  quota?: number;
  /** Each launch takes launchLatencyMs plus up to this much more (needs `random`). */
  launchJitterMs?: number;
  /** Share of calls (launch, terminate, get, list) that fail with a transient error (needs `random`). */
  errorRate?: number;
  /** Share of launched instances that run but never start an agent: a bootstrap that fails (needs `random`). */
  bootstrapFailureRate?: number;
  /** Uniform [0, 1) source for jitter and error rates: a seeded one keeps runs reproducible. */
  random?: () => number;
  instanceTypes?: InstanceTypeInfo[];
}

interface Record_ {
  instance: Instance;
  launchedAt: number;
  /** When the instance is running (launchedAt + latency, + jitter); absent in old snapshots. */
  readyAt?: number;
  key: string;
  /** Terminate calls that reached this instance (a crash-safe reconciler makes at most one). */
  terminateCalls: number;
  /** Reboots so far (each a new boot of the machine). */
  boots?: number;
  /** Its bootstrap fails: it runs, and no agent ever starts on it. */
  broken?: boolean;
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
  /** Instances not terminated, per type (capacity and quota checks without a scan). */
  private readonly liveByType = new Map<string, number>();
  private live = 0;
  /** Launched instances not yet reported by takeStarted(), in launch order. */
  private readonly unannounced = new Set<string>();
  /** Calls made, by method (for tests and reports). */
  readonly calls = { launch: 0, terminate: 0, get: 0, list: 0, reboot: 0 };
  /** Called when an instance is rebooted (its agent goes quiet until it runs again). */
  onReboot: ((instance: Instance) => void) | undefined;

  constructor(private readonly opts: SimulatedCloudOptions) {
    this.name = opts.name ?? "simulated";
  }

  snapshot(): SimulatedCloudState {
    return structuredClone({ records: [...this.byId.values()], next: this.next, calls: this.calls });
  }

  restore(state: SimulatedCloudState): void {
    this.byId.clear();
    this.byKey.clear();
    this.liveByType.clear();
    this.live = 0;
    this.unannounced.clear();
    for (const r of state.records) {
      this.byId.set(r.instance.id, r);
      this.byKey.set(r.key, r.instance.id);
      if (r.instance.state !== "terminated") this.countLive(r.instance.instanceType, 1);
      if (r.instance.state === "pending") this.unannounced.add(r.instance.id);
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

  /** Instances not terminated (O(1)). */
  liveCount(): number {
    return this.live;
  }

  /**
   * Instances that reached `running` since the last call, in launch order (the simulator
   * boots an agent on each); instances terminated before they ran, and those whose
   * bootstrap fails (bootstrapFailureRate), are dropped.
   */
  takeStarted(): Instance[] {
    const out: Instance[] = [];
    for (const id of this.unannounced) {
      const r = this.byId.get(id);
      if (r === undefined) {
        this.unannounced.delete(id);
        continue;
      }
      const instance = this.view(r);
      if (instance.state === "pending") continue;
      this.unannounced.delete(id);
      if (instance.state === "running" && r.broken !== true) out.push(instance);
    }
    return out;
  }

  /** When the next pending instance will be running, if any is pending. */
  nextStartAt(): number | undefined {
    let next: number | undefined;
    for (const id of this.unannounced) {
      const r = this.byId.get(id);
      if (r === undefined || r.instance.state !== "pending") continue;
      const at = this.readyAt(r);
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  /**
   * An instance that is already running, as if launched long ago with this request (the
   * simulator's warm start: a fleet that was up before the run began). Idempotent by key.
   */
  createRunning(req: LaunchRequest): Instance {
    const existing = this.byKey.get(req.idempotencyKey);
    if (existing !== undefined) return this.view(this.byId.get(existing)!);
    const record = this.record(req);
    record.readyAt = record.launchedAt;
    record.instance = { ...record.instance, state: "running" };
    this.unannounced.delete(record.instance.id);
    return this.view(record);
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
    if (r) this.markTerminated(r);
  }

  async launch(req: LaunchRequest): Promise<Instance> {
    this.calls.launch++;
    const existing = this.byKey.get(req.idempotencyKey);
    if (existing !== undefined) return this.view(this.byId.get(existing)!);
    this.fail("launch", req.instanceType, req.region);
    const cap = this.opts.capacity?.[req.instanceType];
    if (cap !== undefined && (this.liveByType.get(req.instanceType) ?? 0) >= cap) {
      throw new ProviderError(this.name, "capacity", `no capacity for ${req.instanceType} in ${req.region}`);
    }
    if (this.opts.quota !== undefined && this.live >= this.opts.quota) {
      throw new ProviderError(this.name, "quota", `instance quota of ${this.opts.quota} reached`);
    }
    return this.view(this.record(req));
  }

  private record(req: LaunchRequest): Record_ {
    const id = `sim-${(this.next++).toString().padStart(6, "0")}`;
    const launchedAt = this.opts.now();
    const jitter = this.opts.launchJitterMs && this.opts.random ? Math.round(this.opts.random() * this.opts.launchJitterMs) : 0;
    const broken = this.opts.bootstrapFailureRate && this.opts.random ? this.opts.random() < this.opts.bootstrapFailureRate : false;
    const record: Record_ = {
      key: req.idempotencyKey,
      terminateCalls: 0,
      ...(broken ? { broken } : {}),
      launchedAt,
      readyAt: launchedAt + (this.opts.launchLatencyMs ?? 0) + jitter,
      instance: {
        id,
        name: req.name,
        provider: this.name,
        instanceType: req.instanceType,
        region: req.region,
        ...(req.zone !== undefined ? { zone: req.zone } : {}),
        state: "pending",
        address: "127.0.0.1",
        tags: { ...req.tags },
        createdAt: new Date(launchedAt).toISOString(),
      },
    };
    this.byId.set(id, record);
    this.byKey.set(req.idempotencyKey, id);
    this.unannounced.add(id);
    this.countLive(req.instanceType, 1);
    return record;
  }

  private countLive(type: string, delta: number): void {
    this.liveByType.set(type, (this.liveByType.get(type) ?? 0) + delta);
    this.live += delta;
  }

  private markTerminated(r: Record_): void {
    if (r.instance.state === "terminated") return;
    this.countLive(r.instance.instanceType, -1);
    r.instance = { ...r.instance, state: "terminated" };
  }

  async terminate(id: string): Promise<void> {
    this.calls.terminate++;
    this.fail("terminate");
    const r = this.byId.get(id);
    if (r) {
      r.terminateCalls++;
      this.markTerminated(r);
    }
  }

  /** Restarts the machine: pending for rebootLatencyMs, then running with a new boot. */
  async reboot(id: string): Promise<void> {
    this.calls.reboot++;
    this.fail("reboot");
    const r = this.byId.get(id);
    if (r === undefined || r.instance.state === "terminated") throw new ProviderError(this.name, "not_found", `no running instance ${id}`);
    r.boots = (r.boots ?? 0) + 1;
    r.readyAt = this.opts.now() + (this.opts.rebootLatencyMs ?? this.opts.launchLatencyMs ?? 0);
    r.instance = { ...r.instance, state: "pending" };
    this.unannounced.add(id);
    this.onReboot?.(this.view(r));
  }

  /** How many times the instance was rebooted (0 for its first boot). */
  bootOf(id: string): number | undefined {
    const r = this.byId.get(id);
    return r === undefined ? undefined : (r.boots ?? 0);
  }

  /** `simulated://NAME/ID`: the simulator's providerID for Nodes standing for its machines. */
  instanceOfKubernetesNode(providerId: string): string | undefined {
    const prefix = `simulated://${this.name}/`;
    if (!providerId.startsWith(prefix)) return undefined;
    const id = providerId.slice(prefix.length);
    return this.byId.has(id) ? id : undefined;
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
    if (r.instance.state === "pending" && this.opts.now() >= this.readyAt(r)) {
      r.instance = { ...r.instance, state: "running" };
    }
    return { ...r.instance, tags: { ...r.instance.tags } };
  }

  private readyAt(r: Record_): number {
    return r.readyAt ?? r.launchedAt + (this.opts.launchLatencyMs ?? 0);
  }

  private fail(on: SimulatedFault["on"], instanceType?: string, region?: string): void {
    const now = this.opts.now();
    if (this.faults.some((f) => f.until !== undefined && now >= f.until)) this.faults = this.faults.filter((f) => f.until === undefined || now < f.until);
    const fault = this.faults.find(
      (f) => f.on === on && f.times > 0 && (f.instanceType === undefined || f.instanceType === instanceType) && (f.region === undefined || f.region === region),
    );
    if (fault !== undefined) {
      fault.times--;
      throw new ProviderError(this.name, fault.kind, `injected ${fault.kind} on ${on}`, fault.kind === "rate_limit" ? 1 : undefined);
    }
    if (this.opts.errorRate && this.opts.random && this.opts.random() < this.opts.errorRate) {
      throw new ProviderError(this.name, "transient", `simulated API error on ${on} (error rate ${this.opts.errorRate})`);
    }
  }
}
