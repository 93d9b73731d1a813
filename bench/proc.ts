// A process's footprint read from /proc, for the benchmarks that measure programs of their own.
import { readFileSync, readdirSync } from "node:fs";

/**
 * RSS, and on-CPU time in ns summed over the process's threads from schedstat: /proc/PID/stat's
 * 10 ms ticks are too coarse for a budget of 1 ms per second, and bias short periodic wake-ups.
 */
export function procStat(pid: number): { rssKiB: number; cpuNs: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  let cpuNs = 0;
  for (const ns of threadCpuNs(pid).values()) cpuNs += ns;
  return { rssKiB, cpuNs };
}

/** On-CPU time in ns of the process's threads, summed by thread name (its `comm`: "navarch", "Worker", "tokio-runtime-w", …). */
export function threadCpuNs(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      byName.set(name, (byName.get(name) ?? 0) + ns);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return byName;
}
