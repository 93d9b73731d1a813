// Agent benchmarks, on the compiled binaries and the fake libnvidia-ml (8 GPUs), default settings:
//   1. Footprint: the agent's resident memory and CPU over a window of default polling, beside a
//      minimal compiled Bun program (bun:ffi loaded, a fetch every 30 s, nothing else) measured
//      the same way in the same run, and the ratio between them; where the agent's memory is (its
//      SIGUSR1 report: resident set by kind, each JavaScript heap). With `soak`, the window is
//      10 minutes and the RSS samples show whether it keeps growing.
//   2. A GPU crossing its slowdown threshold → the reconciler has the event (goal: < 2 s).
//   3. Xid written to the kernel log → event stored (goal: p99 ≤ 50 ms). The kernel log is a FIFO:
//      it blocks like /dev/kmsg (the host's, which a benchmark must not write to), so the agent
//      reads it the way it reads the device.
//   4. Xid injected into the fake library → event stored (goal: p99 < 100 ms).
//   5. Reconciler down 20 s with events spooled → all stored, measured from its return (goal: < 5 s).
import { appendFileSync, closeSync, constants, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "./proc.ts";
import { knownXidCodes } from "../schema/xid-catalog.ts";
import { CompiledFleet } from "../test/compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "../test/fake-nvml/control.ts";
import { waitFor } from "../test/support.ts";

export interface AgentBenchOptions {
  /** The footprint window, after a 10 s warm-up. */
  windowSeconds?: number;
  injections?: number;
  /** Xid records written to the kernel log, 0–400 ms apart. */
  kmsgRecords?: number;
  slowdownTrials?: number;
  /** Skip the 20 s outage. */
  skipOutage?: boolean;
  log?: (s: string) => void;
}

export interface Footprint {
  /** RSS samples (MiB), one every 10 s over the window. */
  samples: number[];
  start: number;
  end: number;
  max: number;
  /** Least-squares slope of the samples, MiB per 10 minutes. */
  slopePer10Min: number;
  cpuPercentOfOneCore: number;
}

export interface AgentBenchResult {
  windowSeconds: number;
  agent: Footprint;
  minimal: Footprint;
  memoryReport: string;
  slowdownMs: number[];
  kmsgLatencyMs: Quantiles;
  latencyMs: Quantiles & { injections: number };
  recoveryMs: number | null;
}

export interface Quantiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  count: number;
}

const GPUS = 8;
const MiB = 1024;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function quantiles(values: number[]): Quantiles {
  const sorted = [...values].sort((x, y) => x - y);
  return { p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? NaN, count: sorted.length };
}

/** NVML's `00000000:3A:00.0` as the kernel log prints it: `PCI:0000:3a:00`. */
function kmsgPci(nvmlBusId: string): string {
  const [domain = "", bus = "", devfn = ""] = nvmlBusId.split(":");
  return `PCI:${domain.slice(4)}:${bus.toLowerCase()}:${devfn.slice(0, 2)}`;
}

function slope(samples: number[], everySeconds: number): number {
  const n = samples.length;
  if (n < 2) return 0;
  const xs = samples.map((_, i) => i * everySeconds);
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = samples.reduce((a, b) => a + b, 0) / n;
  const num = xs.reduce((a, x, i) => a + (x - mx) * (samples[i]! - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return (num / den) * 600;
}

/** A compiled Bun program that only loads bun:ffi and calls fetch: the floor any Bun agent starts from. */
async function buildMinimal(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const source = join(dir, "minimal.ts");
  writeFileSync(
    source,
    `import { dlopen, FFIType } from "bun:ffi";
const libc = dlopen("libc.so.6", { getpid: { args: [], returns: FFIType.i32 } });
libc.symbols.getpid();
const ping = () => fetch(process.argv[2]!).then((r) => r.text()).catch(() => undefined);
void ping();
setInterval(ping, 30_000);
`,
  );
  const out = join(dir, "minimal");
  const built = await Bun.build({
    entrypoints: [source],
    compile: { outfile: out, autoloadDotenv: false, autoloadBunfig: false },
    minify: true,
    bytecode: true,
    format: "esm",
  });
  if (!built.success) throw new Error(`building the minimal program failed: ${built.logs.join("\n")}`);
  return out;
}

/** Samples both processes every 10 s over the window; CPU from /proc ticks. */
async function footprints(
  pids: { agent: number; minimal: number },
  seconds: number,
  log: (s: string) => void,
): Promise<{ agent: Footprint; minimal: Footprint }> {
  const first = { agent: procStat(pids.agent), minimal: procStat(pids.minimal) };
  const samples = { agent: [first.agent.rssKiB / MiB], minimal: [first.minimal.rssKiB / MiB] };
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    await Bun.sleep(Math.min(10_000, until - Date.now()));
    const a = procStat(pids.agent);
    const m = procStat(pids.minimal);
    samples.agent.push(a.rssKiB / MiB);
    samples.minimal.push(m.rssKiB / MiB);
    if (samples.agent.length % 6 === 1)
      log(`  ${Math.round(seconds - (until - Date.now()) / 1000)} s: agent ${(a.rssKiB / MiB).toFixed(1)} MiB, minimal ${(m.rssKiB / MiB).toFixed(1)} MiB`);
  }
  const last = { agent: procStat(pids.agent), minimal: procStat(pids.minimal) };
  const footprint = (k: "agent" | "minimal"): Footprint => ({
    samples: samples[k],
    start: samples[k][0]!,
    end: samples[k].at(-1)!,
    max: Math.max(...samples[k]),
    slopePer10Min: slope(samples[k], 10),
    cpuPercentOfOneCore: ((last[k].cpuNs - first[k].cpuNs) / 1e9 / seconds) * 100,
  });
  return { agent: footprint("agent"), minimal: footprint("minimal") };
}

export async function benchAgent(opts: AgentBenchOptions = {}): Promise<AgentBenchResult> {
  const windowSeconds = opts.windowSeconds ?? 60;
  const injections = opts.injections ?? 200;
  const log = opts.log ?? (() => undefined);
  buildFakeNvml();
  const fleet = await CompiledFleet.create();
  let kmsgWriter: number | undefined;
  try {
    fleet.writeConfig("", "30s");
    let server = fleet.startServer();
    await fleet.waitReady();
    const minimalBinary = await buildMinimal(join(fleet.dir, "minimal"));
    const minimal = fleet.start("minimal", [minimalBinary, `${fleet.url}/healthz`]);

    const state = join(fleet.dir, "nvml-state");
    const control = join(fleet.dir, "nvml-control");
    writeFileSync(state, `count ${GPUS}\n`);
    // Default settings, but a kernel log of our own: /dev/kmsg is the host's, and may not be
    // readable. A FIFO, held open for writing here for the whole run (O_RDWR: opening never
    // waits for the reader, and the agent never sees the writer leave).
    const kmsg = join(fleet.dir, "kmsg");
    if (Bun.spawnSync(["mkfifo", kmsg]).exitCode !== 0) throw new Error(`mkfifo ${kmsg} failed`);
    kmsgWriter = openSync(kmsg, constants.O_RDWR);
    const kmsgFd = kmsgWriter;
    const inject = (line: string) => appendFileSync(control, `${line}\n`);
    const agent = fleet.startAgent("bench-node", ["--nvml-library", FAKE_NVML.full, "--kmsg-path", kmsg], {
      FAKE_NVML_STATE: state,
      FAKE_NVML_CONTROL: control,
    });
    type Detail = {
      node: { agentHealth: string | null };
      gpus: { index: number; pciBusId: string }[];
      events: { check: string; code: string | null; severity: string; gpuIndex: number | null; receivedAt: number }[];
    };
    const detail = (events = 1000) => fleet.api<Detail>(`/v1/nodes/bench-node?events=${events}`);
    await waitFor("agent registered and checked", async () => ((await detail())?.node.agentHealth ? true : undefined), 20_000);

    log(`footprint: agent (8 fake GPUs, default settings) and a minimal bun:ffi + fetch program, ${windowSeconds} s after a 10 s warm-up…`);
    await Bun.sleep(10_000);
    const fp = await footprints({ agent: agent.pid, minimal: minimal.pid }, windowSeconds, log);
    agent.kill("SIGUSR1");
    const memoryReport = await waitFor("the agent's memory report", () => /memory: RSS .*/.exec(fleet.output.get("bench-node") ?? "")?.[0], 5000);
    minimal.kill();

    const trials = opts.slowdownTrials ?? 10;
    log(`slowdown threshold crossed ${trials} times…`);
    const slowdownMs: number[] = [];
    for (let i = 0; i < trials; i++) {
      const gpu = i % GPUS;
      await Bun.sleep(700 + Math.random() * 1000); // anywhere within the fast tier's second
      const at = Date.now();
      inject(`temp ${gpu} 90`);
      const stored = await waitFor(
        `slowdown on GPU ${gpu}`,
        async () => (await detail())?.events.find((e) => e.check === "thermal" && e.gpuIndex === gpu && e.severity === "degraded" && e.receivedAt >= at),
        10_000,
      );
      slowdownMs.push(stored.receivedAt - at);
      inject(`temp ${gpu} 34`);
      await waitFor(
        `GPU ${gpu} cool again`,
        async () => (await detail())?.events.find((e) => e.check === "thermal" && e.gpuIndex === gpu && e.severity === "healthy" && e.receivedAt >= at),
        10_000,
      );
    }

    // Kernel log: each record a distinct incident (GPU × Xid code, codes the other sections do not
    // use), written at random points of the old reader's 2 s poll without waiting for the last one.
    const codes = knownXidCodes().filter((c) => c !== 999);
    const records = opts.kmsgRecords ?? 50;
    log(`writing ${records} Xids to the kernel log…`);
    const gpus = (await detail())?.gpus ?? [];
    if (gpus.length !== GPUS) throw new Error(`the agent registered ${gpus.length} GPUs, not ${GPUS}`);
    const kmsgCodes = codes.slice(40, 40 + Math.ceil(records / GPUS));
    const written = new Map<string, number>();
    for (let i = 0; i < records; i++) {
      const gpu = gpus[i % GPUS]!;
      const code = kmsgCodes[Math.floor(i / GPUS)]!;
      await Bun.sleep(Math.random() * 400);
      written.set(`${gpu.index}:${code}`, Date.now());
      writeSync(
        kmsgFd,
        `3,${5000 + i},${Date.now() * 1000},-;NVRM: Xid (${kmsgPci(gpu.pciBusId)}): ${code}, pid=${7000 + i}, name=bench, kernel-log latency ${i}\n`,
      );
    }
    const kmsgEvents = await waitFor(
      `${records} kernel-log events stored`,
      async () => {
        const xids = (await detail())?.events.filter((e) => e.check === "xid" && written.has(`${e.gpuIndex}:${e.code}`)) ?? [];
        return xids.length >= written.size ? xids : undefined;
      },
      30_000,
    );
    const kmsgLatencyMs = quantiles(kmsgEvents.map((e) => e.receivedAt - written.get(`${e.gpuIndex}:${e.code}`)!));

    // Latency: each injection a distinct incident (GPU × Xid code), so none is deduplicated.
    log(`injecting ${injections} Xids…`);
    const sent = new Map<string, number>();
    for (let i = 0; i < injections; i++) {
      const gpu = i % GPUS;
      const code = codes[Math.floor(i / GPUS) % codes.length]!;
      sent.set(`${gpu}:${code}`, Date.now());
      inject(`xid ${gpu} ${code}`);
      await Bun.sleep(20);
    }
    const events = await waitFor(
      `${injections} events stored`,
      async () => {
        const xids = (await detail(injections * 4))?.events.filter((e) => e.check === "xid" && sent.has(`${e.gpuIndex}:${e.code}`)) ?? [];
        return xids.length >= sent.size ? xids : undefined;
      },
      30_000,
    );
    const latencies = quantiles(events.map((e) => e.receivedAt - sent.get(`${e.gpuIndex}:${e.code}`)!));

    let recoveryMs: number | null = null;
    if (!opts.skipOutage) {
      log("reconciler down for 20 s with 20 events spooled…");
      server.kill("SIGTERM");
      await server.exited;
      // Codes the latency run did not use: each injection a new incident, so each one an event.
      const unused = codes.slice(Math.ceil(injections / GPUS), Math.ceil(injections / GPUS) + 2).map(String);
      for (let i = 0; i < 2 * GPUS; i++) inject(`xid ${i % GPUS} ${unused[Math.floor(i / GPUS)]}`);
      await Bun.sleep(20_000);
      server = fleet.startServer();
      await fleet.waitReady();
      const back = Date.now();
      await waitFor(
        "the spooled events",
        async () =>
          ((await detail(injections * 4))?.events.filter((e) => e.code !== null && unused.includes(e.code)).length ?? 0) >= 2 * GPUS ? true : undefined,
        30_000,
      );
      recoveryMs = Date.now() - back;
    }
    return {
      windowSeconds,
      agent: fp.agent,
      minimal: fp.minimal,
      memoryReport,
      slowdownMs: slowdownMs.sort((a, b) => a - b),
      kmsgLatencyMs,
      latencyMs: { ...latencies, injections: latencies.count },
      recoveryMs,
    };
  } finally {
    fleet.stop();
    if (kmsgWriter !== undefined) closeSync(kmsgWriter);
  }
}
