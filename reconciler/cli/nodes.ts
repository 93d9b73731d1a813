// `navarch nodes list|get`: what the reconciler knows about each node, why it is in
// the state it is in, and (get) its GPUs, events, incidents with the time each step
// took, and what the reconciler and humans did to it. `nodes run-check` is in run-check.ts.
import { parseArgs } from "node:util";
import { NODE_STATES } from "../../schema/lifecycle.ts";
import { NodeDetail, NodeList, type NodeRow } from "../../schema/admin.ts";
import type { IncidentTimeline } from "../api/views/incident-timeline.ts";
import { NodeTimeline } from "../api/views/node-timeline.ts";
import { IncidentList, type IncidentRow } from "../api/views/table-rows.ts";
import * as v from "valibot";
import { CliError, apiGet, apiGetOptional, resolveTarget } from "./client.ts";
import { age, duration, parseAnswer, parseFormat, render, shown, table } from "./output.ts";
import { NODES_USAGE } from "./usage.ts";

export async function nodesCommand(args: string[], write: (s: string) => void): Promise<number> {
  // Loaded only for itself: the other nodes commands need none of it.
  if (args[0] === "run-check") return (await import("./run-check.ts")).runCheckCommand(args.slice(1), write);
  const { values, positionals } = parseArgs({
    args,
    options: {
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
      pool: { type: "string" },
      state: { type: "string" },
      unhealthy: { type: "boolean" },
      events: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  const format = parseFormat(values.output);
  const [verb, id, ...rest] = positionals;
  if (values.state !== undefined && !(NODE_STATES as readonly string[]).includes(values.state)) {
    throw new CliError(`--state: expected one of ${NODE_STATES.join(", ")}, got ${JSON.stringify(values.state)}`, 2);
  }
  if (verb === "list" && id === undefined) {
    const target = resolveTarget(values.server);
    // The server filters and pages (a page at most NODE_PAGE_MAX nodes); every page is read.
    const filter = new URLSearchParams();
    if (values.pool !== undefined) filter.set("pool", values.pool);
    if (values.state !== undefined) filter.set("state", values.state);
    if (values.unhealthy) filter.set("unhealthy", "true");
    const [nodes, open] = await Promise.all([
      allNodes(target, filter),
      format === "table" ? apiGet(target, "/v1/incidents?open=true").then((b) => parseAnswer(IncidentList, b, "incidents").incidents) : [],
    ]);
    write(render(format, { nodes }, () => nodesTable(nodes, open)));
    return 0;
  }
  if (verb === "get" && id !== undefined && rest.length === 0) {
    const events = values.events === undefined ? 20 : Number(values.events);
    if (!Number.isInteger(events) || events < 0 || events > 10_000)
      throw new CliError(`--events: expected a whole number from 0 to 10000, got ${values.events}`, 2);
    const target = resolveTarget(values.server);
    const path = `/v1/nodes/${encodeURIComponent(id)}`;
    const [detail, timeline, boot] = await Promise.all([
      apiGet(target, `${path}?events=${events}`).then((b) => parseAnswer(NodeDetail, b, `node ${id}`)),
      apiGet(target, `${path}/timeline`).then((b) => parseAnswer(NodeTimeline, b, `node ${id}`)),
      // SSH bootstrap runs, on reconcilers that record them.
      apiGetOptional(target, `${path}/bootstrap`).then((b) => (b === undefined ? [] : parseAnswer(BootstrapRuns, b, `node ${id} bootstrap`).runs)),
    ]);
    const body = { ...detail, incidents: timeline.incidents, actions: timeline.audit.slice(0, 50), operations: timeline.operations, bootstrap: boot };
    write(render(format, body, () => nodeDetailText(detail, timeline, boot)));
    return 0;
  }
  throw new CliError(NODES_USAGE, 2);
}

/** Every node GET /v1/nodes lists for `filter`, page after page. */
async function allNodes(target: Parameters<typeof apiGet>[0], filter: URLSearchParams): Promise<NodeRow[]> {
  const out: NodeRow[] = [];
  for (let after: string | null = ""; after !== null; ) {
    const query = new URLSearchParams(filter);
    if (after !== "") query.set("after", after);
    const page = parseAnswer(NodeList, await apiGet(target, `/v1/nodes?${query}`), "nodes");
    out.push(...page.nodes);
    after = page.next;
  }
  return out;
}

/** What `navarch nodes get` reads of GET /v1/nodes/:id/bootstrap (loose: the server may add fields). */
const BootstrapRuns = v.object({
  runs: v.array(
    v.object({
      state: v.string(),
      address: v.string(),
      user: v.string(),
      startedAt: v.number(),
      finishedAt: v.nullable(v.number()),
      error: v.nullable(v.string()),
      steps: v.array(
        v.object({
          command: v.string(),
          exitCode: v.nullable(v.number()),
          stdout: v.string(),
          stderr: v.string(),
          durationMs: v.number(),
          timedOut: v.optional(v.boolean()),
        }),
      ),
    }),
  ),
});
type BootstrapRun = v.InferOutput<typeof BootstrapRuns>["runs"][number];

/**
 * One line per node. A node with an open incident shows why it is unhealthy and what
 * Navarch is doing about it (the incident's reason and status); others their state's reason.
 */
export function nodesTable(nodes: NodeRow[], openIncidents: IncidentRow[] = [], now = Date.now()): string {
  if (nodes.length === 0) return "No nodes.";
  const incidentOf = new Map(openIncidents.map((i) => [i.id, i]));
  const reason = (n: NodeRow) => {
    const i = n.incidentId === null ? undefined : incidentOf.get(n.incidentId);
    return i === undefined ? (n.stateReason ?? "") : `${i.reason} — ${i.status}`;
  };
  return table(
    ["NODE", "POOL", "KIND", "STATE", "HEALTH", "NVML", "LAST HEARTBEAT", "IN STATE", "REASON"],
    nodes.map((n) => [
      n.id,
      n.pool ?? "-",
      kindOf(n),
      n.state,
      n.verdict ?? "unknown",
      n.registeredAt === null ? "-" : n.nvmlAvailable ? "ok" : "unavailable",
      age(n.lastHeartbeatAt, now),
      age(n.stateChangedAt, now).replace(/ ago$/, ""),
      reason(n),
    ]),
    120,
  );
}

/** `launched` (Navarch asked a provider for it) or `monitored` (its agent came on its own). */
function kindOf(n: NodeRow): string {
  return n.origin === "launched" ? "launched" : "monitored";
}

/** An incident as lines: what happened, what is being done, and the time each step took. */
export function incidentText(i: IncidentTimeline, now = Date.now()): string {
  const steps = i.steps.map(
    (s) => shown`${s.step.replace("_", " ")} ${age(s.at, now)}${s.sincePreviousMs === null ? "" : shown` (+${duration(s.sincePreviousMs)})`}`,
  );
  return [
    shown`Incident ${i.id} (${i.closedAt === null ? "open" : (i.outcome ?? "closed")}): ${i.reason}`,
    shown`  status:   ${i.status}`,
    shown`  steps:    ${steps.join(" → ")}`,
    shown`  took:     fault→cordon ${duration(i.durations.faultToCordonMs)}, cordon→drained ${duration(i.durations.cordonToDrainedMs)}${i.rebootedAt !== null ? shown`, reboot→back ${duration(i.durations.rebootToBackMs)}` : ""}, fault→replacement ready ${duration(i.durations.faultToReplacementReadyMs)}`,
    ...(i.replacementNodeId ? [shown`  replaced by ${i.replacementNodeId}`] : []),
  ].join("\n");
}

function bootstrapText(runs: BootstrapRun[], now: number): string {
  const run = runs[0];
  if (run === undefined) return "Bootstrap:   none ran (the machine starts its agent itself)";
  const lines = [
    shown`Bootstrap:   ${run.state} as ${run.user}@${run.address}, started ${age(run.startedAt, now)}${run.finishedAt === null ? "" : shown`, took ${duration(run.finishedAt - run.startedAt)}`}${runs.length > 1 ? shown` (${runs.length} runs; latest shown)` : ""}`,
    ...(run.error ? [shown`  error: ${run.error}`] : []),
  ];
  for (const step of run.steps) {
    lines.push(shown`  $ ${step.command}   [exit ${step.exitCode ?? "none"}${step.timedOut ? ", timed out" : ""}, ${duration(step.durationMs)}]`);
    const output = `${step.stdout}${step.stderr}`.trimEnd().split("\n").slice(-8);
    for (const l of output) if (l !== "") lines.push(shown`    ${l}`);
  }
  return lines.join("\n");
}

function nodeDetailText(d: NodeDetail, t: NodeTimeline, boot: BootstrapRun[], now = Date.now()): string {
  const n = d.node;
  const lines = [
    shown`Node:        ${n.id}`,
    shown`Pool:        ${n.pool ?? "-"} (${n.origin === "launched" ? "launched by Navarch: counted in the pool's size" : "monitored: its agent registered on its own; never counted, scaled or replaced by Navarch"})`,
    shown`State:       ${n.state} for ${age(n.stateChangedAt, now).replace(/ ago$/, "")}${n.stateReason ? shown` (${n.stateReason})` : ""}`,
    shown`Hostname:    ${n.hostname ?? "-"}`,
    shown`Agent:       ${n.agentVersion ?? "not registered"}${n.bootId ? shown`, boot ${n.bootId}` : ""}`,
    shown`Driver:      ${n.driverVersion ?? "-"} (CUDA ${n.cudaVersion ?? "-"})`,
    shown`NVML:        ${n.nvmlAvailable ? "ok" : shown`unavailable: ${n.nvmlError ?? "unknown"}`}`,
    shown`Health:      ${n.verdict ?? "unknown (not judged: no full GPU check yet, or NVML unavailable)"} (agent's own verdict: ${n.agentHealth ?? "not checked yet"})${n.incidentId ? shown`, incident ${n.incidentId}` : ""}`,
    ...(n.cordonedBy ? [shown`Cordoned by: ${n.cordonedBy}`] : []),
    ...(n.replacementOf ? [shown`Replaces:    ${n.replacementOf}`] : []),
    ...(t.replacedBy.length > 0 ? [shown`Replaced by: ${t.replacedBy.map((r) => shown`${r.id} (${r.state})`).join(", ")}`] : []),
    shown`Registered:  ${age(n.registeredAt, now)}`,
    shown`Heartbeat:   ${age(n.lastHeartbeatAt, now)}`,
    "",
    d.gpus.length === 0
      ? "GPUs:        none reported"
      : table(
          ["GPU", "NAME", "TEMP", "UTIL", "ECC SBE", "ECC DBE", "PCI BUS ID", "UUID"],
          d.gpus.map((g) => [
            String(g.index),
            g.name,
            snapshotField(g.lastSnapshot, "temperatureC", "°C"),
            snapshotField(g.lastSnapshot, "utilizationPct", "%"),
            snapshotField(g.lastSnapshot, "eccVolatileSbe", ""),
            snapshotField(g.lastSnapshot, "eccVolatileDbe", ""),
            g.pciBusId,
            g.uuid,
          ]),
        ),
    "",
    t.incidents.length === 0 ? "Incidents:   none" : t.incidents.map((i) => incidentText(i, now)).join("\n"),
    "",
    bootstrapText(boot, now),
    "",
    d.events.length === 0
      ? "Events:      none"
      : "Recent health events:\n" +
        table(
          ["SEQ", "WHEN", "CHECK", "CODE", "SEVERITY", "GPU", "MESSAGE"],
          d.events.map((e) => [
            String(e.seq),
            age(e.time, now),
            e.check,
            e.code ?? "",
            e.severity,
            e.gpuIndex === null ? "-" : String(e.gpuIndex),
            e.count > 1 ? shown`${e.message} (×${e.count})` : e.message,
          ]),
          72,
        ),
    "",
    t.audit.length === 0
      ? "Actions:     none"
      : "What was done to it (newest first):\n" +
        table(
          ["WHEN", "WHO", "ACTION", "DETAILS"],
          t.audit.slice(0, 15).map((a) => [age(a.at, now), a.actor, a.action, auditDetails(a.action, a.details)]),
          90,
        ),
  ];
  return lines.join("\n");
}

/** One line for an audit row's details: a transition's from → to and reason, a refusal's rail and why. */
export function auditDetails(action: string, details: unknown): string {
  if (typeof details !== "object" || details === null) return "";
  const d = details as Record<string, unknown>;
  const s = (k: string) => (d[k] === undefined || d[k] === null ? "" : String(d[k]));
  if (action === "transition") return `${s("from")} → ${s("to")}: ${s("reason")}`;
  if (action === "blocked") return `refused by ${s("rail")}: ${s("reason")}`;
  if (action === "scale" || action === "dry_run") return `${s("from")} → ${s("to")}: ${s("reason")}`;
  return JSON.stringify(details);
}

function snapshotField(snapshot: Record<string, unknown> | null, key: string, unit: string): string {
  const value = snapshot?.[key];
  return typeof value === "number" ? `${value}${unit}` : "-";
}
