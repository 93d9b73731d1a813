// The follower: tails /dev/kmsg (or a regular file or FIFO standing in for it, in kmsg or
// dmesg / journal text format) without blocking the event loop, and hands every finding to the
// caller as the parser (parser.ts) produces it. The agent's health monitor follows the kernel log
// for its whole life; `navarch-node check --once` replays it from the beginning once.
//
// Reading /dev/kmsg (Documentation/ABI/testing/dev-kmsg): each read(2) of the device returns
// exactly one record; EPIPE means records were overwritten before we read them (the next read
// returns the oldest one still there); with O_NONBLOCK, EAGAIN means there is nothing new.
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
}

export const nodeKmsgIo: KmsgIo = {
  open: (path) => fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK),
  fstat: (fd) => {
    const st = fs.fstatSync(fd);
    const kind = st.isCharacterDevice() ? "char" : st.isFIFO() ? "fifo" : st.isFile() ? "file" : "other";
    return { kind, size: st.size };
  },
  read: (fd, buf, position) => fs.readSync(fd, buf, 0, buf.byteLength, position),
  close: (fd) => fs.closeSync(fd),
};

export interface FollowKmsgOptions {
  /**
   * "end" (default): only what is written after the start — for /dev/kmsg the existing ring buffer
   * is skipped, for a regular file reading starts at its current size. "beginning": replay
   * everything first (the agent's first-boot scan). A FIFO has no history either way.
   */
  start?: "end" | "beginning";
  /** How long to wait after the source ran dry before looking again (ms); default 250. */
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
 * reader loop. Opening happens now: a missing or unreadable path throws here. Read errors other
 * than EPIPE / EAGAIN / EINTR end the reader (`done` resolves with reason "error").
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

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopping) return resolve();
      wake = resolve;
      timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
    });

  const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

  /** One read; bytes read, 0 when the source has nothing now. Throws unrecoverable errors. */
  const readOnce = (): number => {
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
      const got = readOnce();
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
        const n = readOnce();
        if (n > 0) {
          if (kind === "char") {
            // One read, one record.
            parser.pushRecord(decoder.decode(buf.subarray(0, n)));
          } else {
            parser.push(decoder.decode(buf.subarray(0, n), { stream: true }));
          }
          if (++burst % 64 === 0) await yieldToLoop();
          continue;
        }
        parser.flush();
        burst = 0;
        await sleep(pollMs);
      }
      parser.flush();
      return { reason: "stopped" };
    } catch (err) {
      const error = asError(err);
      log(`reading ${path} failed: ${error.message}`);
      parser.flush();
      return { reason: "error", error };
    } finally {
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
    if (timer !== undefined) clearTimeout(timer);
    wake?.();
    wake = undefined;
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
