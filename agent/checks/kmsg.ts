// Kernel-log reader for GPU faults: a streaming parser for /dev/kmsg records and for plain dmesg /
// journal text, the NVRM / NVSwitch line matchers, the finding → HealthEvent mapping, and
// `followKmsg`, which tails /dev/kmsg (or a file or FIFO standing in for it).
//
// /dev/kmsg format (Documentation/ABI/testing/dev-kmsg): `pri,seq,usec,flags[,…];message\n`, then
// zero or more continuation lines starting with ' ' carrying KEY=value context (SUBSYSTEM=, DEVICE=).
// Non-printable bytes and '\' in the message are escaped as \xHH (a multi-line printk arrives as
// one record with \x0a inside). flags: '-' default, 'c' first fragment of a continued line, '+' a
// continuation fragment. Each read(2) of the device returns exactly one record; EPIPE means records
// were overwritten before we read them (the next read returns the oldest one still there); with
// O_NONBLOCK, EAGAIN means there is nothing new.
import * as fs from "node:fs";
import type { HealthEvent, RecommendedAction, Severity } from "../../schema/wire.ts";
import { cutText } from "../../schema/text.ts";
import { nvlink5SubCode, XID_CATALOG, type XidCatalog } from "../../schema/xid-catalog.ts";
import { normalizePciBusId } from "../pci.ts";
import { xidFinding, type XidOccurrence } from "./xid.ts";

export const DEFAULT_KMSG_PATH = "/dev/kmsg";

// ---------------------------------------------------------------------------------------------
// PCI bus ids

const BDF_SOURCE = String.raw`(?:[0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}(?:\.[0-7])?`;

// ---------------------------------------------------------------------------------------------
// Records

export interface KmsgRecord {
  format: "kmsg" | "text";
  /** syslog level 0–7 (kmsg records, `<N>` prefixed text). */
  level?: number;
  /** syslog facility (0 = kernel, 1 = user, …). */
  facility?: number;
  seq?: number;
  /** Kernel monotonic timestamp in µs (kmsg header, or `[ secs.frac]` in dmesg text). */
  usec?: number;
  /** kmsg flags field ('-', 'c', '+'); '-' for text. */
  flags: string;
  /** The message, unescaped; lines of a multi-line record joined with '\n'. */
  message: string;
  /** kmsg continuation KEY=value pairs. */
  dict: Record<string, string>;
  /** The record as read. */
  raw: string;
}

const KMSG_HEADER = /^(\d{1,10}),(\d{1,20}),(-?\d{1,20})((?:,[^;]*)?);([\s\S]*)$/;
const DICT_LINE = /^[ \t]([A-Z0-9_]+)=(.*)$/;
const TEXT_USEC = /\[\s*(\d{1,10})\.(\d{1,9})\]/;
const TEXT_ANCHOR = /NVRM:|nvidia-nvswitch\d*:|SXid \(/;
// The prefixes dmesg, syslog and journalctl put before a kernel message, each optional, in order:
// `<4>` (dmesg -r), `Jan 16 14:04:39 host kernel: ` / `2025-01-16T14:04:39.1+00:00 host kernel: `,
// `[ 4254.197816] ` or `[Sun Aug 25 20:10:45 2024] ` (dmesg -T).
const TEXT_PREFIX = new RegExp(
  [
    String.raw`^(?:<(\d{1,3})>)?`,
    String.raw`(?:(?:[A-Z][a-z]{2} +\d{1,2} +\d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}[T ][0-9:.,]+(?:Z|[+-]\d{2}:?\d{2})?) +\S+ +kernel: *)?`,
    String.raw`(?:kernel: *)?`,
    String.raw`(?:\[ *(\d{1,10})\.(\d{1,9})\] ?|\[[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}\] ?)?`,
  ].join(""),
);

function unescapeKmsg(s: string): string {
  return s.indexOf("\\x") < 0 ? s : s.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function usecFrom(secs: string, frac: string): number {
  return Number(secs) * 1_000_000 + Number(frac.padEnd(6, "0").slice(0, 6));
}

/**
 * Parse one record: a kmsg record (header line + continuation lines) or one text line (+ the
 * indented lines dmesg prints under a multi-line record). Never throws; undefined for empty input.
 */
export function parseKmsgRecord(input: string | readonly string[]): KmsgRecord | undefined {
  const lines = typeof input === "string" ? input.replace(/\n$/, "").split("\n") : input;
  const first = lines[0];
  if (first === undefined || first.trim() === "") return undefined;
  const raw = lines.join("\n");
  const header = KMSG_HEADER.exec(first);
  if (header) {
    const [, pri = "0", seq = "0", usec = "0", extra = "", text = ""] = header;
    const priNum = Number(pri);
    const dict: Record<string, string> = {};
    const messageLines = [unescapeKmsg(text)];
    for (const line of lines.slice(1)) {
      const kv = DICT_LINE.exec(line);
      if (kv) dict[kv[1] ?? ""] = unescapeKmsg(kv[2] ?? "");
      else if (line.trim() !== "") messageLines.push(unescapeKmsg(line.trim()));
    }
    const flags = extra.split(",")[1]?.trim() || "-";
    const usecNum = Number(usec);
    return {
      format: "kmsg",
      level: priNum & 7,
      facility: priNum >> 3,
      seq: Number(seq),
      usec: usecNum >= 0 ? usecNum : undefined,
      flags,
      message: messageLines.join("\n"),
      dict,
      raw,
    };
  }
  // Text: `<4>[ 123.456789] NVRM: …`, `Jan 16 14:04:39 host kernel: [44643.002792] NVRM: …`,
  // `[Sun Aug 25 20:10:45 2024] NVRM: …`, `2025-01-16T14:04:39+00:00 host kernel: NVRM: …`, or bare.
  // Known prefixes are stripped; a GPU line behind an unknown prefix is cut at its anchor.
  const pre = TEXT_PREFIX.exec(first);
  let text = pre ? first.slice(pre[0].length) : first;
  let usec = pre?.[2] !== undefined ? usecFrom(pre[2], pre[3] ?? "0") : undefined;
  const anchor = TEXT_ANCHOR.exec(text);
  if (anchor && anchor.index > 0) {
    if (usec === undefined) {
      const ts = TEXT_USEC.exec(text.slice(0, anchor.index));
      if (ts) usec = usecFrom(ts[1] ?? "0", ts[2] ?? "0");
    }
    text = text.slice(anchor.index);
  }
  const levelPri = pre?.[1];
  const messageLines = [text];
  for (const line of lines.slice(1)) if (line.trim() !== "") messageLines.push(line.trim());
  return {
    format: "text",
    level: levelPri !== undefined ? Number(levelPri) & 7 : undefined,
    facility: levelPri !== undefined ? Number(levelPri) >> 3 : undefined,
    usec,
    flags: "-",
    message: messageLines.join("\n"),
    dict: {},
    raw,
  };
}

// ---------------------------------------------------------------------------------------------
// Findings

export const KMSG_FINDING_KINDS = ["xid", "sxid", "fallen_off_bus", "crash_dump", "gpu_identity", "board_serial"] as const;
export type KmsgFindingKind = (typeof KMSG_FINDING_KINDS)[number];

export interface Nvlink5Detail {
  /** The unit token as printed, e.g. `RLW_RXPIPE`, `NETIR_LINK_EVT`. */
  unit: string;
  /** The kmsg "Fatal" / "Nonfatal" token. */
  fatal: boolean;
  /** `XC0`, `XC1`, … */
  xc: string;
  instance: number;
  /** -1 for errors not tied to one link. */
  link: number;
  intrinfo: number;
  errorStatus: number;
  /** Further hex words after errorStatus (0–4 of them). */
  extra: number[];
  /** intrinfo bits 20–25. */
  subCode: number;
}

export interface KmsgFinding {
  source: "kmsg";
  kind: KmsgFindingKind;
  /** NVML form (`00000000:3B:00.0`); for SXid, the NVSwitch's own bus id. */
  pciBusId?: string;
  /** The bus id as the kernel printed it. */
  rawPciBusId?: string;
  /** True when the bus id came from a neighbouring line (crash dump, board serial), not this one. */
  pciBusIdInferred?: boolean;
  /** Xid code (79 for fallen_off_bus). */
  xid?: number;
  /** MIG attribution printed by the driver (`GPU-I:01 GPU-CI:00`). */
  gpuInstanceId?: number;
  computeInstanceId?: number;
  /** NVSwitch SXid code. */
  sxid?: number;
  /** NVSwitch instance (`nvidia-nvswitch3` → 3). */
  nvswitch?: number;
  /** SXid or NVLink5 "Fatal" / "Non-fatal" token. */
  fatal?: boolean;
  pid?: number;
  processName?: string;
  /** `Ch 00000008` / `Channel 0x23`, as a number. */
  channel?: number;
  /** NVLink link number (SXid `Link 28`, Xid 74 `on link 14`, NVLink5 `Link 13`). */
  link?: number;
  nvlink5?: Nvlink5Detail;
  /** Xid 154: `GPU recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)`. */
  recoveryAction?: { from: number; fromName: string; to: number; toName: string };
  /** gpu_identity: `GPU-…` */
  uuid?: string;
  /** board_serial */
  serial?: string;
  /** The Xid/SXid text after the structured fields. */
  detail?: string;
  /** The kernel message (unescaped; multi-line records joined with '\n'). */
  message: string;
  /** Kernel monotonic timestamp, µs. */
  usec?: number;
  /** kmsg sequence number (first record, for findings spanning several). */
  seq?: number;
  /** syslog level 0–7 where known. */
  level?: number;
}

// NVRM: Xid (PCI:%04x:%02x:%02x[ GPU-I:%02u[ GPU-CI:%02u]]): %d, pid=%s, name=%s, %s  (open-gpu-kernel-modules
// kernel_rc.c; older drivers omit pid/name, some omit "PCI:").
const XID_LINE = new RegExp(
  String.raw`NVRM: Xid \((?:PCI:)?(${BDF_SOURCE})(?: GPU-I:(\d{1,3}))?(?: GPU-CI:(\d{1,3}))?\): (\d{1,6})(?:,[ \t]*|[ \t]*$|[ \t]*\n)([\s\S]*)$`,
);
const SXID_LINE = new RegExp(
  String.raw`(nvidia-nvswitch(\d*)):? SXid \((?:PCI:)?(${BDF_SOURCE})\): (\d{1,6})(?:,[ \t]*(?:(Fatal|Non-fatal|Nonfatal)(?:,[ \t]*|[ \t]*$))?|[ \t]*$)([^\n]*)`,
);
const GPU_IDENTITY = new RegExp(String.raw`NVRM: GPU at PCI:(${BDF_SOURCE}): (GPU-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})`);
const BOARD_SERIAL = /NVRM: GPU Board Serial Number: ?([^\s]*)/;
const SERIAL_IS = new RegExp(String.raw`NVRM: GPU (${BDF_SOURCE}): GPU serial number is ([^\s.]+)`);
const CRASH_DUMP = /NVRM: A GPU crash dump has been created/;
// Fallen-off-bus text without an Xid line (GPUd #1209), newest driver first:
//   NVRM: GPU 0000:5d:00.0: GPU has fallen off the bus.
//   NVRM: GPU at PCI:0000:01:00: GPU has fallen off the bus.
//   NVRM: GPU at 0000:06:00.0 has fallen off the bus.
//   NVRM: The NVIDIA GPU 0000:5d:00.0 \n (PCI ID: 10de:2330) installed in this system has \n fallen off the bus and is not responding to commands.
const FALLEN_SINGLE = [
  new RegExp(String.raw`NVRM: GPU (?:at )?(?:PCI:)?(${BDF_SOURCE}):? (?:GPU )?has fallen off the bus`),
  new RegExp(String.raw`NVRM: The NVIDIA GPU (?:PCI:)?(${BDF_SOURCE})\b[\s\S]*?fallen off the bus`),
];
const FALLEN_HEAD_THE = new RegExp(String.raw`NVRM: The NVIDIA GPU (?:PCI:)?(${BDF_SOURCE})\s*$`);
const FALLEN_HEAD_AT = new RegExp(String.raw`NVRM: GPU (?:at )?(?:PCI:)?(${BDF_SOURCE}):?\s*$`);
const FALLEN_TAIL = /fallen off the bus/;
const NVLINK5_DETAIL =
  /^([A-Za-z0-9_]+)\s+(Fatal|Nonfatal|Non-fatal)\s+(XC\d+)\s+i(\d+)\s+Link\s+(-?\d+)\s+\(\s*(0x[0-9a-fA-F]{1,8})\s+(0x[0-9a-fA-F]{1,8})((?:\s+0x[0-9a-fA-F]{1,8}){0,8})\s*\)/;
const RECOVERY_CHANGE = /recovery action changed from 0x([0-9a-fA-F]+) \(([^)]*)\) to 0x([0-9a-fA-F]+) \(([^)]*)\)/;
const XID74_LINK = /\bon link (\d{1,3})\b/i;
const LINK_WORD = /\bLink (\d{1,3})\b/;

/** Fields that follow `Xid (…): N,`: `pid=…`, `name=…`, `Ch …` / `Channel …`, in that order, each optional. */
function parseXidFields(rest: string): { pid?: number; processName?: string; channel?: number; detail: string } {
  let s = rest;
  const out: { pid?: number; processName?: string; channel?: number; detail: string } = { detail: "" };
  const pid = /^pid=([^,\n]*)(?:,[ \t]*|$)/.exec(s);
  if (pid) {
    const value = (pid[1] ?? "").trim();
    if (/^\d{1,10}$/.test(value)) out.pid = Number(value);
    s = s.slice(pid[0].length);
  }
  const name = /^name=([^\n]*?)(?:, |,?[ \t]*$|,?[ \t]*(?=\n))/.exec(s);
  if (name) {
    const value = (name[1] ?? "").trim();
    if (value !== "" && !/^'?<[^>]*>'?$/.test(value)) out.processName = value;
    s = s.slice(name[0].length);
  }
  const channel = /^(?:Ch|Channel|channel) (?:0x)?([0-9a-fA-F]{1,8})(?:,[ \t]*|[ \t]*$|(?=[.\s]))/.exec(s);
  if (channel) {
    out.channel = parseInt(channel[1] ?? "0", 16);
    s = s.slice(channel[0].length);
  }
  out.detail = s.trim();
  return out;
}

function parseNvlink5(detail: string): Nvlink5Detail | undefined {
  const m = NVLINK5_DETAIL.exec(detail);
  if (!m) return undefined;
  const intrinfo = Number.parseInt(m[6] ?? "", 16);
  const errorStatus = Number.parseInt(m[7] ?? "", 16);
  if (!Number.isFinite(intrinfo) || !Number.isFinite(errorStatus)) return undefined;
  const extra = (m[8] ?? "")
    .trim()
    .split(/\s+/)
    .filter((w) => w !== "")
    .map((w) => Number.parseInt(w, 16));
  return {
    unit: m[1] ?? "",
    fatal: m[2] === "Fatal",
    xc: m[3] ?? "",
    instance: Number(m[4]),
    link: Number(m[5]),
    intrinfo,
    errorStatus,
    extra,
    subCode: nvlink5SubCode(intrinfo),
  };
}

type Base = Pick<KmsgFinding, "message" | "usec" | "seq" | "level">;

function base(rec: KmsgRecord): Base {
  const out: Base = { message: rec.message };
  if (rec.usec !== undefined) out.usec = rec.usec;
  if (rec.seq !== undefined) out.seq = rec.seq;
  if (rec.level !== undefined) out.level = rec.level;
  return out;
}

function withBus(finding: KmsgFinding, raw: string | undefined): KmsgFinding {
  if (raw === undefined) return finding;
  const bus = normalizePciBusId(raw);
  if (bus !== undefined) {
    finding.pciBusId = bus;
    finding.rawPciBusId = raw;
  }
  return finding;
}

/**
 * Classify one message on its own (no context from neighbouring records). Returns the finding, or
 * undefined for lines that are not about a GPU. Never throws.
 */
export function matchKmsgMessage(rec: KmsgRecord): KmsgFinding | undefined {
  const msg = rec.message;
  if (msg.indexOf("NVRM") < 0 && msg.indexOf("SXid") < 0) return undefined;

  const xid = XID_LINE.exec(msg);
  if (xid) {
    const code = Number(xid[4]);
    if (!Number.isInteger(code) || code <= 0) return undefined;
    const fields = parseXidFields(xid[5] ?? "");
    const finding: KmsgFinding = { source: "kmsg", kind: "xid", xid: code, ...base(rec) };
    withBus(finding, xid[1]);
    if (xid[2] !== undefined) finding.gpuInstanceId = Number(xid[2]);
    if (xid[3] !== undefined) finding.computeInstanceId = Number(xid[3]);
    if (fields.pid !== undefined) finding.pid = fields.pid;
    if (fields.processName !== undefined) finding.processName = fields.processName;
    if (fields.channel !== undefined) finding.channel = fields.channel;
    if (fields.detail !== "") finding.detail = fields.detail;
    if (code >= 144 && code <= 150) {
      const nvl = parseNvlink5(fields.detail);
      if (nvl) {
        finding.nvlink5 = nvl;
        finding.fatal = nvl.fatal;
        finding.link = nvl.link;
      }
    } else if (code === 74) {
      const link = XID74_LINK.exec(fields.detail);
      if (link) finding.link = Number(link[1]);
    } else if (code === 154) {
      const ra = RECOVERY_CHANGE.exec(fields.detail);
      if (ra) {
        finding.recoveryAction = {
          from: parseInt(ra[1] ?? "0", 16),
          fromName: ra[2] ?? "",
          to: parseInt(ra[3] ?? "0", 16),
          toName: ra[4] ?? "",
        };
      }
    }
    return finding;
  }

  const sxid = SXID_LINE.exec(msg);
  if (sxid) {
    const code = Number(sxid[4]);
    const finding: KmsgFinding = { source: "kmsg", kind: "sxid", sxid: code, ...base(rec) };
    withBus(finding, sxid[3]);
    if (sxid[2]) finding.nvswitch = Number(sxid[2]);
    if (sxid[5]) finding.fatal = sxid[5] === "Fatal";
    const detail = (sxid[6] ?? "").trim();
    if (detail !== "") finding.detail = detail;
    const link = LINK_WORD.exec(detail);
    if (link) finding.link = Number(link[1]);
    return finding;
  }

  const identity = GPU_IDENTITY.exec(msg);
  if (identity) {
    return withBus({ source: "kmsg", kind: "gpu_identity", uuid: identity[2] ?? "", ...base(rec) }, identity[1]);
  }

  for (const re of FALLEN_SINGLE) {
    const m = re.exec(msg);
    if (m) return withBus({ source: "kmsg", kind: "fallen_off_bus", xid: 79, ...base(rec) }, m[1]);
  }

  const serialIs = SERIAL_IS.exec(msg);
  if (serialIs) return withBus({ source: "kmsg", kind: "board_serial", serial: serialIs[2] ?? "", ...base(rec) }, serialIs[1]);

  const serial = BOARD_SERIAL.exec(msg);
  if (serial) return { source: "kmsg", kind: "board_serial", serial: serial[1] ?? "", ...base(rec) };

  if (CRASH_DUMP.test(msg)) return { source: "kmsg", kind: "crash_dump", ...base(rec) };

  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Streaming parser

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
        finding = withBus({ source: "kmsg", kind: "fallen_off_bus", xid: 79, ...base(pending.first), message: pending.lines.join("\n") }, pending.rawBus);
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

// ---------------------------------------------------------------------------------------------
// Finding → HealthEvent

/** The HealthEvent fields a kmsg finding determines; the agent adds seq, bootId and gpu. */
export type KmsgEventFields = Omit<HealthEvent, "seq" | "bootId" | "gpu" | "check"> & { check: "xid" | "sxid" | "gpu_crash_dump" };

export interface KmsgEventOptions {
  catalog?: XidCatalog;
  /** Wall-clock time of the finding (kmsg carries only monotonic µs); default now. */
  time?: Date;
}

const MAX_MESSAGE = 4096;

const clip = (s: string) => cutText(s, MAX_MESSAGE);

function where(f: KmsgFinding): string {
  return f.pciBusId ? ` on ${f.pciBusId}` : "";
}

/** An Xid line or the fallen-off-the-bus text as an Xid occurrence (xid.ts judges it); undefined for other kinds. */
export function kmsgXidOccurrence(finding: KmsgFinding, where: string | undefined = finding.pciBusId): XidOccurrence | undefined {
  if (finding.kind !== "xid" && finding.kind !== "fallen_off_bus") return undefined;
  const extra: NonNullable<XidOccurrence["extra"]> = {};
  if (finding.nvlink5) extra.nvlink5 = finding.nvlink5;
  if (finding.recoveryAction) extra.recoveryActionTo = finding.recoveryAction.to;
  return {
    xid: finding.xid ?? 79,
    source: finding.kind === "fallen_off_bus" ? "fallen-off-bus text" : "kernel log",
    ...(where ? { where } : {}),
    detail: finding.message,
    extra,
  };
}

/**
 * The health-event fields for a finding, or null when it carries no health verdict (gpu_identity,
 * board_serial) or its Xid is ignored by config. Xid and fallen-off-bus → check `xid`, code "79" etc.,
 * verdict from the catalog (NVLink5 lines decoded, Xid 154's recovery action reported verbatim).
 * Repeat rules need history and are applied by the caller (`classifyXidOccurrence`).
 */
export function kmsgFindingToEvent(finding: KmsgFinding, opts: KmsgEventOptions = {}): KmsgEventFields | null {
  const catalog = opts.catalog ?? XID_CATALOG;
  const time = (opts.time ?? new Date()).toISOString();
  switch (finding.kind) {
    case "xid":
    case "fallen_off_bus": {
      const xid = xidFinding(kmsgXidOccurrence(finding)!, catalog);
      if (xid === null) return null;
      const { code, severity, action, message } = xid.finding;
      return { time, check: "xid", ...(code !== undefined ? { code } : {}), severity, action, message: clip(message) };
    }
    case "sxid": {
      const code = finding.sxid ?? 0;
      const verdict: { severity: Severity; action: RecommendedAction } =
        finding.fatal === true
          ? { severity: "unhealthy", action: "reboot" }
          : finding.fatal === false
            ? { severity: "degraded", action: "none" }
            : { severity: "degraded", action: "contact_support" };
      const sw = finding.nvswitch !== undefined ? `NVSwitch ${finding.nvswitch}` : "NVSwitch";
      return {
        time,
        check: "sxid",
        code: String(code),
        ...verdict,
        message: clip(`SXid ${code} on ${sw}${where(finding)}: ${finding.message}`),
      };
    }
    case "crash_dump":
      return {
        time,
        check: "gpu_crash_dump",
        severity: "degraded",
        action: "none",
        message: clip(`the NVIDIA driver wrote a GPU crash dump${where(finding)} (run nvidia-bug-report.sh before unloading the module): ${finding.message}`),
      };
    case "gpu_identity":
    case "board_serial":
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Reader

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
