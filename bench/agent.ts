// Agent benchmarks, on the compiled binaries and the fake libnvidia-ml:
//   1. Xid injected into the fake library → event stored by a running reconciler
//      on loopback: p50/p99 over 200 injections (goal: p99 < 100 ms).
//   2. Agent resident memory and CPU with 8 fake GPUs over 60 s of default
//      polling (goal: < 48 MiB RSS, < 1% of one core).
// Each run also measures an idle `sleep` process the same way, as the baseline.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { knownXidCodes } from "../schema/xid-catalog.ts";
import { CompiledFleet } from "../test/compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "../test/fake-nvml/control.ts";
import { waitFor } from "../test/support.ts";

export interface AgentBenchResult {
  injections: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  idleSeconds: number;
  rssMiB: { start: number; end: number; max: number };
  cpuPercentOfOneCore: number;
  baselineCpuPercent: number;
}

const GPUS = 8;
const CLK_TCK = 100; // Linux USER_HZ on x86-64

function procStat(pid: number): { rssKiB: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // Fields after the command name (which may contain spaces): utime is 14th, stime 15th overall.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { rssKiB, cpuTicks: Number(rest[11]) + Number(rest[12]) };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export async function benchAgent(opts: { injections?: number; idleSeconds?: number; log?: (s: string) => void } = {}): Promise<AgentBenchResult> {
  const injections = opts.injections ?? 200;
  const idleSeconds = opts.idleSeconds ?? 60;
  const log = opts.log ?? (() => undefined);
  buildFakeNvml();
  const fleet = await CompiledFleet.create();
  try {
    fleet.writeConfig("", "30s");
    fleet.startServer();
    await fleet.waitReady();

    const state = join(fleet.dir, "nvml-state");
    const control = join(fleet.dir, "nvml-control");
    writeFileSync(state, `count ${GPUS}\n`);
    const agent = fleet.startAgent("bench-node", ["--nvml-library", FAKE_NVML.full, "--kmsg-path", "none"], {
      FAKE_NVML_STATE: state,
      FAKE_NVML_CONTROL: control,
    });
    type Detail = { node: { agentHealth: string | null }; events: { gpuIndex: number | null; code: string | null; receivedAt: number }[] };
    await waitFor("agent registered and checked", async () => ((await fleet.api<Detail>("/v1/nodes/bench-node"))?.node.agentHealth ? true : undefined), 20_000);

    // Memory and CPU first, on an agent that has only been polling.
    log(`measuring agent RSS and CPU over ${idleSeconds} s of default polling with ${GPUS} fake GPUs…`);
    const baseline = Bun.spawn(["sleep", String(idleSeconds + 5)]);
    const a0 = procStat(agent.pid);
    const b0 = procStat(baseline.pid);
    let maxRss = a0.rssKiB;
    const until = Date.now() + idleSeconds * 1000;
    while (Date.now() < until) {
      await Bun.sleep(1000);
      maxRss = Math.max(maxRss, procStat(agent.pid).rssKiB);
    }
    const a1 = procStat(agent.pid);
    const b1 = procStat(baseline.pid);
    baseline.kill();
    const cpu = ((a1.cpuTicks - a0.cpuTicks) / CLK_TCK / idleSeconds) * 100;
    const baselineCpu = ((b1.cpuTicks - b0.cpuTicks) / CLK_TCK / idleSeconds) * 100;

    // Latency: each injection a distinct incident (GPU × Xid code), so none is deduplicated.
    log(`injecting ${injections} Xids…`);
    const codes = knownXidCodes().filter((c) => c !== 999);
    const sent = new Map<string, number>();
    for (let i = 0; i < injections; i++) {
      const gpu = i % GPUS;
      const code = codes[Math.floor(i / GPUS) % codes.length]!;
      sent.set(`${gpu}:${code}`, Date.now());
      appendFileSync(control, `xid ${gpu} ${code}\n`);
      await Bun.sleep(20);
    }
    const events = await waitFor(
      `${injections} events stored`,
      async () => {
        const d = await fleet.api<Detail>(`/v1/nodes/bench-node?events=${injections * 2}`);
        const xids = d?.events.filter((e) => sent.has(`${e.gpuIndex}:${e.code}`)) ?? [];
        return xids.length >= sent.size ? xids : undefined;
      },
      30_000,
    );
    const latencies = events.map((e) => e.receivedAt - sent.get(`${e.gpuIndex}:${e.code}`)!).sort((x, y) => x - y);
    return {
      injections: latencies.length,
      latencyMs: { p50: quantile(latencies, 0.5), p90: quantile(latencies, 0.9), p99: quantile(latencies, 0.99), max: latencies.at(-1) ?? NaN },
      idleSeconds,
      rssMiB: { start: a0.rssKiB / 1024, end: a1.rssKiB / 1024, max: maxRss / 1024 },
      cpuPercentOfOneCore: cpu,
      baselineCpuPercent: baselineCpu,
    };
  } finally {
    fleet.stop();
  }
}
