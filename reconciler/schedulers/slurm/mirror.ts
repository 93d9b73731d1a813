// The Slurm side of a Navarch cordon and drain (SchedulerMirror).
//
// Cordon: the mapped Slurm node is set DRAIN with a reason saying what Navarch saw, and our
// marker goes in its comment (marker.ts), in one update; a node someone else drained keeps
// their DRAIN and reason and gets only the marker. The write goes out in the background,
// per node in order, retried until it lands or a newer cordon/uncordon supersedes it:
// Slurm being down never holds up Navarch's own cordon.
// Uncordon: RESUME, only when the DRAIN is ours (its reason), and the marker comes off.
// Drain: Slurm stops placing jobs on a DRAIN node by itself; the drain waits until the node
// has no running job, as Slurm reports it (`drained`). At the pool's drain deadline the
// jobs left are requeued (`scontrol requeue`: they go back to pending and run elsewhere),
// or the node is held for a human (slurm.drain.on_deadline: hold). A job that may not be
// requeued (--no-requeue) is never killed: the node is held.
// A human's resume (`scontrol update nodename=… state=resume`) clears the DRAIN but not the
// comment: a marker on a node that is no longer drained cancels Navarch's incident through
// the host (Operator.uncordon), seen at the next poll and checked again at every drain step.
// Every 15 s the mapping of every live node is recorded, and a drain of ours on a node
// whose Navarch node is in service (a replacement on the same Slurm node, an uncordon
// through Navarch's API) is resumed.
// No call of the mirror's waits for slurmrestd: the loop's calls read the last listing (polled
// every poll_interval) and start reads beside the loop. A cordon or an uncordon asked for
// before the first listing (slurmrestd down since start), or for a node the listing lacks, is
// queued per node and carried out, in order, after the next listing, checked against the node's
// state then. Writes that fail are retried with backoff, and all try again when slurmrestd answers.
import type { SlurmConfig } from "../../../schema/config.ts";
import { isIn } from "../../../schema/lifecycle.ts";
import type { Dependency } from "../../dependencies/status.ts";
import { type DrainProgress, type SchedulerHost, type SchedulerMirror, type SchedulerNode, type SchedulerNodeView } from "../scheduler.ts";
import { NodeWrites } from "../node-writes.ts";
import { QueuedAsks, type AskAction } from "../queued-asks.ts";
import type { SlurmNode } from "./api.ts";
import type { SlurmCache } from "./cache.ts";
import type { SlurmClient } from "./client.ts";
import { slurmNodeIndex, type MappedFields } from "./mapping.ts";
import { drainedByUs, drainReason, isDrained, readMarker, withMarker, withoutMarker } from "./marker.ts";

/** Job states that hold a node: a drain waits for them. */
const ON_NODE = new Set(["RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"]);
/** Node base states in which jobs are allocated. */
const BUSY = new Set(["allocated", "mixed", "completing"]);

export interface SlurmMirrorOptions {
  client: SlurmClient;
  cache: SlurmCache;
  config: SlurmConfig;
  host: SchedulerHost;
  /** How often every live node's mapping is recorded and stale drains resumed (ms). */
  sweepIntervalMs?: number;
}

export class SlurmMirror implements SchedulerMirror {
  readonly name = "slurm";
  /** How old our cordon must be before a node back in service counts as stale (see clearStaleDrain). */
  staleCordonMs = 60_000;
  private readonly client: SlurmClient;
  private readonly cache: SlurmCache;
  private readonly config: SlurmConfig;
  private readonly host: SchedulerHost;
  /** Writes to each Slurm node, in order (a drain, then its undo), retried, in the background. */
  private readonly writes: NodeWrites;
  /** When (real time) our drain of each node landed: job listings older than that do not count. */
  private readonly landedAt = new Map<string, number>();
  /** When (real time) we last asked for a cordon of each node. */
  private readonly cordonedAt = new Map<string, number>();
  /** Jobs we requeued, per Navarch node, for the drain's outcome. */
  private readonly requeued = new Map<string, Set<number>>();
  private readonly handling = new Set<string>();
  /** Markers naming nodes this reconciler does not have (another Navarch's): left alone, asked about once. */
  private readonly foreign = new Set<string>();
  private readonly said = new Set<string>();
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private lastSweepAt = 0;
  /** Cordons and uncordons waiting for a listing that maps their node. */
  private readonly queued: QueuedAsks;
  /** Jobs whose requeue (scontrol, beside the loop) is under way, per Navarch node; and when the last requeue of each node ended (real time). */
  private readonly requeueing = new Map<string, Set<number>>();
  private readonly requeuedAt = new Map<string, number>();
  /** When a node missing from the listing was first asked about (real time): a listing started after says it is not in the cluster. */
  private readonly firstAsked = new Map<string, number>();
  /** slurmrestd as a dependency of the reconciler (its health, what waits for it). */
  readonly dependency: Dependency;
  /** What mapping looked at in the last listing: when it changes (a machine joined), sweep at once. */
  private mappingKey = "";

  constructor(private readonly opts: SlurmMirrorOptions) {
    this.client = opts.client;
    this.cache = opts.cache;
    this.config = opts.config;
    this.host = opts.host;
    this.writes = new NodeWrites("slurm", (line) => this.log(line));
    this.dependency = opts.host.dependency("slurm", "slurmrestd", opts.client.url);
    opts.client.reportTo(this.dependency);
    this.queued = new QueuedAsks("slurm", { cordon: "drain", uncordon: "resume" }, (line) => this.log(line));
    this.dependency.queuedBy(() => [...this.queued.waiting(), ...this.writes.waiting()]);
    // Back after an outage: writes waiting out their backoff go now.
    this.dependency.whenBack(() => this.writes.nudge());
  }

  /** Reads the nodes once (rejects while Slurm cannot be read), carries out what was queued meanwhile, then polls. */
  async start(): Promise<void> {
    const { items } = await this.cache.nodes.refresh();
    this.mappingKey = mappingKey(items);
    await this.sweep().catch((err: unknown) => this.log(`slurm: node mapping: ${errText(err)}`));
    this.lastSweepAt = Date.now();
    await this.replayQueued();
    this.schedulePoll();
  }

  async stop(): Promise<void> {
    this.writes.stop();
    if (this.pollTimer) clearTimeout(this.pollTimer);
    await this.settle();
  }

  /** Waits for background writes (drains, resumes, a human's resume) to finish. */
  settle(): Promise<void> {
    return this.writes.settle();
  }

  // ───────────────────────────── polling ─────────────────────────────

  private schedulePoll(): void {
    if (this.writes.isStopped) return;
    this.pollTimer = setTimeout(() => this.writes.track(this.poll().finally(() => this.schedulePoll())), this.config.poll_interval);
  }

  /** One poll: read the nodes, handle a human's resume; every sweep interval, sweep. */
  async poll(): Promise<void> {
    try {
      const { items } = await this.cache.nodes.refresh();
      this.said.delete("poll");
      for (const node of items) {
        const marker = readMarker(node.comment);
        if (marker === undefined || isDrained(node) || this.writes.pending(node.name)) continue;
        if (!this.foreign.has(`${node.name}:${marker.nodeId}:${marker.at}`)) await this.onHumanResume(node.name, marker.nodeId, marker.at);
      }
      const key = mappingKey(items);
      if (key !== this.mappingKey) {
        this.mappingKey = key;
        this.lastSweepAt = 0;
      }
      await this.replayQueued();
    } catch (err) {
      this.once("poll", `slurm: cannot read the nodes (retrying every ${this.config.poll_interval / 1000} s): ${errText(err)}`);
      return;
    }
    if (Date.now() - this.lastSweepAt >= (this.opts.sweepIntervalMs ?? 15_000)) {
      this.lastSweepAt = Date.now();
      await this.sweep().catch((err: unknown) => this.log(`slurm: node mapping: ${errText(err)}`));
    }
  }

  // ───────────────────────────── mapping ─────────────────────────────

  /** The Slurm node a Navarch node maps to, in the latest listing. */
  mapNode(node: MappedFields): SlurmNode | undefined {
    const listing = this.cache.nodes.latest?.items ?? [];
    return slurmNodeIndex(this.config, listing)(node);
  }

  /**
   * Maps a node for a mirror call, from the last listing (never a request: the caller is the
   * loop). A node the listing lacks is `unlisted`: a machine that just joined (or was just
   * renamed) must not read as "no Slurm node, nothing to drain" before a listing started after
   * the ask says so (the caller queues the ask until then).
   */
  private async resolve(node: SchedulerNodeView, askedAt?: number): Promise<{ name: string } | "unlisted" | "none"> {
    const listing = this.cache.nodes.latest;
    const found = listing === undefined ? undefined : this.mapNode(node);
    const asked = askedAt ?? this.firstAsked.get(node.id) ?? Date.now();
    if (found === undefined && (listing === undefined || listing.at < asked)) {
      this.firstAsked.set(node.id, asked);
      this.cache.nodes.peek(asked, () => this.host.wake());
      return "unlisted";
    }
    this.firstAsked.delete(node.id);
    const name = found?.name;
    if ((name ?? null) !== node.mappedName) await this.host.recordMapping(node.id, name ?? null);
    if (name === undefined) {
      if (!this.said.has(`unmapped:${node.id}`)) {
        this.said.add(`unmapped:${node.id}`);
        this.log(`slurm: no Slurm node for ${node.id} under node_mapping ${this.config.node_mapping}; nothing to drain there`);
      }
      return "none";
    }
    return { name };
  }

  /** Queues a cordon or an uncordon until a listing maps its node; says what it waits for. */
  private enqueue(action: AskAction, node: SchedulerNodeView, reason: string, incidentId: number, since = Date.now()): string {
    this.queued.ask(action, node, reason, incidentId, since);
    return `the Slurm ${action === "cordon" ? "drain" : "resume"} is queued: ${this.dependency.up ? "waiting for a listing of the cluster's nodes" : this.dependency.waiting()}`;
  }

  /** What was asked before a listing mapped its node, once one does (schedulers/queued-asks.ts). */
  private async replayQueued(): Promise<void> {
    await this.queued.replay(this.host, async (ask, node) => {
      if (ask.action === "cordon") await this.cordon(node, ask.reason, ask.incidentId, ask.since);
      else await this.uncordon(node, ask.since);
    });
  }

  /** Records every live node's mapping; resumes drains of ours left on nodes back in service. */
  async sweep(): Promise<void> {
    const listing = this.cache.nodes.latest?.items;
    if (listing === undefined) return;
    const index = slurmNodeIndex(this.config, listing);
    const views = await this.host.nodes();
    const byId = new Map(views.map((view) => [view.id, view]));
    for (const view of views) {
      const slurmNode = index(view);
      if ((slurmNode?.name ?? null) !== view.mappedName) await this.host.recordMapping(view.id, slurmNode?.name ?? null);
      // Ready or suspect: a validating replacement gets no jobs before its health check passes.
      if (slurmNode !== undefined && isIn("inService", view.state)) this.clearStaleDrain(slurmNode, view, byId);
      else if (slurmNode !== undefined) await this.restoreLostDrain(slurmNode, view);
    }
  }

  /**
   * Level-triggered undo: a Slurm node still carrying our drain while the Navarch node on it
   * is in service is resumed. That is a replacement machine on the Slurm node its predecessor
   * left drained, a node uncordoned through Navarch's own API, or an undo that failed while
   * Slurm was away. A cordon of this very node younger than a minute is left alone: the loop
   * writes the node's transition right after the cordon, and may not have yet.
   */
  private clearStaleDrain(slurmNode: SlurmNode, view: SchedulerNodeView, views: ReadonlyMap<string, SchedulerNodeView>): void {
    const marker = readMarker(slurmNode.comment);
    if (marker === undefined && !drainedByUs(slurmNode)) return;
    const name = slurmNode.name;
    if (this.writes.pending(name)) return;
    if (marker?.nodeId === view.id || marker === undefined) {
      if (Date.now() - (this.cordonedAt.get(name) ?? 0) < this.staleCordonMs) return;
      if (marker !== undefined && this.host.now() - marker.at < this.staleCordonMs) return;
    } else {
      // The cordon is for another Navarch node: leave it while that node is still taken out.
      const owner = views.get(marker.nodeId);
      if (owner !== undefined && isIn("takenOut", owner.state)) return;
    }
    const intent = this.writes.intend(name);
    const whose = marker !== undefined && marker.nodeId !== view.id ? ` (left by ${marker.nodeId})` : "";
    this.log(`slurm: ${view.id} is in service on ${name}; resuming Navarch's drain still on it${whose}`);
    this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "resume", () => this.undoCordon(name));
    });
  }

  /**
   * Level-triggered drain: a node Navarch took out whose Slurm node carries no marker of ours
   * (the drain was queued in a process that stopped before slurmrestd answered) is drained
   * again. A marker on a node no longer drained is a human's resume, handled by the poll.
   */
  private async restoreLostDrain(slurmNode: SlurmNode, view: SchedulerNodeView): Promise<void> {
    if (view.cordonedBy === null || !isIn("takenOut", view.state) || this.writes.pending(slurmNode.name) || this.queued.has(view.id)) return;
    if (readMarker(slurmNode.comment)?.nodeId === view.id) return;
    this.log(`slurm: ${view.id} is ${view.state} in Navarch but ${slurmNode.name} carries no drain of ours: draining it`);
    await this.cordon({ ...view, readings: async () => [] }, view.stateReason ?? `${view.state} in Navarch`, view.incidentId ?? 0);
  }

  // ───────────────────────────── cordon ─────────────────────────────

  /** Starts the drain write and returns; drain() waits for it to land. */
  async cordon(node: SchedulerNode, reason: string, incidentId: number, askedAt?: number): Promise<string | void> {
    const resolved = await this.resolve(node, askedAt);
    if (resolved === "unlisted") return this.enqueue("cordon", node, reason, incidentId, askedAt ?? Date.now());
    if (resolved === "none") return;
    const name = resolved.name;
    const at = this.host.now();
    const intent = this.writes.intend(name);
    this.cordonedAt.set(name, Date.now());
    this.requeued.delete(node.id);
    void this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "drain", () => this.applyDrain(name, node.id, reason, incidentId, at));
    });
    if (!this.dependency.up) return `the drain of Slurm node ${name} is retried until slurmrestd answers: ${this.dependency.waiting()}`;
  }

  private async applyDrain(name: string, nodeId: string, reason: string, incidentId: number, at: number): Promise<void> {
    const current = await this.client.node(name);
    if (current === undefined) {
      // Deleted meanwhile: nothing to drain (read before acting, never retried for ever).
      this.log(`slurm: node ${name} is gone from Slurm: nothing to drain for ${nodeId}`);
      return;
    }
    const comment = withMarker(current.comment, { nodeId, incidentId, at });
    if (isDrained(current) && !drainedByUs(current)) {
      // Someone else's drain stays theirs (never resumed by us): only our marker is added.
      await this.client.updateNode(name, { comment });
      this.log(`slurm: ${name} was already drained by ${current.reasonSetBy ?? "someone"} ("${current.reason}"); marked for ${nodeId}`);
    } else {
      await this.client.updateNode(name, { state: "DRAIN", reason: drainReason(reason, incidentId), comment });
      this.log(`slurm: drained ${name} for ${nodeId}: ${reason}`);
    }
    this.landedAt.set(name, Date.now());
  }

  // ───────────────────────────── uncordon ─────────────────────────────

  async uncordon(node: SchedulerNode, askedAt?: number): Promise<void> {
    const resolved = await this.resolve(node, askedAt);
    if (resolved === "unlisted") {
      // A drain that never reached Slurm needs no undo; one that did is undone once a listing maps the node.
      if (this.queued.action(node.id) === "cordon") this.queued.forget(node.id);
      else this.enqueue("uncordon", node, "", 0, askedAt ?? Date.now());
      return;
    }
    if (resolved === "none") return;
    const name = resolved.name;
    this.requeued.delete(node.id);
    const intent = this.writes.intend(name);
    void this.writes.enqueue(name, async () => {
      await this.writes.retrying(name, intent, "resume", () => this.undoCordon(name));
    });
  }

  /** Resumes the node if the DRAIN is ours and takes our marker off; a node not ours is left alone. */
  private async undoCordon(name: string): Promise<void> {
    const current = await this.client.node(name);
    if (current === undefined) return;
    const ours = drainedByUs(current);
    if (!ours && readMarker(current.comment) === undefined) return;
    await this.client.updateNode(name, { ...(ours ? { state: "RESUME" as const } : {}), comment: withoutMarker(current.comment) });
    this.landedAt.delete(name);
    this.log(ours ? `slurm: resumed ${name}` : `slurm: ${name} is not drained by Navarch; took Navarch's marker off`);
  }

  // ───────────────────────────── a human's resume ─────────────────────────────

  private async onHumanResume(name: string, nodeId: string, markedAt: number): Promise<void> {
    if (this.handling.has(nodeId)) return;
    this.handling.add(nodeId);
    try {
      const outcome = await this.host.externalUncordon(nodeId, `slurm (scontrol update state=resume of node ${name})`);
      // Not a node of this reconciler's store: another Navarch's marker, not ours to touch.
      if (outcome === "unknown_node") {
        this.foreign.add(`${name}:${nodeId}:${markedAt}`);
        return;
      }
      const intent = this.writes.intend(name); // any drain of ours still retrying gives up
      if (outcome === "cancelled") this.log(`slurm: node ${name} was resumed in Slurm; cancelled Navarch's incident on ${nodeId}`);
      this.requeued.delete(nodeId);
      if (outcome === "cancelled") this.host.wake();
      // Either way our marker no longer stands for anything: the node stays as the human left it (beside the loop, retried).
      void this.writes.enqueue(name, async () => {
        await this.writes.retrying(name, intent, "taking Navarch's marker off", async () => {
          const current = await this.client.node(name);
          if (current !== undefined && readMarker(current.comment) !== undefined)
            await this.client.updateNode(name, { comment: withoutMarker(current.comment) });
        });
      });
    } catch (err) {
      this.log(`slurm: handling the resume of ${name}: ${errText(err)}`);
    } finally {
      this.handling.delete(nodeId);
    }
  }

  // ───────────────────────────── drain ─────────────────────────────

  async drain(node: SchedulerNode, deadlineAt: number, now: number): Promise<DrainProgress> {
    const resolved = await this.resolve(node);
    if (resolved === "unlisted") {
      if (!this.queued.has(node.id)) this.enqueue("cordon", node, node.stateReason ?? "drain requested", node.incidentId ?? 0);
      return this.waiting(`the drain waits for a listing of the cluster's nodes`);
    }
    if (resolved === "none") return { done: true, detail: `no Slurm node for ${node.id} (node_mapping ${this.config.node_mapping}): nothing to drain there` };
    const name = resolved.name;
    if (this.writes.pending(name)) return this.waiting(`waiting for the drain of ${name} to reach Slurm`);
    // The node as the last listing shows it (polled every poll_interval), never older than our drain's landing.
    const notBefore = Math.max(this.landedAt.get(name) ?? 0, Date.now() - this.config.poll_interval);
    const listing = this.cache.nodes.peek(notBefore, () => this.host.wake());
    if (listing === undefined) return this.waiting(`reading Slurm node ${name}`);
    const current = listing.items.find((n) => n.name === name);
    if (current === undefined) return { done: true, detail: `Slurm node ${name} is gone: nothing to drain there` };
    const marker = readMarker(current.comment);
    // Checked at every step too, not only by the poll: a human's resume wins over our drain.
    if (marker?.nodeId === node.id && !isDrained(current)) {
      await this.onHumanResume(name, node.id, marker.at);
      return { done: false, detail: `resumed in Slurm by a human: the incident is cancelled`, again: true };
    }
    // A drain asked for without our cordon (a human's drain through Navarch's API): drain in Slurm
    // first, or Slurm would go on placing jobs on the node.
    if (marker?.nodeId !== node.id || !isDrained(current)) {
      await this.cordon(node, node.stateReason ?? "drain requested", node.incidentId ?? 0);
      return { done: false, detail: `draining ${name} in Slurm before waiting for its jobs`, again: true };
    }
    // A listing from before our drain landed (or before our last requeue ended) may miss a job.
    const jobsNotBefore = Math.max(notBefore, this.requeuedAt.get(node.id) ?? 0);
    const snapshot = this.cache.jobs.peek(jobsNotBefore, () => this.host.wake());
    if (snapshot === undefined) return this.waiting(`reading Slurm's jobs on ${name}`);
    const jobs = snapshot.items.filter((j) => ON_NODE.has(j.state) && j.nodes.includes(name));
    const requeued = this.requeued.get(node.id);
    const requeuedNote = requeued !== undefined && requeued.size > 0 ? `; requeued at the deadline: ${list([...requeued])}` : "";
    const busy = BUSY.has(current.state) || current.flags.includes("COMPLETING");
    if (jobs.length === 0 && !busy) return { done: true, detail: `no jobs left on ${name}${requeuedNote}` };
    const running =
      jobs.length > 0
        ? `${jobs.length} job(s) running on ${name} (${list(jobs.map((j) => j.id))})`
        : `${name} is still ${current.state}${current.flags.includes("COMPLETING") ? " (completing)" : ""}`;
    if (now < deadlineAt) return { done: false, detail: `${running}${requeuedNote}` };
    if (this.config.drain.on_deadline === "hold") {
      return { done: false, detail: running, hold: `drain deadline passed with ${running}; held (slurm.drain.on_deadline: hold)` };
    }
    const refuse = jobs.filter((j) => !j.requeue);
    if (refuse.length > 0) {
      return {
        done: false,
        detail: running,
        hold: `drain deadline passed; job(s) ${list(refuse.map((j) => j.id))} on ${name} may not be requeued (--no-requeue): held for a human`,
      };
    }
    const requeueing = this.requeueing.get(node.id);
    if (requeueing !== undefined) return this.waiting(`requeueing job(s) ${list([...requeueing])} from ${name} at the drain deadline`);
    // Requeued already and COMPLETING (its processes being killed): not running any more.
    const left = jobs.filter((j) => !(requeued?.has(j.id) === true && j.state === "COMPLETING"));
    const fresh = left.filter((j) => !(requeued?.has(j.id) ?? false));
    if (fresh.length > 0) {
      this.requeue(
        node.id,
        name,
        fresh.map((j) => j.id),
      );
      return this.waiting(`${running}; requeueing job(s) ${list(fresh.map((j) => j.id))} at the drain deadline`);
    }
    if (left.length === 0) return { done: true, detail: `no jobs left running on ${name}; requeued at the deadline: ${list([...(requeued ?? [])])}` };
    return {
      done: false,
      detail: `requeued at the drain deadline: ${list([...(requeued ?? [])])}; ${left.length} job(s) still running on ${name} (${list(left.map((j) => j.id))})`,
    };
  }

  /** Requeues jobs (scontrol) beside the loop; a later drain step reads the outcome. */
  private requeue(nodeId: string, name: string, ids: number[]): void {
    this.requeueing.set(nodeId, new Set(ids));
    this.writes.track(
      this.client
        .requeue(ids)
        .then(() => {
          const done = this.requeued.get(nodeId) ?? new Set<number>();
          for (const id of ids) done.add(id);
          this.requeued.set(nodeId, done);
          this.log(`slurm: drain deadline of ${nodeId} passed: requeued job(s) ${list(ids)} from ${name}`);
        })
        .catch((err: unknown) => this.log(`slurm: requeue of job(s) ${list(ids)} from ${name} at the drain deadline failed (retrying): ${errText(err)}`))
        .finally(() => {
          this.requeueing.delete(nodeId);
          this.requeuedAt.set(nodeId, Date.now());
          this.host.wake();
        }),
    );
  }

  /**
   * Not done, and not final: what the drain is reading or waiting for (with slurmrestd's state
   * when it does not answer). Past the deadline the loop asks again rather than act unread.
   */
  private waiting(detail: string): DrainProgress {
    if (this.dependency.up) return { done: false, detail, again: true };
    const waiting = this.dependency.waiting();
    return { done: false, detail: `${detail}: ${waiting}`, waiting, again: true };
  }

  // ───────────────────────────── writes ─────────────────────────────

  private log(line: string): void {
    this.host.log(line);
  }

  private once(key: string, line: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.log(line);
  }
}

/** What mapping looks at in a listing. */
function mappingKey(nodes: readonly SlurmNode[]): string {
  return nodes.map((n) => `${n.name}|${n.hostname}|${n.features.join(",")}`).join(";");
}

function list(ids: readonly number[]): string {
  return ids.length > 5 ? `${ids.slice(0, 5).join(", ")}, …` : ids.join(", ");
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
