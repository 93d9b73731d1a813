// What the agent remembers of the reconciler's requests, in its state directory
// (requests.json), so that a request is never run twice, also across a restart: a request is
// written down as started (fsynced) before its process is spawned, and as finished, with its
// answer, once it ends. A request the journal knows is not run again when it is delivered
// again; one that was started and never finished (the agent was killed) is answered as failed
// at the next start, never run again. Answers the reconciler has not acknowledged are kept
// here until it does.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { RequestAnswer, RequestId } from "../schema/wire.ts";

/** Entries kept: the oldest finished and acknowledged ones go first (the reconciler never delivers those again). */
export const MAX_JOURNAL_ENTRIES = 1000;

const Entry = v.object({
  id: RequestId,
  kind: v.string(),
  check: v.optional(v.string()),
  state: v.picklist(["started", "finished"]),
  /** When it was started or finished (ms, the agent's clock). */
  at: v.number(),
  /** The check's process group, and its leader's start time (so a reused pid is never killed). */
  pid: v.optional(v.number()),
  pidStart: v.optional(v.number()),
  answer: v.optional(RequestAnswer),
  /** Whether the reconciler acknowledged the final answer. */
  sent: v.boolean(),
});
export type JournalEntry = v.InferOutput<typeof Entry>;

const File = v.object({ entries: v.array(Entry) });

export class RequestJournal {
  private readonly entries = new Map<string, JournalEntry>();
  private readonly path: string;
  /** Why the journal cannot be written now, if it cannot: no request is started then. */
  problem: string | undefined;

  constructor(
    readonly dir: string,
    private readonly log: (line: string) => void,
  ) {
    this.path = join(dir, "requests.json");
    this.load();
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get(id: string): JournalEntry | undefined {
    return this.entries.get(id);
  }

  /** Entries started and never finished: their agent stopped while they ran. */
  unfinished(): JournalEntry[] {
    return [...this.entries.values()].filter((e) => e.state === "started");
  }

  /** Final answers the reconciler has not acknowledged, oldest first. */
  unsent(): JournalEntry[] {
    return [...this.entries.values()].filter((e) => e.state === "finished" && !e.sent && e.answer !== undefined);
  }

  /**
   * Records that a request starts, on disk, before anything runs; throws when it cannot be
   * written (the request must then not run: after a restart it could run again).
   */
  start(entry: Omit<JournalEntry, "state" | "at" | "sent">): void {
    const previous = this.entries.get(entry.id);
    this.entries.set(entry.id, { ...entry, state: "started", at: Date.now(), sent: false });
    try {
      this.write();
    } catch (err) {
      if (previous === undefined) this.entries.delete(entry.id);
      else this.entries.set(entry.id, previous);
      throw err;
    }
  }

  /** The process that runs it, once spawned (for the cleanup of an agent that was killed). */
  running(id: string, pid: number | undefined, pidStart: number | undefined): void {
    const e = this.entries.get(id);
    if (e === undefined) return;
    this.entries.set(id, { ...e, ...(pid !== undefined ? { pid } : {}), ...(pidStart !== undefined ? { pidStart } : {}) });
    this.tryWrite();
  }

  /** Records how it ended and the answer to send; kept in memory when the disk refuses. */
  finish(id: string, kind: string, answer: RequestAnswer, check?: string): void {
    const known = this.entries.get(id);
    const entry: JournalEntry = {
      id,
      kind: known?.kind ?? kind,
      ...((known?.check ?? check) !== undefined ? { check: (known?.check ?? check)! } : {}),
      state: "finished",
      at: Date.now(),
      answer,
      sent: false,
    };
    this.entries.set(id, entry);
    this.tryWrite();
  }

  /** The reconciler acknowledged the final answer. */
  acknowledged(id: string): void {
    const e = this.entries.get(id);
    if (e === undefined || e.sent) return;
    this.entries.set(id, { ...e, sent: true });
    this.prune();
    this.tryWrite();
  }

  private prune(): void {
    if (this.entries.size <= MAX_JOURNAL_ENTRIES) return;
    for (const [id, e] of this.entries) {
      if (this.entries.size <= MAX_JOURNAL_ENTRIES) break;
      if (e.state === "finished" && e.sent) this.entries.delete(id);
    }
  }

  private tryWrite(): void {
    try {
      this.write();
    } catch {
      // Said once in problem (write logs the change); the entries stay in memory.
    }
  }

  private write(): void {
    const text = `${JSON.stringify({ entries: [...this.entries.values()] })}\n`;
    const tmp = `${this.path}.tmp`;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      const problem = `cannot write ${this.path}: ${err instanceof Error ? err.message : String(err)}`;
      if (problem !== this.problem) this.log(`requests: ${problem}; no request is started while it cannot be written`);
      this.problem = problem;
      throw new Error(problem);
    }
    if (this.problem !== undefined) this.log(`requests: ${this.path} can be written again`);
    this.problem = undefined;
  }

  private load(): void {
    if (!existsSync(this.path)) return;
    let parsed: v.SafeParseResult<typeof File>;
    try {
      parsed = v.safeParse(File, JSON.parse(readFileSync(this.path, "utf8")));
    } catch (err) {
      this.setAside(err instanceof Error ? err.message : String(err));
      return;
    }
    if (!parsed.success) {
      this.setAside(parsed.issues[0]?.message ?? "invalid");
      return;
    }
    for (const e of parsed.output.entries) this.entries.set(e.id, e);
  }

  /** A journal that cannot be read is kept aside for a human, and the agent starts with none. */
  private setAside(why: string): void {
    const aside = `${this.path}.unreadable-${Date.now()}`;
    try {
      renameSync(this.path, aside);
    } catch {
      // left where it is; it is rewritten at the next change
    }
    this.log(`requests: ${this.path} cannot be read (${why}); kept as ${aside}. Requests delivered again may run again`);
  }
}
