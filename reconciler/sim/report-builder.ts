// The report at the end of a run, assembled from what the run recorded (the faults, the
// timeline's events, rail blocks, asserts and warnings, the samples) and from the
// reconciler's database (incidents, breakers tripped, pools held, scaling decisions, nodes
// by state), and with gang jobs their goodput (goodput.ts) and interruptions. report.ts says
// what each field means; a new summary field is filled in here.
import { sql } from "drizzle-orm";
import { auditLog, incidents } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Store } from "../store/store.ts";
import { traceCauses, traceDigest, type TraceFault } from "./fault-trace.ts";
import type { Faults } from "./faults.ts";
import { computeGoodput } from "./goodput.ts";
import type { SimulatedHuman } from "./human.ts";
import type { Measurements } from "./measurements.ts";
import { formatAt, timing, type SimReport, type TimelineEvent } from "./report.ts";
import type { RunLog } from "./run-log.ts";
import type { Samples } from "./samples.ts";
import type { SimNodes } from "./sim-nodes.ts";
import type { SimWorkload } from "./workload.ts";

export interface RunRecord {
  scenario: Scenario;
  seed: number;
  store: Store;
  clouds: ReadonlyMap<string, SimulatedCloud>;
  workload: SimWorkload;
  nodes: SimNodes;
  faults: Faults;
  log: RunLog;
  samples: Samples;
  measurements: Measurements;
  nodesAtStart: Record<string, number>;
  passes: number;
  restarts: number;
  /** The fault trace, where the chaos was drawn as one. */
  trace?: readonly TraceFault[];
  /** The human who acted instead of Navarch (no automation). */
  human?: SimulatedHuman;
}

/** Timeline events at the same time, in cause-and-effect order. */
const KIND_ORDER: TimelineEvent["kind"][] = [
  "outage",
  "restart",
  "jobs",
  "fault",
  "interruption",
  "silence",
  "vanish",
  "recover",
  "incident",
  "cordon",
  "breaker",
  "breaker_reset",
  "pool_held",
  "pool_resume",
  "replacement_ready",
  "scale",
  "assert",
  "note",
];

export async function buildReport(run: RunRecord): Promise<SimReport> {
  const { scenario: s, store, nodes, log, measurements } = run;
  const start = s.start;
  const db = store.db;
  const incidentRows = await db.select().from(incidents).orderBy(incidents.id);
  const byOutcome: Record<string, number> = {};
  for (const i of incidentRows) if (i.outcome !== null) byOutcome[i.outcome] = (byOutcome[i.outcome] ?? 0) + 1;
  const toCordon = incidentRows.flatMap((i) => (i.cordonedAt === null ? [] : [i.cordonedAt - i.faultAt]));
  const toReady = incidentRows.flatMap((i) => (i.replacementReadyAt === null ? [] : [i.replacementReadyAt - i.faultAt]));
  for (const i of incidentRows) {
    const node = nodes.nameOf(i.nodeId);
    const pool = i.pool ?? undefined;
    const base = { ...(pool ? { pool } : {}), node };
    log.event({ at: i.openedAt - start, kind: "incident", text: `incident ${i.id} on ${node}: ${nodes.rename(i.reason)}`, ...base });
    if (i.cordonedAt !== null) log.event({ at: i.cordonedAt - start, kind: "cordon", text: `${node} cordoned (incident ${i.id})`, ...base });
    if (i.replacementReadyAt !== null && i.replacementNodeId !== null) {
      log.event({
        at: i.replacementReadyAt - start,
        kind: "replacement_ready",
        text: `${nodes.nameOf(i.replacementNodeId)} ready, replacing ${node} (incident ${i.id})`,
        ...base,
      });
    }
  }
  const tripped = await db.select().from(auditLog).where(sql`${auditLog.action} = 'breaker_tripped'`).orderBy(auditLog.id);
  const breakersTripped = tripped.map((r) => ({
    scope: r.target,
    at: r.at - start,
    reason: String((r.details as { reason?: string } | null)?.reason ?? ""),
  }));
  for (const b of breakersTripped) log.event({ at: b.at, kind: "breaker", text: `circuit breaker ${b.scope} tripped: ${b.reason}` });
  for (const r of await db.select().from(auditLog).where(sql`${auditLog.action} = 'pool_held'`).orderBy(auditLog.id)) {
    const pool = r.target.replace(/^pool:/, "");
    log.event({
      at: r.at - start,
      kind: "pool_held",
      text: `pool ${pool} held: ${String((r.details as { reason?: string } | null)?.reason ?? "")}`,
      pool,
    });
  }
  const decisions = await measurements.scaleDecisions();
  for (const d of decisions) log.event({ at: d.at, kind: "scale", text: `pool ${d.pool}: ${d.from} → ${d.to}: ${nodes.rename(d.reason)}`, pool: d.pool });

  const faults = run.faults.records;
  const byXid: Record<string, number> = {};
  for (const f of faults) if (f.xid !== undefined) byXid[String(f.xid)] = (byXid[String(f.xid)] ?? 0) + 1;
  const byCause: Record<string, number> = {};
  for (const f of faults) if (f.cause !== undefined) byCause[f.cause] = (byCause[f.cause] ?? 0) + 1;
  const gangs = run.workload.gangs();
  for (const g of gangs) {
    for (const i of g.interruptions) {
      const node = i.node === undefined ? undefined : nodes.nameOf(i.node);
      log.event({
        at: i.at - start,
        kind: "interruption",
        text: `job ${g.name} interrupted by ${i.cause}${node !== undefined ? ` on ${node}` : ""}: ${i.lost > 0 ? `${formatAt(i.lost)} of work lost` : "no work lost"}`,
        pool: g.pool,
        ...(node !== undefined ? { node } : {}),
      });
    }
  }
  const byRail: Record<string, number> = {};
  for (const rail of log.blocks.values()) byRail[rail] = (byRail[rail] ?? 0) + 1;
  const clouds: SimReport["summary"]["clouds"] = {};
  for (const c of run.clouds.values()) clouds[c.name] = { launched: measurements.launched(c), running_at_end: c.liveCount(), calls: { ...c.calls } };

  const timeline = run.samples.timeline();
  const failed = log.asserts.filter((a) => !a.ok).length;
  const events = log.events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.at - b.e.at || KIND_ORDER.indexOf(a.e.kind) - KIND_ORDER.indexOf(b.e.kind) || a.i - b.i)
    .map(({ e }) => e);
  const incidentsOpen = incidentRows.filter((i) => i.closedAt === null).length;
  return {
    scenario: { name: s.name, description: s.description, seed: run.seed, start: new Date(start).toISOString(), duration: formatAt(s.duration) },
    result: { ok: failed === 0, asserts_passed: log.asserts.length - failed, asserts_failed: failed },
    summary: {
      nodes_at_start: run.nodesAtStart,
      nodes_at_end: await measurements.stateCounts(),
      faults: {
        total: faults.length,
        scripted: faults.filter((f) => f.source === "scripted").length,
        chaos: faults.filter((f) => f.source === "chaos").length,
        correlated: faults.filter((f) => f.correlated).length,
        by_xid: byXid,
        ...(Object.keys(byCause).length > 0 ? { by_cause: byCause } : {}),
        ...(run.trace !== undefined ? { trace: { drawn: run.trace.length, by_cause: traceCauses(run.trace), digest: traceDigest(run.trace) } } : {}),
      },
      incidents: { total: incidentRows.length, open: incidentsOpen, by_outcome: byOutcome },
      replacements: { requested: incidentRows.filter((i) => i.replacementNodeId !== null).length, ready: toReady.length },
      fault_to_cordon: timing(toCordon),
      fault_to_replacement_ready: timing(toReady),
      rail_blocks: { total: log.blocks.size, by_rail: byRail },
      breakers_tripped: breakersTripped,
      scaling: {
        decisions: decisions.length,
        up: decisions.filter((d) => d.direction === "up").length,
        down: decisions.filter((d) => d.direction === "down").length,
        nodes_added: decisions.reduce((a, d) => a + Math.max(0, d.to - d.from), 0),
        nodes_removed: decisions.reduce((a, d) => a + Math.max(0, d.from - d.to), 0),
      },
      clouds,
      workload: { ...run.workload.counts },
      reconciler: { passes: run.passes, restarts: run.restarts },
      leaked_instances: await measurements.leakedInstances(),
      ...(gangs.length > 0
        ? {
            goodput: computeGoodput({
              scenario: s,
              gangs,
              incidents: incidentRows,
              ...(run.human ? { humanWaitHours: run.human.waitingHours(start + s.duration) } : {}),
            }),
          }
        : {}),
    },
    asserts: log.asserts,
    warnings: log.warnings,
    timeline,
    events,
  };
}
