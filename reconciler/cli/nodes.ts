// `navarch nodes list|get`: what the reconciler knows about each node.
import { parseArgs } from "node:util";
import * as v from "valibot";
import YAML from "yaml";
import { NodeDetail, NodeList, type NodeRow } from "../../schema/admin.ts";
import { CliError, apiGet, resolveTarget } from "./client.ts";
import { age, table } from "./output.ts";

export const NODES_USAGE = `Usage:
  navarch nodes list [-o table|json|yaml] [-s SERVER]
  navarch nodes get NODE_ID [-o table|json|yaml] [-s SERVER]`;

type Format = "table" | "json" | "yaml";

export async function nodesCommand(args: string[], write: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { output: { type: "string", short: "o", default: "table" }, server: { type: "string", short: "s" } },
    allowPositionals: true,
    strict: true,
  });
  const format = values.output;
  if (format !== "table" && format !== "json" && format !== "yaml") {
    throw new CliError(`-o: expected table, json or yaml, got ${JSON.stringify(format)}`, 2);
  }
  const target = resolveTarget(values.server);
  const [verb, id, ...rest] = positionals;
  if (verb === "list" && id === undefined) {
    const body = parse(NodeList, await apiGet(target, "/v1/nodes"));
    write(render(format, body, () => nodesTable(body.nodes)));
    return 0;
  }
  if (verb === "get" && id !== undefined && rest.length === 0) {
    const body = parse(NodeDetail, await apiGet(target, `/v1/nodes/${encodeURIComponent(id)}`));
    write(render(format, body, () => nodeDetailText(body)));
    return 0;
  }
  throw new CliError(NODES_USAGE, 2);
}

function parse<S extends v.GenericSchema>(schema: S, body: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, body);
  if (!r.success) throw new CliError(`unexpected answer from the reconciler: ${r.issues[0]?.message ?? "invalid"}`);
  return r.output;
}

function render(format: Format, body: unknown, asTable: () => string): string {
  if (format === "json") return `${JSON.stringify(body, null, 2)}\n`;
  if (format === "yaml") return YAML.stringify(body);
  return `${asTable()}\n`;
}

export function nodesTable(nodes: NodeRow[], now = Date.now()): string {
  if (nodes.length === 0) return "No nodes.";
  return table(
    ["NODE", "POOL", "STATE", "HEALTH", "NVML", "LAST HEARTBEAT", "REASON"],
    nodes.map((n) => [
      n.id,
      n.pool ?? "-",
      n.state,
      n.verdict ?? n.agentHealth ?? "unchecked",
      n.registeredAt === null ? "-" : n.nvmlAvailable ? "ok" : "unavailable",
      age(n.lastHeartbeatAt, now),
      n.stateReason ?? "",
    ]),
  );
}

function nodeDetailText(d: NodeDetail, now = Date.now()): string {
  const n = d.node;
  const lines = [
    `Node:        ${n.id}`,
    `Pool:        ${n.pool ?? "-"}`,
    `State:       ${n.state}${n.stateReason ? ` (${n.stateReason})` : ""}`,
    `Hostname:    ${n.hostname ?? "-"}`,
    `Agent:       ${n.agentVersion ?? "not registered"}${n.bootId ? `, boot ${n.bootId}` : ""}`,
    `Driver:      ${n.driverVersion ?? "-"} (CUDA ${n.cudaVersion ?? "-"})`,
    `NVML:        ${n.nvmlAvailable ? "ok" : `unavailable: ${n.nvmlError ?? "unknown"}`}`,
    `Health:      ${n.verdict ?? "not judged yet"} (agent's own verdict: ${n.agentHealth ?? "not checked yet"})${n.incidentId ? `, incident ${n.incidentId}` : ""}`,
    ...(n.replacementOf ? [`Replaces:    ${n.replacementOf}`] : []),
    `Registered:  ${age(n.registeredAt, now)}`,
    `Heartbeat:   ${age(n.lastHeartbeatAt, now)}`,
    "",
    d.gpus.length === 0
      ? "GPUs:        none reported"
      : table(
          ["GPU", "UUID", "PCI BUS ID", "NAME", "TEMP", "UTIL"],
          d.gpus.map((g) => [
            String(g.index),
            g.uuid,
            g.pciBusId,
            g.name,
            snapshotField(g.lastSnapshot, "temperatureC", "°C"),
            snapshotField(g.lastSnapshot, "utilizationPct", "%"),
          ]),
        ),
    "",
    d.events.length === 0
      ? "Events:      none"
      : table(
          ["SEQ", "WHEN", "CHECK", "CODE", "SEVERITY", "GPU", "MESSAGE"],
          d.events.map((e) => [
            String(e.seq),
            age(e.time, now),
            e.check,
            e.code ?? "",
            e.severity,
            e.gpuIndex === null ? "-" : String(e.gpuIndex),
            e.count > 1 ? `${e.message} (×${e.count})` : e.message,
          ]),
          72,
        ),
  ];
  return lines.join("\n");
}

function snapshotField(snapshot: Record<string, unknown> | null, key: string, unit: string): string {
  const value = snapshot?.[key];
  return typeof value === "number" ? `${value}${unit}` : "-";
}
