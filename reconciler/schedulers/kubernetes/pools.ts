// Pools as custom resources (deploy/crds/gpupool.yaml): the reconciler watches GpuPool
// objects in one namespace and creates, changes and deletes pools from them.
//
// - A spec is validated with the config file's own schema (PoolSchema), after the CRD's
//   schema already checked it at apply time. An invalid spec is never half-applied: the
//   last valid one stays in force, and status says why with field paths (`spec.scaling.
//   max_nodes: must be ≥ min_nodes (4), got 2`).
// - A pool the config file defines wins over a custom resource of the same name.
// - Deleting a GpuPool scales its pool to zero first (a finalizer holds the object until
//   the pool's last node is gone), then removes the pool.
// - Status (observedGeneration, nodes ready/total, conditions Valid and Ready, lastError)
//   is written through the status subresource, only when it changed.
import * as v from "valibot";
import { PoolSchema, type PoolConfig } from "../../../schema/config.ts";
import { formatIssuePath } from "../../../schema/wire.ts";
import type { Clock } from "../../../schema/time.ts";
import type { PoolNodeCounts } from "../scheduler.ts";
import { KubeApiError, PATCH_JSON, PATCH_MERGE, type KubeClient } from "../../clients/kube/client.ts";
import { Informer } from "../../clients/kube/informer.ts";
import { Condition, ObjectMeta } from "../../clients/kube/types.ts";

export const GPUPOOL_GROUP = "navarch.dev";
export const GPUPOOL_VERSION = "v1alpha1";
export const GPUPOOL_API = `/apis/${GPUPOOL_GROUP}/${GPUPOOL_VERSION}`;
export const GPUPOOL_FINALIZER = "navarch.dev/pool-cleanup";

export const GpuPoolObject = v.looseObject({
  metadata: ObjectMeta,
  spec: v.optional(v.unknown()),
  status: v.optional(
    v.nullable(
      v.looseObject({
        conditions: v.optional(v.nullable(v.array(Condition))),
      }),
    ),
  ),
});
export type GpuPoolObject = v.InferOutput<typeof GpuPoolObject>;

export interface GpuPoolControllerOptions {
  client: KubeClient;
  namespace: string;
  /** Ready (in service) and total (in the pool) nodes per pool, as Navarch counts them. */
  counts: () => Promise<PoolNodeCounts>;
  /** A pool from a resource is gone for good (its last node removed): Navarch forgets its record. */
  forget: (pool: string) => Promise<void>;
  /** The reconcile loop's hook: replaces the pools from custom resources; returns names a file pool took. */
  apply: (pools: PoolConfig[]) => string[];
  /** Names of the config file's pools (they win on a clash). */
  filePools: readonly string[];
  /** Provider types this reconciler can launch with. */
  providers: () => ReadonlySet<string>;
  now?: Clock;
  log?: (line: string) => void;
  /** How often node counts are refreshed into status (and deletions finished). */
  statusIntervalMs?: number;
}

interface Applied {
  spec: PoolConfig;
  generation: number;
}

interface Verdict {
  valid: boolean;
  reason: string;
  message: string;
}

export class GpuPoolController {
  readonly informer: Informer<GpuPoolObject>;
  private readonly applied = new Map<string, Applied>();
  private readonly verdicts = new Map<string, Verdict & { generation: number }>();
  private readonly written = new Map<string, string>();
  private readonly now: Clock;
  private readonly log: (line: string) => void;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(private readonly opts: GpuPoolControllerOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => undefined);
    this.informer = new Informer(opts.client, {
      path: `${GPUPOOL_API}/namespaces/${opts.namespace}/gpupools`,
      schema: GpuPoolObject,
      log: this.log,
      resyncMs: 5 * 60_000,
      onEvent: (event, object) => {
        if (event === "deleted") this.enqueue(() => this.forget(object.metadata.name));
        else this.enqueue(() => this.reconcile(object.metadata.name));
      },
    });
  }

  async start(): Promise<void> {
    await this.informer.start();
    await this.settle();
    this.timer = setInterval(() => this.enqueue(() => this.refresh()), this.opts.statusIntervalMs ?? 5000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.informer.stop();
    await this.settle();
  }

  /** Waits for queued reconciles and status writes. */
  async settle(): Promise<void> {
    let current: Promise<unknown>;
    do {
      current = this.chain;
      await current;
    } while (current !== this.chain);
  }

  /** The pools in force from custom resources (by GpuPool name). */
  pools(): PoolConfig[] {
    return [...this.applied.values()].map((a) => a.spec);
  }

  /** Re-runs every reconcile and rewrites changed status now (tests; the timer does it every few seconds). */
  refreshNow(): Promise<void> {
    this.enqueue(() => this.refresh());
    return this.settle();
  }

  private enqueue(work: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        await work();
      } catch (err) {
        this.log(`GpuPool controller: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  }

  private async refresh(): Promise<void> {
    for (const object of this.informer.list()) await this.reconcile(object.metadata.name);
  }

  // ───────────────────────────── one object ─────────────────────────────

  private async reconcile(name: string): Promise<void> {
    const object = this.informer.get(`${this.opts.namespace}/${name}`);
    if (object === undefined) return this.forget(name);
    const generation = object.metadata.generation ?? 0;
    if (object.metadata.deletionTimestamp) return this.finishDeletion(object);

    let verdict = this.verdicts.get(name);
    if (verdict === undefined || verdict.generation !== generation) {
      verdict = { ...this.judge(object), generation };
      this.verdicts.set(name, verdict);
      if (verdict.valid) {
        const spec = this.parse(object);
        if (spec !== undefined) {
          if (!(object.metadata.finalizers ?? []).includes(GPUPOOL_FINALIZER)) await this.addFinalizer(object);
          const before = this.applied.get(name);
          this.applied.set(name, { spec, generation });
          this.push();
          this.log(`GpuPool ${this.opts.namespace}/${name}: pool ${before ? "updated" : "created"} (generation ${generation})`);
        }
      } else {
        this.log(`GpuPool ${this.opts.namespace}/${name} generation ${generation} rejected: ${verdict.message}`);
      }
    }
    await this.writeStatus(object, verdict);
  }

  /** What the spec is worth: the config file's rules, a clash with a file pool, a provider we lack. */
  private judge(object: GpuPoolObject): Verdict {
    const name = object.metadata.name;
    if (this.opts.filePools.includes(name)) {
      return {
        valid: false,
        reason: "NameConflict",
        message: `the config file defines a pool named ${name}; the file's pool wins and this resource is ignored`,
      };
    }
    const spec = object.spec;
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) return { valid: false, reason: "Invalid", message: "spec: expected a mapping" };
    if ("name" in spec) return { valid: false, reason: "Invalid", message: "spec.name: not allowed; the pool's name is metadata.name" };
    const parsed = v.safeParse(PoolSchema, { name, ...spec });
    if (!parsed.success) {
      const problems = parsed.issues.map((issue) => {
        const path = formatIssuePath(issue.path);
        return `${path ? `spec.${path}` : "spec"}: ${issue.message}`;
      });
      return { valid: false, reason: "Invalid", message: problems.join("; ") };
    }
    const missing = parsed.output.providers.filter((p) => !this.opts.providers().has(p));
    if (missing.length > 0) {
      return {
        valid: false,
        reason: "ProviderUnavailable",
        message: `spec.provider${parsed.output.providers.length > 1 ? "s" : ""}: ${missing.join(", ")} not configured in this reconciler (it has: ${[...this.opts.providers()].join(", ") || "none"})`,
      };
    }
    return { valid: true, reason: "Valid", message: `spec of generation ${object.metadata.generation ?? 0} is valid and in force` };
  }

  private parse(object: GpuPoolObject): PoolConfig | undefined {
    const parsed = v.safeParse(PoolSchema, { name: object.metadata.name, ...(object.spec as Record<string, unknown>) });
    return parsed.success ? parsed.output : undefined;
  }

  private push(): void {
    const taken = this.opts.apply(this.pools());
    for (const name of taken) this.log(`GpuPool ${name}: the config file's pool of the same name wins`);
  }

  /** Scale to zero, wait for the last node to go, then let the object go. */
  private async finishDeletion(object: GpuPoolObject): Promise<void> {
    const name = object.metadata.name;
    const applied = this.applied.get(name);
    const hasFinalizer = (object.metadata.finalizers ?? []).includes(GPUPOOL_FINALIZER);
    if (applied !== undefined) {
      if (applied.spec.scaling.max_nodes !== 0 || applied.spec.scaling.autoscaler !== undefined) {
        const { autoscaler: _dropped, ...scaling } = applied.spec.scaling;
        this.applied.set(name, { spec: { ...applied.spec, scaling: { ...scaling, min_nodes: 0, max_nodes: 0 } }, generation: applied.generation });
        this.push();
        this.log(`GpuPool ${this.opts.namespace}/${name} is being deleted: scaling pool ${name} to zero`);
      }
      const left = (await this.counts()).get(name)?.total ?? 0;
      if (left > 0) {
        await this.writeStatus(object, { valid: true, reason: "Deleting", message: `deleting: ${left} node(s) of pool ${name} still to remove` });
        return;
      }
      this.applied.delete(name);
      this.push();
      await this.opts.forget(name);
      this.log(`GpuPool ${this.opts.namespace}/${name}: pool ${name} removed`);
    }
    if (hasFinalizer) await this.removeFinalizer(object);
  }

  /** The object is gone (its finalizer was removed by someone else, or by us). */
  private async forget(name: string): Promise<void> {
    this.verdicts.delete(name);
    this.written.delete(name);
    if (this.applied.delete(name)) {
      this.push();
      this.log(`GpuPool ${this.opts.namespace}/${name} disappeared before its pool was emptied; pool ${name} is no longer managed`);
    }
  }

  // ───────────────────────────── writes ─────────────────────────────

  private async writeStatus(object: GpuPoolObject, verdict: Verdict): Promise<void> {
    const name = object.metadata.name;
    const generation = object.metadata.generation ?? 0;
    const applied = this.applied.get(name);
    const counts = (await this.counts()).get(name) ?? { ready: 0, total: 0 };
    const previous = object.status?.conditions ?? [];
    const at = new Date(this.now()).toISOString();
    const condition = (type: string, status: "True" | "False", reason: string, message: string) => {
      const old = previous.find((c) => c.type === type);
      return {
        type,
        status,
        reason,
        message,
        observedGeneration: generation,
        lastTransitionTime: old?.status === status && old.lastTransitionTime ? old.lastTransitionTime : at,
      };
    };
    const min = applied?.spec.scaling.min_nodes ?? 0;
    const readyOk = applied !== undefined && counts.ready >= min && verdict.reason !== "Deleting";
    const readyMessage =
      applied === undefined
        ? "no valid spec has been applied"
        : `${counts.ready} of ${counts.total} node(s) ready (pool bounds ${applied.spec.scaling.min_nodes}–${applied.spec.scaling.max_nodes}${applied.generation !== generation ? `, spec of generation ${applied.generation} in force` : ""})`;
    const status = {
      observedGeneration: generation,
      ...(applied ? { appliedGeneration: applied.generation } : {}),
      nodes: counts,
      lastError: verdict.valid ? "" : verdict.message,
      conditions: [
        condition("Valid", verdict.valid ? "True" : "False", verdict.reason, verdict.message),
        condition(
          "Ready",
          readyOk ? "True" : "False",
          readyOk ? "Ready" : verdict.reason === "Deleting" ? "Deleting" : applied ? "ScalingUp" : "NotApplied",
          readyMessage,
        ),
      ],
    };
    // Times aside, is this what we wrote last?
    const fingerprint = JSON.stringify({ ...status, conditions: status.conditions.map(({ lastTransitionTime: _t, ...c }) => c) });
    if (this.written.get(name) === fingerprint) return;
    try {
      await this.opts.client.request("PATCH", `${GPUPOOL_API}/namespaces/${this.opts.namespace}/gpupools/${name}/status`, {
        body: { status },
        contentType: PATCH_MERGE,
      });
      this.written.set(name, fingerprint);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }

  private async addFinalizer(object: GpuPoolObject): Promise<void> {
    const finalizers = object.metadata.finalizers;
    const ops = [
      { op: "test", path: "/metadata/resourceVersion", value: object.metadata.resourceVersion },
      finalizers
        ? { op: "add", path: "/metadata/finalizers/-", value: GPUPOOL_FINALIZER }
        : { op: "add", path: "/metadata/finalizers", value: [GPUPOOL_FINALIZER] },
    ];
    await this.patchObject(object.metadata.name, ops);
  }

  private async removeFinalizer(object: GpuPoolObject): Promise<void> {
    const index = (object.metadata.finalizers ?? []).indexOf(GPUPOOL_FINALIZER);
    if (index < 0) return;
    await this.patchObject(object.metadata.name, [
      { op: "test", path: "/metadata/resourceVersion", value: object.metadata.resourceVersion },
      { op: "remove", path: `/metadata/finalizers/${index}` },
    ]);
  }

  private async patchObject(name: string, ops: unknown[]): Promise<void> {
    try {
      const updated = await this.opts.client.request(
        "PATCH",
        `${GPUPOOL_API}/namespaces/${this.opts.namespace}/gpupools/${name}`,
        { body: ops, contentType: PATCH_JSON },
        GpuPoolObject,
      );
      this.informer.observe(updated);
    } catch (err) {
      // A newer version arrived meanwhile: its watch event queues another reconcile.
      if (err instanceof KubeApiError && (err.status === 404 || err.status === 409 || err.status === 422)) return;
      throw err;
    }
  }

  /** Ready (ready + suspect) and total (in the pool) nodes per pool. */
  private counts(): Promise<PoolNodeCounts> {
    return this.opts.counts();
  }
}
