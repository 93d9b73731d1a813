// The node's verdict from its open findings: what recovered is closed first (findings.ts), then
// a fatal unhealthy finding makes the node unhealthy at once, and other unhealthy findings do
// after `unhealthy_threshold` consecutive failed evaluations.
import type { Severity } from "../../schema/wire.ts";
import { closeFindings, describeFinding, type CloseOptions, type ClosedFinding, type OpenFinding } from "./findings.ts";
import { SEVERITY_RANK } from "./severity-order.ts";

/** What nodeVerdict needs carried from one evaluation to the next (the caller stores it). */
export interface NodeHealthState {
  /** Consecutive failed evaluations (an open finding with result unhealthy) up to and including the last one. */
  consecutiveFailures: number;
}

export interface NodeVerdictOptions extends CloseOptions, Partial<NodeHealthState> {
  /** The pool's `health.unhealthy_threshold` (≥ 1; the config default is 2). */
  unhealthyThreshold: number;
  /**
   * Whether this call is one of the periodic health evaluations (default true): only those move
   * the counter. Pass false for an extra look between them (say, right after an event arrived):
   * the verdict is computed with the stored count and the state comes back unchanged.
   */
  tick?: boolean;
}

export interface NodeVerdict {
  verdict: Severity;
  reason: string;
  /** An open finding is unhealthy and fatal: the node was declared unhealthy without the count. */
  fatal: boolean;
  /** The finding that decided (the worst one), if any. */
  decidedBy?: OpenFinding;
  open: OpenFinding[];
  closed: ClosedFinding[];
  state: NodeHealthState;
}

/**
 * The node's verdict from its open findings. First the findings that recovered are closed
 * (closeFindings); then, over what is left:
 * - an unhealthy finding with persistence fatal → unhealthy now;
 * - an unhealthy finding → a failed evaluation: the counter goes up by one, and the node is
 *   unhealthy once it reaches `unhealthyThreshold` (degraded before that: with the default 2,
 *   the first failed evaluation makes it degraded, the second in a row unhealthy);
 * - else a degraded finding → degraded (and the counter restarts at 0);
 * - else healthy (counter 0).
 * One call with `tick` (the default) is one evaluation: the reconcile loop makes one per node per
 * `server.health_check_interval`.
 */
export function nodeVerdict(openFindings: readonly OpenFinding[], options: NodeVerdictOptions): NodeVerdict {
  const threshold = options.unhealthyThreshold;
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`unhealthyThreshold must be a whole number ≥ 1, got ${threshold}`);
  const { open, closed } = closeFindings(openFindings, options);
  const previous = Math.max(0, options.consecutiveFailures ?? 0);
  const tick = options.tick ?? true;
  const worst = [...open].sort(
    (a, b) => Number(isFatal(b)) - Number(isFatal(a)) || SEVERITY_RANK[b.result] - SEVERITY_RANK[a.result] || b.lastFailedAt - a.lastFailedAt,
  )[0];
  const failed = worst?.result === "unhealthy";
  const failures = tick ? (failed ? previous + 1 : 0) : previous;
  const state: NodeHealthState = { consecutiveFailures: failures };
  const base = { open, closed, state };
  if (!worst) return { ...base, verdict: "healthy", reason: "no open findings", fatal: false };
  const what = `${describeFinding(worst)}: ${worst.reason}`;
  // A fatal fault is unhealthy at once: the threshold exists to ride out flaky signals, and a
  // fatal one (Xid 79, a failed row remap) does not flap. NVSentinel does the same: "a fatal
  // event that matches a CEL ruleset cordons immediately" (its fault-quarantine docs).
  if (isFatal(worst)) return { ...base, verdict: "unhealthy", reason: `fatal: ${what}`, fatal: true, decidedBy: worst };
  if (failed) {
    const verdict = failures >= threshold ? "unhealthy" : "degraded";
    return { ...base, verdict, reason: `${failures} of ${threshold} consecutive failed evaluations: ${what}`, fatal: false, decidedBy: worst };
  }
  return { ...base, verdict: "degraded", reason: what, fatal: false, decidedBy: worst };
}

function isFatal(f: OpenFinding): boolean {
  return f.result === "unhealthy" && f.persistence === "fatal";
}
