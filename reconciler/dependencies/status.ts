// What Navarch depends on outside itself (the database, a scheduler's API, Prometheus, each
// cloud provider's API) and how each is doing: up, down or not reached yet, since when, the
// last success and the last error, and the actions that wait for it. The parts that talk to a
// dependency report each answer here; /readyz, GET /v1/status, the navarch_dependency_up gauge
// and the "waiting for … since …" reasons on nodes and incidents read it. Nothing here waits:
// a dependency that does not answer is only ever a state, never a stalled caller.
import { QUEUED_SHOWN, type DependencyStatus, type QueuedAction } from "../../schema/admin.ts";

export type DependencyState = DependencyStatus["state"];
export type { DependencyStatus, QueuedAction };

export class Dependency {
  private state: DependencyState = "unknown";
  private since: number;
  private lastSuccessAt: number | null = null;
  private lastError: { at: number; message: string } | null = null;
  /** Who owns the queue of actions waiting for it reports them on demand. */
  private queue: () => QueuedAction[] = () => [];
  /** Told when it answers again after it was down or never reached. */
  private readonly backListeners: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly label: string,
    readonly target: string,
    private readonly now: () => number,
    private readonly onChange: (dep: Dependency, from: DependencyState) => void,
  ) {
    this.since = now();
  }

  get current(): DependencyState {
    return this.state;
  }

  get up(): boolean {
    return this.state === "up";
  }

  /** It answered (a refusal of a request is an answer too). */
  ok(): void {
    this.lastSuccessAt = this.now();
    this.set("up");
  }

  /** It did not answer, or answered that it cannot serve (5xx, refused credentials). */
  failed(err: unknown): void {
    this.lastError = { at: this.now(), message: oneLine(err) };
    this.set("down");
  }

  /** Where the actions that wait for it are counted (a scheduler mirror's queue, the loop's calls in flight). */
  queuedBy(queue: () => QueuedAction[]): void {
    this.queue = queue;
  }

  /** `then` runs each time it answers after it was down (or not reached yet): queued work goes now. */
  whenBack(then: () => void): void {
    this.backListeners.push(then);
  }

  /** `waiting for the Kubernetes API since 2026-…Z (connect ECONNREFUSED …)`: for a node's and an incident's status. */
  waiting(): string {
    if (this.state === "up") return `waiting for ${this.label}`;
    const why = this.lastError !== null ? ` (${this.lastError.message.slice(0, 200)})` : "";
    const what = this.state === "unknown" ? "not reached yet" : "unreachable";
    return `waiting for ${this.label} (${what}) since ${new Date(this.since).toISOString()}${why}`;
  }

  status(): DependencyStatus {
    const queued = this.queue().sort((a, b) => a.since - b.since);
    return {
      name: this.name,
      label: this.label,
      target: this.target,
      state: this.state,
      since: this.since,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError,
      queuedCount: queued.length,
      queued: queued.slice(0, QUEUED_SHOWN),
    };
  }

  private set(state: DependencyState): void {
    if (state === this.state) return;
    const from = this.state;
    this.state = state;
    this.since = this.now();
    this.onChange(this, from);
    if (state === "up") for (const then of this.backListeners) then();
  }
}

/** Every dependency of one reconciler, by name. */
export class Dependencies {
  private readonly byName = new Map<string, Dependency>();

  constructor(private readonly opts: { log?: (line: string) => void; now?: () => number } = {}) {}

  /** The dependency `name`, made on first use (its label and target are fixed then). */
  add(name: string, label: string, target: string): Dependency {
    let dep = this.byName.get(name);
    if (dep === undefined) {
      dep = new Dependency(name, label, target, this.opts.now ?? Date.now, (d, from) => this.said(d, from));
      this.byName.set(name, dep);
    }
    return dep;
  }

  get(name: string): Dependency | undefined {
    return this.byName.get(name);
  }

  list(): DependencyStatus[] {
    return [...this.byName.values()].map((d) => d.status());
  }

  /** The ones not up: what /readyz names. */
  degraded(): DependencyStatus[] {
    return this.list().filter((d) => d.state !== "up");
  }

  /** Each change of state is one log line: down with its error, back up with how long it was away. */
  private said(dep: Dependency, from: DependencyState): void {
    const s = dep.status();
    if (s.state === "down") this.opts.log?.(`dependency ${s.name} (${s.label} at ${s.target}) is down: ${s.lastError?.message ?? "no answer"}`);
    else if (s.state === "up" && from === "down") this.opts.log?.(`dependency ${s.name} (${s.label} at ${s.target}) answers again`);
  }
}

/** An error as one line, for a status and a log line. */
export function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, "; ");
}
