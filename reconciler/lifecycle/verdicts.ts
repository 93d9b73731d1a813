// Health verdicts. Each pass feeds the health events the agents sent since the last
// pass through the policy, tracks each node's open findings, and decides its verdict:
// on every new event, and on each node's own health-check cadence (consecutive failed
// checks, findings that close after a healthy delay or with a new boot).
import { and, asc, eq, gt, gte } from "drizzle-orm";
import type { NavarchConfig, PoolConfig } from "../../schema/config.ts";
import { healthEvents, nodes } from "../../schema/db.ts";
import { faultCause } from "../../schema/fault-causes.ts";
import { eventFromRow } from "../health/history.ts";
import { trackFinding, type OpenFinding } from "../health/findings.ts";
import { nodeVerdict } from "../health/node-verdict.ts";
import type { HealthPolicy } from "../health/policy-evaluation.ts";
import type { RecommendedAction } from "../../schema/wire.ts";
import type { Db } from "../store/store.ts";
import type { Fence, NodeRow } from "../nodes/writer.ts";

type EventRow = typeof healthEvents.$inferSelect;

/** Health events read per pass (a backlog drains over several passes). */
const EVENTS_PER_PASS = 20_000;
/** How far back the policy's history windows look. */
const HISTORY_MS = 7 * 24 * 3_600_000;

/** What every pass reads of every registered live node to find its new events. */
export interface EventCursorNode {
  id: string;
  bootId: string | null;
  evaluatedEventId: number;
}

export class HealthJudge {
  private readonly lastTick = new Map<string, number>();
  /** The last health tick of the quiet nodes (they are not read, and would not change). */
  private quietTickAt = Number.NEGATIVE_INFINITY;
  /** Health events up to this id have been judged (in memory; the per-node cursors are durable). */
  private judgedThrough: number | undefined;
  /** This pass's verdict explanation per node, when its deciding finding opened, what that finding recommends, and its fault class. */
  private readonly reasons = new Map<string, { reason: string; faultAt: number; action: RecommendedAction | undefined; cause: string | undefined }>();

  constructor(
    private readonly db: Db,
    private readonly policy: HealthPolicy,
    private readonly fence: Fence | undefined,
  ) {}

  /** New health events by node, from the window past what was already judged; `get` finds a live node by id. */
  async newEvents(live: readonly EventCursorNode[], get: (id: string) => EventCursorNode | undefined): Promise<Map<string, EventRow[]>> {
    // Each node's cursor starts at the log's end when it registers (registry.ts). After a restart
    // the window starts at the lowest cursor; then at the mark past which every event was handed
    // to its node (a quiet node's old cursor must not pin it, or a busy log would starve).
    let from = this.judgedThrough;
    if (from === undefined) {
      for (const n of live) if (n.bootId !== null) from = Math.min(from ?? Number.MAX_SAFE_INTEGER, n.evaluatedEventId);
      if (from === undefined) return new Map(); // nobody registered yet
    }
    const fresh = await this.db.select().from(healthEvents).where(gt(healthEvents.id, from)).orderBy(asc(healthEvents.id)).limit(EVENTS_PER_PASS);
    if (fresh.length > 0) this.judgedThrough = fresh.at(-1)!.id;
    const out = new Map<string, EventRow[]>();
    for (const e of fresh) {
      const n = get(e.nodeId);
      if (n === undefined || n.bootId === null || e.id <= n.evaluatedEventId) continue;
      const list = out.get(e.nodeId);
      if (list) list.push(e);
      else out.set(e.nodeId, [e]);
    }
    return out;
  }

  /** A quiet node (Ready, healthy, nothing open) is counted as ticked on a shared grid instead of one by one. */
  settleQuiet(busy: ReadonlySet<string>, at: number, interval: number): void {
    for (const id of this.lastTick.keys()) if (!busy.has(id)) this.lastTick.delete(id);
    if (at - this.quietTickAt >= interval) this.quietTickAt = at;
  }

  /** Updates each node's open findings and verdict from its new events and its cadence; in place. */
  async judge(
    live: NodeRow[],
    newByNode: Map<string, EventRow[]>,
    config: NavarchConfig,
    poolOf: (name: string | null) => PoolConfig | undefined,
    at: number,
  ): Promise<void> {
    const interval = config.server.health_check_interval;
    for (const node of live) {
      if (node.bootId === null) continue;
      const events = newByNode.get(node.id) ?? [];
      // Never judged, or in a new boot since (what the reboot cleared closes now): judge now.
      // Otherwise on its own cadence, or the quiet grid's while it was quiet.
      const newBoot = (node.findings as OpenFinding[]).some((f) => f.bootId !== node.bootId);
      const tick = node.verdict === null || newBoot || at - (this.lastTick.get(node.id) ?? this.quietTickAt) >= interval;
      if (events.length === 0 && !tick) continue;
      let open = node.findings as OpenFinding[];
      if (events.length > 0) {
        const history = await this.db
          .select()
          .from(healthEvents)
          .where(and(eq(healthEvents.nodeId, node.id), gte(healthEvents.time, at - HISTORY_MS)));
        for (const row of events) {
          const event = eventFromRow(row);
          const evaluation = this.policy.evaluate({ event, node: { id: node.id, pool: node.pool, bootId: node.bootId } }, history, at);
          open = trackFinding(open, event, evaluation);
        }
      }
      if (tick) this.lastTick.set(node.id, at);
      const verdict = nodeVerdict(open, {
        unhealthyThreshold: poolOf(node.pool)?.health.unhealthy_threshold ?? 2,
        now: at,
        bootId: node.bootId,
        consecutiveFailures: node.consecutiveFailures,
        tick,
      });
      const lastId = events.at(-1)?.id ?? node.evaluatedEventId;
      // Without NVML the agent reads no GPU: no findings means nothing was looked at, not
      // healthy. The verdict stays unset (shown "unknown") until NVML works or a finding arrives.
      const blind = !node.nvmlAvailable && verdict.verdict === "healthy";
      const judged = blind ? null : verdict.verdict;
      const reason = blind ? `unknown: NVML is unavailable on the node (${node.nvmlError ?? "no reason given"}), so no GPU was checked` : verdict.reason;
      const decidedBy = verdict.decidedBy;
      this.reasons.set(node.id, {
        reason,
        faultAt: decidedBy?.openedAt ?? at,
        action: decidedBy?.action,
        cause: decidedBy === undefined ? undefined : faultCause(decidedBy.check, decidedBy.code),
      });
      // Most ticks of a healthy node change nothing: write only what changed.
      const unchanged =
        events.length === 0 &&
        judged === node.verdict &&
        verdict.state.consecutiveFailures === node.consecutiveFailures &&
        verdict.open.length === open.length &&
        verdict.closed.length === 0;
      if (unchanged) continue;
      // The verdict is the reconciler's own judgement, not a change of state: it does not
      // bump the version (an operator's action in flight still applies), but it is fenced.
      const fields = { findings: verdict.open, consecutiveFailures: verdict.state.consecutiveFailures, verdict: judged, evaluatedEventId: lastId };
      this.fence?.check();
      await this.db
        .update(nodes)
        .set({ ...fields, updatedAt: at })
        .where(this.fence ? and(eq(nodes.id, node.id), this.fence.guard()) : eq(nodes.id, node.id));
      Object.assign(node, fields);
    }
  }

  reason(node: NodeRow): string {
    return this.reasons.get(node.id)?.reason ?? node.stateReason ?? "health verdict";
  }

  faultAt(node: NodeRow, fallback: number): number {
    return this.reasons.get(node.id)?.faultAt ?? fallback;
  }

  /** The fault class of the finding that decided the node's verdict (schema/fault-causes.ts); `other` when none did. */
  cause(node: NodeRow): string {
    const unhealthy = (node.findings as OpenFinding[]).find((f) => f.result === "unhealthy");
    return this.reasons.get(node.id)?.cause ?? (unhealthy === undefined ? "other" : faultCause(unhealthy.check, unhealthy.code));
  }

  /** What the finding that decided the node's verdict recommends (reset, reboot, replace…). */
  action(node: NodeRow): RecommendedAction | undefined {
    return this.reasons.get(node.id)?.action ?? (node.findings as OpenFinding[]).find((f) => f.result === "unhealthy")?.action;
  }
}
