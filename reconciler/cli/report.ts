// `navarch report [--since 7d|ISO-TIME]`: what the fleet cost over a window (GET /v1/report),
// one section after another. A section is rendered by one function here, beside its key
// in reconciler/api/report.ts.
import { parseArgs } from "node:util";
import { Report, type Goodput, type NeverServedRow } from "../api/report.ts";
import { CliError, apiGet, resolveTarget } from "./client.ts";
import { parseSince } from "./events.ts";
import { duration, parseAnswer, parseFormat, render, table } from "./output.ts";
import { REPORT_USAGE } from "./usage.ts";

export async function reportCommand(args: string[], write: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      since: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      server: { type: "string", short: "s" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new CliError(`usage:\n${REPORT_USAGE}`, 2);
  const format = parseFormat(values.output);
  const query = values.since === undefined ? "" : `?since=${parseSince(values.since, Date.now())}`;
  const report = parseAnswer(Report, await apiGet(resolveTarget(values.server), `/v1/report${query}`), "report");
  write(render(format, report, () => reportText(report)));
  return 0;
}

export function reportText(r: Report): string {
  return [
    `Report from ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}`,
    "",
    ...neverServedText(r.neverServed),
    "",
    ...goodputText(r.goodput),
  ].join("\n");
}

const hours = (h: number) => h.toFixed(1);

function goodputText(g: Goodput): string[] {
  const head = "Goodput (GPU time lost while nodes that had served were out of service):";
  if (g.episodes === 0) return [head, `  none lost; ${hours(g.gpuHoursInService)} GPU-hours in service`];
  const served = g.gpuHoursInService + g.gpuHoursLost;
  const share = served > 0 ? ` (${((100 * g.gpuHoursLost) / served).toFixed(2)} % of ${hours(served)})` : "";
  const outages = `${g.episodes} outage${g.episodes === 1 ? "" : "s"}${g.open > 0 ? `, ${g.open} still out of service` : ""}`;
  return [
    head,
    `  ${hours(g.gpuHoursLost)} GPU-hours lost${share}, ${hours(g.nodeHoursUnavailable)} node-hours; ${outages}`,
    "",
    "Lost GPU-hours by cause:",
    table(
      ["CAUSE", "OUTAGES", "NODE-HOURS", "GPU-HOURS"],
      g.byCause.map((c) => [c.cause, String(c.episodes), hours(c.nodeHours), hours(c.gpuHours)]),
    ),
    "",
    "Time to repair by rung (MTTR: the mean outage that ended on the rung, from out of service to back):",
    table(
      ["RUNG", "NODE-HOURS", "GPU-HOURS", "STAYS", "MEAN STAY", "ENDED", "MTTR"],
      g.byRung.map((r) => [
        r.rung,
        hours(r.nodeHours),
        hours(r.gpuHours),
        String(r.stays),
        duration(r.meanStaySeconds === null ? null : r.meanStaySeconds * 1000),
        String(r.ended),
        duration(r.mttrSeconds === null ? null : r.mttrSeconds * 1000),
      ]),
    ),
    "",
    `Worst nodes (the ${g.worstNodes.length} that lost the most GPU-hours):`,
    table(
      ["NODE", "POOL", "PROVIDER", "GPUS", "OUTAGES", "NODE-HOURS", "GPU-HOURS", "CAUSE", "OUT NOW"],
      g.worstNodes.map((n) => [
        n.node,
        n.pool ?? "-",
        n.provider ?? "-",
        n.gpus === null ? "?" : String(n.gpus),
        String(n.episodes),
        hours(n.nodeHours),
        hours(n.gpuHours),
        n.cause,
        n.open ? "yes" : "",
      ]),
    ),
  ];
}

function neverServedText(s: Report["neverServed"]): string[] {
  const head = "Machines that never served (launched and terminated without entering service):";
  if (s.pools.length === 0) return [head, "  none"];
  const rows = s.pools.map((r: NeverServedRow) => [
    r.pool,
    r.provider,
    String(r.machines),
    hours(r.machineHours),
    r.gpusUnknown === r.machines ? "unknown" : `${hours(r.gpuHours)}${r.gpusUnknown > 0 ? ` (+${r.gpusUnknown} unknown)` : ""}`,
  ]);
  rows.push(["total", "", String(s.total.machines), hours(s.total.machineHours), hours(s.total.gpuHours)]);
  return [head, table(["POOL", "PROVIDER", "MACHINES", "MACHINE-HOURS", "GPU-HOURS"], rows)];
}
