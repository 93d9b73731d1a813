// Heartbeat ingest measured from outside the process: the compiled reconciler (dist/navarch,
// from a directory with no node_modules) serves N registered nodes of 8 GPUs each, every node
// with its own credential, and vegeta (built into a cache outside the repo by
// bench/load/ensure-vegeta.sh) POSTs their heartbeats at a constant rate from a process of
// its own. The reconciler's loop runs beside it (passes every second over the same nodes), as
// in production. vegeta rather than k6: k6 runs JavaScript per request and needed ~0.2 ms of
// CPU for each, a core and a half at 10,000/s on a 2-core machine it shares with the server.
//   bun run bench/ingest.ts [--nodes 10000] [--rate 10000] [--seconds 30] [--navarch PATH]
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { issueNodeCredential } from "../reconciler/auth/credentials.ts";
import { openStore } from "../reconciler/store/store.ts";
import { CompiledFleet } from "../test/compiled.ts";
import { REPO_ROOT } from "../test/support.ts";
import { procStat, threadCpuNs } from "./proc.ts";
import { seed } from "./reconciler.ts";

export interface LoadResult {
  nodes: number;
  /** The rate asked of vegeta. */
  rate: number;
  seconds: number;
  /** Heartbeats answered 200 per second, until the last answer. */
  perSecond: number;
  /** The rate vegeta managed to send at (below `rate`: the load tool itself fell behind). */
  offeredPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU of the reconciler and of vegeta over the run, in % of one core (the machine has 2). */
  reconcilerCpu: number;
  /** % of a core by thread name, the threads at 1 % or more. */
  reconcilerThreads: Record<string, number>;
  loadToolCpu: number;
  reconcilerRssMiB: number;
  /** Requests per transaction, from navarch_ingest_group_requests. */
  meanGroup: number;
  /** Reconcile passes over the whole run (warm-up included) and their mean length, from navarch_reconcile_pass_duration_seconds. */
  passes: number;
  meanPassMs: number;
  /** WAL checkpoints while groups flow, and the mean length of their part between groups, which groups wait for (navarch_ingest_checkpoint_seconds). */
  checkpoints: number;
  meanCheckpointMs: number;
  /** The mean length of their copy beside the writes (navarch_ingest_checkpoint_beside_seconds). */
  meanCheckpointBesideMs: number;
}

/** What `vegeta report -type=json` prints that is used here (durations in ns). */
const VegetaReport = v.object({
  requests: v.number(),
  rate: v.number(),
  duration: v.number(),
  wait: v.number(),
  latencies: v.object({ "50th": v.number(), "90th": v.number(), "99th": v.number(), max: v.number() }),
  status_codes: v.record(v.string(), v.number()),
  errors: v.nullable(v.array(v.string()), []),
});

async function run(cmd: string[]): Promise<string> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}):\n${out}${err}`);
  return out;
}

/** Builds vegeta (once; cached outside the repo) and returns its path. */
export async function ensureVegeta(log: (s: string) => void = () => undefined): Promise<string> {
  const proc = Bun.spawn(["sh", join(REPO_ROOT, "bench/load/ensure-vegeta.sh")], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  for (const line of err.split("\n")) if (line.startsWith("ensure-vegeta:")) log(line);
  if (code !== 0) throw new Error(`bench/load/ensure-vegeta.sh failed (${code}):\n${err}`);
  return out.trim().split("\n").at(-1)!;
}

/**
 * vegeta's workers (each with its connection): 64 to start, at most 512. Unbounded (its
 * default), a slow moment makes it open thousands of connections at once, overflowing the
 * listener's backlog (SYN retries: 1 s and 3 s stalls measured against a hello-world server).
 */
const WORKERS = ["-workers=64", "-max-workers=512"];

/** Sends the targets at `rate`/s for `seconds`; returns vegeta's CPU seconds. */
async function attack(vegeta: string, targets: string, results: string, rate: number, seconds: number): Promise<{ cpuSeconds: number }> {
  const proc = Bun.spawn(
    [vegeta, "attack", "-format=json", `-targets=${targets}`, `-rate=${rate}/s`, `-duration=${seconds}s`, ...WORKERS, `-output=${results}`],
    {
      stdout: "ignore",
      stderr: "pipe",
    },
  );
  let cpu = 0;
  const sampler = setInterval(() => {
    try {
      cpu = cpuSeconds(proc.pid);
    } catch {
      // exited
    }
  }, 200);
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  clearInterval(sampler);
  if (code !== 0) throw new Error(`vegeta attack failed (${code}): ${err}`);
  return { cpuSeconds: cpu };
}

/** On-CPU seconds of a process, all its threads (bench/proc.ts). */
const cpuSeconds = (pid: number) => procStat(pid).cpuNs / 1e9;

export async function benchIngestExternal(
  opts: { nodes?: number; rate?: number; seconds?: number; navarch?: string; log?: (s: string) => void } = {},
): Promise<LoadResult> {
  const size = opts.nodes ?? 10_000;
  const rate = opts.rate ?? 10_000;
  const seconds = opts.seconds ?? 30;
  const log = opts.log ?? (() => undefined);
  const vegeta = await ensureVegeta(log);
  const fleet = await CompiledFleet.create();
  // The load tool's files (16 MB of targets, its results) in memory where the machine has a
  // tmpfs: not the reconciler's disk writes, and not to be written back during the run.
  const loadFiles = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/navarch-load-") : fleet.dir;
  try {
    const navarch = opts.navarch ?? fleet.navarch;
    // The nodes, registered and Ready, each with its own credential (what agents use).
    const store = await openStore({ url: `file:${fleet.dir}/data/navarch.db`, healthProbeIntervalMs: 0 });
    const ids = await seed(store, size, Date.now(), { origin: "registered" });
    const credentials: [string, string][] = [];
    for (const id of ids) credentials.push([id, await issueNodeCredential(store.db, id, Date.now())]);
    store.close();
    // The seeded database on disk before the reconciler starts, as one that existed before a
    // restart would be: left to the kernel, the seeding's dirty pages were written back 30 s
    // later, in the middle of the measured run, and held one checkpoint's fsync 160-330 ms
    // (the largest latency of every run, whatever the rate).
    if (Bun.spawnSync(["sync"]).exitCode !== 0) throw new Error("sync failed");
    fleet.writeConfig("", "30s");
    const server = fleet.start("navarch", [navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    await fleet.waitReady().catch((err: unknown) => {
      // What the reconciler said, to see why it is not ready.
      log([...fleet.output.values()].join("\n").slice(-3000));
      throw err;
    });
    await Bun.sleep(2000); // the first passes (inventory sweep, first health tick) out of the way
    // vegeta's targets: one line per node, its heartbeat (8 GPUs) with its own credential;
    // vegeta sends them in turn, round and round, at a constant rate (an open model: requests
    // start on schedule whether or not earlier ones have answered, so a slow server shows as
    // latency, not as a lower request rate that hides it).
    const targets = join(loadFiles, "targets.jsonl");
    const gpus = Array.from({ length: 8 }, (_, g) => ({
      index: g,
      temperatureC: 41,
      powerW: 400,
      utilizationPct: 60,
      memoryUsedBytes: 1073741824,
      processCount: 1,
    }));
    writeFileSync(
      targets,
      credentials
        .map(([nodeId, token]) => {
          const body = {
            nodeId,
            bootId: "boot",
            sentAt: new Date().toISOString(),
            nvml: { available: true },
            health: { checked: true, worst: "healthy", openIncidents: 0 },
            gpus,
          };
          return JSON.stringify({
            method: "POST",
            url: `${fleet.url}/v1/heartbeat`,
            body: Buffer.from(JSON.stringify(body)).toString("base64"),
            header: { "Content-Type": ["application/json"], Authorization: [`Bearer ${token}`] },
          });
        })
        .join("\n"),
    );
    const results = join(loadFiles, "results.bin");
    // A warm-up pass over every node first: each node's first heartbeat looks its credential up
    // in the store; the measured run is the steady state, where it is remembered.
    await attack(vegeta, targets, join(loadFiles, "warmup.bin"), Math.min(rate, 5000), Math.ceil(size / Math.min(rate, 5000)) + 1);
    const cpu0 = cpuSeconds(server.pid);
    const threads0 = threadCpuNs(server.pid);
    const t0 = performance.now();
    const { cpuSeconds: loadCpu } = await attack(vegeta, targets, results, rate, seconds);
    const wall = (performance.now() - t0) / 1000;
    const reconcilerCpu = ((cpuSeconds(server.pid) - cpu0) / wall) * 100;
    // Which thread is busy: the event loop ("navarch"), the ingest worker ("Worker"), libSQL's
    // runtime threads, where SQLite's statements run ("tokio-runtime-w").
    const reconcilerThreads: Record<string, number> = {};
    for (const [name, ns] of threadCpuNs(server.pid)) {
      const pct = ((ns - (threads0.get(name) ?? 0)) / 1e9 / wall) * 100;
      if (pct >= 1) reconcilerThreads[name] = Math.round(pct);
    }
    const rss = procStat(server.pid).rssKiB / 1024;
    const scrape = await fetch(`${fleet.url}/metrics`, { headers: { Authorization: `Bearer ${fleet.token}` } }).then((r) => r.text());
    // A graceful stop: a profiler (`--navarch` a script running `bun --cpu-prof`) writes on exit.
    server.kill("SIGTERM");
    await server.exited;
    const report = await run([vegeta, "report", "-type=json", results]);
    const r = v.parse(VegetaReport, JSON.parse(report));
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(scrape)?.[1] ?? NaN);
    const ms = (ns: number) => ns / 1e6;
    const answered = r.status_codes["200"] ?? 0;
    if (answered !== r.requests) throw new Error(`heartbeats not answered 200: ${JSON.stringify(r.status_codes)} ${r.errors.slice(0, 3).join("; ")}`);
    return {
      nodes: size,
      rate,
      seconds,
      perSecond: answered / (ms(r.duration + r.wait) / 1000),
      offeredPerSecond: r.rate,
      p50Ms: ms(r.latencies["50th"]),
      p90Ms: ms(r.latencies["90th"]),
      p99Ms: ms(r.latencies["99th"]),
      maxMs: ms(r.latencies.max),
      reconcilerCpu,
      reconcilerThreads,
      loadToolCpu: (loadCpu / wall) * 100,
      reconcilerRssMiB: rss,
      meanGroup: metric("navarch_ingest_group_requests_sum") / metric("navarch_ingest_group_requests_count"),
      passes: metric("navarch_reconcile_pass_duration_seconds_count"),
      meanPassMs: (metric("navarch_reconcile_pass_duration_seconds_sum") / metric("navarch_reconcile_pass_duration_seconds_count")) * 1000,
      checkpoints: metric("navarch_ingest_checkpoint_seconds_count"),
      meanCheckpointMs: (metric("navarch_ingest_checkpoint_seconds_sum") / metric("navarch_ingest_checkpoint_seconds_count")) * 1000,
      meanCheckpointBesideMs: (metric("navarch_ingest_checkpoint_beside_seconds_sum") / metric("navarch_ingest_checkpoint_beside_seconds_count")) * 1000,
    };
  } finally {
    fleet.stop();
    rmSync(loadFiles, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const r = await benchIngestExternal({
    nodes: Number(opt("nodes") ?? 10_000),
    rate: Number(opt("rate") ?? 10_000),
    seconds: Number(opt("seconds") ?? 30),
    ...(opt("navarch") ? { navarch: opt("navarch")! } : {}),
    log: (s) => process.stderr.write(`${s}\n`),
  });
  console.log(JSON.stringify(r, null, 2));
}
