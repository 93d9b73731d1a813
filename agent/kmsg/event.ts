// A kernel-log finding as a health verdict: the HealthEvent fields it determines (check, code,
// severity, action, message) and, for an Xid or the fallen-off-the-bus text, the Xid occurrence
// that the Xid check (agent/checks/xid.ts) judges against the catalog. Findings that carry no
// verdict (a GPU's identity, its board serial) map to nothing.
import type { HealthEvent, RecommendedAction, Severity } from "../../schema/wire.ts";
import { cutText } from "../../schema/text.ts";
import { XID_CATALOG, type XidCatalog } from "../../schema/xid-catalog.ts";
import { xidFinding, type XidOccurrence } from "../checks/xid.ts";
import type { KmsgFinding } from "./match.ts";

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
