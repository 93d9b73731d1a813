// Turns raw findings into the events the agent reports: one incident per
// (GPU, check, code, normalised message) for this boot, however many times and
// from however many sources it is seen. A flood of the same Xid is one event and
// later a count; an Xid seen both as an NVML event and as a kernel-log line is
// one incident (each source counts its own occurrences; the incident's count is
// the largest). Level conditions (from polls) report when they appear and, when
// they may recover, a "healthy" event when they clear.
//
// State is per process, and the process is per boot: a new boot id starts clean,
// which is what clears reboot-fixable conditions.
import type { RecommendedAction, Severity } from "../../schema/wire.ts";
import type { Finding } from "./finding.ts";

/**
 * Where an occurrence came from. Each source counts its own occurrences of an
 * incident; "kmsg_bus" is the fallen-off-the-bus text, which accompanies an Xid 79
 * line for the same fault. Level conditions come from a named poll scope.
 */
export type FindingSource = "nvml_event" | "kmsg" | "kmsg_bus" | `poll:${string}`;

export interface Escalation {
  count: number;
  windowMs: number;
  severity: Severity;
  action: RecommendedAction;
}

export interface Occurrence {
  finding: Finding;
  source: FindingSource;
  at: number;
  /** Never clears by itself (fatal) or only with a new boot: the incident stays open. */
  sticky: boolean;
  /** Repeats within a window make it worse (e.g. Xid 13 three times in 24 h). */
  escalate?: Escalation;
}

interface Incident {
  key: string;
  finding: Finding;
  sticky: boolean;
  counts: Map<FindingSource, number>;
  /** Times of occurrences (one per distinct occurrence, the max-source view), for escalation. */
  times: number[];
  reportedCount: number;
  reportedAt: number;
  lastSeenAt: number;
  escalated: boolean;
}

export interface IncidentOptions {
  /** How often a growing count is re-reported. */
  repeatReportMs?: number;
  /** A non-sticky edge incident with no repeat for this long is closed. */
  quietMs?: number;
}

export class IncidentTracker {
  private readonly open = new Map<string, Incident>();
  /** Occurrence times of closed incidents, kept for escalation windows. */
  private readonly history = new Map<string, number[]>();
  private readonly repeatReportMs: number;
  private readonly quietMs: number;

  constructor(options: IncidentOptions = {}) {
    this.repeatReportMs = options.repeatReportMs ?? 30_000;
    this.quietMs = options.quietMs ?? 10 * 60_000;
  }

  /** Conditions open right now, worst first (for `check --once` and heartbeats). */
  current(): Finding[] {
    const rank = { unhealthy: 0, degraded: 1, healthy: 2 } as const;
    return [...this.open.values()].map((i) => withCount(i)).sort((a, b) => rank[a.severity] - rank[b.severity]);
  }

  /** One edge occurrence (an Xid, a kernel-log line). Returns the event to report now, if any. */
  occur(o: Occurrence): Finding | undefined {
    const key = incidentKey(o.finding);
    const existing = this.open.get(key);
    if (existing === undefined || (!existing.sticky && o.at - existing.lastSeenAt > this.quietMs)) {
      if (existing) this.close(existing);
      const incident = this.openIncident(key, o);
      return this.escalateIfDue(incident, o) ?? this.report(incident, o.at);
    }
    const before = maxCount(existing);
    existing.counts.set(o.source, (existing.counts.get(o.source) ?? 0) + 1);
    existing.lastSeenAt = o.at;
    if (maxCount(existing) > before) existing.times.push(o.at);
    return this.escalateIfDue(existing, o);
  }

  /**
   * A poll's complete set of level conditions in `scope` (e.g. "nvml", "watchdog").
   * New ones are reported; open non-sticky ones of that scope no longer present are
   * closed with a "healthy" event.
   */
  poll(findings: Finding[], at: number, sticky: (f: Finding) => boolean = () => false, scope = "nvml"): Finding[] {
    const source = `poll:${scope}` as const;
    const out: Finding[] = [];
    const seen = new Set<string>();
    for (const finding of findings) {
      const key = incidentKey(finding);
      seen.add(key);
      const existing = this.open.get(key);
      if (existing === undefined) {
        out.push(this.report(this.openIncident(key, { finding, source, at, sticky: sticky(finding) }), at));
      } else {
        existing.lastSeenAt = at;
        // The condition got worse or better while staying open (e.g. slowdown → shutdown is a new code,
        // but a changed message is only refreshed): keep the first report, refresh the text.
        existing.finding = { ...existing.finding, message: finding.message };
      }
    }
    for (const incident of [...this.open.values()]) {
      if (seen.has(incident.key) || incident.sticky || !incident.counts.has(source) || incident.counts.size > 1) continue;
      this.close(incident);
      out.push({ ...incident.finding, severity: "healthy", action: "none", message: `recovered: ${incident.finding.message}` });
    }
    return out;
  }

  /** Re-reports incidents whose count grew since their last report, at most every repeatReportMs. */
  due(at: number): Finding[] {
    const out: Finding[] = [];
    for (const incident of this.open.values()) {
      const count = maxCount(incident);
      if (count > incident.reportedCount && at - incident.reportedAt >= this.repeatReportMs) out.push(this.report(incident, at));
      else if (!incident.sticky && !isPolled(incident) && at - incident.lastSeenAt > this.quietMs) this.close(incident);
    }
    return out;
  }

  private openIncident(key: string, o: Occurrence): Incident {
    const incident: Incident = {
      key,
      finding: o.finding,
      sticky: o.sticky,
      counts: new Map([[o.source, 1]]),
      times: [...(this.history.get(key) ?? []), o.at],
      reportedCount: 0,
      reportedAt: 0,
      lastSeenAt: o.at,
      escalated: false,
    };
    this.open.set(key, incident);
    return incident;
  }

  private close(incident: Incident): void {
    this.open.delete(incident.key);
    this.history.set(incident.key, incident.times.slice(-64));
  }

  private escalateIfDue(incident: Incident, o: Occurrence): Finding | undefined {
    const rule = o.escalate;
    if (rule === undefined || incident.escalated) return undefined;
    const recent = incident.times.filter((t) => t > o.at - rule.windowMs).length;
    if (recent < rule.count) return undefined;
    incident.escalated = true;
    incident.sticky = true;
    incident.finding = {
      ...incident.finding,
      severity: rule.severity,
      action: rule.action,
      message: `${incident.finding.message} (${recent} times within ${Math.round(rule.windowMs / 3_600_000)} h)`,
    };
    return this.report(incident, o.at);
  }

  private report(incident: Incident, at: number): Finding {
    incident.reportedCount = maxCount(incident);
    incident.reportedAt = at;
    return withCount(incident);
  }
}

/** GPU, check, code, and the message with its numbers removed (counters, pids, addresses). */
export function incidentKey(f: Finding): string {
  const gpu = f.gpu?.pciBusId ?? f.pciBusId ?? "node";
  // Xid-like findings are identified by their code alone: the same fault seen through
  // NVML (no text) and the kernel log (text) must be one incident.
  const text = f.code !== undefined ? "" : f.message.replace(/0x[0-9a-f]+|\d+/gi, "#");
  return `${gpu}|${f.check}|${f.code ?? ""}|${text}`;
}

function isPolled(i: Incident): boolean {
  return [...i.counts.keys()].some((s) => s.startsWith("poll:"));
}

function maxCount(i: Incident): number {
  return Math.max(0, ...i.counts.values());
}

function withCount(i: Incident): Finding {
  const count = maxCount(i);
  return count > 1 ? { ...i.finding, count } : { ...i.finding };
}
