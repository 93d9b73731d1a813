// `navarch-node check --once`: every check once, printed for the operator at the
// suspect box. The kernel log is replayed from the start of this boot, so Xids
// logged before the agent ran still count. Exit code: 0 healthy, 1 degraded,
// 2 unhealthy, 3 the GPUs could not be read (NVML unavailable), 64 usage.
import { parseArgs } from "node:util";
import { MAX_GPUS, type GpuIdentity, type Severity } from "../schema/wire.ts";
import { jsonText, printable } from "../schema/text.ts";
import type { Finding } from "./checks/finding.ts";
import { kmsgFindingToEvent } from "./kmsg/event.ts";
import { followKmsg } from "./kmsg/follow.ts";
import type { KmsgFinding } from "./kmsg/match.ts";
import { HealthMonitor } from "./health-monitor.ts";
import { explicitLibraryProblem } from "./nvml/discovery.ts";

const EXIT: Record<Severity, number> = { healthy: 0, degraded: 1, unhealthy: 2 };
const EXIT_NO_NVML = 3;
const EXIT_USAGE = 64;

export async function runCheckOnce(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        once: { type: "boolean" },
        output: { type: "string", short: "o", default: "table" },
        "nvml-library": { type: "string" },
        "kmsg-path": { type: "string" },
        "expected-gpus": { type: "string" },
        "infiniband-dir": { type: "string" },
        "sysfs-root": { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`navarch-node check: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_USAGE;
  }
  if (!values.once) {
    process.stderr.write("navarch-node check: only --once is supported (the agent itself checks continuously)\n");
    return EXIT_USAGE;
  }
  if (values.output !== "table" && values.output !== "json") {
    process.stderr.write(`navarch-node check: -o: expected table or json, got ${JSON.stringify(values.output)}\n`);
    return EXIT_USAGE;
  }
  const expectedGpus = values["expected-gpus"] === undefined ? undefined : Number(values["expected-gpus"]);
  if (expectedGpus !== undefined && !(Number.isInteger(expectedGpus) && expectedGpus > 0 && expectedGpus <= MAX_GPUS)) {
    process.stderr.write(`navarch-node check: --expected-gpus: expected a whole number from 1 to ${MAX_GPUS}, got ${values["expected-gpus"]}\n`);
    return EXIT_USAGE;
  }

  const libraryProblem = values["nvml-library"] === undefined ? undefined : explicitLibraryProblem(values["nvml-library"]);
  if (libraryProblem !== undefined) {
    process.stderr.write(`navarch-node check: --nvml-library: ${libraryProblem}\n`);
    return EXIT_USAGE;
  }

  const kmsgPath = values["kmsg-path"] ?? "/dev/kmsg";
  const notes: string[] = [];
  const monitor = new HealthMonitor({
    libraryPath: values["nvml-library"],
    kmsgPath: null, // replayed below, once, instead of followed
    ...(expectedGpus !== undefined ? { expectedGpus } : {}),
    ...(values["infiniband-dir"] !== undefined ? { infinibandDir: values["infiniband-dir"] === "none" ? null : values["infiniband-dir"] } : {}),
    ...(values["sysfs-root"] !== undefined ? { sysfsRoot: values["sysfs-root"] } : {}),
    onFinding: () => undefined,
    log: (line) => notes.push(line),
  });
  await monitor.start();
  const gpusByBus = new Map(monitor.inventory().map((g) => [g.pciBusId, { index: g.index, uuid: g.uuid, pciBusId: g.pciBusId }]));
  const kmsgFindings = kmsgPath === "none" ? [] : await replayKmsg(kmsgPath, notes, gpusByBus);
  const findings = [...monitor.current(), ...kmsgFindings];
  await monitor.close();

  const nvml = monitor.status();
  const worst = findings.reduce<Severity>((w, f) => (EXIT[f.severity] > EXIT[w] ? f.severity : w), "healthy");
  const code = nvml.available ? EXIT[worst] : EXIT_NO_NVML;
  if (values.output === "json") {
    const result = { verdict: nvml.available ? worst : "unknown", nvml, gpus: monitor.inventory(), driverVersion: monitor.driverVersion(), findings, notes };
    process.stdout.write(`${jsonText(result, 2)}\n`);
  } else {
    process.stdout.write(renderTable(worst, nvml.available, nvml.error, monitor.inventory().length, findings, notes));
  }
  return code;
}

/** Reads the kernel log from the start of this boot up to now, then stops. */
async function replayKmsg(path: string, notes: string[], gpusByBus: Map<string, GpuIdentity>): Promise<Finding[]> {
  const found: KmsgFinding[] = [];
  let follower;
  try {
    follower = followKmsg(path, (f) => found.push(f), { start: "beginning", pollIntervalMs: 50, log: (m) => notes.push(`kmsg: ${m}`) });
  } catch (err) {
    notes.push(`kernel log ${path} not read: ${err instanceof Error ? err.message : String(err)}`);
    return [];
  }
  // The follower reads what exists at once and then waits for more; give it one idle interval.
  await Bun.sleep(150);
  await follower.stop();
  return found.flatMap((f) => {
    const e = kmsgFindingToEvent(f);
    if (e === null) return [];
    const gpu = f.pciBusId ? gpusByBus.get(f.pciBusId) : undefined;
    return [
      {
        check: e.check,
        severity: e.severity,
        action: e.action,
        message: e.message,
        ...(e.code ? { code: e.code } : {}),
        ...(gpu ? { gpu } : f.pciBusId ? { pciBusId: f.pciBusId } : {}),
      },
    ];
  });
}

/** The human verdict: kernel-log text and NVML errors printed on their own line each, their escapes shown, not obeyed. */
function renderTable(worst: Severity, nvmlOk: boolean, nvmlError: string | undefined, gpuCount: number, findings: Finding[], notes: string[]): string {
  const one = (text: string) => printable(text, true);
  const lines = [
    nvmlOk ? `Verdict: ${worst.toUpperCase()} (${gpuCount} GPUs checked)` : `Verdict: UNKNOWN: GPUs cannot be read: ${one(nvmlError ?? "NVML unavailable")}`,
    "",
  ];
  if (findings.length === 0) lines.push("No findings.");
  for (const f of findings) {
    const where = f.gpu ? `GPU ${f.gpu.index}` : f.pciBusId ? one(f.pciBusId) : "node";
    lines.push(
      `${f.severity.padEnd(9)} ${where.padEnd(16)} ${one(`${f.check}${f.code ? ` ${f.code}` : ""}`).padEnd(24)} ${f.action.padEnd(15)} ${one(f.message)}`,
    );
  }
  for (const n of notes) lines.push(`note: ${one(n)}`);
  return `${lines.join("\n")}\n`;
}
