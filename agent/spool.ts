// The agent's durable outbox of health events. Every event gets the next sequence
// number and is written (and fsynced) before the agent tries to send it, so an
// unreachable reconciler or an agent restart loses nothing; the reconciler drops
// resends by (node, seq). Acknowledged events are compacted away.
//
// Files in the state directory:
//   events.jsonl  one HealthEvent per line, in seq order (unacknowledged ones, plus
//                 acknowledged ones not yet compacted)
//   acked         the highest seq the reconciler confirmed, as decimal text
//   spool-id      a UUID made with the directory; sent at registration so the
//                 reconciler can tell a lost ack from a spool that started over
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { HealthEvent, MAX_EVENTS_PER_BATCH } from "../schema/wire.ts";

export type NewEvent = Omit<HealthEvent, "seq">;

export class Spool {
  private pending: HealthEvent[] = [];
  private ackedSeq = 0;
  private lastSeq = 0;
  private readonly eventsPath: string;
  private readonly ackedPath: string;
  readonly id: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.eventsPath = join(dir, "events.jsonl");
    this.ackedPath = join(dir, "acked");
    this.id = loadOrCreateId(join(dir, "spool-id"));
    this.load();
  }

  /** The highest seq the reconciler acknowledged. */
  get acknowledgedSeq(): number {
    return this.ackedSeq;
  }

  /** Events not yet acknowledged, oldest first. */
  get size(): number {
    return this.pending.length;
  }

  get highestSeq(): number {
    return this.lastSeq;
  }

  /**
   * Aligns with what the reconciler has stored for this node (its registration answer).
   * Same spool: everything up to `serverSeq` arrived (only the ack was lost). Another
   * spool (this state directory is new, or the reconciler's database is): the unsent
   * events are renumbered after `serverSeq`, so no seq is ever reused.
   */
  adopt(serverSeq: number, sameSpool: boolean): void {
    if (sameSpool) {
      this.lastSeq = Math.max(this.lastSeq, serverSeq);
      this.acknowledge(serverSeq);
      return;
    }
    this.pending = this.pending.map((e, i) => ({ ...e, seq: serverSeq + 1 + i }));
    this.ackedSeq = serverSeq;
    this.lastSeq = serverSeq + this.pending.length;
    this.persist();
  }

  append(event: NewEvent): HealthEvent {
    const full: HealthEvent = { ...event, seq: ++this.lastSeq };
    const fd = openSync(this.eventsPath, "a");
    try {
      writeSync(fd, `${JSON.stringify(full)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.pending.push(full);
    return full;
  }

  /** The oldest unacknowledged events, at most one batch. */
  nextBatch(max = MAX_EVENTS_PER_BATCH): HealthEvent[] {
    return this.pending.slice(0, max);
  }

  acknowledge(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    this.pending = this.pending.filter((e) => e.seq > seq);
    this.persist();
  }

  /** Compacts: rewrites the files with what is still pending (rare: events are few). */
  private persist(): void {
    writeAtomically(this.ackedPath, `${this.ackedSeq}\n`);
    writeAtomically(this.eventsPath, this.pending.map((e) => `${JSON.stringify(e)}\n`).join(""));
  }

  private load(): void {
    if (existsSync(this.ackedPath)) {
      const n = Number.parseInt(readFileSync(this.ackedPath, "utf8").trim(), 10);
      if (Number.isSafeInteger(n) && n >= 0) this.ackedSeq = n;
    }
    this.lastSeq = this.ackedSeq;
    if (!existsSync(this.eventsPath)) return;
    const lines = readFileSync(this.eventsPath, "utf8").split("\n");
    for (const line of lines) {
      if (line.trim() === "") continue;
      // A torn last line (crash mid-write) is dropped; it was never acknowledged as sent.
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        continue;
      }
      const parsed = v.safeParse(HealthEvent, raw);
      if (!parsed.success) continue;
      const event = parsed.output;
      if (event.seq > this.lastSeq) this.lastSeq = event.seq;
      if (event.seq > this.ackedSeq) this.pending.push(event);
    }
    this.pending.sort((a, b) => a.seq - b.seq);
  }
}

function loadOrCreateId(path: string): string {
  if (existsSync(path)) {
    const id = readFileSync(path, "utf8").trim();
    if (/^[0-9a-f-]{36}$/i.test(id)) return id;
  }
  const id = randomUUID();
  writeAtomically(path, `${id}\n`);
  return id;
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
