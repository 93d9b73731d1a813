import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as v from "valibot";
import { kmsgFindingToEvent } from "../agent/kmsg/event.ts";
import { DEFAULT_KMSG_PATH, followKmsg, type KmsgIo } from "../agent/kmsg/follow.ts";
import { matchKmsgMessage, type KmsgFinding } from "../agent/kmsg/match.ts";
import { KmsgParser, parseKmsgText } from "../agent/kmsg/parser.ts";
import { parseKmsgRecord } from "../agent/kmsg/record.ts";
import { normalizePciBusId } from "../agent/pci.ts";
import { HealthEvent } from "../schema/wire.ts";
import { applyXidOverrides } from "../schema/xid-catalog.ts";

const FIXTURES = path.join(import.meta.dir, "fixtures", "kmsg");
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name), "utf8");

// expected.json is test input from disk: validate its shape rather than trusting it.
const Expected = v.record(
  v.string(),
  v.array(
    v.looseObject({
      kind: v.string(),
      xid: v.optional(v.number()),
      sxid: v.optional(v.number()),
      pciBusId: v.optional(v.string()),
      pid: v.optional(v.number()),
      processName: v.optional(v.string()),
      noPid: v.optional(v.boolean()),
      noUsec: v.optional(v.boolean()),
      noNvlink5: v.optional(v.boolean()),
    }),
  ),
);
const EXPECTED = v.parse(Expected, JSON.parse(fixture("expected.json")));
const FIXTURE_FILES = Object.keys(EXPECTED);

function expectMatches(got: KmsgFinding, exp: v.InferOutput<typeof Expected>[string][number], where: string) {
  const { noPid, noUsec, noNvlink5, ...fields } = exp;
  try {
    expect(got).toMatchObject(fields);
    expect(got.source).toBe("kmsg");
    if (noPid) {
      expect(got.pid).toBeUndefined();
      expect(got.processName).toBeUndefined();
    }
    if (noUsec) expect(got.usec).toBeUndefined();
    if (noNvlink5) expect(got.nvlink5).toBeUndefined();
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}\nfinding: ${JSON.stringify(got)}`);
  }
}

/** Deterministic pseudo-random numbers for chunking and fuzzing. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function waitFor(cond: () => boolean, what: string, ms = 5000) {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

describe("normalizePciBusId", () => {
  test.each([
    ["PCI:0000:3b:00", "00000000:3B:00.0"],
    ["0000:3b:00", "00000000:3B:00.0"],
    ["0000:3b:00.0", "00000000:3B:00.0"],
    ["00000000:3B:00.0", "00000000:3B:00.0"],
    ["0000:3B:00.0", "00000000:3B:00.0"],
    ["0018:01:00", "00000018:01:00.0"],
    ["0000:10:1c", "00000000:10:1C.0"],
    ["18:00.0", "00000000:18:00.0"],
    ["pci:0009:01:00.1", "00000009:01:00.1"],
    ["  PCI:0000:c3:00.0 ", "00000000:C3:00.0"],
    ["c8a2:00:00.0", "0000C8A2:00:00.0"],
  ])("%p → %p", (input, want) => {
    expect(normalizePciBusId(input)).toBe(want);
  });

  test.each(["", "PCI:", "invalid-bdf.0", "0000:3b", "zzzz:3b:00", "0000:3b:00.8", "000000000:3b:00.0", "GPU-1234"])("%p is not a bus id", (input) => {
    expect(normalizePciBusId(input)).toBeUndefined();
  });

  test("kmsg and NVML forms of one GPU meet", () => {
    expect(normalizePciBusId("PCI:0000:3b:00")).toBe(normalizePciBusId("00000000:3B:00.0"));
  });
});

describe("parseKmsgRecord", () => {
  test("kmsg header, escapes and dictionary", () => {
    const rec = parseKmsgRecord(["4,1105,4254197913,-;NVRM: A GPU crash dump\\x0aNVRM: second line \\x5c done", " SUBSYSTEM=pci", " DEVICE=+pci:0000:3b:00.0"]);
    expect(rec).toMatchObject({
      format: "kmsg",
      level: 4,
      facility: 0,
      seq: 1105,
      usec: 4254197913,
      flags: "-",
      message: "NVRM: A GPU crash dump\nNVRM: second line \\ done",
      dict: { SUBSYSTEM: "pci", DEVICE: "+pci:0000:3b:00.0" },
    });
  });

  test("future header fields are ignored; facility and level come from pri", () => {
    const rec = parseKmsgRecord("14,7,99,c,caller=T12;hello");
    expect(rec).toMatchObject({ format: "kmsg", level: 6, facility: 1, seq: 7, usec: 99, flags: "c", message: "hello" });
  });

  test("text forms give level and timestamp where printed", () => {
    expect(parseKmsgRecord("<3>[ 4254.197860] NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.")).toMatchObject({
      format: "text",
      level: 3,
      usec: 4254197860,
    });
    expect(parseKmsgRecord("Jan 16 14:04:39 host kernel: [44643.002792] NVRM: GPU Board Serial Number: 1")).toMatchObject({
      usec: 44643002792,
      message: "NVRM: GPU Board Serial Number: 1",
    });
    expect(parseKmsgRecord("[86423.441] NVRM: x")?.usec).toBe(86423441000);
    // Non-GPU text keeps its timestamp too, for other kernel-log checks.
    expect(parseKmsgRecord("Jan 16 14:04:39 host kernel: [   12.500000] EXT4-fs (dm-0): Remounting filesystem read-only")).toMatchObject({
      usec: 12500000,
      message: "EXT4-fs (dm-0): Remounting filesystem read-only",
    });
    expect(parseKmsgRecord("2025-02-11T08:30:12.512345+00:00 host kernel: Out of memory: Killed process 4242 (python3)")?.message).toBe(
      "Out of memory: Killed process 4242 (python3)",
    );
    expect(parseKmsgRecord("<6>[    3.000001] usb 1-1: new device")).toMatchObject({ level: 6, usec: 3000001, message: "usb 1-1: new device" });
    expect(parseKmsgRecord("some-prefix: [ 5.000000] NVRM: GPU Board Serial Number: 1")).toMatchObject({
      usec: 5000000,
      message: "NVRM: GPU Board Serial Number: 1",
    });
    expect(parseKmsgRecord("[Sun Aug 25 20:10:45 2024] NVRM: x")?.usec).toBeUndefined();
    expect(parseKmsgRecord("")).toBeUndefined();
  });
});

describe("fixtures", () => {
  test("every fixture file is listed in expected.json", () => {
    const onDisk = fs.readdirSync(FIXTURES).filter((f) => !f.endsWith(".json") && !f.endsWith(".md"));
    expect(onDisk.sort()).toEqual([...FIXTURE_FILES].sort());
  });

  for (const file of FIXTURE_FILES) {
    test(`${file}: each line gives the right finding, nothing else`, () => {
      const expected = EXPECTED[file] ?? [];
      const got = parseKmsgText(fixture(file));
      for (let i = 0; i < Math.min(got.length, expected.length); i++) {
        const g = got[i];
        const e = expected[i];
        if (g && e) expectMatches(g, e, `${file}[${i}]`);
      }
      expect(got.length).toBe(expected.length);
    });
  }

  test("the fixtures cover the codes the design asks for", () => {
    const codes = new Set<number>();
    const kinds = new Set<string>();
    for (const file of FIXTURE_FILES) {
      for (const f of parseKmsgText(fixture(file))) {
        kinds.add(f.kind);
        if (f.kind === "xid" && f.xid !== undefined) codes.add(f.xid);
      }
    }
    for (const code of [13, 31, 45, 48, 63, 64, 74, 79, 94, 95, 119, 120, 140, 144, 145, 146, 147, 148, 149, 150]) {
      expect(codes.has(code)).toBe(true);
    }
    for (const kind of ["xid", "sxid", "fallen_off_bus", "crash_dump", "gpu_identity", "board_serial"]) {
      expect(kinds.has(kind)).toBe(true);
    }
  });

  test("NVLink5 intrinfo decode: subcode = bits 20–25", () => {
    const [finding] = parseKmsgText(
      "NVRM: Xid (PCI:0008:01:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 08 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)",
    );
    expect(finding?.nvlink5).toEqual({
      unit: "NETIR_LINK_EVT",
      fatal: true,
      xc: "XC0",
      instance: 0,
      link: 8,
      intrinfo: 0x004505c6,
      errorStatus: 0,
      extra: [0, 0, 0, 0],
      subCode: 4,
    });
  });

  for (const file of FIXTURE_FILES) {
    test(`${file}: the same findings when fed in random chunks with idle flushes between them`, () => {
      const text = fixture(file);
      const whole = parseKmsgText(text).map((f) => [f.kind, f.xid ?? f.sxid, f.pciBusId, f.seq]);
      const rand = rng(file.length * 7919);
      for (let round = 0; round < 5; round++) {
        const got: KmsgFinding[] = [];
        const parser = new KmsgParser((f) => got.push(f));
        let at = 0;
        while (at < text.length) {
          const n = 1 + Math.floor(rand() * 300);
          parser.push(text.slice(at, at + n));
          if (rand() < 0.5) parser.flush();
          at += n;
        }
        parser.end();
        expect(got.map((f) => [f.kind, f.xid ?? f.sxid, f.pciBusId, f.seq])).toEqual(whole);
      }
    });
  }
});

describe("robustness", () => {
  test("garbage, binary and truncated input never throws", () => {
    const rand = rng(42);
    const alphabet = "NVRM: Xid (PCI:0000:3b:00): 79, pid=name=Ch SXid nvidia-nvswitch0 fallen off the bus\n \t;,-+c0123456789abcdef\\x[]<>'";
    for (let i = 0; i < 300; i++) {
      let s = "";
      const len = Math.floor(rand() * 400);
      for (let j = 0; j < len; j++) {
        s += rand() < 0.1 ? String.fromCharCode(Math.floor(rand() * 0xffff)) : (alphabet[Math.floor(rand() * alphabet.length)] ?? "");
      }
      expect(() => parseKmsgText(s)).not.toThrow();
      expect(() => matchKmsgMessage({ format: "text", flags: "-", message: s, dict: {}, raw: s })).not.toThrow();
    }
  });

  test("every prefix of a real record parses without throwing", () => {
    const line = fixture("nvlink5.kmsg").split("\n")[2] ?? "";
    for (let i = 0; i <= line.length; i++) expect(() => parseKmsgText(line.slice(0, i))).not.toThrow();
  });

  test("a callback that throws does not stop the parser", () => {
    const got: KmsgFinding[] = [];
    const parser = new KmsgParser((f) => {
      got.push(f);
      throw new Error("boom");
    });
    parser.push(fixture("sxid.kmsg"));
    parser.end();
    expect(got.length).toBe(5);
  });

  test("an endless line without a newline is dropped, not hoarded", () => {
    const got: KmsgFinding[] = [];
    const parser = new KmsgParser((f) => got.push(f));
    const junk = "x".repeat(64 * 1024);
    for (let i = 0; i < 40; i++) parser.push(junk);
    parser.push("\n" + "4,1,1,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n");
    parser.end();
    expect(got.map((f) => f.xid)).toEqual([79]);
  });

  test("an unterminated line waits for its newline; end() takes it", () => {
    const got: KmsgFinding[] = [];
    const parser = new KmsgParser((f) => got.push(f));
    parser.push("4,1,1,-;NVRM: Xid (PCI:0000:3b:00): 7");
    parser.flush();
    expect(got).toEqual([]);
    parser.push("9, pid=1, GPU has fallen off the bus.");
    parser.end();
    expect(got.map((f) => f.xid)).toEqual([79]);
  });
});

describe("kmsgFindingToEvent", () => {
  const time = new Date("2025-03-01T12:00:00.000Z");
  const one = (text: string) => {
    const [f] = parseKmsgText(text);
    if (!f) throw new Error(`no finding in ${text}`);
    return f;
  };
  const asWire = (fields: object | null) => v.parse(HealthEvent, { ...fields, seq: 1, bootId: "boot-1" });

  test("Xid 79 → check xid, code 79, verdict from the catalog, valid on the wire", () => {
    const ev = kmsgFindingToEvent(one("NVRM: Xid (PCI:0000:3b:00): 79, pid=1173, GPU has fallen off the bus."), { time });
    expect(ev).toMatchObject({ time: "2025-03-01T12:00:00.000Z", check: "xid", code: "79", severity: "unhealthy", action: "reboot" });
    expect(ev?.message).toContain("00000000:3B:00.0");
    expect(() => asWire(ev)).not.toThrow();
  });

  test("fallen-off-bus text without an Xid line is reported as Xid 79", () => {
    const ev = kmsgFindingToEvent(one("NVRM: GPU 0000:5d:00.0: GPU has fallen off the bus."), { time });
    expect(ev).toMatchObject({ check: "xid", code: "79", severity: "unhealthy" });
  });

  test("app-caused Xid 13 is degraded", () => {
    const ev = kmsgFindingToEvent(one("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=python3, Graphics Exception"), { time });
    expect(ev).toMatchObject({ code: "13", severity: "degraded", action: "restart_app" });
  });

  test("NVLink5: the kernel's Nonfatal / Fatal token and the decode rules decide", () => {
    const nonfatal = kmsgFindingToEvent(
      one("NVRM: Xid (PCI:0018:01:00): 149, NETIR_BER_EVENT Nonfatal XC0 i0 Link 03 (0x00086226 0x00000001 0x00000000 0x00000000 0x00000000 0x00000000)"),
      { time },
    );
    expect(nonfatal).toMatchObject({ code: "149", severity: "degraded", action: "none" });
    const fatal = kmsgFindingToEvent(
      one("NVRM: Xid (PCI:0019:01:00): 149, NETIR Fatal XC0 i0 Link -1 (0x000fe406 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)"),
      { time },
    );
    expect(fatal).toMatchObject({ severity: "unhealthy", action: "reset_gpu" });
    const cartridge = kmsgFindingToEvent(
      one("NVRM: Xid (PCI:0008:01:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 08 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)"),
      { time },
    );
    expect(cartridge).toMatchObject({ severity: "unhealthy", action: "contact_support" });
    const undecoded = kmsgFindingToEvent(one("NVRM: Xid (PCI:0018:01:00): 149, NETIR Fatal XC0 i0 Link -1 (0x000fe406"), { time });
    expect(undecoded).toMatchObject({ severity: "degraded", action: "contact_support" });
  });

  test("Xid 154 reports the driver's new recovery action", () => {
    const reset = kmsgFindingToEvent(
      one("NVRM: Xid (PCI:0009:01:00): 154, GPU recovery action changed from 0x4 (Drain and Reset) to 0x1 (GPU Reset Required)"),
      { time },
    );
    expect(reset).toMatchObject({ code: "154", severity: "unhealthy", action: "reset_gpu" });
    const none = kmsgFindingToEvent(one("NVRM: Xid (PCI:0009:01:00): 154, GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)"), {
      time,
    });
    expect(none).toMatchObject({ severity: "healthy", action: "none" });
  });

  test("config overrides win, ignored codes give no event", () => {
    const catalog = applyXidOverrides({ "13": { severity: "unhealthy", action: "reset_gpu" }, "94": { ignore: true } });
    expect(kmsgFindingToEvent(one("NVRM: Xid (PCI:0000:3b:00): 13, Graphics Exception"), { catalog, time })).toMatchObject({
      severity: "unhealthy",
      action: "reset_gpu",
    });
    expect(kmsgFindingToEvent(one("NVRM: Xid (PCI:0000:0f:00): 94, pid=1, name=p, Ch 00000008"), { catalog, time })).toBeNull();
  });

  test("unknown Xid: conservative default", () => {
    const ev = kmsgFindingToEvent(one("NVRM: Xid (PCI:0000:55:00): 171, GDDR, Uncorrectable DRAM error"), { time });
    expect(ev).toMatchObject({ code: "171", severity: "degraded", action: "contact_support" });
    expect(ev?.message).toContain("unknown Xid");
  });

  test("SXid: Fatal is unhealthy, Non-fatal degraded", () => {
    expect(kmsgFindingToEvent(one("nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 24007, Fatal, Link 30 sourcetrack timeout error"), { time })).toMatchObject({
      check: "sxid",
      code: "24007",
      severity: "unhealthy",
    });
    expect(kmsgFindingToEvent(one("nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 20009, Non-fatal, Link 28 RX Short Error Rate"), { time })).toMatchObject({
      severity: "degraded",
      action: "none",
    });
  });

  test("identity and serial lines carry no verdict; a crash dump is degraded", () => {
    expect(kmsgFindingToEvent(one("NVRM: GPU at PCI:0000:3b:00: GPU-f1906b9b-557a-e961-045c-9fe4be3ce012"))).toBeNull();
    expect(kmsgFindingToEvent(one("NVRM: GPU 0000:5d:00.0: GPU serial number is 1653923026510."))).toBeNull();
    const crash = kmsgFindingToEvent(one("NVRM: A GPU crash dump has been created."), { time });
    expect(crash).toMatchObject({ check: "gpu_crash_dump", severity: "degraded", action: "none" });
    expect(() => asWire(crash)).not.toThrow();
  });

  test("every fixture finding maps to a wire-valid event (or none)", () => {
    for (const file of FIXTURE_FILES) {
      for (const f of parseKmsgText(fixture(file))) {
        const ev = kmsgFindingToEvent(f, { time });
        if (ev) expect(() => asWire(ev)).not.toThrow();
      }
    }
  });

  test("very long messages are clipped to the wire limit", () => {
    const ev = kmsgFindingToEvent(one(`NVRM: Xid (PCI:0000:3b:00): 13, ${"x".repeat(10_000)}`), { time });
    expect(ev?.message.length).toBeLessThanOrEqual(4096);
    expect(() => asWire(ev)).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------

const rec = (seq: number, msg: string) => `4,${seq},${seq * 1000},-;${msg}\n`;
const xidLine = (seq: number, code: number) => rec(seq, `NVRM: Xid (PCI:0000:3b:00): ${code}, pid=${seq}, name=python3, test ${seq}`);

describe("followKmsg", () => {
  let dir = "";
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "navarch-kmsg-"));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a missing path throws at once", () => {
    expect(() => followKmsg(path.join(dir, "missing"), () => {}, { log: () => {} })).toThrow();
  });

  test("regular file: starts at the end, tails appends in order, once each, a split record once complete", async () => {
    const file = path.join(dir, "tail.kmsg");
    fs.writeFileSync(file, xidLine(1, 13) + xidLine(2, 31));
    const got: KmsgFinding[] = [];
    const follower = followKmsg(file, (f) => got.push(f), { pollIntervalMs: 10, log: () => {} });
    await Bun.sleep(40);
    expect(got).toEqual([]);

    fs.appendFileSync(file, xidLine(3, 48) + xidLine(4, 79));
    await waitFor(() => got.length >= 2, "two findings");

    const split = xidLine(5, 119);
    fs.appendFileSync(file, split.slice(0, 27));
    await Bun.sleep(60); // several idle polls with half a record on disk
    expect(got.length).toBe(2);
    fs.appendFileSync(file, split.slice(27));
    await waitFor(() => got.length >= 3, "the split record");

    fs.appendFileSync(file, rec(6, "usb 1-1: USB disconnect, device number 2") + xidLine(7, 120));
    await waitFor(() => got.length >= 4, "the fourth finding");
    await Bun.sleep(50);

    expect(got.map((f) => [f.xid, f.seq, f.pid])).toEqual([
      [48, 3, 3],
      [79, 4, 4],
      [119, 5, 5],
      [120, 7, 7],
    ]);
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    fs.appendFileSync(file, xidLine(8, 13));
    await Bun.sleep(50);
    expect(got.length).toBe(4);
    expect(follower.lastSeq).toBe(7);
    expect(await follower.stop()).toEqual({ reason: "stopped" }); // idempotent
  });

  test("regular file: a record half-written when the reader starts is read whole", async () => {
    const file = path.join(dir, "half.kmsg");
    const line = xidLine(2, 79);
    fs.writeFileSync(file, xidLine(1, 13) + line.slice(0, 20));
    const got: KmsgFinding[] = [];
    const follower = followKmsg(file, (f) => got.push(f), { pollIntervalMs: 10, log: () => {} });
    await Bun.sleep(30);
    fs.appendFileSync(file, line.slice(20));
    await waitFor(() => got.length >= 1, "the completed record");
    await Bun.sleep(30);
    await follower.stop();
    expect(got.map((f) => [f.xid, f.seq])).toEqual([[79, 2]]);
  });

  test("regular file: start 'beginning' replays what is there, then follows", async () => {
    const file = path.join(dir, "replay.kmsg");
    fs.writeFileSync(file, fixture("fallen-off-bus.kmsg"));
    const got: KmsgFinding[] = [];
    const follower = followKmsg(file, (f) => got.push(f), { start: "beginning", pollIntervalMs: 10, log: () => {} });
    const want = EXPECTED["fallen-off-bus.kmsg"]?.length ?? 0;
    await waitFor(() => got.length >= want, "the replay");
    fs.appendFileSync(file, xidLine(9001, 95));
    await waitFor(() => got.length >= want + 1, "the appended record");
    await follower.stop();
    expect(got.length).toBe(want + 1);
    expect(got.at(-1)?.xid).toBe(95);
  });

  test("regular file: a truncated file is read again from its start", async () => {
    const file = path.join(dir, "trunc.kmsg");
    fs.writeFileSync(file, xidLine(1, 13).repeat(4));
    const got: KmsgFinding[] = [];
    const logs: string[] = [];
    const follower = followKmsg(file, (f) => got.push(f), { pollIntervalMs: 10, log: (m) => logs.push(m) });
    await Bun.sleep(30);
    fs.writeFileSync(file, xidLine(2, 79));
    await waitFor(() => got.length >= 1, "the record after truncation");
    await follower.stop();
    expect(got.map((f) => f.xid)).toEqual([79]);
    expect(logs.some((m) => m.includes("shrank"))).toBe(true);
  });

  test("FIFO: records arrive in order, once each, across writes and writers; stop() ends it", async () => {
    const fifo = path.join(dir, "kmsg.fifo");
    const mk = Bun.spawnSync(["mkfifo", fifo]);
    expect(mk.exitCode).toBe(0);
    const got: KmsgFinding[] = [];
    const follower = followKmsg(fifo, (f) => got.push(f), { pollIntervalMs: 10, log: () => {} });
    // The reader is open already, so opening the writer does not block.
    let writer = fs.openSync(fifo, "w");
    fs.writeSync(writer, xidLine(1, 13) + xidLine(2, 31));
    await waitFor(() => got.length >= 2, "the first two records");

    const split = rec(
      3,
      "NVRM: Xid (PCI:0018:01:00): 145, pid=876767, name=ray::WorkerDict, RLW_RXPIPE Nonfatal XC0 i0 Link 13 (0x0409a0c2 0x00000008 0x00000001 0x00000000 0x00100000 0x00000004)",
    );
    fs.writeSync(writer, split.slice(0, 60));
    await Bun.sleep(60);
    expect(got.length).toBe(2);
    fs.writeSync(writer, split.slice(60));
    await waitFor(() => got.length >= 3, "the split record");

    // The multi-record fallen-off-bus text, in three writes.
    fs.writeSync(writer, "3,4,4000,-;NVRM: The NVIDIA GPU 0000:af:00.0\n");
    await Bun.sleep(30);
    fs.writeSync(writer, "3,5,5000,-;NVRM: (PCI ID: 10de:2335) installed in this system has\n");
    await Bun.sleep(30);
    fs.writeSync(writer, "3,6,6000,-;NVRM: fallen off the bus and is not responding to commands.\n");
    await waitFor(() => got.length >= 4, "the fallen-off-bus finding");
    fs.closeSync(writer);
    await Bun.sleep(40); // EOF while no writer is connected: keep waiting

    writer = fs.openSync(fifo, "w");
    fs.writeSync(writer, xidLine(7, 79));
    await waitFor(() => got.length >= 5, "a record from a second writer");
    fs.closeSync(writer);

    expect(await follower.stop()).toEqual({ reason: "stopped" });
    expect(got.map((f) => [f.kind, f.xid, f.seq])).toEqual([
      ["xid", 13, 1],
      ["xid", 31, 2],
      ["xid", 145, 3],
      ["fallen_off_bus", 79, 4],
      ["xid", 79, 7],
    ]);
    expect(got[2]?.nvlink5?.link).toBe(13);
    expect(got[3]?.pciBusId).toBe("00000000:AF:00.0");
  });

  test("dmesg text through a FIFO, including an indented multi-line record", async () => {
    const fifo = path.join(dir, "dmesg.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const got: KmsgFinding[] = [];
    const follower = followKmsg(fifo, (f) => got.push(f), { pollIntervalMs: 10, log: () => {} });
    const writer = fs.openSync(fifo, "w");
    fs.writeSync(writer, fixture("xid.dmesg"));
    const want = EXPECTED["xid.dmesg"]?.length ?? 0;
    await waitFor(() => got.length >= want, "the dmesg fixture");
    fs.closeSync(writer);
    await follower.stop();
    expect(got.length).toBe(want);
  });

  /** A fake /dev/kmsg: one record per read, then the scripted errors. */
  function fakeCharDevice(script: (string | { error: string })[]): { io: KmsgIo; reads: () => number; closed: () => boolean } {
    let reads = 0;
    let closed = false;
    const queue = [...script];
    const io: KmsgIo = {
      open: () => 3,
      fstat: () => ({ kind: "char", size: 0 }),
      read: (_fd, buf, position) => {
        expect(position).toBeNull();
        reads++;
        const next = queue.shift();
        if (next === undefined) throw Object.assign(new Error("EAGAIN: resource temporarily unavailable"), { code: "EAGAIN" });
        if (typeof next !== "string") throw Object.assign(new Error(`${next.error}: scripted`), { code: next.error });
        const bytes = new TextEncoder().encode(next);
        buf.set(bytes);
        return bytes.byteLength;
      },
      close: () => {
        closed = true;
      },
    };
    return { io, reads: () => reads, closed: () => closed };
  }

  test("/dev/kmsg: EPIPE (records overwritten) is logged and counted, EINTR retried, EAGAIN waits", async () => {
    const dev = fakeCharDevice([
      xidLine(10, 13),
      { error: "EPIPE" },
      xidLine(40, 79),
      { error: "EINTR" },
      xidLine(41, 48),
      { error: "EAGAIN" },
      rec(42, "NVRM: GPU at PCI:0000:3b:00: "),
      { error: "EPIPE" },
      xidLine(90, 64),
    ]);
    const got: KmsgFinding[] = [];
    const logs: string[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { start: "beginning", pollIntervalMs: 5, io: dev.io, log: (m) => logs.push(m) });
    await waitFor(() => got.length >= 4, "four findings");
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    expect(got.map((f) => f.xid)).toEqual([13, 79, 48, 64]);
    expect(follower.lostRecords).toBe(2);
    expect(follower.lastSeq).toBe(90);
    expect(logs.filter((m) => m.includes("EPIPE")).length).toBe(2);
    expect(dev.closed()).toBe(true);
  });

  test("/dev/kmsg from the end skips the ring buffer", async () => {
    const dev = fakeCharDevice([xidLine(1, 79), xidLine(2, 79), { error: "EAGAIN" }, xidLine(3, 13)]);
    const got: KmsgFinding[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { pollIntervalMs: 5, io: dev.io, log: () => {} });
    await waitFor(() => got.length >= 1, "the new record");
    await follower.stop();
    expect(got.map((f) => [f.xid, f.seq])).toEqual([[13, 3]]);
  });

  test("an unrecoverable read error ends the reader; done resolves, never rejects", async () => {
    const dev = fakeCharDevice([xidLine(1, 13), { error: "EIO" }]);
    const got: KmsgFinding[] = [];
    const logs: string[] = [];
    const follower = followKmsg("/dev/kmsg", (f) => got.push(f), { start: "beginning", pollIntervalMs: 5, io: dev.io, log: (m) => logs.push(m) });
    const result = await follower.done;
    expect(result.reason).toBe("error");
    expect(result.error?.message).toContain("EIO");
    expect(got.map((f) => f.xid)).toEqual([13]);
    expect(dev.closed()).toBe(true);
    expect(await follower.stop()).toBe(result);
  });

  test("a throwing onFinding is logged and the reader goes on", async () => {
    const dev = fakeCharDevice([xidLine(1, 13), xidLine(2, 31)]);
    const seen: number[] = [];
    const logs: string[] = [];
    const follower = followKmsg(
      "/dev/kmsg",
      (f) => {
        seen.push(f.xid ?? 0);
        throw new Error("consumer bug");
      },
      { start: "beginning", pollIntervalMs: 5, io: dev.io, log: (m) => logs.push(m) },
    );
    await waitFor(() => seen.length >= 2, "both findings");
    await follower.stop();
    expect(seen).toEqual([13, 31]);
    expect(logs.some((m) => m.includes("consumer bug"))).toBe(true);
  });

  test("an AbortSignal stops the reader", async () => {
    const dev = fakeCharDevice([]);
    const ac = new AbortController();
    const follower = followKmsg("/dev/kmsg", () => {}, { pollIntervalMs: 5, io: dev.io, signal: ac.signal, log: () => {} });
    ac.abort();
    expect(await follower.done).toEqual({ reason: "stopped" });
  });

  const canReadKmsg = (() => {
    try {
      fs.closeSync(fs.openSync("/dev/kmsg", fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
      return true;
    } catch {
      return false;
    }
  })();

  test.skipIf(!canReadKmsg)("the real /dev/kmsg (read-only): replays, then waits and stops cleanly", async () => {
    const records: number[] = [];
    const follower = followKmsg(DEFAULT_KMSG_PATH, () => {}, {
      start: "beginning",
      pollIntervalMs: 10,
      log: () => {},
      onRecord: (r) => {
        if (r.seq !== undefined) records.push(r.seq);
      },
    });
    await waitFor(() => records.length > 0, "a kernel record");
    await Bun.sleep(50);
    expect(await follower.stop()).toEqual({ reason: "stopped" });
    for (let i = 1; i < records.length; i++) expect(records[i]).toBeGreaterThan(records[i - 1] ?? -1);
    expect(follower.lastSeq).toBe(records.at(-1));

    const fromEnd = followKmsg(DEFAULT_KMSG_PATH, () => {}, { pollIntervalMs: 10, log: () => {} });
    await Bun.sleep(30);
    expect(await fromEnd.stop()).toEqual({ reason: "stopped" });
    expect(fromEnd.lastSeq).toBeGreaterThanOrEqual(records.at(-1) ?? 0);
  });
});
