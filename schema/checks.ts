// THE catalog of the agent's checks, as data: every check name a health event may carry, the
// agent's and the reconciler's lists are derived from it. For each check:
//   kind    edge: one-off occurrences (a kernel-log line, an NVML event) that nothing reports
//           cleared; level: a condition the agent re-evaluates and reports cleared ("healthy").
//   scope   gpu: about one GPU; node: about the machine.
//   codes   what the codes mean, which of them stay open until the node reboots (sticky: the agent
//           never reports them cleared), and which Xid a code means the same as (its twin: the
//           reconciler gives it that Xid's persistence from the Xid catalog).
// A check the agent runs and this file does not list cannot be reported (test/check-catalog.test.ts).

export type CheckKind = "edge" | "level";
export type CheckScope = "gpu" | "node";

export interface CheckCode {
  readonly meaning: string;
  /** Never reported cleared in this boot: only a reboot (a new agent process) starts over. */
  readonly sticky?: boolean;
  /** The Xid this finding means the same as. */
  readonly xid?: number;
}

export interface CheckSpec {
  readonly kind: CheckKind;
  readonly scope: CheckScope;
  readonly summary: string;
  /** The Xid every finding of this check means the same as, whatever its code. */
  readonly xid?: number;
  /** Known codes; absent for checks whose code is open-ended (an Xid number, a driver verdict). */
  readonly codes?: Readonly<Record<string, CheckCode>>;
}

const catalog = <T extends Record<string, CheckSpec>>(c: T): { readonly [K in keyof T]: T[K] } => Object.freeze(c);

export const CHECKS = catalog({
  xid: { kind: "edge", scope: "gpu", summary: "an Xid from NVML's events or the kernel log (code: the Xid); judged by the Xid catalog" },
  sxid: { kind: "edge", scope: "node", summary: "an NVSwitch SXid in the kernel log" },
  gpu_crash_dump: { kind: "edge", scope: "gpu", summary: "the driver wrote a GPU crash dump" },
  gpu_lost: { kind: "level", scope: "gpu", summary: "NVML answers GPU_IS_LOST", xid: 79, codes: { lost: { meaning: "fallen off the bus", sticky: true } } },
  reset_required: { kind: "level", scope: "gpu", summary: "NVML answers RESET_REQUIRED", codes: { required: { meaning: "the GPU needs a reset" } } },
  gpu_unreadable: { kind: "level", scope: "gpu", summary: "no handle or identity can be read (code: NVML's return code)" },
  gpu_count: { kind: "level", scope: "node", summary: "fewer GPUs than expected", codes: { missing: { meaning: "a GPU fell off or failed to initialise" } } },
  recovery_action: { kind: "level", scope: "gpu", summary: "the driver's own recovery verdict (R570+; code: the action)" },
  ecc: {
    kind: "level",
    scope: "gpu",
    summary: "ECC errors",
    codes: { dbe: { meaning: "uncorrectable (double-bit) errors", xid: 48 }, sbe_rate: { meaning: "corrected errors above their hourly rate" } },
  },
  row_remap: {
    kind: "level",
    scope: "gpu",
    summary: "row remapping (Ampere and later)",
    codes: { failed: { meaning: "no spare rows left", sticky: true, xid: 64 }, pending: { meaning: "a remap waits for a GPU reset", xid: 63 } },
  },
  retired_pages: {
    kind: "level",
    scope: "gpu",
    summary: "page retirement (before Ampere)",
    codes: { pending: { meaning: "a retirement waits for a GPU reset" } },
  },
  thermal: {
    kind: "level",
    scope: "gpu",
    summary: "temperature against the GPU's own thresholds",
    codes: { shutdown: { meaning: "at the shutdown threshold" }, slowdown: { meaning: "at the slowdown threshold" } },
  },
  clocks: {
    kind: "level",
    scope: "gpu",
    summary: "hardware clock slowdown",
    codes: { hw_slowdown: { meaning: "HW slowdown, thermal or power brake in most samples" } },
  },
  nvlink: {
    kind: "level",
    scope: "gpu",
    summary: "NVLink links",
    codes: { link_down: { meaning: "a link is inactive" }, errors: { meaning: "CRC, replay or recovery errors above their rate" } },
  },
  pcie: {
    kind: "level",
    scope: "gpu",
    summary: "the PCIe link",
    codes: { width: { meaning: "narrower than capable while busy" }, replays: { meaning: "replays above their rate" } },
  },
  fabric: { kind: "level", scope: "gpu", summary: "the GPU's NVLink fabric registration and health (code: the state)" },
  fabric_manager: {
    kind: "level",
    scope: "node",
    summary: "the NVIDIA fabric manager on an NVSwitch system",
    codes: { not_running: { meaning: "no GPU registered with the fabric" }, stalled: { meaning: "registration still in progress after its grace" } },
  },
  persistence_mode: { kind: "level", scope: "gpu", summary: "persistence mode", codes: { disabled: { meaning: "off" } } },
  driver: {
    kind: "level",
    scope: "node",
    summary: "driver versions",
    codes: { version_mismatch: { meaning: "the kernel module and libnvidia-ml are from different drivers" } },
  },
  infiniband: {
    kind: "level",
    scope: "node",
    summary: "InfiniBand / RoCE ports (sysfs)",
    codes: {
      port_down: { meaning: "a port that was up is not ACTIVE / LinkUp" },
      rate: { meaning: "a port runs below its expected rate" },
      link_downed: { meaning: "the port's link went down and up again" },
      symbol_errors: { meaning: "symbol errors above their rate" },
      rcv_errors: { meaning: "receive errors above their rate" },
    },
  },
  nvml: {
    kind: "level",
    scope: "node",
    summary: "NVML itself",
    codes: {
      driver_unresponsive: { meaning: "an NVML call outlived its deadline" },
      unusable: { meaning: "a libnvidia-ml file is there but cannot be used (truncated, wrong CPU, not NVML, nvmlInit fails)" },
    },
  },
  spool: { kind: "level", scope: "node", summary: "the agent's event spool", codes: { unwritable: { meaning: "events are kept in memory only" } } },
});

export type CheckName = keyof typeof CHECKS;
export const CHECK_NAMES = Object.freeze(Object.keys(CHECKS) as CheckName[]);

export function isCheckName(name: string): name is CheckName {
  return Object.hasOwn(CHECKS, name);
}

function codeOf(check: string, code: string | undefined): CheckCode | undefined {
  if (!isCheckName(check) || code === undefined) return undefined;
  const spec: CheckSpec = CHECKS[check];
  const codes = spec.codes;
  return codes !== undefined && Object.hasOwn(codes, code) ? codes[code] : undefined;
}

/** Checks whose findings are one-off occurrences, never reported cleared. */
export const EDGE_CHECKS: ReadonlySet<string> = new Set(CHECK_NAMES.filter((c) => CHECKS[c].kind === "edge"));

/** A finding that stays open until the node reboots: its code is sticky, or it asks for the GPU to be replaced. */
export function isSticky(finding: { check: string; code?: string; action?: string }): boolean {
  return finding.action === "replace" || codeOf(finding.check, finding.code)?.sticky === true;
}

/** A non-Xid finding that means what an Xid means: it takes that Xid's persistence from the Xid catalog. */
export interface CheckXidTwin {
  readonly check: string;
  /** Absent: any code of the check. */
  readonly code?: string;
  readonly xid: number;
}

export const CHECK_XID_TWINS: readonly CheckXidTwin[] = Object.freeze(
  CHECK_NAMES.flatMap((check) => {
    const spec: CheckSpec = CHECKS[check];
    const whole: CheckXidTwin[] = spec.xid === undefined ? [] : [Object.freeze({ check, xid: spec.xid })];
    const codes = spec.codes ?? {};
    return [...whole, ...Object.entries(codes).flatMap(([code, c]) => (c.xid === undefined ? [] : [Object.freeze({ check, code, xid: c.xid })]))];
  }),
);
