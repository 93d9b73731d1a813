// `navarch report [--since 7d|ISO-TIME]`: what the fleet cost over a window (GET /v1/report),
// one section after another. A section is rendered by one function here, beside its key
// in reconciler/api/report.ts.
import { parseArgs } from "node:util";
import { Report, type NeverServedRow } from "../api/report.ts";
import { CliError, apiGet, resolveTarget } from "./client.ts";
import { parseSince } from "./events.ts";
import { parseAnswer, parseFormat, render, table } from "./output.ts";
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
  return [`Report from ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}`, "", ...neverServedText(r.neverServed)].join("\n");
}

function neverServedText(s: Report["neverServed"]): string[] {
  const head = "Machines that never served (launched and terminated without entering service):";
  if (s.pools.length === 0) return [head, "  none"];
  const hours = (h: number) => h.toFixed(1);
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
