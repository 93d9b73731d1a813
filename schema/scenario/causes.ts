// The causes of interruption a scenario's chaos can draw (`chaos.causes`), each with what
// Navarch sees of it: an Xid, a finding of one of the agent's checks, a host that stops
// answering, a drain for host maintenance, or nothing at all (a job that fails for its own
// reasons, or an operator's planned restart). The names follow the root-cause table of
// Meta's Llama 3 405B pre-training (The Llama 3 Herd of Models, 2024, table 5), so that a
// scenario can replay that mix (scenarios/llama3-54d.yaml); a few more (Xid 94 and 120, row
// remapping, NVLink) name faults that table does not. reconciler/sim/fault-trace.ts plays them.
import type { RecommendedAction } from "../wire.ts";
import type { CheckName } from "../checks.ts";

export type CauseEffect =
  /** An Xid on one GPU, judged by the Xid catalog (the jobs on the node die). */
  | { kind: "xid"; xid: number }
  /** A finding of one of the agent's checks (the jobs on the node die). */
  | { kind: "check"; check: CheckName; code: string; severity: "unhealthy" | "degraded"; action: RecommendedAction; message: string }
  /** The job fails for a reason no node check sees (a software bug, an NCCL watchdog, silent data corruption): it restarts from its last checkpoint. */
  | { kind: "job_failure" }
  /** An operator stops the job with a checkpoint and restarts it (a planned interruption: a config change, a firmware upgrade). */
  | { kind: "planned" }
  /** A human drains one of the job's nodes for host maintenance and reboots it (`navarch nodes reboot`). */
  | { kind: "maintenance" }
  /** The host stops (power supply, CPU, memory, SSD, chassis): its agent falls silent, the jobs on it die. */
  | { kind: "host_down" };

export interface Cause {
  readonly effect: CauseEffect;
  /** What it is, and why it is mapped so. */
  readonly meaning: string;
  /** Planned (an operator's), as opposed to unexpected. */
  readonly planned?: boolean;
}

const xid = (code: number, meaning: string): Cause => ({ effect: { kind: "xid", xid: code }, meaning });

export const CAUSES = {
  faulty_gpu: xid(79, "a GPU fails (Llama 3: faulty GPU): the driver finds it fallen off the bus, Xid 79"),
  gpu_hbm3: xid(48, "an uncorrectable HBM3 memory error: a double-bit ECC error, Xid 48 (the row is remapped at the next reset)"),
  gpu_sram: xid(95, "an uncorrectable error in the GPU's on-chip SRAM: an uncontained ECC error, Xid 95"),
  gpu_ecc_contained: xid(94, "an ECC error contained to the application: Xid 94 (the job dies, the GPU is fine)"),
  gsp: xid(119, "the GPU System Processor stops answering: a GSP RPC timeout, Xid 119"),
  gsp_error: xid(120, "a GSP error, Xid 120"),
  gpu_thermal: {
    effect: {
      kind: "check",
      check: "thermal",
      code: "shutdown",
      severity: "unhealthy",
      action: "contact_support",
      message: "temperature at the shutdown threshold (a failed thermal interface or sensor)",
    },
    meaning: "a GPU's thermal interface or sensor fails: the thermal check finds it at its shutdown threshold",
  },
  row_remap_failure: {
    effect: {
      kind: "check",
      check: "row_remap",
      code: "failed",
      severity: "unhealthy",
      action: "contact_support",
      message: "row remapping failed: no spare rows left",
    },
    meaning: "an HBM bank has no spare rows left: the row-remapping check (the twin of Xid 64); the GPU must be replaced",
  },
  nvlink: {
    effect: { kind: "check", check: "nvlink", code: "link_down", severity: "unhealthy", action: "reset_gpu", message: "NVLink link inactive" },
    meaning: "an NVLink link goes down: the NVLink check (a GPU reset or a reboot brings it back)",
  },
  nic: {
    effect: {
      kind: "check",
      check: "infiniband",
      code: "port_down",
      severity: "unhealthy",
      action: "contact_support",
      message: "InfiniBand port down after being up",
    },
    meaning: "the host's network card fails: its InfiniBand port goes down (the node must be replaced)",
  },
  network_switch_cable: {
    effect: {
      kind: "check",
      check: "infiniband",
      code: "link_downed",
      severity: "degraded",
      action: "none",
      message: "InfiniBand link went down and up again",
    },
    meaning: "a switch or a cable fails: the job's collectives break, the node's link flaps and comes back (the node itself is fine)",
  },
  software_bug: { effect: { kind: "job_failure" }, meaning: "the training job fails for its own reasons: no node check sees it" },
  nccl_watchdog: { effect: { kind: "job_failure" }, meaning: "an NCCL watchdog times out a collective: the job dies, no node check sees why" },
  silent_data_corruption: {
    effect: { kind: "job_failure" },
    meaning: "silent data corruption found by the job (a loss spike): it restarts from a checkpoint; no node check sees it",
  },
  host_maintenance: { effect: { kind: "maintenance" }, meaning: "unplanned host maintenance: a human drains and reboots one of the job's nodes" },
  planned: { effect: { kind: "planned" }, meaning: "a planned interruption (firmware, configuration, dataset): checkpoint, stop, restart", planned: true },
  other: {
    effect: { kind: "host_down" },
    meaning: "the host stops (SSD, power supply, chassis, IO board, CPU, system memory, dependencies): its agent falls silent",
  },
} as const satisfies Record<string, Cause>;

export type CauseName = keyof typeof CAUSES;
export const CAUSE_NAMES = Object.keys(CAUSES) as CauseName[];

/** A cause by name: a catalog entry, or `xid_N` for an Xid chaos draws by weight (`chaos.xids`). */
export function causeOf(name: string): Cause | undefined {
  if (name in CAUSES) return CAUSES[name as CauseName];
  const m = /^xid_(\d+)$/.exec(name);
  return m === null ? undefined : xid(Number(m[1]), `Xid ${m[1]}`);
}
