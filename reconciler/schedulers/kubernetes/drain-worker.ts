// Draining one Kubernetes Node in the background, round after round: each round lists the
// Node's pods and evicts them through the Eviction API (PodDisruptionBudgets respected: 429 is
// retried with backoff), leaves DaemonSet and mirror pods alone, and evicts emptyDir pods only
// when kubernetes.drain.delete_emptydir_data says so. The mirror's drain step steers it: at the
// pool's drain deadline it deletes what is left ("delete" mode); on the dead-kubelet fast path
// ("force" mode) it deletes with a 1 s grace period and a pod whose deletion is past due counts
// as gone (nothing will confirm it). Its progress is what the drain step reports: nobody waits
// for an eviction.
import type { KubernetesConfig } from "../../../schema/config.ts";
import { KubeApiError, type KubeClient } from "../../clients/kube/client.ts";
import { Pod } from "../../clients/kube/types.ts";
import type { DrainProgress } from "../scheduler.ts";

/** The annotation of a static pod's mirror on the API server: the kubelet's, not ours to evict. */
const MIRROR_ANNOTATION = "kubernetes.io/config.mirror";

type DrainMode = "evict" | "delete" | "force";

interface PodRetry {
  at: number;
  attempts: number;
  why: string;
}

/** Drains one Node in the background, round after round, until stopped. */
export class DrainWorker {
  progress: DrainProgress = { done: false, detail: "starting the drain" };
  mode: DrainMode = "evict";
  polledAt = Date.now();
  /** When (real time) the drain step first saw the deadline passed (on_deadline: hold). */
  deadlineSeen: number | undefined;
  /** When (real time) the last round that completed had started. */
  private lastRoundStartedAt = 0;
  private modeNote = "";
  private stopped = false;
  /** Whether its rounds run (they end once nobody asked for a while). */
  private looping = false;
  private wakeUp: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private readonly retries = new Map<string, PodRetry>();
  private evicted = 0;
  private deleted = 0;
  private lastDetail = "";

  constructor(
    private readonly client: KubeClient,
    readonly name: string,
    private readonly config: KubernetesConfig,
    private readonly log: (line: string) => void,
    private readonly roundMs: number,
    private readonly report: (detail: string) => void,
  ) {}

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.wakeUp?.();
  }

  /** A round starts now (not after the pause between rounds); the caller never waits for it. */
  wake(): void {
    if (this.looping) this.wakeUp?.();
    else if (!this.stopped) this.start();
  }

  /** Whether a round that started at or after `at` (real time) has completed. */
  roundSince(at: number): boolean {
    return this.lastRoundStartedAt >= at;
  }

  setMode(mode: DrainMode, note: string): void {
    this.mode = mode;
    this.modeNote = note;
    this.retries.clear();
    this.log(`kubernetes: drain of ${this.name}: ${note}`);
  }

  /** One round now (rounds never overlap). */
  round(): Promise<void> {
    this.running ??= this.doRound().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      await this.rounds();
    } finally {
      this.looping = false;
    }
  }

  private async rounds(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.round();
      } catch (err) {
        this.progress = { done: false, detail: `cannot read the Node's pods: ${errText(err)}` };
      }
      // Done and no longer asked about: the reconciler has moved on.
      if (this.progress.done && Date.now() - this.polledAt > 60_000) return;
      if (Date.now() - this.polledAt > 10 * 60_000) return;
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
        setTimeout(resolve, this.progress.done ? this.roundMs * 4 : this.roundMs);
      });
    }
  }

  private async doRound(): Promise<void> {
    if (this.stopped) return;
    const startedAt = Date.now();
    await this.listAndAct();
    this.lastRoundStartedAt = startedAt;
  }

  private async listAndAct(): Promise<void> {
    const { items } = await this.client.list(`/api/v1/pods`, Pod, { lane: "default", query: { fieldSelector: `spec.nodeName=${this.name}` } });
    const now = Date.now();
    let daemonSet = 0;
    let mirror = 0;
    let terminating = 0;
    const blocked: string[] = [];
    const emptyDir: string[] = [];
    let pending = 0;
    for (const pod of items) {
      const meta = pod.metadata;
      if (meta.annotations?.[MIRROR_ANNOTATION] !== undefined) {
        mirror++;
        continue;
      }
      if ((meta.ownerReferences ?? []).some((o) => o.controller === true && o.kind === "DaemonSet")) {
        daemonSet++;
        continue;
      }
      const podName = `${meta.namespace ?? "default"}/${meta.name}`;
      if (meta.deletionTimestamp) {
        if (this.mode === "force") {
          const due = Date.parse(meta.deletionTimestamp);
          // A dead kubelet never confirms a deletion: past its grace period, it counts as gone.
          if (due + 1000 < now) continue;
          // Evicted earlier with a long grace period: shorten it to 1 s (once).
          if (due > now + 2000 && !this.retries.has(`force:${meta.uid ?? podName}`)) {
            this.retries.set(`force:${meta.uid ?? podName}`, { at: Number.POSITIVE_INFINITY, attempts: 1, why: "force" });
            await this.act(pod);
          }
        }
        terminating++;
        continue;
      }
      const retry = this.retries.get(meta.uid ?? podName);
      const usesEmptyDir = (pod.spec.volumes ?? []).some((vol) => vol.emptyDir !== undefined && vol.emptyDir !== null);
      if (this.mode === "evict" && usesEmptyDir && !this.config.drain.delete_emptydir_data) {
        emptyDir.push(podName);
        continue;
      }
      if (retry !== undefined && retry.at > now) {
        if (retry.why === "pdb") blocked.push(podName);
        else pending++;
        continue;
      }
      const outcome = await this.act(pod);
      if (outcome === "gone") continue;
      if (outcome === "started") {
        terminating++;
        this.retries.delete(meta.uid ?? podName);
        continue;
      }
      const attempts = (retry?.attempts ?? 0) + 1;
      const backoff = Math.min(this.config.drain.max_backoff, 1000 * 2 ** Math.min(attempts - 1, 10));
      this.retries.set(meta.uid ?? podName, { at: now + backoff, attempts, why: outcome });
      if (outcome === "pdb") blocked.push(podName);
      else pending++;
    }
    const left = terminating + blocked.length + emptyDir.length + pending;
    const parts: string[] = [];
    if (terminating > 0) parts.push(`${terminating} terminating`);
    if (blocked.length > 0)
      parts.push(`${blocked.length} blocked by a PodDisruptionBudget (${blocked.slice(0, 3).join(", ")}${blocked.length > 3 ? ", …" : ""})`);
    if (emptyDir.length > 0)
      parts.push(`${emptyDir.length} using emptyDir, not evicted without kubernetes.drain.delete_emptydir_data (${emptyDir.slice(0, 3).join(", ")})`);
    if (pending > 0) parts.push(`${pending} waiting to retry`);
    const alone = [daemonSet > 0 ? `${daemonSet} DaemonSet pod(s)` : "", mirror > 0 ? `${mirror} mirror pod(s)` : ""].filter(Boolean).join(" and ");
    const done = left === 0;
    const how = this.mode === "evict" ? `${this.evicted} evicted` : `${this.evicted} evicted, ${this.deleted} deleted`;
    const detail = done
      ? `no pods left on ${this.name} (${how}${alone ? `; ${alone} left alone` : ""})${this.modeNote ? ` [${this.modeNote}]` : ""}`
      : `${left} pod(s) left on ${this.name}: ${parts.join(", ")}${alone ? `; ${alone} left alone` : ""}${this.modeNote ? ` [${this.modeNote}]` : ""}`;
    this.progress = { done, detail };
    if (detail !== this.lastDetail) {
      this.lastDetail = detail;
      this.report(detail);
    }
  }

  /** Evicts or deletes one pod: started, gone, blocked by a PDB, or failed (retry later). */
  private async act(pod: Pod): Promise<"started" | "gone" | "pdb" | "error"> {
    const ns = pod.metadata.namespace ?? "default";
    const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod.metadata.name)}`;
    const grace = this.mode === "force" ? 1 : this.config.drain.grace_period !== undefined ? Math.round(this.config.drain.grace_period / 1000) : undefined;
    const deleteOptions = grace !== undefined ? { gracePeriodSeconds: grace } : undefined;
    try {
      if (this.mode === "evict") {
        await this.client.request("POST", `${path}/eviction`, {
          lane: "eviction",
          body: {
            apiVersion: "policy/v1",
            kind: "Eviction",
            metadata: { name: pod.metadata.name, namespace: ns },
            ...(deleteOptions ? { deleteOptions } : {}),
          },
        });
        this.evicted++;
      } else {
        await this.client.request("DELETE", path, {
          lane: "eviction",
          ...(deleteOptions ? { body: { apiVersion: "v1", kind: "DeleteOptions", ...deleteOptions } } : {}),
        });
        this.deleted++;
      }
      return "started";
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return "gone";
      // 429: a PodDisruptionBudget says not now. 500 with several PDBs: also not now (kubectl retries too).
      if (err instanceof KubeApiError && (err.status === 429 || (err.status === 500 && /disruption budget/i.test(err.message)))) return "pdb";
      this.log(`kubernetes: drain of ${this.name}: ${pod.metadata.name}: ${errText(err)}`);
      return "error";
    }
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
