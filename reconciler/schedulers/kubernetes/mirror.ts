// The Kubernetes side of a Navarch cordon and drain (SchedulerMirror).
//
// Cordon: one JSON patch (node-marks.ts), conditional on the Node's resourceVersion (merge
// patch would replace the whole taint list), sets spec.unschedulable, adds our NoSchedule
// taint and annotations naming the reason, the incident, the time and exactly which of the
// two we changed; a second write puts the GPU health verdict in a node condition through the
// status subresource. The writes go out in the background on the cordon lane (per Node in
// order, retried until they land or a newer cordon/uncordon supersedes them): a pass that
// cordons many nodes is not held up by the API server, and Kubernetes being down never
// holds up Navarch's own cordon. Uncordon undoes exactly what the annotations say we did, and only
// on a Node whose annotations say we cordoned it. A human's `kubectl uncordon` of our
// cordon (seen on the Node watch, and checked again at every drain step) cancels our
// incident through the host's external-uncordon callback (Operator.uncordon, as an uncordon in
// Navarch's own API would). The mirror sees Navarch's nodes only as read-only views, and finds
// each one's Node under kubernetes.node_mapping (node-mapping.ts).
//
// Drain: a background worker per node (drain-worker.ts) evicts pods through the Eviction
// API (PDBs respected: 429 is retried with backoff), leaves DaemonSet and mirror pods alone,
// evicts emptyDir pods only when configured, and at the pool's drain deadline deletes
// what is left (or holds the node). A Node that is not Ready while its agent is silent
// takes the dead-kubelet fast path: pods are deleted with a 1 s grace period and a pod
// whose deletion is past due counts as gone (nothing will confirm it). drain() itself
// never waits for an eviction: it reports the worker's progress, so one slow drain
// cannot hold up the reconcile pass (or the cordons later in it).
//
// No call of the mirror's waits for the API server: a cordon or an uncordon asked for before
// the Nodes were ever listed (the API server down since start) is queued per node and carried
// out, in order, once they are; it is checked against the node's state then (a node a human
// returned to service meanwhile is not cordoned, a Node deleted meanwhile is skipped). Writes
// that fail are retried with backoff, and all of them try again the moment the API answers.
import type { KubernetesConfig } from "../../../schema/config.ts";
import { isIn } from "../../../schema/lifecycle.ts";
import { textPrefix } from "../../../schema/text.ts";
import type { Clock } from "../../../schema/time.ts";
import { KubeApiError, PATCH_JSON, PATCH_STRATEGIC, type KubeClient } from "../../clients/kube/client.ts";
import { Informer } from "../../clients/kube/informer.ts";
import { KubeNode, type Condition } from "../../clients/kube/types.ts";
import type { Dependency } from "../../dependencies/status.ts";
import { NodeWrites } from "../node-writes.ts";
import { QueuedAsks, type AskAction } from "../queued-asks.ts";
import type { DrainProgress, PoolMarks, SchedulerHost, SchedulerMirror, SchedulerNode, SchedulerNodeView } from "../scheduler.ts";
import { DrainWorker } from "./drain-worker.ts";
import { ANNOTATIONS, POOL_MARKS_ANNOTATION, cordonPatch, humanUncordoned, poolMarksPatch, uncordonPatch } from "./node-marks.ts";
import { kubeNodeFor, kubeNodeIndex, type MappedFields } from "./node-mapping.ts";
import { POOL_LABEL } from "./queue.ts";

/** Navarch states in which a node is in service: a cordon of ours on its Node is stale. */
const IN_SERVICE: ReadonlySet<string> = new Set(["validating", "ready", "suspect"]);

export interface KubeMirrorOptions {
  client: KubeClient;
  config: KubernetesConfig;
  /** The way back into Navarch: node views, mapping records, a human's uncordon, waking the loop. */
  host: SchedulerHost;
  /** Who our cordons are by (the reconciler's actor). */
  actor?: string;
  /** Real-time pause between drain rounds while work is pending. */
  drainRoundMs?: number;
}

export class KubeMirror implements SchedulerMirror {
  readonly name = "kubernetes";
  /** Every Node, kept current by a watch (mapping, cordon state, readiness). */
  readonly nodeCache: Informer<KubeNode>;
  private readonly client: KubeClient;
  private readonly config: KubernetesConfig;
  private readonly host: SchedulerHost;
  private readonly now: Clock;
  private readonly log: (line: string) => void;
  private readonly actor: string;
  private readonly workers = new Map<string, DrainWorker>();
  /** Writes to each Node, in order (a cordon, then its undo), retried, in the background. */
  private readonly writes: NodeWrites;
  /** When (real time) we last wrote a cordon to each Node. */
  private readonly cordonedAt = new Map<string, number>();
  /** How old our cordon must be before a Node back in service counts as stale (see clearStaleCordon). */
  staleCordonMs = 60_000;
  private readonly notReadySince = new Map<string, number>();
  private readonly cancelling = new Set<string>();
  private readonly unmappedSaid = new Set<string>();
  private mappingTimer: ReturnType<typeof setInterval> | undefined;
  private mappingSoon: ReturnType<typeof setTimeout> | undefined;
  /** Cordons and uncordons asked for before the Nodes were first listed. */
  private readonly queued: QueuedAsks;
  /** The API server as a dependency of the reconciler (its health, what waits for it). */
  readonly dependency: Dependency;

  constructor(private readonly opts: KubeMirrorOptions) {
    this.client = opts.client;
    this.config = opts.config;
    this.host = opts.host;
    this.now = () => opts.host.now();
    this.log = (line) => opts.host.log(line);
    this.actor = opts.actor ?? "navarch";
    this.writes = new NodeWrites("kubernetes", this.log);
    this.dependency = opts.host.dependency("kubernetes", "the Kubernetes API", this.client.server);
    this.client.reportTo(this.dependency);
    this.queued = new QueuedAsks("kubernetes", { cordon: "cordon", uncordon: "uncordon" }, this.log);
    this.dependency.queuedBy(() => [...this.queued.waiting(), ...this.writes.waiting()]);
    // Back after an outage: writes waiting out their backoff go now.
    this.dependency.whenBack(() => this.writes.nudge());
    this.nodeCache = new Informer(this.client, {
      path: "/api/v1/nodes",
      schema: KubeNode,
      log: this.log,
      resyncMs: 5 * 60_000,
      onEvent: (event, node) => {
        if (event !== "deleted" && humanUncordoned(node, this.actor)) this.writes.track(this.onHumanUncordon(node));
        // A Node that joins (or leaves) is mapped within a second, not at the next 15 s sweep.
        if (event !== "modified" && this.nodeCache.synced) this.soonSyncMapping();
      },
    });
  }

  /**
   * Lists the Nodes (resolves once the cache is filled; rejects while the API server cannot be
   * read), then watches them; carries out what was queued meanwhile; maps Navarch nodes every 15 s.
   */
  async start(): Promise<void> {
    await this.nodeCache.start();
    await this.syncMapping().catch((err: unknown) => this.log(`kubernetes node mapping: ${String(err)}`));
    this.mappingTimer = setInterval(() => void this.syncMapping().catch((err: unknown) => this.log(`kubernetes node mapping: ${String(err)}`)), 15_000);
    await this.replayQueued().catch((err: unknown) => this.log(`kubernetes: carrying out the queued cordons: ${errText(err)}`));
  }

  /** What was asked while the Nodes could not be listed, once they are (schedulers/queued-asks.ts). */
  private async replayQueued(): Promise<void> {
    await this.queued.replay(this.host, async (ask, node) => {
      if (ask.action === "cordon") await this.cordon(node, ask.reason, ask.incidentId);
      else await this.uncordon(node);
    });
  }

  async stop(): Promise<void> {
    this.writes.stop();
    if (this.mappingTimer) clearInterval(this.mappingTimer);
    if (this.mappingSoon) clearTimeout(this.mappingSoon);
    for (const worker of this.workers.values()) worker.stop();
    this.workers.clear();
    await this.nodeCache.stop();
    await this.settle();
  }

  /** Waits for background writes (conditions, retries, human-uncordon handling) to finish. */
  settle(): Promise<void> {
    return this.writes.settle();
  }

  /** The drain worker's progress for a node, if one runs (tests, status pages). */
  drainProgress(nodeId: string): DrainProgress | undefined {
    return this.workers.get(nodeId)?.progress;
  }

  // ───────────────────────────── mapping ─────────────────────────────

  /** The Kubernetes Node a Navarch node maps to under kubernetes.node_mapping, from the cache. */
  mapNode(row: MappedFields): string | undefined {
    return kubeNodeFor(this.config, this.nodeCache, row);
  }

  private soonSyncMapping(): void {
    if (this.mappingSoon !== undefined || this.writes.isStopped) return;
    this.mappingSoon = setTimeout(() => {
      this.mappingSoon = undefined;
      this.writes.track(this.syncMapping());
    }, 500);
  }

  /**
   * Records the mapping of every live node through the host (shown in the node's details), and
   * gives each mapped Node its pool's labels and taints once.
   */
  async syncMapping(): Promise<void> {
    if (!this.nodeCache.synced) return;
    const rows = await this.host.nodes();
    const index = kubeNodeIndex(this.config, this.nodeCache);
    const marks = new Map<string, Promise<PoolMarks | undefined>>();
    for (const row of rows) {
      const name = index(row);
      if (name !== (row.mappedName ?? undefined)) await this.host.recordMapping(row.id, name ?? null);
      if (name === undefined) continue;
      if (IN_SERVICE.has(row.state)) this.clearStaleCordon(name, row.id);
      else await this.restoreLostCordon(name, row);
      if (row.pool !== null) {
        if (!marks.has(row.pool)) marks.set(row.pool, this.host.poolMarks(row.pool));
        const pool = await marks.get(row.pool);
        if (pool !== undefined) this.markNode(name, row.id, row.pool, pool);
      }
      // A node whose pool or machine Navarch does not know (a DaemonSet's agent): what the Node says.
      if (row.pool === null || row.instanceId === null) {
        const k8sNode = this.nodeCache.get(name);
        const pool = k8sNode?.metadata.labels?.[POOL_LABEL];
        const providerId = k8sNode?.spec.providerID ?? undefined;
        if ((row.pool === null && pool) || (row.instanceId === null && providerId)) {
          await this.host.describeMonitored(row.id, { ...(pool ? { pool } : {}), ...(providerId ? { providerId } : {}) });
        }
      }
    }
  }

  /**
   * Level-triggered undo: a Node still carrying our cordon while its Navarch node is back in
   * service (uncordoned through Navarch's own API, or an undo that failed while the API
   * server was away) is uncordoned. A cordon younger than a minute is left alone: the loop
   * writes the node's transition right after the cordon, and may not have yet.
   */
  private clearStaleCordon(name: string, nodeId: string): void {
    const annotations = this.nodeCache.get(name)?.metadata.annotations ?? {};
    if (annotations[ANNOTATIONS.cordonedBy] !== this.actor || annotations[ANNOTATIONS.node] !== nodeId) return;
    if (this.writes.pending(name) || Date.now() - (this.cordonedAt.get(name) ?? 0) < this.staleCordonMs) return;
    const at = Date.parse(annotations[ANNOTATIONS.at] ?? "");
    if (Number.isFinite(at) && this.now() - at < this.staleCordonMs) return;
    const intent = this.writes.intend(name);
    this.log(`kubernetes: ${nodeId} is in service again; undoing the cordon still on Node ${name}`);
    void this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "uncordon", () => this.removeCordon(name, "GpuHealthy", "back in service in Navarch; Navarch undid its cordon"));
    });
  }

  /**
   * A pool's labels and taints on a Node of its: what the Node lacks is added, once per Node
   * (the annotation says it was done), so a label or taint a human later removes or changes
   * stays as they left it. In the background, retried; never on the loop's time.
   */
  private markNode(name: string, nodeId: string, pool: string, marks: PoolMarks): void {
    const node = this.nodeCache.get(name);
    if (node === undefined || node.metadata.annotations?.[POOL_MARKS_ANNOTATION] !== undefined || this.writes.pending(name)) return;
    if (Object.keys(marks.labels).length === 0 && marks.taints.length === 0) return;
    const intent = this.writes.intend(name);
    void this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "pool labels and taints", async () => {
        const current = await this.getNode(name);
        const patch = poolMarksPatch(current, pool, marks);
        if (patch === undefined) return;
        const { ops, added } = patch;
        const updated = await this.client.request("PATCH", `/api/v1/nodes/${encodeURIComponent(name)}`, { body: ops, contentType: PATCH_JSON }, KubeNode);
        this.nodeCache.observe(updated);
        this.log(`kubernetes: Node ${name} (${nodeId}) has pool ${pool}'s ${added.length === 0 ? "labels and taints already" : added.join(", ")}`);
      });
    });
  }

  /**
   * Level-triggered cordon: a node Navarch took out whose Node carries no cordon of ours (the
   * write was queued in a process that stopped before the API server answered) is cordoned
   * again. A Node with our marks but schedulable is a human's uncordon, handled by the watch.
   */
  private async restoreLostCordon(name: string, row: SchedulerNodeView): Promise<void> {
    if (row.cordonedBy === null || !isIn("takenOut", row.state) || this.writes.pending(name) || this.queued.has(row.id)) return;
    const annotations = this.nodeCache.get(name)?.metadata.annotations ?? {};
    if (annotations[ANNOTATIONS.cordonedBy] === this.actor && annotations[ANNOTATIONS.node] === row.id) return;
    this.log(`kubernetes: ${row.id} is ${row.state} in Navarch but Node ${name} has no cordon of ours: cordoning it`);
    await this.cordon({ ...row, readings: async () => [] }, row.stateReason ?? `${row.state} in Navarch`, row.incidentId ?? 0);
  }

  /** The Node of a Navarch node, from the cache (never a request: the caller is the loop). Only once the Nodes were listed. */
  private async resolve(node: SchedulerNodeView): Promise<string | undefined> {
    const name = this.mapNode(node);
    if (name !== (node.mappedName ?? undefined)) await this.host.recordMapping(node.id, name ?? null);
    if (name === undefined && !this.unmappedSaid.has(node.id)) {
      this.unmappedSaid.add(node.id);
      this.log(`kubernetes: no Node for ${node.id} under node_mapping ${this.config.node_mapping}; nothing to cordon or drain there`);
    }
    return name;
  }

  // ───────────────────────────── cordon ─────────────────────────────

  /**
   * Starts the cordon and returns: the patch goes out at once on the cordon lane, in the
   * background, so a pass that cordons many nodes is not held up by the API server's latency
   * (and Kubernetes being down never holds up Navarch's own cordon; it is retried). drain()
   * waits for it to land.
   */
  async cordon(node: SchedulerNode, reason: string, incidentId: number): Promise<string | void> {
    if (!this.nodeCache.synced) return this.enqueue("cordon", node, reason, incidentId);
    const name = await this.resolve(node);
    if (name === undefined) return;
    const at = this.now();
    const intent = this.writes.intend(name);
    this.cordonedAt.set(name, Date.now());
    this.writes.enqueue(name, async () => {
      if (await this.writes.retrying(name, intent, "cordon", () => this.applyCordon(name, node.id, reason, incidentId, at))) {
        this.writeCondition(name, node.verdict, reason, incidentId);
      }
    });
    if (!this.dependency.up) return `the cordon of Node ${name} is retried until the API server answers: ${this.dependency.waiting()}`;
  }

  /** Queues a cordon or an uncordon until the Nodes are listed; says what it waits for. */
  private enqueue(action: AskAction, node: SchedulerNodeView, reason: string, incidentId: number): string {
    this.queued.ask(action, node, reason, incidentId);
    return `the Kubernetes ${action} is queued: ${this.dependency.waiting()}`;
  }

  /** Cordons the Node as it is now; false when it no longer exists (deleted meanwhile: nothing to cordon). */
  private async applyCordon(name: string, nodeId: string, reason: string, incidentId: number, at: number): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      let current = attempt === 0 ? this.nodeCache.get(name) : undefined;
      if (current === undefined) {
        try {
          current = await this.getNode(name);
        } catch (err) {
          if (!(err instanceof KubeApiError && err.status === 404)) throw err;
          this.log(`kubernetes: Node ${name} no longer exists: nothing to cordon for ${nodeId}`);
          return false;
        }
      }
      const ops = cordonPatch(current, { actor: this.actor, taintKey: this.config.taint_key, reason, incidentId, at, nodeId });
      if (ops === undefined) return true; // already done
      try {
        const updated = await this.client.request(
          "PATCH",
          `/api/v1/nodes/${encodeURIComponent(name)}`,
          { lane: "cordon", body: ops, contentType: PATCH_JSON },
          KubeNode,
        );
        this.nodeCache.observe(updated);
        return true;
      } catch (err) {
        if (isConflict(err) && attempt < 5) continue; // someone wrote the Node meanwhile: read it again
        if (err instanceof KubeApiError && err.status === 404) {
          this.log(`kubernetes: Node ${name} no longer exists: nothing to cordon for ${nodeId}`);
          return false;
        }
        throw err;
      }
    }
  }

  /** The GPU health verdict as a node condition (status subresource); in the background, retried. */
  private writeCondition(name: string, verdict: string | null, reason: string, incidentId: number): void {
    const healthy = verdict === null || verdict === "healthy";
    const status = healthy ? "True" : "False";
    const conditionReason = verdict === "unhealthy" ? "GpuUnhealthy" : verdict === "degraded" ? "GpuDegraded" : "GpuHealthy";
    const message = incidentId > 0 ? `${reason} (Navarch incident ${incidentId})` : reason;
    this.writes.track(this.patchCondition(name, status, conditionReason, message));
  }

  private async patchCondition(name: string, status: "True" | "False", reason: string, message: string): Promise<void> {
    const type = this.config.condition_type;
    const existing: Condition | undefined = this.nodeCache.get(name)?.status.conditions?.find((c) => c.type === type);
    const now = new Date().toISOString();
    const condition = {
      type,
      status,
      reason,
      message: textPrefix(message, 1000),
      lastHeartbeatTime: now,
      lastTransitionTime: existing?.status === status && existing.lastTransitionTime ? existing.lastTransitionTime : now,
    };
    for (let attempt = 0; attempt < 5 && !this.writes.isStopped; attempt++) {
      try {
        const updated = await this.client.request(
          "PATCH",
          `/api/v1/nodes/${encodeURIComponent(name)}/status`,
          // Strategic merge: conditions merge by type, so the kubelet's (KWOK's) stay as they are.
          { lane: "cordon", body: { status: { conditions: [condition] } }, contentType: PATCH_STRATEGIC },
          KubeNode,
        );
        this.nodeCache.observe(updated);
        return;
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return;
        if (attempt === 4) this.log(`kubernetes: condition ${type} on ${name}: ${errText(err)}`);
        else await this.writes.pause(200 * 2 ** attempt);
      }
    }
  }

  // ───────────────────────────── uncordon ─────────────────────────────

  async uncordon(node: SchedulerNode): Promise<void> {
    this.stopWorker(node.id);
    if (!this.nodeCache.synced) {
      // A cordon that never reached Kubernetes needs no undo; one that did is undone once the Nodes are listed.
      if (this.queued.action(node.id) === "cordon") this.queued.forget(node.id);
      else this.enqueue("uncordon", node, "", 0);
      return;
    }
    const name = await this.resolve(node);
    if (name === undefined) return;
    // After any cordon still on its way (whose retries stop: this is newer), retried until it lands.
    const intent = this.writes.intend(name);
    void this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "uncordon", () => this.removeCordon(name, "GpuHealthy", "recovered; Navarch undid its cordon"));
    });
  }

  /** Undoes what our annotations say we did; a Node that is not ours is left alone. */
  private async removeCordon(name: string, reason: string, message: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      let current: KubeNode;
      try {
        current = await this.getNode(name);
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return false;
        throw err;
      }
      const ops = uncordonPatch(current, this.actor, this.config.taint_key);
      if (ops === undefined) return false;
      try {
        const updated = await this.client.request(
          "PATCH",
          `/api/v1/nodes/${encodeURIComponent(name)}`,
          { lane: "cordon", body: ops, contentType: PATCH_JSON },
          KubeNode,
        );
        this.nodeCache.observe(updated);
        this.writes.track(this.patchCondition(name, "True", reason, message));
        return true;
      } catch (err) {
        if (isConflict(err) && attempt < 5) continue;
        throw err;
      }
    }
  }

  // ───────────────────────────── a human's uncordon ─────────────────────────────

  private async onHumanUncordon(node: KubeNode): Promise<void> {
    const name = node.metadata.name;
    const nodeId = node.metadata.annotations?.[ANNOTATIONS.node];
    if (nodeId === undefined || this.cancelling.has(nodeId)) return;
    this.cancelling.add(nodeId);
    this.writes.intend(name); // any cordon write still retrying gives up
    try {
      this.stopWorker(nodeId);
      const outcome = await this.host.externalUncordon(nodeId, `kubernetes (kubectl uncordon of node ${name})`);
      // Not a node of this reconciler's store: another Navarch's cordon, not ours to touch.
      if (outcome === "unknown_node") return;
      const cancelled = outcome === "cancelled";
      if (cancelled) this.log(`kubernetes: node ${name} was uncordoned in Kubernetes; cancelled Navarch's incident on ${nodeId}`);
      if (cancelled) this.host.wake();
      // Either way our taint and annotations no longer stand for anything: take them off (beside the loop, retried).
      const intent = this.writes.intend(name);
      void this.writes.enqueue(name, async () => {
        await this.writes.retrying(name, intent, "taking the cordon marks off", () =>
          this.removeCordon(name, "UncordonedByHuman", "uncordoned in Kubernetes; Navarch's incident was cancelled"),
        );
      });
    } catch (err) {
      this.log(`kubernetes: handling the uncordon of ${name}: ${errText(err)}`);
    } finally {
      this.cancelling.delete(nodeId);
    }
  }

  // ───────────────────────────── drain ─────────────────────────────

  async drain(node: SchedulerNode, deadlineAt: number, now: number): Promise<DrainProgress> {
    if (!this.nodeCache.synced) {
      // Never listed: the cordon is queued; the drain starts once the API server answers.
      if (!this.queued.has(node.id)) this.enqueue("cordon", node, node.stateReason ?? "drain requested", node.incidentId ?? 0);
      const waiting = this.dependency.waiting();
      return { done: false, detail: `the drain waits: ${waiting}`, waiting, again: true };
    }
    const name = await this.resolve(node);
    if (name === undefined)
      return { done: true, detail: `no Kubernetes Node for ${node.id} (node_mapping ${this.config.node_mapping}): nothing to drain there` };
    // Read at every step too, not only from the watch: a human's uncordon wins over our drain.
    const k8sNode = this.nodeCache.get(name);
    if (k8sNode !== undefined && humanUncordoned(k8sNode, this.actor)) {
      await this.onHumanUncordon(k8sNode);
      return { done: false, detail: "uncordoned in Kubernetes by a human: the incident is cancelled", again: true };
    }
    if (this.writes.pending(name)) {
      const waiting = this.dependency.up ? undefined : this.dependency.waiting();
      return {
        done: false,
        detail: `waiting for the cordon of ${name} to reach Kubernetes${waiting ? `: ${waiting}` : ""}`,
        ...(waiting ? { waiting } : {}),
        again: true,
      };
    }
    // A drain asked for without our cordon (a human's drain through Navarch's API): cordon first,
    // or the scheduler would put the evicted pods right back.
    if (k8sNode !== undefined && node.state === "draining" && k8sNode.metadata.annotations?.[ANNOTATIONS.cordonedBy] !== this.actor) {
      await this.cordon(node, node.stateReason ?? "drain requested", node.incidentId ?? 0);
      return { done: false, detail: `cordoning ${name} in Kubernetes before the drain`, again: true };
    }
    let worker = this.workers.get(node.id);
    if (worker === undefined || worker.name !== name) {
      worker?.stop();
      worker = new DrainWorker(this.client, name, this.config, this.log, this.opts.drainRoundMs ?? 1000, (detail) =>
        this.writes.track(this.annotateDrain(name, detail)),
      );
      this.workers.set(node.id, worker);
      worker.start();
    }
    worker.polledAt = Date.now();
    // The dead-kubelet fast path: the Node is not Ready and the agent is silent, both for unreachable_after.
    const ready = k8sNode?.status.conditions?.find((c) => c.type === "Ready")?.status;
    if (ready !== "True") {
      if (!this.notReadySince.has(name)) this.notReadySince.set(name, now);
    } else this.notReadySince.delete(name);
    const wait = this.config.drain.unreachable_after;
    const notReadyFor = now - (this.notReadySince.get(name) ?? now);
    const agentSilent = node.lastHeartbeatAt === null || now - node.lastHeartbeatAt >= wait;
    if (ready !== "True" && notReadyFor >= wait && agentSilent && worker.mode !== "force") {
      worker.setMode(
        "force",
        `Node not Ready for ${Math.round(notReadyFor / 1000)} s and its agent silent: deleting pods with a 1 s grace period (dead kubelet)`,
      );
      worker.deadlineSeen = undefined; // the deadline's own round, if one comes, is a force round now
      worker.wake();
    }
    if (now >= deadlineAt && worker.mode !== "force") {
      // What the deadline means is decided on a round that started after it (deleting what is
      // left, or holding), never on an older one: until that round is in, ask again.
      if (worker.deadlineSeen === undefined) {
        worker.deadlineSeen = Date.now();
        if (this.config.drain.on_deadline === "delete" && worker.mode !== "delete")
          worker.setMode("delete", "drain deadline passed: deleting the pods that are left");
        worker.wake();
      }
      if (!worker.roundSince(worker.deadlineSeen)) {
        const waiting = this.dependency.up ? undefined : this.dependency.waiting();
        return {
          done: false,
          again: true,
          detail: `drain deadline passed: looking at what is left on ${name}${waiting ? ` (${waiting})` : ""}`,
          ...(waiting ? { waiting } : {}),
        };
      }
      if (this.config.drain.on_deadline === "hold" && !worker.progress.done) {
        return { ...worker.progress, hold: `drain deadline passed with ${worker.progress.detail}; held (kubernetes.drain.on_deadline: hold)` };
      }
    }
    if (!this.dependency.up) {
      const waiting = this.dependency.waiting();
      return { ...worker.progress, detail: `${worker.progress.detail} (${waiting})`, waiting };
    }
    return worker.progress;
  }

  /** Drain progress on the Node itself (kubectl describe node shows it). */
  private async annotateDrain(name: string, detail: string): Promise<void> {
    const node = this.nodeCache.get(name);
    if (node?.metadata.annotations?.[ANNOTATIONS.cordonedBy] !== this.actor) return;
    try {
      const updated = await this.client.request(
        "PATCH",
        `/api/v1/nodes/${encodeURIComponent(name)}`,
        // Not the cordon lane: progress notes must never delay a cordon.
        {
          lane: "default",
          body: { metadata: { annotations: { [ANNOTATIONS.drain]: textPrefix(detail, 1000) } } },
          contentType: "application/merge-patch+json",
        },
        KubeNode,
      );
      this.nodeCache.observe(updated);
    } catch (err) {
      this.log(`kubernetes: drain status on ${name}: ${errText(err)}`);
    }
  }

  private stopWorker(nodeId: string): void {
    this.workers.get(nodeId)?.stop();
    this.workers.delete(nodeId);
  }

  private getNode(name: string): Promise<KubeNode> {
    return this.client.request("GET", `/api/v1/nodes/${encodeURIComponent(name)}`, { lane: "cordon" }, KubeNode);
  }
}

function isConflict(err: unknown): boolean {
  // 409: resourceVersion conflict; 422: a failed JSON patch `test` of the resourceVersion (read again, retry).
  return err instanceof KubeApiError && (err.status === 409 || err.status === 422);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
