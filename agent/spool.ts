// The agent's outbox of health events. Every event gets the next sequence number and is written
// (and fsynced) before the agent tries to send it, so an unreachable reconciler or an agent
// restart loses nothing; the reconciler drops resends by (node, seq). Acknowledged events are
// compacted away.
//
// The disk may refuse (full, read-only, immutable, gone): the spool never throws. Events it cannot
// write stay in memory, bounded, and are sent all the same; `problem` says why, and the next
// rewrite that succeeds (on the next event, acknowledgement or retryDisk()) puts them on disk.
//
// Files in the state directory:
//   events.jsonl  one HealthEvent per line, in seq order (unacknowledged ones, plus
//                 acknowledged ones not yet compacted)
//   acked         the highest seq the reconciler confirmed, as decimal text
//   spool-id      a UUID made with the directory; sent at registration so the
//                 reconciler can tell a lost ack from a spool that started over
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { repairText, textPrefix } from "../schema/text.ts";
import { HealthEvent, MAX_EVENT_BATCH_BYTES, MAX_EVENT_MESSAGE, MAX_EVENTS_PER_BATCH, findingKey } from "../schema/wire.ts";

export type NewEvent = Omit<HealthEvent, "seq">;

/** Unacknowledged events held while the disk refuses them; beyond it, superseded (then oldest) ones go. */
export const MAX_MEMORY_EVENTS = 10_000;

/**
 * A message as the wire carries it: well-formed (a lone surrogate, which the reconciler refuses,
 * becomes U+FFFD: it is outside text the agent reports) and cut on a code-point boundary to
 * `max`, saying how much was cut.
 */
export function cutMessage(text: string, max = MAX_EVENT_MESSAGE): string {
  const message = repairText(text);
  if (message.length <= max) return message;
  const marker = (n: number) => ` … [${n} characters cut]`;
  const kept = textPrefix(message, max - marker(message.length).length);
  return `${kept}${marker(message.length - kept.length)}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Spool {
  private pending: HealthEvent[] = [];
  private ackedSeq = 0;
  private lastSeq = 0;
  /** The files do not hold every pending event: the next write is a full rewrite. */
  private dirty = false;
  private failure: string | undefined;
  private lastRewriteAt = 0;
  private droppedEvents = 0;
  private readonly eventsPath: string;
  private readonly ackedPath: string;
  readonly id: string;

  constructor(readonly dir: string) {
    this.eventsPath = join(dir, "events.jsonl");
    this.ackedPath = join(dir, "acked");
    try {
      mkdirSync(dir, { recursive: true });
      this.load();
    } catch (err) {
      this.failed(err);
    }
    this.id = this.loadOrCreateId(join(dir, "spool-id"));
  }

  /** Why events are kept in memory only, while the disk refuses them. */
  get problem(): string | undefined {
    return this.failure;
  }

  /** Events given up because memory was full while the disk refused (superseded ones first). */
  get dropped(): number {
    return this.droppedEvents;
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

  /** Numbers the event and writes it down (or, when the disk refuses, keeps it in memory). Never throws. */
  append(event: NewEvent): HealthEvent {
    const full: HealthEvent = {
      ...event,
      ...(event.code === undefined ? {} : { code: repairText(event.code) }),
      message: cutMessage(event.message),
      seq: ++this.lastSeq,
    };
    this.pending.push(full);
    if (this.dirty) {
      // A refusing disk is tried again at most once a second: a burst of events must not rewrite the file per event.
      if (Date.now() - this.lastRewriteAt >= 1000) this.persist();
    } else {
      try {
        const fd = openSync(this.eventsPath, "a");
        try {
          writeSync(fd, `${JSON.stringify(full)}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      } catch (err) {
        // A torn line may be left behind: only a full rewrite puts the file right again.
        this.dirty = true;
        this.failed(err);
      }
    }
    if (this.dirty) this.bound();
    return full;
  }

  /**
   * The oldest unacknowledged events that fit one batch: at most `maxEvents`, and at most
   * `maxBytes` of JSON (always at least one event).
   */
  nextBatch(maxEvents = MAX_EVENTS_PER_BATCH, maxBytes = MAX_EVENT_BATCH_BYTES): HealthEvent[] {
    const batch: HealthEvent[] = [];
    let bytes = 0;
    for (const e of this.pending) {
      if (batch.length >= maxEvents) break;
      const size = Buffer.byteLength(JSON.stringify(e)) + 1;
      if (batch.length > 0 && bytes + size > maxBytes) break;
      batch.push(e);
      bytes += size;
    }
    return batch;
  }

  /** Drops what the reconciler stored. Never throws. */
  acknowledge(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    this.pending = this.pending.filter((e) => e.seq > seq);
    this.persist();
  }

  /** Tries the disk again when it refused last time; true when the spool is on disk again. */
  retryDisk(): boolean {
    if (this.failure === undefined) return false;
    this.persist();
    return this.failure === undefined;
  }

  /** Compacts: rewrites the files with what is still pending (rare: events are few). */
  private persist(): void {
    this.lastRewriteAt = Date.now();
    try {
      mkdirSync(this.dir, { recursive: true });
      writeAtomically(this.ackedPath, `${this.ackedSeq}\n`);
      writeAtomically(this.eventsPath, this.pending.map((e) => `${JSON.stringify(e)}\n`).join(""));
      this.dirty = false;
      this.failure = undefined;
    } catch (err) {
      this.dirty = true;
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    this.failure = `${this.dir}: ${errorText(err)}`;
  }

  /** Memory is the only copy: keep it bounded, giving up superseded events before any other. */
  private bound(): void {
    while (this.pending.length > MAX_MEMORY_EVENTS) {
      const latest = new Map<string, number>();
      this.pending.forEach((e, i) => latest.set(findingKey(e), i));
      const superseded = this.pending.findIndex((e, i) => latest.get(findingKey(e)) !== i);
      this.pending.splice(superseded >= 0 ? superseded : 0, 1);
      this.droppedEvents++;
    }
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
      // An older agent may have spooled a message longer than the wire carries, or one it cut
      // inside a surrogate pair: cut and repaired, not dropped.
      if (typeof raw === "object" && raw !== null && "message" in raw && typeof raw.message === "string") raw.message = cutMessage(raw.message);
      if (typeof raw === "object" && raw !== null && "code" in raw && typeof raw.code === "string") raw.code = repairText(raw.code);
      const parsed = v.safeParse(HealthEvent, raw);
      if (!parsed.success) continue;
      const event = parsed.output;
      if (event.seq > this.lastSeq) this.lastSeq = event.seq;
      if (event.seq > this.ackedSeq) this.pending.push(event);
    }
    this.pending.sort((a, b) => a.seq - b.seq);
  }

  private loadOrCreateId(path: string): string {
    try {
      if (existsSync(path)) {
        const id = readFileSync(path, "utf8").trim();
        if (/^[0-9a-f-]{36}$/i.test(id)) return id;
      }
    } catch (err) {
      this.failed(err);
    }
    const id = crypto.randomUUID();
    try {
      writeAtomically(path, `${id}\n`);
    } catch (err) {
      // Not kept: the next start makes another, and the reconciler renumbers after what it has.
      this.failed(err);
    }
    return id;
  }
}

/** Writes `text` to a temp file, fsyncs it and renames it over `path`; a failed attempt leaves nothing behind. */
function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  try {
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    // A half-written temp file on a full disk would keep it full.
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing more can be done here
    }
    throw err;
  }
}
