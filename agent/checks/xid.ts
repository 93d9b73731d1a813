// The one conversion of an Xid occurrence into a finding, whichever source saw it (NVML's
// events, a kernel-log line, the fallen-off-the-bus text): the verdict comes from the Xid
// catalog, and so do whether it stays open (persistence) and when repeats escalate.
import { classifyXid, lookupXid, XID_CATALOG, type XidCatalog } from "../../schema/xid-catalog.ts";
import type { Finding } from "./finding.ts";
import type { Escalation } from "./incident-tracker.ts";

export type XidSource = "NVML event" | "kernel log" | "fallen-off-bus text";

export interface XidOccurrence {
  xid: number;
  source: XidSource;
  /** Where, for the message: "GPU 2 (00000000:3A:00.0)" or a bus id. */
  where?: string;
  /** The kernel's text, appended to the message. */
  detail?: string;
  /** Decoded by the kmsg parser: NVLink5 (144–150) fields and Xid 154's new recovery action. */
  extra?: Parameters<typeof classifyXid>[1];
}

export interface XidFinding {
  finding: Finding;
  /** Does not clear by itself in this boot (the catalog's persistence is not transient). */
  sticky: boolean;
  escalate?: Escalation;
}

/** The finding for one Xid, or null when the catalog (or an override) ignores the code. */
export function xidFinding(o: XidOccurrence, catalog: XidCatalog = XID_CATALOG): XidFinding | null {
  const entry = lookupXid(o.xid, catalog);
  if (entry.ignored) return null;
  const verdict = classifyXid(entry, o.extra ?? {});
  const what = entry.known ? entry.meaning : "unknown Xid";
  const message = `Xid ${o.xid} (${what})${o.where ? ` on ${o.where}` : ""} [${verdict.basis}; ${o.source}]${o.detail ? `: ${o.detail}` : ""}`;
  const finding: Finding = { check: "xid", code: String(o.xid), severity: verdict.severity, action: verdict.action, message };
  return { finding, sticky: verdict.persistence !== "transient", ...(entry.escalate ? { escalate: entry.escalate } : {}) };
}
