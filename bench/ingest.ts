// Heartbeat ingest measured from outside the process: the compiled reconciler (dist/navarch,
// from a directory with no node_modules) serves N registered nodes of 8 GPUs each, every node
// with its own credential, and k6 (bench/load/, built into a cache outside the repo) POSTs
// their heartbeats at a constant arrival rate from a process of its own. The reconciler's
// loop runs beside it (passes every second over the same nodes), as in production.
//   bun run bench/ingest.ts [--nodes 10000] [--rate 10000] [--seconds 30] [--navarch PATH]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { issueNodeCredential } from "../reconciler/fleet/credentials.ts";
import { openStore } from "../reconciler/store/store.ts";
import { CompiledFleet } from "../test/compiled.ts";
import { REPO_ROOT } from "../test/support.ts";
import { seed } from "./reconciler.ts";

export interface LoadResult {
  nodes: number;
  /** The arrival rate asked of k6. */
  rate: number;
  seconds: number;
  /** Heartbeats answered 200 per second over the run. */
  perSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Iterations k6 could not start on time (no free VU): the server fell behind. */
  dropped: number;
  /** CPU of the reconciler and of k6 over the run, in % of one core (the machine has 2). */
  reconcilerCpu: number;
  loadToolCpu: number;
  reconcilerRssMiB: number;
  /** Requests per transaction, from navarch_ingest_group_requests. */
  meanGroup: number;
}

/** Builds k6 (once; cached outside the repo) and returns its path. */
export async function ensureK6(log: (s: string) => void = () => undefined): Promise<string> {
  const proc = Bun.spawn(["sh", join(REPO_ROOT, "bench/load/ensure-k6.sh")], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  for (const line of err.split("\n")) if (line.startsWith("ensure-k6:")) log(line);
  if (code !== 0) throw new Error(`bench/load/ensure-k6.sh failed (${code}):\n${err}`);
  return out.trim().split("\n").at(-1)!;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8")
    .replace(/^.*\) /, "")
    .split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? 0) / 1024;
}

export async function benchIngestExternal(
  opts: { nodes?: number; rate?: number; seconds?: number; navarch?: string; log?: (s: string) => void } = {},
): Promise<LoadResult> {
  const size = opts.nodes ?? 10_000;
  const rate = opts.rate ?? 10_000;
  const seconds = opts.seconds ?? 30;
  const log = opts.log ?? (() => undefined);
  const k6 = await ensureK6(log);
  const fleet = await CompiledFleet.create();
  try {
    const navarch = opts.navarch ?? fleet.navarch;
    // The nodes, registered and Ready, each with its own credential (what agents use).
    const store = await openStore({ url: `file:${fleet.dir}/data/navarch.db`, healthProbeIntervalMs: 0 });
    const ids = await seed(store, size, Date.now(), { origin: "registered" });
    const credentials: [string, string][] = [];
    for (const id of ids) credentials.push([id, await issueNodeCredential(store.db, id, Date.now())]);
    store.close();
    const fleetFile = join(fleet.dir, "fleet.json");
    writeFileSync(fleetFile, JSON.stringify(credentials));
    fleet.writeConfig("", "30s");
    const server = fleet.start("navarch", [navarch, "serve", "--config", "navarch.yaml"], { NAVARCH_AUTH_TOKEN: fleet.token });
    await fleet.waitReady();
    await Bun.sleep(2000); // the first passes (inventory sweep, first health tick) out of the way
    const summary = join(fleet.dir, "k6-summary.json");
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    const proc = Bun.spawn(
      [
        k6,
        "run",
        "--quiet",
        "--no-usage-report",
        "-e",
        `URL=${fleet.url}`,
        "-e",
        `FLEET=${fleetFile}`,
        "-e",
        `RATE=${rate}`,
        "-e",
        `DURATION=${seconds}s`,
        "-e",
        `SUMMARY=${summary}`,
        join(REPO_ROOT, "bench/load/heartbeat.js"),
      ],
      { stdout: "pipe", stderr: "pipe", env: { ...process.env, K6_NO_USAGE_REPORT: "true" } },
    );
    let k6Cpu = 0;
    const sampler = setInterval(() => {
      try {
        k6Cpu = cpuSeconds(proc.pid);
      } catch {
        // exited
      }
    }, 200);
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    clearInterval(sampler);
    const wall = (performance.now() - t0) / 1000;
    const reconcilerCpu = ((cpuSeconds(server.pid) - cpu0) / wall) * 100;
    const rss = rssMiB(server.pid);
    if (code !== 0) throw new Error(`k6 failed (${code}):\n${out}${err}\n${fleet.output.get("navarch") ?? ""}`);
    const scrape = await fetch(`${fleet.url}/metrics`, { headers: { Authorization: `Bearer ${fleet.token}` } }).then((r) => r.text());
    // A graceful stop: a profiler (`--navarch` a script running `bun --cpu-prof`) writes on exit.
    server.kill("SIGTERM");
    await server.exited;
    const data = JSON.parse(readFileSync(summary, "utf8")) as { metrics: Record<string, { values: Record<string, number> }> };
    const m = (name: string, key: string) => data.metrics[name]?.values[key] ?? 0;
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(scrape)?.[1] ?? NaN);
    return {
      nodes: size,
      rate,
      seconds,
      perSecond: m("http_reqs", "count") / seconds,
      p50Ms: m("http_req_duration", "med"),
      p90Ms: m("http_req_duration", "p(90)"),
      p99Ms: m("http_req_duration", "p(99)"),
      maxMs: m("http_req_duration", "max"),
      dropped: m("dropped_iterations", "count"),
      reconcilerCpu,
      loadToolCpu: (k6Cpu / wall) * 100,
      reconcilerRssMiB: rss,
      meanGroup: metric("navarch_ingest_group_requests_sum") / metric("navarch_ingest_group_requests_count"),
    };
  } finally {
    fleet.stop();
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
