// Driving the fake from outside the process, as for the compiled agent: FAKE_NVML_STATE is read
// at the first nvmlInit, and lines written to the FAKE_NVML_CONTROL FIFO are executed by the
// fake's background thread.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NvmlEvent, NvmlSnapshot } from "../agent/nvml/index.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

type ChildLine = { ready: { available: boolean; count: number; names: string[] } } | { event: NvmlEvent } | { snapshot: NvmlSnapshot } | { error: string };

let child: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">> | undefined;
const lines: ChildLine[] = [];
let fifo = "";
let stderr: Promise<string> = Promise.resolve("");

beforeAll(() => {
  buildFakeNvml();
});
afterAll(async () => {
  if (child) {
    child.stdin.write("exit\n");
    await child.stdin.end();
    const code = await Promise.race([child.exited, Bun.sleep(3000).then(() => "timeout" as const)]);
    if (code === "timeout") child.kill();
    const err = await stderr;
    if (err !== "") throw new Error(`the child agent wrote to stderr:\n${err}`);
  }
});

/** Writes a control line from a separate process, as an operator or test harness would. */
async function control(line: string): Promise<void> {
  const p = Bun.spawn(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", line, fifo], { stdout: "ignore", stderr: "pipe" });
  const code = await Promise.race([p.exited, Bun.sleep(5000).then(() => "timeout" as const)]);
  if (code !== 0) {
    p.kill();
    throw new Error(`writing to the control FIFO failed: ${code}`);
  }
}

describe("external control (FAKE_NVML_CONTROL)", () => {
  test("a state file at init, then Xid / lost / temperature commands from other processes", async () => {
    const dir = tempDir();
    fifo = join(dir, "control.fifo"); // created by the fake
    const state = join(dir, "state");
    writeFileSync(state, 'count 3\nname * "NVIDIA H200"\ntemp 1 77\n');
    const script = join(dir, "agent.ts");
    writeFileSync(
      script,
      `import { startNvmlMonitor } from ${JSON.stringify(join(REPO_ROOT, "agent/nvml/index.ts"))};
       const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\\n");
       const m = await startNvmlMonitor({ libraryPath: ${JSON.stringify(FAKE_NVML.full)}, explicitOnly: true,
         eventWaitSliceMs: 100, onEvent: (event) => out({ event }), onEventError: (e) => out({ error: e.error.message }) });
       const inv = await m.inventory();
       out({ ready: { available: m.status.available, count: inv.devices.length,
         names: inv.devices.map((d) => (d.identity.ok ? d.identity.value.name : "?")) } });
       for await (const line of console) {
         if (line === "exit") break;
         if (line === "snapshot") out({ snapshot: await m.snapshot() });
       }
       await m.close();
       process.exit(0);`,
    );
    child = Bun.spawn([process.execPath, script], {
      env: { ...process.env, FAKE_NVML_STATE: state, FAKE_NVML_CONTROL: fifo },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    void (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          lines.push(JSON.parse(buf.slice(0, nl)) as ChildLine);
          buf = buf.slice(nl + 1);
        }
      }
    })();
    stderr = new Response(child.stderr).text();
    const find = <K extends string>(key: K) => lines.filter((l): l is Extract<ChildLine, Record<K, unknown>> => key in l);

    const ready = await waitFor("child ready", () => find("ready")[0], 10_000);
    expect(ready.ready).toEqual({ available: true, count: 3, names: ["NVIDIA H200", "NVIDIA H200", "NVIDIA H200"] });

    await control("xid 2 79");
    await control("event 0 0x2 0");
    await waitFor("events from the FIFO", () => (find("event").length >= 2 ? true : undefined), 5000);
    expect(find("event").map((l) => [l.event.deviceIndex, l.event.eventTypeNames[0], l.event.xid])).toEqual([
      [2, "XidCriticalError", 79],
      [0, "DoubleBitEccError", null],
    ]);

    // Lines written back to back, each opening and closing the FIFO (as the benchmarks'
    // injections do), four writers at once, are each executed once. While the fake read the
    // FIFO only, it closed it at each writer's end, and a line written in that moment was lost
    // or its write failed with EPIPE.
    const writers = [0, 1, 2, 3].map((w) =>
      Bun.spawn(["sh", "-c", 'i=0; while [ $i -lt 250 ]; do echo "xid 0 $(($1 + i))" >> "$2"; i=$((i + 1)); done', "sh", String(1000 + 250 * w), fifo], {
        stdout: "ignore",
        stderr: "pipe",
      }),
    );
    const failures = await Promise.all(writers.map(async (p) => ((await p.exited) === 0 ? "" : await new Response(p.stderr).text())));
    expect(failures.filter((f) => f !== "")).toEqual([]);
    const burst = await waitFor("every Xid written", () => (find("event").length >= 1002 ? find("event").slice(2) : undefined), 10_000);
    expect(burst.map((l) => l.event.xid).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 1000 }, (_, i) => 1000 + i));

    await control("temp 0 95");
    await control("lost 1 on");
    await control("remap 2 0 1 1 0");
    // The library reads the FIFO on its own thread: the writer returning does not mean the last
    // command was applied. Snapshots until it shows (a cold run saw the remap not yet there).
    const proc = child;
    const snap = await waitFor(
      "a snapshot with the last command applied",
      async () => {
        const seen = find("snapshot").length;
        proc.stdin.write("snapshot\n");
        await proc.stdin.flush();
        const s = (await waitFor("snapshot", () => find("snapshot")[seen], 5000)).snapshot;
        return s.devices[2]!.remappedRows.ok && s.devices[2]!.remappedRows.value.pending ? s : undefined;
      },
      5000,
    );
    expect(snap.devices[0]!.temperatureC).toEqual({ ok: true, value: 95 });
    expect(snap.devices[1]!.fatal?.kind).toBe("gpu_lost");
    expect(snap.devices[2]!.remappedRows).toEqual({ ok: true, value: { correctable: 0, uncorrectable: 1, pending: true, failed: false } });
    // the lost GPU also interrupted the event wait once
    await waitFor("event error", () => (find("error").length > 0 ? true : undefined), 5000);
    expect(find("error")[0]!.error).toContain("GPU_IS_LOST");
  });
});
