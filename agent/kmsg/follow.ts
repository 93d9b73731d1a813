// The follower: tails /dev/kmsg (or a regular file or FIFO standing in for it, in kmsg or
// dmesg / journal text format) without blocking the event loop, and hands every finding to the
// caller as the parser (parser.ts) produces it, the moment the record is written. The agent's
// health monitor follows the kernel log for its whole life; `navarch-node check --once` replays
// it from the beginning once.
//
// Reading /dev/kmsg (Documentation/ABI/testing/dev-kmsg): each read(2) of the device returns
// exactly one record; EPIPE means records were overwritten before we read them (the next read
// returns the oldest one still there); with O_NONBLOCK, EAGAIN means there is nothing new; poll(2)
// says when a record exists. JavaScript has no poll(2) that leaves the event loop free, but Bun's
// file streams are one: Bun opens the path (or duplicates the descriptor) non-blocking and waits
// on it in its own event loop (epoll), a chunk the moment one is written, at no cost while
// nothing is (measured: no thread, no timer, no CPU while idle; a record 0.1 ms after it is
// written; the stream's descriptor closed off the main thread a moment after it is cancelled). So:
//   - the device: the records are read here, one read(2) each (EPIPE counted, each record
//     whole), and a second reader of the device, a Bun stream whose bytes are discarded, is the
//     doorbell: each chunk it delivers means a new record exists;
//   - a FIFO (tests, the benchmark): a Bun stream over it is the reader; it is opened read-write
//     where it may be, so writers coming and going never end it;
//   - a regular file, which says nothing when it grows: looked at every `pollIntervalMs`, as is a
//     device or FIFO while its stream is down.
// A worker thread waiting in poll(2) or read(2) would do the same at the cost of a JavaScript
// runtime of its own (about 6 MiB measured), and a read(2) that blocks cannot be called off.
import * as fs from "node:fs";
import type { KmsgFinding } from "./match.ts";
import { KmsgParser } from "./parser.ts";
import { KMSG_HEADER, type KmsgRecord } from "./record.ts";

export const DEFAULT_KMSG_PATH = "/dev/kmsg";

/** The few file operations the reader uses; tests substitute them to produce EPIPE and friends. */
export interface KmsgIo {
  open(path: string): number;
  fstat(fd: number): { kind: "char" | "fifo" | "file" | "other"; size: number };
  /** read(2) at the current offset (position null) or pread(2) at `position`; throws errno errors. */
  read(fd: number, buf: Uint8Array, position: number | null): number;
  close(fd: number): void;
  /**
   * What a device or FIFO delivers, as it arrives: `source` is a path (opened anew: a reader of
   * its own) or an open fd (read through a duplicate: the same reader). Without it, or while it is
   * down, the follower looks every `pollIntervalMs` instead.
   */
  stream?(source: string | number): ReadableStream<Uint8Array>;
}

const { O_NONBLOCK, O_RDONLY, O_RDWR } = fs.constants;

/** A FIFO read-write where we may write to it: then there is always a writer, and no end of file when the last other one leaves. */
function openKmsg(path: string): number {
  let fifo = false;
  try {
    fifo = fs.statSync(path).isFIFO();
  } catch {
    // open says why
  }
  if (fifo) {
    try {
      return fs.openSync(path, O_RDWR | O_NONBLOCK);
    } catch (err) {
      if (errnoCode(err) !== "EACCES" && errnoCode(err) !== "EPERM") throw err;
    }
  }
  return fs.openSync(path, O_RDONLY | O_NONBLOCK);
}

export const nodeKmsgIo: KmsgIo = {
  open: openKmsg,
  fstat: (fd) => {
    const st = fs.fstatSync(fd);
    const kind = st.isCharacterDevice() ? "char" : st.isFIFO() ? "fifo" : st.isFile() ? "file" : "other";
    return { kind, size: st.size };
  },
  read: (fd, buf, position) => fs.readSync(fd, buf, 0, buf.byteLength, position),
  close: (fd) => fs.closeSync(fd),
  // Bun reads a device's or FIFO's stream in its event loop: epoll, no thread, no timer.
  stream: (source) => (typeof source === "number" ? Bun.file(source) : Bun.file(source)).stream(),
};

export interface FollowKmsgOptions {
  /**
   * "end" (default): only what is written after the start — for /dev/kmsg the existing ring buffer
   * is skipped, for a regular file reading starts at its current size. "beginning": replay
   * everything first (the agent's first-boot scan). A FIFO has no history either way.
   */
  start?: "end" | "beginning";
  /**
   * A regular file (which says nothing when it grows) is looked at again this long after it ran
   * dry (ms); so is a device or FIFO while its stream is down. Default 250.
   */
  pollIntervalMs?: number;
  /** Diagnostics: lost records (EPIPE), truncated files, callback failures. Default: console.warn. */
  log?: (message: string) => void;
  /** Every complete record, GPU-related or not. */
  onRecord?: (record: KmsgRecord) => void;
  /** Read-buffer size; one /dev/kmsg record must fit (the kernel's limit is 8 KiB). Default 64 KiB. */
  bufferBytes?: number;
  signal?: AbortSignal;
  /** For tests. */
  io?: KmsgIo;
}

export interface KmsgFollowResult {
  reason: "stopped" | "error";
  error?: Error;
}

export interface KmsgFollower {
  /** Stop reading, close the file; resolves once the reader has finished. Idempotent. */
  stop(): Promise<KmsgFollowResult>;
  /** Resolves when the reader ends (stop() or an unrecoverable read error). Never rejects. */
  readonly done: Promise<KmsgFollowResult>;
  /** kmsg records the kernel overwrote before we read them (EPIPE count). */
  readonly lostRecords: number;
  /** The last kmsg sequence number read, if the source is /dev/kmsg format. */
  readonly lastSeq: number | undefined;
}

/** A stream's reader, as far as the follower uses it. */
interface ChunkReader {
  read(): Promise<{ done: boolean; value?: Uint8Array | undefined }>;
  cancel(): Promise<void>;
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Where the line being written at `size` starts (a writer may be half-way through it): it is read whole. */
function startOfLastLine(io: KmsgIo, fd: number, size: number): number {
  if (size === 0) return 0;
  const window = Math.min(size, 16384);
  const tail = new Uint8Array(window);
  const n = io.read(fd, tail, size - window);
  const nl = tail.subarray(0, n).lastIndexOf(0x0a);
  if (nl === n - 1) return size; // ends with a complete line
  if (nl < 0) return window === size ? 0 : size; // one unfinished line is the whole file, or a monster line: skip it
  return size - window + nl + 1;
}

/**
 * Follow a kernel log: /dev/kmsg (default), or a regular file (tailed as it grows) or a FIFO in
 * kmsg or dmesg/journal text format. Findings arrive in order, each once, synchronously from the
 * reader loop; from a device or FIFO as soon as the record is written. Opening happens now: a
 * missing or unreadable path throws here. Read errors other than EPIPE / EAGAIN / EINTR end the
 * reader (`done` resolves with reason "error").
 */
export function followKmsg(path: string = DEFAULT_KMSG_PATH, onFinding: (finding: KmsgFinding) => void, opts: FollowKmsgOptions = {}): KmsgFollower {
  const io = opts.io ?? nodeKmsgIo;
  const log = opts.log ?? ((m: string) => console.warn(`kmsg: ${m}`));
  const pollMs = Math.max(1, opts.pollIntervalMs ?? 250);
  const buf = new Uint8Array(Math.max(8192, opts.bufferBytes ?? 65536));
  const decoder = new TextDecoder("utf-8");

  const fd = io.open(path);
  let kind: ReturnType<KmsgIo["fstat"]>["kind"];
  let position = 0;
  try {
    const st = io.fstat(fd);
    kind = st.kind;
    if (kind === "other") throw new Error(`${path} is not a character device, FIFO or regular file`);
    if (kind === "file" && (opts.start ?? "end") === "end") position = startOfLastLine(io, fd, st.size);
  } catch (err) {
    io.close(fd);
    throw err;
  }

  let lostRecords = 0;
  let lastSeq: number | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** Set by the stream when it delivers, cleared by the reader before it reads: no wake-up is lost. */
  let rung = false;
  /** The device's doorbell or the FIFO's reader; undefined while down (or never had). */
  let stream: ChunkReader | undefined;
  let streamDone: Promise<void> = Promise.resolve();
  /** The stream ended: it is started again after the next timed look, never in a loop. */
  let streamResting = false;
  let streamFailed = false;
  /** What a FIFO's stream delivered and the reader has not taken yet. */
  const chunks: Uint8Array[] = [];

  const parser = new KmsgParser(
    (finding) => {
      try {
        onFinding(finding);
      } catch (err) {
        log(`onFinding threw: ${asError(err).message}`);
      }
    },
    {
      onRecord: (rec) => {
        if (rec.seq !== undefined) lastSeq = rec.seq;
        if (opts.onRecord) {
          try {
            opts.onRecord(rec);
          } catch (err) {
            log(`onRecord threw: ${asError(err).message}`);
          }
        }
      },
    },
  );

  const ring = () => {
    rung = true;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    const w = wake;
    wake = undefined;
    w?.();
  };

  /** Until the stream delivers (or, without one, `pollMs`); at once when it already has. */
  const waitForMore = () =>
    new Promise<void>((resolve) => {
      if (stopping || rung) return resolve();
      wake = resolve;
      if (stream === undefined)
        timer = setTimeout(() => {
          timer = undefined;
          wake = undefined;
          streamResting = false;
          resolve();
        }, pollMs);
    });

  /**
   * The device: a second reader of it, whose bytes only say that a record exists. A FIFO: its
   * reader. When it ends or fails the follower looks every `pollIntervalMs` and starts it again
   * at the next look; the first time is logged.
   */
  const startStream = () => {
    if (stream !== undefined || streamResting || stopping || !io.stream || (kind !== "char" && kind !== "fifo")) return;
    let reader: ChunkReader;
    try {
      reader = io.stream(kind === "char" ? path : fd).getReader();
    } catch (err) {
      streamDown(err);
      return;
    }
    stream = reader;
    streamDone = (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (kind === "fifo" && value !== undefined) chunks.push(value);
          ring();
        }
        if (stream === reader) streamDown(undefined);
      } catch (err) {
        if (stream === reader) streamDown(err);
      }
    })();
  };

  const streamDown = (err: unknown) => {
    stream = undefined;
    if (stopping) return;
    streamResting = true;
    // Said once: a FIFO opened read-only (not ours to write) ends each time its last writer leaves.
    if (!streamFailed) {
      const why = err === undefined ? "its stream ended" : `waiting on it failed (${asError(err).message})`;
      log(`${path}: ${why}: looking every ${pollMs} ms until it works again`);
    }
    streamFailed = true;
    ring(); // a FIFO's stream ends with its last chunk; the device's doorbell may have missed one
  };

  const stopStream = async () => {
    const reader = stream;
    stream = undefined;
    if (reader !== undefined) await reader.cancel().catch(() => undefined);
    await streamDone;
  };

  const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

  /** The bytes of one read, empty when the source has nothing now. Throws unrecoverable errors. */
  const readOnce = (): Uint8Array => {
    // A FIFO's stream reads it: what it delivered, never a read of our own beside it.
    if (kind === "fifo" && (stream !== undefined || chunks.length > 0)) return chunks.shift() ?? buf.subarray(0, 0);
    return buf.subarray(0, readFd());
  };

  /** One read(2) of the file or device; bytes read, 0 when it has nothing now. */
  const readFd = (): number => {
    for (;;) {
      try {
        if (kind === "file") {
          const n = io.read(fd, buf, position);
          if (n === 0) {
            const size = io.fstat(fd).size;
            if (size < position) {
              log(`${path} shrank from ${position} to ${size} bytes (truncated or rewritten): reading from the start`);
              position = 0;
              continue;
            }
          }
          position += n;
          return n;
        }
        return io.read(fd, buf, null);
      } catch (err) {
        const code = errnoCode(err);
        if (code === "EAGAIN" || code === "EWOULDBLOCK") return 0;
        if (code === "EINTR") continue;
        if (code === "EPIPE") {
          lostRecords++;
          log(`kernel log records were overwritten before they were read (EPIPE, last seq ${lastSeq ?? "none"}); continuing`);
          continue;
        }
        throw err;
      }
    }
  };

  /** /dev/kmsg from its end: read and discard what is there now. */
  const skipExisting = async () => {
    let n = 0;
    while (!stopping) {
      const got = readFd();
      if (got === 0) break;
      const text = decoder.decode(buf.subarray(0, got));
      const header = KMSG_HEADER.exec(text);
      if (header) lastSeq = Number(header[2]);
      if (++n % 256 === 0) await yieldToLoop();
    }
  };

  const run = async (): Promise<KmsgFollowResult> => {
    try {
      await null; // findings never arrive before followKmsg has returned
      if (kind === "char" && (opts.start ?? "end") === "end") await skipExisting();
      let burst = 0;
      while (!stopping) {
        startStream();
        rung = false;
        const bytes = readOnce();
        if (bytes.byteLength > 0) {
          if (kind === "char") {
            // One read, one record.
            parser.pushRecord(decoder.decode(bytes));
          } else {
            parser.push(decoder.decode(bytes, { stream: true }));
          }
          if (++burst % 64 === 0) await yieldToLoop();
          continue;
        }
        parser.flush();
        burst = 0;
        await waitForMore();
      }
      parser.flush();
      return { reason: "stopped" };
    } catch (err) {
      const error = asError(err);
      log(`reading ${path} failed: ${error.message}`);
      parser.flush();
      return { reason: "error", error };
    } finally {
      await stopStream();
      try {
        io.close(fd);
      } catch {
        // already closed
      }
    }
  };

  const done = run();

  const stop = (): Promise<KmsgFollowResult> => {
    stopping = true;
    ring(); // the reader loop ends, cancels the stream and closes the file
    return done;
  };

  if (opts.signal) {
    if (opts.signal.aborted) void stop();
    else opts.signal.addEventListener("abort", () => void stop(), { once: true });
  }

  return {
    stop,
    done,
    get lostRecords() {
      return lostRecords;
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}
