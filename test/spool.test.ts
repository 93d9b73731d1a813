// The event spool: messages cut to what the wire carries, batches bounded by bytes, and a disk
// that refuses (the events stay in memory, bounded, and reach the disk when it takes them again).
import { describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_MEMORY_EVENTS, Spool, cutMessage, type NewEvent } from "../agent/spool.ts";
import { MAX_EVENT_BATCH_BYTES, MAX_EVENT_MESSAGE } from "../schema/wire.ts";
import { tempDir } from "./support.ts";

const event = (code: string, message = `fault ${code}`): NewEvent => ({
  time: new Date().toISOString(),
  bootId: "boot-1",
  check: "xid",
  code,
  severity: "unhealthy",
  action: "reset_gpu",
  message,
});

describe("messages", () => {
  test("a message longer than the wire carries is cut, saying how much", () => {
    expect(cutMessage("short")).toBe("short");
    const long = "x".repeat(10_000);
    const cut = cutMessage(long);
    expect(cut.length).toBeLessThanOrEqual(MAX_EVENT_MESSAGE);
    expect(cut.length).toBeGreaterThan(MAX_EVENT_MESSAGE - 5);
    expect(cut).toMatch(/^x+ … \[\d+ characters cut\]$/);
    expect(Number(/\[(\d+) characters/.exec(cut)![1]) + cut.indexOf(" …")).toBe(10_000);
  });

  test("an over-long message is cut when spooled, and when an older agent's spool is read", () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    expect(spool.append(event("13", "y".repeat(5000))).message).toEndWith(" characters cut]");
    const line = JSON.stringify({ ...event("31", "z".repeat(9000)), seq: 2 });
    writeFileSync(join(dir, "events.jsonl"), `${readFileSync(join(dir, "events.jsonl"), "utf8")}${line}\n`);
    const again = new Spool(dir);
    expect(again.size).toBe(2);
    expect(again.nextBatch()[1]!.message.length).toBeLessThanOrEqual(MAX_EVENT_MESSAGE);
  });
});

describe("batches", () => {
  test("bounded by bytes: 300 events of 4 KB go in batches under the limit, in order, none lost", () => {
    const spool = new Spool(tempDir());
    for (let i = 1; i <= 300; i++) spool.append(event(String(i), `${i} ${"x".repeat(4000)}`));
    const seqs: number[] = [];
    while (spool.size > 0) {
      const batch = spool.nextBatch();
      expect(Buffer.byteLength(JSON.stringify({ nodeId: "n", events: batch }))).toBeLessThan(MAX_EVENT_BATCH_BYTES + 1024);
      seqs.push(...batch.map((e) => e.seq));
      spool.acknowledge(batch.at(-1)!.seq);
    }
    expect(seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  });

  test("one event larger than the byte bound still goes, alone", () => {
    const spool = new Spool(tempDir());
    spool.append(event("1", "x".repeat(4000)));
    expect(spool.nextBatch(500, 100)).toHaveLength(1);
  });
});

describe("a disk that refuses", () => {
  test("the state directory cannot be made: events are numbered and kept in memory, nothing throws; once it can, they reach the disk", () => {
    const base = tempDir();
    const blocker = join(base, "state");
    writeFileSync(blocker, "a file where the directory should be");
    const spool = new Spool(blocker);
    expect(spool.problem).toContain(blocker);
    const a = spool.append(event("79"));
    const b = spool.append(event("48"));
    expect([a.seq, b.seq]).toEqual([1, 2]);
    expect(spool.size).toBe(2);
    expect(spool.nextBatch().map((e) => e.code)).toEqual(["79", "48"]);
    expect(spool.retryDisk()).toBe(false);
    rmSync(blocker);
    expect(spool.retryDisk()).toBe(true);
    expect(spool.problem).toBeUndefined();
    expect(new Spool(blocker).nextBatch().map((e) => [e.seq, e.code])).toEqual([
      [1, "79"],
      [2, "48"],
    ]);
  });

  test("an append that fails mid-way leaves no torn line behind: the next write is a full rewrite", () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    spool.append(event("1"));
    // The events file replaced by a directory: appending to it fails.
    rmSync(join(dir, "events.jsonl"));
    mkdirSync(join(dir, "events.jsonl"));
    spool.append(event("2"));
    expect(spool.problem).toContain("events.jsonl");
    rmSync(join(dir, "events.jsonl"), { recursive: true });
    expect(spool.retryDisk()).toBe(true);
    expect(
      readFileSync(join(dir, "events.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).code),
    ).toEqual(["1", "2"]);
  });

  test("memory is bounded: superseded events go first, and the count of what was given up is kept", () => {
    const base = tempDir();
    const blocker = join(base, "state");
    writeFileSync(blocker, "");
    const spool = new Spool(blocker);
    spool.append(event("79", "GPU lost"));
    for (let i = 0; i < MAX_MEMORY_EVENTS + 4; i++) spool.append({ ...event("13"), severity: i % 2 ? "healthy" : "degraded" });
    expect(spool.size).toBe(MAX_MEMORY_EVENTS);
    expect(spool.dropped).toBe(5);
    // The one finding that was never superseded is still there.
    expect(spool.nextBatch(1)[0]!.code).toBe("79");
  });
});
