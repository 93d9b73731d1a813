// What a kernel-log record says about a GPU: the finding type (Xid, SXid, fallen off the bus,
// crash dump, GPU identity, board serial) and the NVRM / NVSwitch line matchers that produce it
// from one record on its own. What needs neighbouring records (a message split over several, a
// serial or crash dump attributed to the GPU named just before) is the parser's (parser.ts); the
// patterns it needs for that are exported from here so that every driver line format lives in
// one file.
import { nvlink5SubCode } from "../../schema/xid-catalog.ts";
import { normalizePciBusId } from "../pci.ts";
import type { KmsgRecord } from "./record.ts";

// A PCI bus id as the driver prints it (`0000:3b:00.0`, `3b:00`, …).
const BDF_SOURCE = String.raw`(?:[0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}(?:\.[0-7])?`;

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
export const FALLEN_HEAD_THE = new RegExp(String.raw`NVRM: The NVIDIA GPU (?:PCI:)?(${BDF_SOURCE})\s*$`);
export const FALLEN_HEAD_AT = new RegExp(String.raw`NVRM: GPU (?:at )?(?:PCI:)?(${BDF_SOURCE}):?\s*$`);
export const FALLEN_TAIL = /fallen off the bus/;
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

/** The fields every finding takes from the record it came from. */
export function findingBase(rec: KmsgRecord): Base {
  const out: Base = { message: rec.message };
  if (rec.usec !== undefined) out.usec = rec.usec;
  if (rec.seq !== undefined) out.seq = rec.seq;
  if (rec.level !== undefined) out.level = rec.level;
  return out;
}

/** Sets the finding's bus id (NVML form, and as printed) when `raw` is one; returns the finding. */
export function withBus(finding: KmsgFinding, raw: string | undefined): KmsgFinding {
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
    const finding: KmsgFinding = { source: "kmsg", kind: "xid", xid: code, ...findingBase(rec) };
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
    const finding: KmsgFinding = { source: "kmsg", kind: "sxid", sxid: code, ...findingBase(rec) };
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
    return withBus({ source: "kmsg", kind: "gpu_identity", uuid: identity[2] ?? "", ...findingBase(rec) }, identity[1]);
  }

  for (const re of FALLEN_SINGLE) {
    const m = re.exec(msg);
    if (m) return withBus({ source: "kmsg", kind: "fallen_off_bus", xid: 79, ...findingBase(rec) }, m[1]);
  }

  const serialIs = SERIAL_IS.exec(msg);
  if (serialIs) return withBus({ source: "kmsg", kind: "board_serial", serial: serialIs[2] ?? "", ...findingBase(rec) }, serialIs[1]);

  const serial = BOARD_SERIAL.exec(msg);
  if (serial) return { source: "kmsg", kind: "board_serial", serial: serial[1] ?? "", ...findingBase(rec) };

  if (CRASH_DUMP.test(msg)) return { source: "kmsg", kind: "crash_dump", ...findingBase(rec) };

  return undefined;
}
