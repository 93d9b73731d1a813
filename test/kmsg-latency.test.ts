// The kernel log is read as it is written, not at the next poll: a record written to a FIFO
// standing in for /dev/kmsg (it blocks like the device; tests never write to the real one) reaches
// the follower, the agent's health monitor and the compiled agent's reconciler well within the
// 2 s the agent used to wait between looks; the device's doorbell (a second reader whose chunks say
// a record exists) brings records at once, is logged and stood in for by timed looks when it
// fails; and stopping leaves no stream or descriptor behind. Bounds are generous (< 1 s against
// milliseconds measured) so that the tests never flake: the point is that nothing waits for a poll.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { HealthMonitor } from "../agent/health-monitor.ts";
import type { Finding } from "../agent/checks/finding.ts";
import { followKmsg, type KmsgIo } from "../agent/kmsg/follow.ts";
import type { KmsgFinding } from "../agent/kmsg/match.ts";
import { CompiledFleet } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { tempDir, waitFor } from "./support.ts";

/** Well within the old 2 s poll, and far above what is measured (milliseconds). */
const PROMPTLY_MS = 1000;
/** Longer than any test: a record that arrives at all arrived without a timed look. */
const NEVER_MS = 600_000;

const rec = (seq: number, msg: string) => `4,${seq},${seq * 1000},-;${msg}\n`;
const xidLine = (seq: number, code: number) => rec(seq, `NVRM: Xid (PCI:0000:3b:00): ${code}, pid=${seq}, name=python3, test ${seq}`);

/** This process's descriptors open on `path`. */
function descriptorsOn(path: string): number {
  let n = 0;
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed between the listing and the look
    }
  }
  return n;
}

/**
 * Until only `left` descriptors are open on `path`. Bun closes its stream's own descriptor off the
 * main thread a moment after the stream is cancelled (milliseconds measured): nothing reads from
 * it by then, and a descriptor still open after a second would be a leak.
 */
async function closedBut(path: string, left: number): Promise<void> {
  await waitFor(`descriptors on ${path} closed`, () => (descriptorsOn(path) === left ? true : undefined), PROMPTLY_MS);
}

async function until<T>(what: string, probe: () => T | undefined, ms = PROMPTLY_MS * 5): Promise<T> {
  return waitFor(what, probe, ms);
}

let dir = "";
beforeAll(() => {
  dir = tempDir("navarch-kmsg-latency-");
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function fifo(name: string): { path: string; writer: number } {
  const path = join(dir, name);
  expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
  // Read-write: opening never waits for a reader, and writes still go in once ours has stopped.
  return { path, writer: fs.openSync(path, fs.constants.O_RDWR) };
}

describe("a FIFO kernel log", () => {
  test("each record reaches the follower well within the old 2 s poll, with no timed look to bring it", async () => {
    const k = fifo("follow.fifo");
    const arrived = new Map<number, number>();
    const follower = followKmsg(k.path, (f) => arrived.set(f.seq ?? -1, performance.now()), { pollIntervalMs: NEVER_MS, log: () => {} });
    const delays: number[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      await Bun.sleep(Math.random() * 50);
      const at = performance.now();
      fs.writeSync(k.writer, xidLine(seq, 79));
      const got = await until(`record ${seq}`, () => arrived.get(seq));
      delays.push(got - at);
    }
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    fs.closeSync(k.writer);
    console.log(`FIFO record → finding: max ${Math.max(...delays).toFixed(1)} ms over ${delays.length}`);
    for (const d of delays) expect(d).toBeLessThan(PROMPTLY_MS);
  });

  test("stop() ends the stream and closes every descriptor on the FIFO; later records are not read", async () => {
    const k = fifo("stop.fifo");
    const got: KmsgFinding[] = [];
    const follower = followKmsg(k.path, (f) => got.push(f), { pollIntervalMs: NEVER_MS, log: () => {} });
    fs.writeSync(k.writer, xidLine(1, 13));
    await until("the first record", () => (got.length >= 1 ? true : undefined));
    // Ours (and, on this Bun, the stream's duplicate of it) and the test's writer.
    expect(descriptorsOn(k.path)).toBeGreaterThanOrEqual(2);

    const started = performance.now();
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    expect(performance.now() - started).toBeLessThan(PROMPTLY_MS);
    await closedBut(k.path, 1); // the test's writer alone
    fs.writeSync(k.writer, xidLine(2, 79));
    await Bun.sleep(100);
    expect(got.map((f) => f.xid)).toEqual([13]);
    fs.closeSync(k.writer);
  });
});

/** A fake /dev/kmsg (one record per read, EAGAIN when empty) whose doorbell stream the test rings or breaks. */
function fakeDevice(opts: { failFirstOpens?: number } = {}) {
  const queue: string[] = [];
  let opens = 0;
  let cancels = 0;
  let closed = false;
  let bell: ReadableStreamDefaultController<Uint8Array> | undefined;
  const io: KmsgIo = {
    open: () => 3,
    fstat: () => ({ kind: "char", size: 0 }),
    read: (_fd, buf) => {
      const next = queue.shift();
      if (next === undefined) throw Object.assign(new Error("EAGAIN: resource temporarily unavailable"), { code: "EAGAIN" });
      const bytes = new TextEncoder().encode(next);
      buf.set(bytes);
      return bytes.byteLength;
    },
    close: () => {
      closed = true;
    },
    stream: (source) => {
      expect(source).toBe("/dev/kmsg"); // a reader of its own, never our descriptor
      if (++opens <= (opts.failFirstOpens ?? 0)) throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
      return new ReadableStream<Uint8Array>({
        start: (c) => {
          bell = c;
        },
        cancel: () => {
          cancels++;
          bell = undefined;
        },
      });
    },
  };
  return {
    io,
    /** The kernel writes a record: our reader's queue gets it, the doorbell delivers it too. */
    write(record: string) {
      queue.push(record);
      bell?.enqueue(new TextEncoder().encode(record));
    },
    /** A record the doorbell does not see (it is down). */
    writeQuietly(record: string) {
      queue.push(record);
    },
    breakBell(err: Error) {
      bell?.error(err);
      bell = undefined;
    },
    endBell() {
      bell?.close();
      bell = undefined;
    },
    opens: () => opens,
    cancels: () => cancels,
    closed: () => closed,
    ringing: () => bell !== undefined,
  };
}

describe("/dev/kmsg's doorbell", () => {
  test("a record is read the moment the doorbell rings, one read(2) each; stop() cancels the doorbell and closes the device", async () => {
    const dev = fakeDevice();
    const got: KmsgFinding[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { pollIntervalMs: NEVER_MS, io: dev.io, log: () => {} });
    await until("the doorbell", () => (dev.ringing() ? true : undefined));
    for (let seq = 1; seq <= 5; seq++) {
      const at = performance.now();
      dev.write(xidLine(seq, 48));
      await until(`record ${seq}`, () => (got.length >= seq ? true : undefined));
      expect(performance.now() - at).toBeLessThan(PROMPTLY_MS);
    }
    expect(got.map((f) => f.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    expect(dev.cancels()).toBe(1);
    expect(dev.closed()).toBe(true);
    expect(dev.opens()).toBe(1);
  });

  test("a doorbell that fails is said once; the reader looks every pollIntervalMs meanwhile and starts it again", async () => {
    const dev = fakeDevice({ failFirstOpens: 2 });
    const got: KmsgFinding[] = [];
    const logs: string[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { pollIntervalMs: 20, io: dev.io, log: (m) => logs.push(m) });
    await until("the first try at a doorbell (the ring buffer skipped)", () => (dev.opens() >= 1 ? true : undefined));
    dev.writeQuietly(xidLine(1, 13));
    await until("a record found by a timed look", () => (got.length >= 1 ? true : undefined));
    await until("the doorbell, third time lucky", () => (dev.ringing() ? true : undefined));
    expect(logs.filter((m) => m.includes("/dev/kmsg: waiting on it failed")).length).toBe(1);

    dev.breakBell(Object.assign(new Error("EPIPE: broken pipe"), { code: "EPIPE" }));
    dev.writeQuietly(xidLine(2, 31));
    await until("a record while the doorbell is down", () => (got.length >= 2 ? true : undefined));
    await until("the doorbell again", () => (dev.ringing() ? true : undefined));
    dev.write(xidLine(3, 79));
    await until("a record rung in", () => (got.length >= 3 ? true : undefined));
    expect(got.map((f) => f.xid)).toEqual([13, 31, 79]);
    expect(logs.filter((m) => m.includes("/dev/kmsg: waiting on it failed")).length).toBe(1);
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    expect(dev.closed()).toBe(true);
  });

  test("a doorbell that ends without an error is said too, and started again", async () => {
    const dev = fakeDevice();
    const got: KmsgFinding[] = [];
    const logs: string[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { pollIntervalMs: 20, io: dev.io, log: (m) => logs.push(m) });
    await until("the doorbell", () => (dev.ringing() ? true : undefined));
    dev.endBell();
    await until("the doorbell again", () => (dev.opens() >= 2 && dev.ringing() ? true : undefined));
    dev.write(xidLine(1, 79));
    await until("a record rung in", () => (got.length >= 1 ? true : undefined));
    expect(logs).toEqual(["/dev/kmsg: its stream ended: looking every 20 ms until it works again"]);
    expect(await follower.stop()).toEqual({ reason: "stopped" });
  });
});

describe("the agent", () => {
  test("its health monitor has a FIFO kernel log's Xid within 1 s; close() leaves nothing reading the FIFO", async () => {
    const k = fifo("monitor.fifo");
    const findings: { finding: Finding; at: number }[] = [];
    const monitor = new HealthMonitor({
      libraryPath: "/nonexistent/libnvidia-ml.so.1",
      kmsgPath: k.path,
      infinibandDir: null,
      sysfsRoot: join(dir, "no-sysfs"),
      onFinding: (finding) => findings.push({ finding, at: performance.now() }),
      log: () => undefined,
    });
    await monitor.start();
    const at = performance.now();
    fs.writeSync(k.writer, xidLine(1, 79));
    const xid = await until("the Xid finding", () => findings.find((f) => f.finding.check === "xid"));
    expect(xid.finding).toMatchObject({ check: "xid", code: "79", severity: "unhealthy" });
    expect(xid.at - at).toBeLessThan(PROMPTLY_MS);

    const closing = performance.now();
    await monitor.close();
    expect(performance.now() - closing).toBeLessThan(PROMPTLY_MS * 5);
    await closedBut(k.path, 1); // the test's writer alone
    fs.writeSync(k.writer, xidLine(2, 48));
    await Bun.sleep(100);
    expect(findings.filter((f) => f.finding.check === "xid").length).toBe(1);
    fs.closeSync(k.writer);
  });

  test("compiled, with a FIFO kernel log: an Xid is stored within 1 s of being written, and SIGTERM ends it at once", async () => {
    buildFakeNvml();
    const fleet = await CompiledFleet.create();
    let writer: number | undefined;
    try {
      fleet.writeConfig();
      fleet.startServer();
      await fleet.waitReady();
      const kmsg = join(fleet.dir, "kmsg");
      expect(Bun.spawnSync(["mkfifo", kmsg]).exitCode).toBe(0);
      writer = fs.openSync(kmsg, fs.constants.O_RDWR);
      const state = join(fleet.dir, "nvml-state");
      fs.writeFileSync(state, "count 2\n");
      // Default poll interval: the kernel log must not wait for anything timed.
      const agent = fleet.startAgent("kmsg-fifo", ["--nvml-library", FAKE_NVML.full, "--kmsg-path", kmsg], {
        FAKE_NVML_STATE: state,
        FAKE_NVML_CONTROL: join(fleet.dir, "nvml-control"),
      });
      type Detail = { node: { agentHealth: string | null }; events: { check: string; code: string | null; receivedAt: number }[] };
      const detail = () => fleet.api<Detail>("/v1/nodes/kmsg-fifo?events=100");
      await waitFor("registered and checked", async () => ((await detail())?.node.agentHealth ? true : undefined), 20_000);

      const delays: number[] = [];
      for (const [i, code] of [94, 95, 48].entries()) {
        const at = Date.now();
        fs.writeSync(writer, rec(100 + i, `NVRM: Xid (PCI:0000:3b:00): ${code}, pid=${i}, name=python3, compiled ${i}`));
        const stored = await waitFor(`Xid ${code}`, async () => (await detail())?.events.find((e) => e.check === "xid" && e.code === String(code)), 10_000);
        delays.push(stored.receivedAt - at);
      }
      console.log(`compiled agent, FIFO record → stored: ${delays.join(", ")} ms`);
      for (const d of delays) expect(d).toBeLessThan(PROMPTLY_MS);

      const stopping = Date.now();
      agent.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(PROMPTLY_MS * 5);
    } finally {
      fleet.stop();
      if (writer !== undefined) fs.closeSync(writer);
    }
  }, 240_000);
});
