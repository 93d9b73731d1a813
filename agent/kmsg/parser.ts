// The streaming kernel-log parser: text chunks in, findings out, in order and each once. It cuts
// the stream into records (record.ts), joins what the kernel split over several records (KERN_CONT
// fragments, the three-record fallen-off-the-bus text) and attributes a board serial or crash dump
// to the GPU named just before it; each record is classified by the matchers (match.ts). The
// follower (follow.ts) feeds it from a file or device; tests and tools parse a whole
// dmesg dump with `parseKmsgText`.
import { FALLEN_HEAD_AT, FALLEN_HEAD_THE, FALLEN_TAIL, findingBase, matchKmsgMessage, withBus, type KmsgFinding } from "./match.ts";
import { DICT_LINE, parseKmsgRecord, type KmsgRecord } from "./record.ts";

export interface KmsgParserOptions {
  /** Every complete record, GPU-related or not (for other kmsg checks). */
  onRecord?: (record: KmsgRecord) => void;
}

/** How many records a multi-record fallen-off-bus message or a serial / crash-dump attribution may span. */
const CONTEXT_RECORDS = 6;
/** A "line" longer than this without a newline is not a kernel log: it is dropped. */
const MAX_LINE_CHARS = 1 << 20;

interface PendingFallen {
  rawBus: string;
  first: KmsgRecord;
  lines: string[];
  age: number;
}

/**
 * Turns a byte stream (as text chunks) into findings, in order, each once. A record is complete
 * when the next one starts or on `flush()`; an unterminated last line waits for more input.
 * Also stitches what the kernel split over several records: KERN_CONT fragments (flags 'c' then
 * '+'), the three-record "The NVIDIA GPU … fallen off the bus" text, and board serial / crash dump
 * lines to the GPU named just before them.
 */
export class KmsgParser {
  readonly #onFinding: (finding: KmsgFinding) => void;
  readonly #onRecord: ((record: KmsgRecord) => void) | undefined;
  #partial = "";
  #pendingLines: string[] | undefined;
  #fragment: KmsgRecord | undefined;
  #fallen: PendingFallen | undefined;
  #lastGpu: { rawBus: string; age: number } | undefined;

  constructor(onFinding: (finding: KmsgFinding) => void, opts: KmsgParserOptions = {}) {
    this.#onFinding = onFinding;
    this.#onRecord = opts.onRecord;
  }

  /** Feed text; complete lines are processed, an unterminated last line is kept. */
  push(chunk: string): void {
    if (chunk === "") return;
    const text = this.#partial + chunk;
    const lines = text.split("\n");
    this.#partial = lines.pop() ?? "";
    if (this.#partial.length > MAX_LINE_CHARS) this.#partial = "";
    for (const rawLine of lines) this.#line(rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine);
  }

  /** End of a burst of input: the record in progress is complete (an unterminated line is not). */
  flush(): void {
    this.#emitPending();
    this.#flushFragment();
  }

  /** End of input: the unterminated last line counts as complete; everything pending is emitted. */
  end(): void {
    if (this.#partial !== "") {
      const last = this.#partial;
      this.#partial = "";
      this.#line(last);
    }
    this.flush();
    this.#fallen = undefined;
  }

  /** One complete record as returned by a read(2) of /dev/kmsg. */
  pushRecord(record: string): void {
    this.#emitPending();
    const rec = parseKmsgRecord(record);
    if (rec) this.#record(rec);
  }

  #line(line: string): void {
    if (line.trim() === "") {
      this.#emitPending();
      return;
    }
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (this.#pendingLines) this.#pendingLines.push(line);
      else if (!DICT_LINE.test(line)) this.#pendingLines = [line.trim()]; // orphaned dmesg continuation: a record of its own
      return; // an orphaned KEY=value line lost its record: drop it
    }
    this.#emitPending();
    this.#pendingLines = [line];
  }

  #emitPending(): void {
    const lines = this.#pendingLines;
    if (!lines) return;
    this.#pendingLines = undefined;
    const rec = parseKmsgRecord(lines);
    if (rec) this.#record(rec);
  }

  #record(rec: KmsgRecord): void {
    if (rec.format === "kmsg") {
      if (rec.flags.includes("+") && this.#fragment) {
        this.#fragment = {
          ...this.#fragment,
          message: this.#fragment.message + rec.message,
          raw: `${this.#fragment.raw}\n${rec.raw}`,
          dict: { ...this.#fragment.dict, ...rec.dict },
        };
        return;
      }
      this.#flushFragment();
      if (rec.flags.includes("c")) {
        this.#fragment = rec;
        return;
      }
    } else {
      this.#flushFragment();
    }
    this.#complete(rec);
  }

  #flushFragment(): void {
    const frag = this.#fragment;
    if (!frag) return;
    this.#fragment = undefined;
    this.#complete(frag);
  }

  #complete(rec: KmsgRecord): void {
    this.#safe(() => this.#onRecord?.(rec));
    let finding: KmsgFinding | undefined;
    try {
      finding = this.#classify(rec);
    } catch {
      finding = undefined; // a matcher must never take the reader down
    }
    if (finding) this.#safe(() => this.#onFinding(finding));
  }

  #safe(fn: () => void): void {
    try {
      fn();
    } catch {
      // callbacks' own errors are theirs; the stream goes on
    }
  }

  #classify(rec: KmsgRecord): KmsgFinding | undefined {
    const fallen = this.#fallen;
    if (fallen) {
      fallen.age++;
      if (fallen.age > CONTEXT_RECORDS) this.#fallen = undefined;
    }
    if (this.#lastGpu) {
      this.#lastGpu.age++;
      if (this.#lastGpu.age > CONTEXT_RECORDS) this.#lastGpu = undefined;
    }

    let finding = matchKmsgMessage(rec);

    if (!finding) {
      // The first record of a fallen-off-bus message the kernel split over several records…
      const head = rec.message.includes("NVRM") ? (FALLEN_HEAD_THE.exec(rec.message) ?? FALLEN_HEAD_AT.exec(rec.message)) : null;
      if (head) {
        this.#fallen = { rawBus: head[1] ?? "", first: rec, lines: [rec.message], age: 0 };
        return undefined;
      }
      // …its middle or last record.
      const pending = this.#fallen;
      const tail = FALLEN_TAIL.test(rec.message);
      if (pending && (tail || rec.message.includes("NVRM"))) {
        pending.lines.push(rec.message);
        if (!tail) return undefined;
        this.#fallen = undefined;
        finding = withBus(
          { source: "kmsg", kind: "fallen_off_bus", xid: 79, ...findingBase(pending.first), message: pending.lines.join("\n") },
          pending.rawBus,
        );
        return this.#remember(finding);
      }
      return undefined;
    }

    if (!finding.pciBusId && (finding.kind === "board_serial" || finding.kind === "crash_dump")) {
      const dev = /^\+pci:(.+)$/.exec(rec.dict.DEVICE ?? "");
      if (dev) withBus(finding, dev[1]);
      else if (this.#lastGpu) {
        withBus(finding, this.#lastGpu.rawBus);
        if (finding.pciBusId) finding.pciBusIdInferred = true;
      }
    }
    return this.#remember(finding);
  }

  #remember(finding: KmsgFinding | undefined): KmsgFinding | undefined {
    if (finding?.rawPciBusId && finding.kind !== "sxid" && !finding.pciBusIdInferred) {
      this.#lastGpu = { rawBus: finding.rawPciBusId, age: 0 };
    }
    return finding;
  }
}

/** Parse a whole text (a fixture, a dmesg dump) in one go. */
export function parseKmsgText(text: string, opts: KmsgParserOptions = {}): KmsgFinding[] {
  const out: KmsgFinding[] = [];
  const parser = new KmsgParser((f) => out.push(f), opts);
  parser.push(text);
  parser.end();
  return out;
}
