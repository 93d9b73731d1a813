// The agent's memory report (SIGUSR1): the resident set by mapping, and each JavaScript heap.
import { describe, expect, test } from "bun:test";
import { memoryReport, residentSet } from "../agent/memory-report.ts";

const SMAPS = `00200000-01a39000 r--p 00000000 fd:01 123 /usr/local/bin/navarch-node
Size:              25000 kB
Rss:                5732 kB
01a40000-0684a000 r-xp 01838000 fd:01 123 /usr/local/bin/navarch-node
Rss:               32264 kB
06867000-06d11000 rw-p 0665e000 fd:01 123 /usr/local/bin/navarch-node
Rss:                2964 kB
290d2e00000-29112e00000 rw-p 00000000 00:00 0
Rss:                9044 kB
7f0f101e3000-7f0f10339000 r-xp 00026000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1140 kB
7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]
Rss:                 132 kB
`;

describe("memory report", () => {
  test("the resident set by mapping: the executable by permission, libraries, anonymous", () => {
    expect(residentSet(SMAPS, "/usr/local/bin/navarch-node")).toEqual({
      totalKiB: 51_276,
      executable: { codeKiB: 32_264, readOnlyKiB: 5732, dataKiB: 2964 },
      librariesKiB: 1140,
      anonymousKiB: 9176,
    });
  });

  test("one line with both heaps; a worker that does not answer is said so", async () => {
    const line = await memoryReport(async () => ({ sizeBytes: 1.5 * 1024 * 1024, capacityBytes: 3 * 1024 * 1024, objects: 14_000 }));
    expect(line).toMatch(
      /^memory: RSS [\d.]+ MiB = executable [\d.]+ \(code [\d.]+, read-only data [\d.]+, data [\d.]+\) \+ libraries [\d.]+ \+ anonymous [\d.]+, of which main JS heap [\d.]+ MiB \([\d.]+ in use, \d+ objects\), NVML worker JS heap 3\.0 MiB \(1\.5 in use, 14000 objects\)$/,
    );
    expect(await memoryReport(async () => null)).toEndWith("NVML worker JS heap not available");
  });
});
