// Where the agent's memory is, in one log line (on SIGUSR1, and for bench/agent.ts): the resident
// set split by what is mapped (the executable's code, read-only data and data, the shared
// libraries, anonymous memory) and each JavaScript VM's heap: the main thread's and the NVML
// worker's.
import { readFileSync } from "node:fs";
import type { HeapSummary } from "./nvml/protocol.ts";

const MiB = 1024 * 1024;

export interface ResidentSet {
  totalKiB: number;
  executable: { codeKiB: number; readOnlyKiB: number; dataKiB: number };
  librariesKiB: number;
  anonymousKiB: number;
}

/** Sums /proc/self/smaps by mapping: the executable (`exe`) by permission, other files, anonymous. */
export function residentSet(smaps: string, exe: string): ResidentSet {
  const out: ResidentSet = { totalKiB: 0, executable: { codeKiB: 0, readOnlyKiB: 0, dataKiB: 0 }, librariesKiB: 0, anonymousKiB: 0 };
  let perms = "";
  let path = "";
  for (const line of smaps.split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      perms = header[1]!;
      path = header[2]!;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (!rss) continue;
    const kib = Number(rss[1]);
    out.totalKiB += kib;
    if (path === exe) {
      if (perms.includes("x")) out.executable.codeKiB += kib;
      else if (perms.includes("w")) out.executable.dataKiB += kib;
      else out.executable.readOnlyKiB += kib;
    } else if (path.startsWith("/")) {
      out.librariesKiB += kib;
    } else {
      out.anonymousKiB += kib;
    }
  }
  return out;
}

function heapText(name: string, h: HeapSummary | null): string {
  return h === null
    ? `${name} heap not available`
    : `${name} heap ${(h.capacityBytes / MiB).toFixed(1)} MiB (${(h.sizeBytes / MiB).toFixed(1)} in use, ${h.objects} objects)`;
}

export async function memoryReport(workerHeap: () => Promise<HeapSummary | null>): Promise<string> {
  const r = residentSet(readFileSync("/proc/self/smaps", "utf8"), process.execPath);
  const { heapStats } = await import("bun:jsc");
  const main = heapStats();
  const worker = await workerHeap();
  const m = (kib: number) => (kib / 1024).toFixed(1);
  const exe = r.executable.codeKiB + r.executable.readOnlyKiB + r.executable.dataKiB;
  return (
    `memory: RSS ${m(r.totalKiB)} MiB = executable ${m(exe)} (code ${m(r.executable.codeKiB)}, read-only data ${m(r.executable.readOnlyKiB)}, data ${m(r.executable.dataKiB)})` +
    ` + libraries ${m(r.librariesKiB)} + anonymous ${m(r.anonymousKiB)}, of which ` +
    `${heapText("main JS", { sizeBytes: main.heapSize, capacityBytes: main.heapCapacity, objects: main.objectCount })}, ${heapText("NVML worker JS", worker)}`
  );
}
