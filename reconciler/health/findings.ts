// A node's open findings (incidents): trackFinding folds each evaluated event into them (plain
// data the caller stores), closeFindings closes what recovered, what a new boot cleared and
// what stayed quiet. node-verdict.ts judges the node from what stays open.
import { EDGE_CHECKS } from "../../schema/checks.ts";
import { findingKey, type GpuIdentity, type HealthEvent, type RecommendedAction, type Severity } from "../../schema/wire.ts";
import type { XidPersistence } from "../../schema/xid-catalog.ts";
import type { PolicyEvaluation } from "./policy-evaluation.ts";
import { SEVERITY_RANK, worsePersistence } from "./severity-order.ts";

/**
 * Checks whose findings are one-off occurrences (a kernel-log line, an NVML event): nothing ever
 * reports them cleared, so a transient one closes after `healthyDelayMs` without a repeat. Every
 * other check is a level condition, which the agent reports cleared with a `healthy` event; a
 * transient one closes `healthyDelayMs` after that. From the check catalog (schema/checks.ts).
 */
export { EDGE_CHECKS };

/** How long a transient finding must stay healthy (or quiet) before it closes. */
export const DEFAULT_HEALTHY_DELAY_MS = 10 * 60_000;

/** One open finding (incident) of a node: plain data the caller stores (e.g. as JSON). */
export interface OpenFinding {
  /** findingKey: which GPU, check and code. One open finding per key. */
  key: string;
  check: string;
  code?: string;
  gpu?: GpuIdentity;
  result: Exclude<Severity, "healthy">;
  action: RecommendedAction;
  persistence: XidPersistence;
  rule: string;
  reason: string;
  /** Boot of the latest failing event. */
  bootId: string;
  openedAt: number;
  /** Time of the latest failing event. */
  lastFailedAt: number;
  /** Time of a healthy event for this key after the latest failing one, if any. */
  recoveredAt?: number;
  /** See EDGE_CHECKS. */
  edge: boolean;
}

export type CloseReason = "new_boot" | "recovered" | "quiet";

export interface ClosedFinding {
  finding: OpenFinding;
  why: CloseReason;
  /** For the log: `Xid 13 on GPU 00000000:3B:00.0: recovered 10 min ago`. */
  message: string;
}

/**
 * Folds one evaluated event into the node's open findings (returns a new list; the input is not
 * changed). A failing result opens the finding or updates it (worst result and persistence win;
 * a recovery is forgotten); a healthy result marks an open finding of the same key recovered.
 */
export function trackFinding(open: readonly OpenFinding[], event: HealthEvent, evaluation: PolicyEvaluation): OpenFinding[] {
  const key = findingKey(event);
  const time = Date.parse(event.time);
  const index = open.findIndex((f) => f.key === key);
  const existing = index >= 0 ? open[index] : undefined;
  const out = [...open];
  if (evaluation.result === "healthy") {
    if (existing && time >= existing.lastFailedAt) out[index] = { ...existing, recoveredAt: time };
    return out;
  }
  if (existing) {
    const worse = SEVERITY_RANK[evaluation.result] >= SEVERITY_RANK[existing.result];
    const { recoveredAt: _recovered, ...rest } = existing;
    out[index] = {
      ...rest,
      result: worse ? evaluation.result : existing.result,
      action: worse ? evaluation.action : existing.action,
      rule: worse ? evaluation.rule : existing.rule,
      reason: worse ? evaluation.reason : existing.reason,
      persistence: worsePersistence(existing.persistence, evaluation.persistence),
      bootId: event.bootId,
      lastFailedAt: Math.max(existing.lastFailedAt, time),
    };
    return out;
  }
  const finding: OpenFinding = {
    key,
    check: event.check,
    result: evaluation.result,
    action: evaluation.action,
    persistence: evaluation.persistence,
    rule: evaluation.rule,
    reason: evaluation.reason,
    bootId: event.bootId,
    openedAt: time,
    lastFailedAt: time,
    edge: EDGE_CHECKS.has(event.check),
  };
  if (event.code !== undefined) finding.code = event.code;
  if (event.gpu) finding.gpu = event.gpu;
  out.push(finding);
  return out;
}

export interface CloseOptions {
  /** The node's current boot id. */
  bootId: string;
  now: number;
  healthyDelayMs?: number;
}

/**
 * Which open findings are closed now:
 * - fatal: never by itself (a human, or replacing the node, closes it);
 * - reboot: when the node's boot id is not the one the finding was last seen in;
 * - transient: on a new boot too (the new agent re-reports what still holds), or `healthyDelayMs`
 *   after a healthy event for it (level conditions) or after its last occurrence (EDGE_CHECKS).
 */
export function closeFindings(open: readonly OpenFinding[], options: CloseOptions): { open: OpenFinding[]; closed: ClosedFinding[] } {
  const delay = options.healthyDelayMs ?? DEFAULT_HEALTHY_DELAY_MS;
  const still: OpenFinding[] = [];
  const closed: ClosedFinding[] = [];
  for (const f of open) {
    const why = closeReason(f, options.bootId, options.now, delay);
    if (why === undefined) still.push(f);
    else closed.push({ finding: f, why, message: `${describeFinding(f)}: ${CLOSE_TEXT[why]}` });
  }
  return { open: still, closed };
}

const CLOSE_TEXT: Readonly<Record<CloseReason, string>> = {
  new_boot: "cleared by a new boot",
  recovered: "healthy for the healthy delay",
  quiet: "no repeat within the healthy delay",
};

function closeReason(f: OpenFinding, bootId: string, now: number, delay: number): CloseReason | undefined {
  // A fault whose own remedy is a reset or a reboot is judged again in the new boot: if it is
  // still there the agent finds it again. Other fatal faults never clear by themselves.
  if (f.bootId !== bootId && (f.persistence !== "fatal" || f.action === "reboot" || f.action === "reset_gpu")) return "new_boot";
  if (f.persistence === "fatal") return undefined;
  if (f.persistence === "reboot") return undefined;
  if (f.recoveredAt !== undefined && now - f.recoveredAt >= delay) return "recovered";
  if (f.edge && now - f.lastFailedAt >= delay) return "quiet";
  return undefined;
}

/** `Xid 13 on GPU 0 (00000000:3B:00.0)`: a finding for messages. */
export function describeFinding(f: OpenFinding): string {
  const what = f.check === "xid" ? `Xid ${f.code ?? "?"}` : f.code ? `${f.check} ${f.code}` : f.check;
  return f.gpu ? `${what} on GPU ${f.gpu.index} (${f.gpu.pciBusId || f.gpu.uuid})` : what;
}
