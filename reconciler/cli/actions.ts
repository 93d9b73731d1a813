// Operator actions and lists from the command line: cordon, uncordon, drain (with
// progress until drained or the deadline), replace a node; list, show, pause and
// resume pools; reset a breaker; list incidents with the time each step took;
// inject a fault into a local (simulated) node. Errors are one line.
import { parseArgs } from "node:util";
import * as v from "valibot";
import { NodeDetail } from "../../schema/admin.ts";
import { incidentTimeline } from "../api/views/incident-timeline.ts";
import type { PoolSummary } from "../api/views/pool-summary.ts";
import { PoolView } from "../api/views/pool-view.ts";
import { IncidentList, PoolList } from "../api/views/table-rows.ts";
import { CliError, actor, apiGet, apiPost, resolveTarget, type ApiTarget } from "./client.ts";
import { auditDetails, incidentText } from "./nodes.ts";
import { durationFlag } from "./durations.ts";
import { age, duration, parseAnswer, parseFormat, render, shown, table, type Format } from "./output.ts";
import { printable } from "../../schema/text.ts";

const ActionAnswer = v.object({ ok: v.literal(true), result: v.optional(v.unknown()) });

export interface CommandOptions {
  /** Stops a waiting command (drain); tests use it. */
  signal?: AbortSignal;
  /** Poll interval of drain's progress (ms). */
  pollMs?: number;
}

export async function actionCommand(command: string, args: string[], write: (s: string) => void, opts: CommandOptions = {}): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      reason: { type: "string" },
      deadline: { type: "string" },
      "no-wait": { type: "boolean" },
      open: { type: "boolean" },
      node: { type: "string" },
      pool: { type: "string" },
      xid: { type: "string" },
      gpu: { type: "string" },
      nvml: { type: "string" },
      kmsg: { type: "string" },
      nodes: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  const format = parseFormat(values.output);
  const body = { actor: actor(), ...(values.reason ? { reason: values.reason } : {}) };
  const one = (what: string): string => {
    if (positionals.length !== 1 || !positionals[0]) throw new CliError(`usage: navarch ${command} ${what}`, 2);
    return positionals[0];
  };
  const done = (answer: unknown, text: string) => {
    write(render(format, parseAnswer(ActionAnswer, answer, command), () => text));
    return 0;
  };
  switch (command) {
    case "cordon":
    case "uncordon":
    case "reboot":
    case "replace": {
      const node = one("NODE [--reason TEXT]");
      const target = resolveTarget(values.server);
      const answer = await apiPost(target, `/v1/nodes/${encodeURIComponent(node)}/${command}`, body);
      return done(answer, `${node}: ${command} requested${command === "cordon" ? " (it stays cordoned until someone uncordons it)" : ""}`);
    }
    case "drain": {
      const node = one("NODE [--deadline 30m] [--no-wait]");
      const deadline = values.deadline === undefined ? 1800 : durationFlag("--deadline", values.deadline, 1, 7 * 86_400, "30m or 2h");
      const target = resolveTarget(values.server);
      const answer = await apiPost(target, `/v1/nodes/${encodeURIComponent(node)}/drain`, { ...body, deadlineSeconds: deadline });
      parseAnswer(ActionAnswer, answer, "drain");
      if (values["no-wait"]) {
        write(render(format, answer, () => `${node}: drain requested (deadline ${duration(deadline * 1000)})`));
        return 0;
      }
      return waitForDrain(target, node, deadline, format, write, opts);
    }
    case "pools":
      return poolsCommand(positionals, values.server, values.reason, values.nodes, body, format, write);
    case "breaker": {
      const [verb, scope] = positionals;
      if (verb !== "reset" || !scope) throw new CliError("usage: navarch breaker reset SCOPE   (fleet or pool:NAME)", 2);
      const answer = await apiPost(resolveTarget(values.server), `/v1/breakers/${encodeURIComponent(scope)}/reset`, body);
      return done(answer, `breaker ${scope}: reset`);
    }
    case "incidents": {
      if (positionals.length > 0) throw new CliError("usage: navarch incidents [--open] [--node NODE] [--pool POOL]", 2);
      const target = resolveTarget(values.server);
      const res = parseAnswer(IncidentList, await apiGet(target, `/v1/incidents${values.open ? "?open=true" : ""}`), "incidents");
      const incidents = res.incidents.filter(
        (i) =>
          (values.node === undefined || i.nodeId === values.node || i.replacementNodeId === values.node) &&
          (values.pool === undefined || i.pool === values.pool),
      );
      write(render(format, { incidents }, () => incidentsTable(incidents)));
      return 0;
    }
    case "fault": {
      const [verb, node] = positionals;
      if (verb !== "inject" || !node) throw new CliError("usage: navarch fault inject NODE --xid N [--gpu I] | --nvml COMMAND | --kmsg LINE", 2);
      const fault =
        values.xid !== undefined
          ? { xid: Number(values.xid), ...(values.gpu !== undefined ? { gpu: Number(values.gpu) } : {}) }
          : values.nvml !== undefined
            ? { nvml: values.nvml }
            : values.kmsg !== undefined
              ? { kmsg: values.kmsg }
              : undefined;
      if (fault === undefined) throw new CliError("fault inject: give --xid N, --nvml COMMAND or --kmsg LINE", 2);
      const answer = await apiPost(resolveTarget(values.server), `/v1/nodes/${encodeURIComponent(node)}/fault`, fault);
      return done(answer, `${node}: fault injected`);
    }
    default:
      throw new CliError(`unknown command ${command}`, 2);
  }
}

function incidentsTable(incidents: v.InferOutput<typeof IncidentList>["incidents"], now = Date.now()): string {
  if (incidents.length === 0) return "No incidents.";
  return table(
    ["ID", "NODE", "POOL", "FAULT", "FAULT→CORDON", "CORDON→DRAINED", "→REPLACEMENT READY", "OUTCOME", "STATUS", "REASON"],
    incidents.map((i) => {
      const t = incidentTimeline(i);
      return [
        String(i.id),
        i.nodeId,
        i.pool ?? "-",
        age(i.faultAt, now),
        duration(t.durations.faultToCordonMs),
        duration(t.durations.cordonToDrainedMs),
        duration(t.durations.faultToReplacementReadyMs),
        i.outcome ?? "open",
        i.status,
        i.reason,
      ];
    }),
    60,
  );
}

async function poolsCommand(
  positionals: string[],
  server: string | undefined,
  reason: string | undefined,
  nodes: string | undefined,
  body: { actor: string; reason?: string },
  format: Format,
  write: (s: string) => void,
): Promise<number> {
  const [verb, pool, ...rest] = positionals;
  const usage = "usage: navarch pools list | get POOL | pause POOL [--reason TEXT] | resume POOL | scale POOL --nodes N [--reason TEXT]";
  if (rest.length > 0) throw new CliError(usage, 2);
  if (verb === "scale" && pool !== undefined) {
    const size = nodes === undefined ? Number.NaN : Number(nodes);
    if (!(Number.isInteger(size) && size >= 0 && size <= 100_000 && /^\d+$/.test(nodes ?? "")))
      throw new CliError(
        `pools scale: --nodes: expected a whole number of nodes from 0 to 100000, got ${nodes === undefined ? "nothing" : JSON.stringify(nodes)}`,
        2,
      );
    const answer = await apiPost(resolveTarget(server), `/v1/pools/${encodeURIComponent(pool)}/scale`, { ...body, nodes: size });
    write(render(format, parseAnswer(ActionAnswer, answer, "scale"), () => `pool ${pool}: scaling to ${size} nodes (held there: it has no autoscaler)`));
    return 0;
  }
  if (verb === "list" && pool === undefined) {
    const target = resolveTarget(server);
    const list = parseAnswer(PoolList, await apiGet(target, "/v1/pools"), "pools");
    // Sizes and health come from each pool's view (a handful of pools: one call each).
    const views = await Promise.all(
      list.pools.map(async (p) => parseAnswer(PoolView, await apiGet(target, `/v1/pools/${encodeURIComponent(p.name)}`), `pool ${p.name}`)),
    );
    write(render(format, list, () => poolsTable(views.map((x) => x.summary))));
    return 0;
  }
  if (verb === "get" && pool !== undefined) {
    const view = parseAnswer(PoolView, await apiGet(resolveTarget(server), `/v1/pools/${encodeURIComponent(pool)}`), `pool ${pool}`);
    write(render(format, view, () => poolText(view)));
    return 0;
  }
  if ((verb === "pause" || verb === "resume") && pool !== undefined) {
    const answer = await apiPost(
      resolveTarget(server),
      `/v1/pools/${encodeURIComponent(pool)}/${verb}`,
      verb === "pause" ? { ...body, ...(reason ? { reason } : {}) } : body,
    );
    write(render(format, parseAnswer(ActionAnswer, answer, verb), () => `pool ${pool}: ${verb}d`));
    return 0;
  }
  throw new CliError(usage, 2);
}

function poolsTable(pools: PoolSummary[], now = Date.now()): string {
  if (pools.length === 0) return "No pools.";
  return table(
    ["POOL", "SIZE", "MIN", "MAX", "MONITORED", "HEALTHY", "UNHEALTHY", "AUTOSCALER", "LAST SCALED", "STATUS"],
    pools.map((p) => [
      p.name,
      String(p.size),
      String(p.minNodes ?? "-"),
      String(p.maxNodes ?? "-"),
      String(p.monitored),
      String(p.healthy),
      String(p.unhealthy),
      p.autoscaler ?? "none",
      p.lastScaleAt === null ? "never" : `${age(p.lastScaleAt, now)} (${p.lastScaleDirection ?? "?"})`,
      [
        p.paused ? `paused (${p.pausedReason ?? ""})` : "",
        p.held ? `held since ${age(p.held.since, now)}: ${p.held.reason}` : "",
        p.breaker ? `breaker tripped: ${p.breaker}` : "",
        p.launches ? launchStatus(p.launches, now) : "",
        p.minNodes !== null && p.size < p.minNodes ? "below min" : "",
        p.requestedNodes !== null && p.autoscaler === null && p.size !== p.requestedNodes
          ? `scaling to ${p.requestedNodes} (requested by ${p.requestedBy ?? "?"})`
          : "",
      ]
        .filter(Boolean)
        .join("; ") || "ok",
    ]),
  );
}

/** `launches refused (3 in a row since 5m ago): …; next try in 40s` */
function launchStatus(l: NonNullable<PoolSummary["launches"]>, now: number): string {
  const next = l.retryAt === null ? "" : l.retryAt > now ? shown`; next try in ${duration(l.retryAt - now)}` : "; retrying now";
  return shown`launches ${l.kind === "permanent" ? "refused" : "failing"} (${l.failures} in a row since ${age(l.since, now)}): ${l.error}${next}`;
}

function poolText(view: v.InferOutput<typeof PoolView>, now = Date.now()): string {
  const s = view.summary;
  const byState = Object.entries(s.byState)
    .map(([state, n]) => shown`${state} ${n}`)
    .join(", ");
  return [
    shown`Pool:        ${s.name} (${view.pool.source})`,
    shown`Size:        ${s.size} (min ${s.minNodes ?? "-"}, max ${s.maxNodes ?? "-"})${s.minNodes !== null && s.size < s.minNodes ? ", below min" : ""}`,
    shown`Monitored:   ${s.monitored} (registered on their own: watched, never counted in the size)`,
    shown`Health:      ${s.healthy} healthy, ${s.unhealthy} unhealthy`,
    shown`States:      ${byState || "no nodes"}`,
    shown`Autoscaler:  ${s.autoscaler ?? (s.requestedNodes === null ? "none (bounds only)" : shown`none: held at ${s.requestedNodes}, requested by ${s.requestedBy ?? "?"}`)}`,
    shown`Providers:   ${s.providers.join(", ") || "-"} (${s.instanceType ?? "-"})`,
    shown`Last scaled: ${s.lastScaleAt === null ? "never" : shown`${age(s.lastScaleAt, now)} (${s.lastScaleDirection ?? "?"})`}`,
    ...(s.launches ? [shown`Launches:    ${launchStatus(s.launches, now)}`] : []),
    shown`Paused:      ${s.paused ? shown`yes, ${s.pausedReason ?? ""}` : "no"}`,
    ...(s.held ? [shown`Held:        since ${age(s.held.since, now)}: ${s.held.reason} (navarch pools resume ${s.name})`] : []),
    shown`Breakers:    ${view.breakers.length === 0 ? "none tripped" : view.breakers.map((b) => shown`${b.scope}: ${b.reason}`).join("; ")}`,
    "",
    "Autoscaler decisions:",
    view.decisions.length === 0
      ? "  none yet"
      : table(
          ["WHEN", "KIND", "DECISION"],
          view.decisions.slice(0, 15).map((a) => [age(a.at, now), a.action, auditDetails(a.action, a.details)]),
          100,
        ),
    "",
    "Refused by a safety rail:",
    view.blocked.length === 0
      ? "  nothing"
      : table(
          ["WHEN", "NODE", "WHY"],
          view.blocked.slice(0, 15).map((a) => [age(a.at, now), a.target, auditDetails(a.action, a.details)]),
          100,
        ),
    "",
    nodesTableFromTiles(view),
    "",
    view.incidents.length === 0
      ? "Incidents:   none"
      : view.incidents
          .slice(0, 10)
          .map((i) => incidentText(incidentTimeline(i), now))
          .join("\n"),
  ].join("\n");
}

function nodesTableFromTiles(view: v.InferOutput<typeof PoolView>, now = Date.now()): string {
  if (view.nodes.length === 0) return "Nodes:       none";
  return table(
    ["NODE", "STATE", "HEALTH", "LAST HEARTBEAT", "IN STATE", "REASON"],
    view.nodes.map((n) => [
      n.id,
      n.state,
      n.verdict ?? "unknown",
      age(n.lastHeartbeatAt, now),
      age(n.stateChangedAt, now).replace(/ ago$/, ""),
      n.stateReason ?? "",
    ]),
    72,
  );
}

/** Polls the node after a drain request and prints each change until it leaves draining. */
async function waitForDrain(
  target: ApiTarget,
  node: string,
  deadlineSeconds: number,
  format: Format,
  write: (s: string) => void,
  opts: CommandOptions,
): Promise<number> {
  const started = Date.now();
  const giveUpAt = started + (deadlineSeconds + 120) * 1000;
  const pollMs = opts.pollMs ?? 1000;
  const say = (line: string) => {
    if (format === "table") write(`[${duration(Date.now() - started).padStart(6)}] ${printable(line, true)}\n`);
  };
  say(`${node}: drain requested (deadline ${duration(deadlineSeconds * 1000)})`);
  let last = "";
  for (;;) {
    const detail = parseAnswer(NodeDetail, await apiGet(target, `/v1/nodes/${encodeURIComponent(node)}?events=0`), `node ${node}`);
    const n = detail.node;
    const now = `${n.state}: ${n.stateReason ?? ""}`;
    if (now !== last) {
      say(now);
      last = now;
    }
    if (n.state !== "draining" && n.state !== "cordoned") {
      const drained = n.state === "held" || n.state === "terminating" || n.state === "terminated";
      if (format !== "table") write(render(format, { node: n, drained }, () => ""));
      else if (drained) write(`${node}: drained in ${duration(Date.now() - started)}; now ${n.state}\n`);
      if (!drained) throw new CliError(shown`${node}: drain ended without draining: the node is ${n.state}${n.stateReason ? ` (${n.stateReason})` : ""}`);
      return 0;
    }
    if (Date.now() > giveUpAt)
      throw new CliError(
        `${node}: still ${n.state} ${duration(Date.now() - started)} after the drain request (deadline ${duration(deadlineSeconds * 1000)}); see navarch nodes get ${node}`,
      );
    if (opts.signal?.aborted) throw new CliError(`${node}: stopped waiting; the drain goes on`);
    await Bun.sleep(pollMs);
  }
}
