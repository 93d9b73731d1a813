// THE Xid table of the project, as data. Every Xid code that NVIDIA's catalog and the public GPU
// health agents classify (docs/gpu-health.md names them, NVLink5 144–150 and NVML's 999), with its
// meaning, NVIDIA's catalog buckets where recorded, and our verdict: severity,
// recommended action (our wire vocabulary), persistence and category.
//
// How a verdict was reached:
//   - action = NVIDIA's *immediate* bucket, mapped as NVSentinel maps it (RESET_GPU, WORKFLOW_XID_48,
//     RESET_FABRIC → reset_gpu; RESTART_BM → reboot; IGNORE → none; anything else → contact_support),
//     except RESTART_APP → restart_app (our vocabulary has it; NVSentinel's older proto did not).
//   - severity/persistence: unhealthy when the GPU cannot be trusted until something is done to it;
//     degraded when the application (or a one-off) is the likely cause; the repeat rule escalates.
//   - persistence: "fatal" never clears by itself (a human or a replacement clears it);
//     "reboot" clears when the node's boot id changes (or the GPU is reset);
//     "transient" clears by itself (the application restarts, the window passes).
//   - codes NVIDIA's catalog rows do not cover (only named by other agents' lists) have no `nvidia` field
//     and take the treatment of their closest row (video engines like 68, copy engines like 109…).
// Every deliberate disagreement with an anchor is a one-line `// disagree:` comment on the row.
// Operators change any of it per code through `applyXidOverrides` (config `xid_overrides`).
import * as v from "valibot";
import { ACTIONS, SEVERITIES, type RecommendedAction, type Severity } from "./wire.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export const XID_CATEGORIES = [
  "app",
  "memory",
  "nvlink",
  "c2c",
  "gsp",
  "pcie",
  "thermal",
  "power",
  "firmware",
  "engine",
  "video",
  "display",
  "driver",
  "security",
  "recovery",
  "unknown",
] as const;
export type XidCategory = (typeof XID_CATEGORIES)[number];

/** fatal: never clears by itself; reboot: clears on a new boot id (or GPU reset); transient: clears by itself. */
export const XID_PERSISTENCES = ["fatal", "reboot", "transient"] as const;
export type XidPersistence = (typeof XID_PERSISTENCES)[number];

/** A repeat rule: `count` occurrences on the same GPU within `windowMs` (this one included) escalate. */
export interface XidEscalation {
  readonly count: number;
  readonly windowMs: number;
  readonly severity: Severity;
  readonly action: RecommendedAction;
}

/** NVIDIA's Xid-Catalog.xlsx "Resolution Bucket", verbatim, where known. */
export interface NvidiaBuckets {
  readonly immediate: string;
  readonly investigatory?: string;
}

export interface XidCatalogEntry {
  readonly code: number;
  /** Short stable name (NVIDIA's mnemonic where there is one). */
  readonly name: string;
  readonly meaning: string;
  readonly category: XidCategory;
  /** Our default verdict for one occurrence. */
  readonly severity: Severity;
  readonly action: RecommendedAction;
  readonly persistence: XidPersistence;
  /** Usually the application's fault (bad kernel, bad address, killed process), not the GPU's. */
  readonly appCaused: boolean;
  readonly escalate?: XidEscalation;
  readonly nvidia?: NvidiaBuckets;
  /** NVLink5 (144–150): the hardware unit that the kmsg line names; the verdict is decoded per line. */
  readonly nvlink5Unit?: string;
  /** false for codes this table does not list (see `lookupXid`). */
  readonly known: boolean;
  /** Set by an override: findings with this code produce no health event. */
  readonly ignored: boolean;
  /** The validated override applied to this entry, if any (decoders apply it last). */
  readonly override?: XidOverride;
}

type Row = Omit<XidCatalogEntry, "known" | "ignored" | "override">;
type RowOpts = Pick<Row, "escalate" | "nvidia" | "nvlink5Unit"> & { appCaused?: boolean };

function row(
  code: number,
  name: string,
  meaning: string,
  category: XidCategory,
  severity: Severity,
  action: RecommendedAction,
  persistence: XidPersistence,
  opts: RowOpts = {},
): Row {
  const { appCaused = false, ...rest } = opts;
  return { code, name, meaning, category, severity, action, persistence, appCaused, ...rest };
}

function nv(immediate: string, investigatory?: string): NvidiaBuckets {
  return investigatory === undefined ? { immediate } : { immediate, investigatory };
}

/** Same GPU, `count` times within `windowMs` → `severity` + `action`. */
function repeat(count: number, windowMs: number, severity: Severity, action: RecommendedAction): XidEscalation {
  return { count, windowMs, severity, action };
}

const APP_REPEAT = repeat(3, DAY_MS, "unhealthy", "contact_support");

// prettier-ignore
const ROWS: readonly Row[] = [
  row(8, "GPU_STOPPED_PROCESSING", "GPU stopped processing (idle timeout)", "app", "degraded", "restart_app", "transient", {
    appCaused: true,
    nvidia: nv("RESTART_APP", "CONTACT_SUPPORT"),
  }),
  row(13, "GRAPHICS_ENGINE_EXCEPTION", "Graphics Engine Exception", "app", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("RESTART_APP", "WORKFLOW_XID_13"),
  }),
  // disagree: NVSentinel maps 13 to NONE and k8s-dp ignores it; we degrade and escalate on repeats because NVSentinel #270/#374 ask for the repeated-GPC/TPC workflow.
  row(31, "GPU_MEMORY_PAGE_FAULT", "GPU memory page fault (MMU fault)", "app", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("RESTART_APP", "WORKFLOW_XID_31"),
  }),
  // disagree: NVSentinel's analyzer escalates at 2 in 24 h; we take 3 because a crashing job usually repeats once on its own restart.
  // disagree: GPUd adds HW_INSPECTION to 31 (#350 asks it to start as Warning); we follow NVIDIA's RESTART_APP.
  row(32, "PBDMA_ERROR", "PBDMA error / invalid or corrupted push buffer stream", "engine", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("RESTART_APP", "CHECK_APP"),
  }),
  // disagree: GPUd calls 32 Fatal (REBOOT + HW); we follow NVIDIA's RESTART_APP and let the repeat rule catch real corruption.
  row(43, "GPU_STOPPED_PROCESSING_RESET_CHANNEL", "GPU stopped processing (reset-channel verification)", "app", "degraded", "none", "transient", {
    appCaused: true,
    escalate: repeat(5, DAY_MS, "unhealthy", "contact_support"),
    nvidia: nv("IGNORE", "CONTACT_SUPPORT"),
  }),
  // disagree: Navarch's Go predecessor treated 43 as fatal; NVIDIA, GPUd, k8s-dp and healthagent say app/ignore, so degraded with a 5-in-24 h repeat rule.
  row(45, "PREEMPTIVE_CLEANUP", "Preemptive cleanup after an earlier error (channel torn down)", "app", "degraded", "none", "transient", {
    appCaused: true,
    nvidia: nv("WORKFLOW_XID_45", "solo: RESTART_FM; not solo: IGNORE"),
  }),
  // disagree: NVSentinel maps 45 to CONTACT_SUPPORT (its repeated-45 rule made 672 false fatals, #1710); k8s-dp PR #1333 calls it a predictor. We degrade, no repeat rule: the Xid it follows carries the verdict.
  row(48, "DBE_ECC_ERROR", "Double-bit (uncorrectable) ECC error", "memory", "unhealthy", "reset_gpu", "reboot", {
    escalate: repeat(5, DAY_MS, "unhealthy", "contact_support"),
    nvidia: nv("WORKFLOW_XID_48"),
  }),
  // disagree: GPUd asks REBOOT + HW on the first 48; we follow NVSentinel (COMPONENT_RESET, ≥ 5 in 24 h → CONTACT_SUPPORT).
  row(54, "AUX_POWER_NOT_CONNECTED", "Auxiliary power is not connected to the GPU board", "power", "degraded", "contact_support", "fatal", {
    nvidia: nv("CHECK_MECHANICALS"),
  }),
  // disagree: NVSentinel treats 54 as fatal (CONTACT_SUPPORT); GPUd and DCGM warn. A cabling fault never heals itself, but the GPU still runs: degraded + fatal persistence.
  row(56, "DISPLAY_ENGINE_ERROR", "Display engine error", "display", "degraded", "reset_gpu", "reboot"),
  // disagree: aznhc fails on 56; datacenter GPUs drive no display, so we only degrade.
  row(57, "VIDEO_MEMORY_INTERFACE_PROGRAMMING_ERROR", "Error programming video memory interface", "memory", "unhealthy", "reset_gpu", "reboot"),
  row(58, "UNSTABLE_VIDEO_MEMORY_INTERFACE", "Unstable video memory interface detected", "memory", "unhealthy", "reset_gpu", "reboot"),
  row(61, "PMU_BREAKPOINT", "Internal micro-controller (PMU) breakpoint / warning", "firmware", "unhealthy", "contact_support", "reboot", {
    nvidia: nv("CONTACT_SUPPORT"),
  }),
  // disagree: DCGM only warns (THERMAL, "EDPP power brake"); NVIDIA, GPUd and NVSentinel treat 61 as fatal: we follow the majority.
  row(62, "PMU_HALT", "Internal micro-controller (PMU) halt", "firmware", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "CONTACT_SUPPORT") }),
  row(63, "ROW_REMAP_EVENT", "ECC page retirement or row-remapping recording event", "memory", "degraded", "none", "reboot", {
    nvidia: nv("IGNORE", "IGNORE"),
  }),
  // disagree: GKE and aznhc call 63 critical, NVIDIA says IGNORE; we degrade until reboot and let NVML's remapped-rows verdict (pending → reset, failed → replace) decide.
  row(64, "ROW_REMAP_FAILURE", "ECC page retirement or row-remapper recording failure", "memory", "unhealthy", "contact_support", "fatal", {
    nvidia: nv("RESET_GPU", "CONTACT_SUPPORT"),
  }),
  // disagree: NVIDIA's immediate bucket is RESET_GPU; a failed remap does not heal (GPUd: HW_INSPECTION), so we take the investigatory CONTACT_SUPPORT.
  row(65, "VIDEO_PROCESSOR_EXCEPTION", "Video processor exception", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  // disagree: aznhc fails on 65; we treat it like NVDEC0 (68), which NVIDIA buckets RESTART_APP.
  row(66, "ILLEGAL_ACCESS_BY_DRIVER", "Illegal access by driver", "driver", "degraded", "none", "transient"),
  row(68, "NVDEC0_EXCEPTION", "NVDEC0 exception", "video", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("RESTART_APP", "CONTACT_SUPPORT"),
  }),
  // disagree: GPUd calls 68 Fatal and k8s-dp ignores it (#945 disputes both); we follow NVIDIA's RESTART_APP with a repeat rule.
  row(69, "GRAPHICS_ENGINE_CLASS_ERROR", "Graphics Engine class error", "app", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("RESTART_APP", "CHECK_APP"),
  }),
  // disagree: GPUd (Fatal) and aznhc fail on 69; NVIDIA and NVSentinel say RESTART_APP: we degrade with a repeat rule.
  row(70, "CE3_ERROR", "Copy engine 3 (CE3) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(71, "CE4_ERROR", "Copy engine 4 (CE4) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(72, "CE5_ERROR", "Copy engine 5 (CE5) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(73, "NVENC2_ERROR", "NVENC2 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  // disagree: aznhc fails on 73; we treat video engines like 68.
  row(74, "NVLINK_ERROR", "NVLink error", "nvlink", "unhealthy", "contact_support", "reboot", { nvidia: nv("WORKFLOW_NVLINK_ERR", "CONTACT_SUPPORT") }),
  // disagree: GPUd asks REBOOT + HW; we follow NVSentinel (CONTACT_SUPPORT) for the action and GPUd for clearing on a new boot.
  row(75, "CE6_ERROR", "Copy engine 6 (CE6) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(76, "CE7_ERROR", "Copy engine 7 (CE7) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(77, "CE8_ERROR", "Copy engine 8 (CE8) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(79, "GPU_FALLEN_OFF_BUS", "GPU has fallen off the bus", "pcie", "unhealthy", "reboot", "fatal", { nvidia: nv("RESTART_BM", "CONTACT_SUPPORT") }),
  // disagree: NVIDIA's bucket (RESTART_BM) says a reboot clears 79; the finding is fatal so only a new boot
  // or a human clears it, never silence, and the remediation ladder replaces a node rebooted twice in a week
  // (GPUd escalates to HW after 2 reboots too).
  row(80, "CORRUPTED_DATA_SENT_TO_GPU", "Corrupted data sent to GPU", "pcie", "unhealthy", "reset_gpu", "reboot"),
  row(81, "VGA_SUBSYSTEM_ERROR", "VGA subsystem error", "display", "degraded", "reset_gpu", "reboot"),
  // disagree: aznhc fails on 81; datacenter GPUs drive no display, so we only degrade.
  row(82, "NVJPG0_ERROR", "NVJPG0 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(83, "NVDEC1_ERROR", "NVDEC1 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(84, "NVDEC2_ERROR", "NVDEC2 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(85, "CE9_ERROR", "Copy engine 9 (CE9) error", "engine", "degraded", "reset_gpu", "reboot"),
  row(86, "OFA_EXCEPTION", "Optical flow accelerator (OFA) exception", "video", "degraded", "restart_app", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
  }),
  row(88, "NVDEC3_ERROR", "NVDEC3 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(89, "NVDEC4_ERROR", "NVDEC4 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(92, "HIGH_SBE_RATE", "High single-bit ECC error rate", "memory", "degraded", "none", "transient", { nvidia: nv("IGNORE", "CONTACT_SUPPORT") }),
  // disagree: aznhc fails on 92; NVIDIA, GPUd and NVSentinel ignore it: we degrade (NVML's SBE-rate check owns the verdict).
  row(94, "CONTAINED_ECC_ERROR", "Contained ECC error (the affected application was stopped)", "memory", "degraded", "restart_app", "transient", {
    nvidia: nv("RESTART_APP", "IGNORE (sympathetic)"),
  }),
  // disagree: GPUd marks the first 94 Fatal; users disable it (gpu-operator #1065), DCGM warns: degraded, NVML row remapping owns the memory verdict.
  row(95, "UNCONTAINED_ECC_ERROR", "Uncontained ECC error", "memory", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "IGNORE (sympathetic)") }),
  row(96, "NVDEC5_ERROR", "NVDEC5 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(97, "NVDEC6_ERROR", "NVDEC6 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(98, "NVDEC7_ERROR", "NVDEC7 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(99, "NVJPG1_ERROR", "NVJPG1 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(100, "NVJPG2_ERROR", "NVJPG2 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(101, "NVJPG3_ERROR", "NVJPG3 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(102, "NVJPG4_ERROR", "NVJPG4 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(103, "NVJPG5_ERROR", "NVJPG5 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(104, "NVJPG6_ERROR", "NVJPG6 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(105, "NVJPG7_ERROR", "NVJPG7 error", "video", "degraded", "restart_app", "transient", { appCaused: true, escalate: APP_REPEAT }),
  row(109, "CONTEXT_SWITCH_TIMEOUT", "Context switch timeout", "engine", "degraded", "reset_gpu", "reboot", {
    appCaused: true,
    escalate: repeat(3, DAY_MS, "unhealthy", "reset_gpu"),
    nvidia: nv("RESET_GPU", "CONTACT_SUPPORT"),
  }),
  // disagree: NVIDIA/NVSentinel reset the GPU, GPUd warns and k8s-dp ignores 109 (often a hung kernel); we keep the reset action but only degrade until it repeats.
  row(110, "SECURITY_FAULT", "Security fault", "security", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "INVESTIGATE_SW") }),
  row(111, "DISPLAY_BUNDLE_ERROR", "Display bundle error event", "display", "degraded", "reset_gpu", "reboot"),
  row(112, "DISPLAY_SUPERVISOR_ERROR", "Display supervisor error", "display", "degraded", "reset_gpu", "reboot"),
  row(113, "DP_LINK_TRAINING_ERROR", "DisplayPort link training error", "display", "degraded", "reset_gpu", "reboot"),
  row(114, "DISPLAY_PIPELINE_UNDERFLOW", "Display pipeline underflow error", "display", "degraded", "reset_gpu", "reboot"),
  row(115, "DISPLAY_CORE_CHANNEL_ERROR", "Display core channel error", "display", "degraded", "reset_gpu", "reboot"),
  row(116, "DISPLAY_WINDOW_CHANNEL_ERROR", "Display window channel error", "display", "degraded", "reset_gpu", "reboot"),
  row(117, "DISPLAY_CURSOR_CHANNEL_ERROR", "Display cursor channel error", "display", "degraded", "reset_gpu", "reboot"),
  row(118, "DISPLAY_PIXEL_PIPELINE_ERROR", "Display pixel pipeline error", "display", "degraded", "reset_gpu", "reboot"),
  row(119, "GSP_RPC_TIMEOUT", "GSP RPC timeout", "gsp", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "INVESTIGATE_SW") }),
  row(120, "GSP_ERROR", "GSP error", "gsp", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "INVESTIGATE_SW") }),
  row(121, "C2C_LINK_ERROR", "C2C (chip-to-chip) link error", "c2c", "degraded", "none", "transient", {
    escalate: repeat(3, DAY_MS, "unhealthy", "contact_support"),
    nvidia: nv("IGNORE", "CONTACT_SUPPORT"),
  }),
  // disagree: GPUd calls 121 Fatal; NVIDIA ignores it, DCGM warns: we degrade and escalate on repeats.
  row(122, "SPI_PMU_RPC_READ_FAILURE", "SPI PMU RPC read failure", "firmware", "degraded", "reset_gpu", "reboot"),
  row(123, "SPI_PMU_RPC_WRITE_FAILURE", "SPI PMU RPC write failure", "firmware", "unhealthy", "contact_support", "fatal", { nvidia: nv("CONTACT_SUPPORT") }),
  row(124, "SPI_PMU_RPC_ERASE_FAILURE", "SPI PMU RPC erase failure", "firmware", "degraded", "reset_gpu", "reboot"),
  row(125, "INFOROM_FS_FAILURE", "InfoROM file-system failure", "firmware", "degraded", "contact_support", "fatal"),
  row(136, "NVLINK_ALI_TRAINING_FAILED", "NVLink ALI training failed", "nvlink", "degraded", "reset_gpu", "reboot", {
    nvidia: nv("RESET_GPU", "INVESTIGATE_LINK_SI"),
  }),
  // disagree: NVSentinel resets (fatal), GPUd warns; a link that failed training lowers bandwidth but the GPU works: degraded with the reset action.
  row(137, "NVLINK_FLA_PRIVILEGE_ERROR", "NVLink FLA privilege error", "nvlink", "degraded", "none", "transient", {
    appCaused: true,
    escalate: APP_REPEAT,
    nvidia: nv("IGNORE", "XID_137_FLOW"),
  }),
  row(140, "UNRECOVERED_ECC_ERROR", "Unrecovered ECC error (ECC escape)", "memory", "unhealthy", "reset_gpu", "reboot", {
    nvidia: nv("RESET_GPU", "CONTACT_SUPPORT"),
  }),
  row(143, "GPU_INIT_FAILURE", "GPU initialization failure", "firmware", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU", "CONTACT_SUPPORT") }),
  // NVLink5: the base verdict applies only when a line cannot be decoded; see `classifyNvlink5`.
  // disagree: GPUd reports NVLink5 "Nonfatal" lines as Fatal (#1160/#1174) and DCGM diag mislabels 145 (#1357); we trust the kmsg token.
  row(144, "NVLINK5_SAW_ERROR", "NVLink5 SAW error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "SAW",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(145, "NVLINK5_RLW_ERROR", "NVLink5 RLW error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "RLW",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(146, "NVLINK5_TLW_ERROR", "NVLink5 TLW error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "TLW",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(147, "NVLINK5_TREX_ERROR", "NVLink5 TREX error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "TREX",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(148, "NVLINK5_NVLPW_ERROR", "NVLink5 NVLPW (NVLPW_CTRL) error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "NVLPW",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(149, "NVLINK5_NETIR_ERROR", "NVLink5 NETIR error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "NETIR",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(150, "NVLINK5_MSE_ERROR", "NVLink5 MSE error", "nvlink", "degraded", "contact_support", "reboot", {
    nvlink5Unit: "MSE",
    nvidia: nv("WORKFLOW_NVLINK5_ERR"),
  }),
  row(154, "GPU_RECOVERY_ACTION_CHANGED", "GPU recovery action changed (follow the linked Xid)", "recovery", "degraded", "none", "transient", {
    nvidia: nv("XID_154"),
  }),
  // disagree: NVSentinel maps 154 to CONTACT_SUPPORT (unknown bucket); it is informational, and the kmsg reader reports the new recovery action verbatim (see XID154_RECOVERY_ACTIONS).
  row(155, "NVLINK_SW_DEFINED_ERROR", "NVLink software-defined error", "nvlink", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU") }),
  // disagree: GPUd only warns on 155/156/158 (with REBOOT); NVIDIA and NVSentinel reset the GPU, so the GPU is unusable until then: unhealthy.
  row(156, "RESOURCE_RETIREMENT_EVENT", "Resource retirement event", "memory", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU") }),
  row(158, "GPU_FATAL_TIMEOUT", "GPU fatal timeout", "engine", "unhealthy", "reset_gpu", "reboot", { nvidia: nv("RESET_GPU") }),
  row(999, "UNKNOWN_XID", "NVML reported an Xid it could not identify (eventData 999)", "unknown", "degraded", "contact_support", "reboot"),
];

/** Verdict for codes the table does not list: conservative, never silent. */
const UNKNOWN_DEFAULTS = {
  name: "UNKNOWN",
  category: "unknown",
  severity: "degraded",
  action: "contact_support",
  persistence: "reboot",
  appCaused: false,
} as const satisfies Partial<Row>;

export interface XidCatalog {
  readonly entries: ReadonlyMap<number, XidCatalogEntry>;
}

function freezeEntry(entry: XidCatalogEntry): XidCatalogEntry {
  if (entry.escalate) Object.freeze(entry.escalate);
  if (entry.nvidia) Object.freeze(entry.nvidia);
  if (entry.override) Object.freeze(entry.override);
  return Object.freeze(entry);
}

class FrozenMap<K, V> extends Map<K, V> {
  #frozen = false;
  freeze(): this {
    this.#frozen = true;
    return this;
  }
  override set(key: K, value: V): this {
    if (this.#frozen) throw new TypeError("the Xid catalog is read-only; use applyXidOverrides");
    return super.set(key, value);
  }
  override delete(key: K): boolean {
    if (this.#frozen) throw new TypeError("the Xid catalog is read-only; use applyXidOverrides");
    return super.delete(key);
  }
  override clear(): void {
    if (this.#frozen) throw new TypeError("the Xid catalog is read-only; use applyXidOverrides");
    super.clear();
  }
}

function buildCatalog(entries: Iterable<XidCatalogEntry>): XidCatalog {
  const map = new FrozenMap<number, XidCatalogEntry>();
  for (const entry of entries) map.set(entry.code, freezeEntry(entry));
  return Object.freeze({ entries: map.freeze() });
}

/** The base catalog (read-only at run time: entries are frozen, the map refuses writes). */
export const XID_CATALOG: XidCatalog = buildCatalog(ROWS.map((r) => ({ ...r, known: true, ignored: false })));

function unknownEntry(code: number): XidCatalogEntry {
  return { code, ...UNKNOWN_DEFAULTS, meaning: `Xid ${code} (not in the catalog)`, known: false, ignored: false };
}

/** The entry for `code`; codes the catalog lacks get degraded + contact_support with `known: false`. */
export function lookupXid(code: number, catalog: XidCatalog = XID_CATALOG): XidCatalogEntry {
  return catalog.entries.get(code) ?? unknownEntry(code);
}

/** The verdict for one occurrence, given how many times this code hit the same GPU within its window. */
export function classifyXidOccurrence(
  entry: XidCatalogEntry,
  occurrencesInWindow: number,
): { severity: Severity; action: RecommendedAction; escalated: boolean } {
  const rule = entry.escalate;
  if (rule && occurrencesInWindow >= rule.count) return { severity: rule.severity, action: rule.action, escalated: true };
  return { severity: entry.severity, action: entry.action, escalated: false };
}

// ---------------------------------------------------------------------------------------------
// NVLink5 (Xid 144–150). The kmsg line carries the unit, a Fatal/Nonfatal token, the link, and
// (intrinfo errorStatus …). The subcode is intrinfo bits 20–25 (as GPUd decodes it); the verdict comes from
// the decoded rule and the token. NVIDIA's "Xid 144-150 Decode" sheet (~90 rules) is not in the
// catalog; the rules below are the ones GPUd's tests pin (149 subcode 4 and 10 are fatal).

export interface Nvlink5Fields {
  intrinfo: number;
  errorStatus: number;
  /** The kmsg "Fatal" / "Nonfatal" token; undefined when the line had none. */
  fatal?: boolean;
}

export interface Nvlink5Rule {
  readonly code: number;
  readonly subCode: number;
  readonly meaning: string;
  readonly severity: Severity;
  readonly action: RecommendedAction;
  readonly persistence: XidPersistence;
}

// prettier-ignore
export const NVLINK5_RULES: readonly Nvlink5Rule[] = Object.freeze([
  Object.freeze({
    code: 149,
    subCode: 4,
    meaning: "NETIR link event: cartridge error (provider intervention)",
    severity: "unhealthy",
    action: "contact_support",
    persistence: "fatal",
  } as const),
  Object.freeze({
    code: 149,
    subCode: 10,
    meaning: "NETIR link event: PHY timeout (provider intervention)",
    severity: "unhealthy",
    action: "contact_support",
    persistence: "fatal",
  } as const),
]);

/** intrinfo bits 20–25. */
export function nvlink5SubCode(intrinfo: number): number {
  return (intrinfo >>> 20) & 0x3f;
}

export interface XidVerdict {
  severity: Severity;
  action: RecommendedAction;
  persistence: XidPersistence;
  /** What decided it, for the event message. */
  basis: string;
}

function withOverride(entry: XidCatalogEntry, verdict: XidVerdict): XidVerdict {
  const o = entry.override;
  if (!o) return verdict;
  return {
    severity: o.severity ?? verdict.severity,
    action: o.action ?? verdict.action,
    persistence: o.persistence ?? verdict.persistence,
    basis: o.severity || o.action || o.persistence ? `${verdict.basis}, overridden by config` : verdict.basis,
  };
}

/** Verdict for one decoded NVLink5 line: a matching rule, else the Fatal/Nonfatal token, else the base entry. */
export function classifyNvlink5(entry: XidCatalogEntry, fields: Nvlink5Fields): XidVerdict & { subCode: number } {
  const subCode = nvlink5SubCode(fields.intrinfo);
  const rule = NVLINK5_RULES.find((r) => r.code === entry.code && r.subCode === subCode);
  let verdict: XidVerdict;
  if (rule) {
    verdict = { severity: rule.severity, action: rule.action, persistence: rule.persistence, basis: `decode rule ${entry.code}.${subCode}: ${rule.meaning}` };
  } else if (fields.fatal === true) {
    verdict = { severity: "unhealthy", action: "reset_gpu", persistence: "reboot", basis: `kernel says Fatal (subcode ${subCode})` };
  } else if (fields.fatal === false) {
    verdict = { severity: "degraded", action: "none", persistence: "transient", basis: `kernel says Nonfatal (subcode ${subCode})` };
  } else {
    verdict = { severity: entry.severity, action: entry.action, persistence: entry.persistence, basis: "catalog default" };
  }
  return { ...withOverride(entry, verdict), subCode };
}

// ---------------------------------------------------------------------------------------------
// Xid 154 "GPU recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)": the driver's
// own verdict (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION values). Reported verbatim;
// severities follow Azure healthagent (3 warns; 1, 2, 4 are errors).

export interface RecoveryActionInfo {
  readonly value: number;
  readonly name: string;
  readonly severity: Severity;
  readonly action: RecommendedAction;
}

// prettier-ignore
export const XID154_RECOVERY_ACTIONS: ReadonlyMap<number, RecoveryActionInfo> = new Map(
  (
    [
      [0, "NONE", "healthy", "none"],
      [1, "GPU_RESET", "unhealthy", "reset_gpu"],
      [2, "NODE_REBOOT", "unhealthy", "reboot"],
      [3, "DRAIN_P2P", "degraded", "none"],
      [4, "DRAIN_AND_RESET", "unhealthy", "reset_gpu"],
      [5, "RECOVER_IMEX_DOMAIN", "degraded", "contact_support"],
      [6, "BUS_RESET", "unhealthy", "reset_gpu"],
      [7, "SYSTEM_REBOOT", "unhealthy", "reboot"],
    ] as const
  ).map(([value, name, severity, action]) => [value, Object.freeze({ value, name, severity, action })]),
);

/** Verdict for one Xid occurrence with what the kmsg line told us (NVLink5 fields, Xid 154 target). */
export function classifyXid(entry: XidCatalogEntry, extra: { nvlink5?: Nvlink5Fields; recoveryActionTo?: number } = {}): XidVerdict {
  if (extra.nvlink5 && entry.nvlink5Unit !== undefined) return classifyNvlink5(entry, extra.nvlink5);
  if (entry.code === 154 && extra.recoveryActionTo !== undefined) {
    const ra = XID154_RECOVERY_ACTIONS.get(extra.recoveryActionTo);
    if (ra) {
      const persistence: XidPersistence = ra.severity === "unhealthy" ? "reboot" : "transient";
      return withOverride(entry, { severity: ra.severity, action: ra.action, persistence, basis: `driver recovery action ${ra.name}` });
    }
  }
  return withOverride(entry, {
    severity: entry.severity,
    action: entry.action,
    persistence: entry.persistence,
    basis: entry.known ? "catalog" : "unknown Xid",
  });
}

// ---------------------------------------------------------------------------------------------
// Overrides from config: `xid_overrides: { "79": { severity: unhealthy }, "94": { ignore: true } }`.

const OVERRIDE_FIELDS = ["severity", "action", "persistence", "ignore", "escalate"] as const;

function oneOf(values: readonly string[]) {
  return (issue: { received: string }) => `must be one of ${values.join(", ")} (got ${issue.received})`;
}

const EscalateOverride = v.strictObject(
  {
    count: v.pipe(
      v.number((i) => `must be a whole number ≥ 1 (got ${i.received})`),
      v.integer((i) => `must be a whole number ≥ 1 (got ${i.received})`),
      v.minValue(1, (i) => `must be a whole number ≥ 1 (got ${i.received})`),
    ),
    window_ms: v.pipe(
      v.number((i) => `must be a number of milliseconds > 0 (got ${i.received})`),
      v.integer((i) => `must be a whole number of milliseconds (got ${i.received})`),
      v.minValue(1, (i) => `must be a number of milliseconds > 0 (got ${i.received})`),
    ),
    severity: v.optional(v.picklist(SEVERITIES, oneOf(SEVERITIES))),
    action: v.optional(v.picklist(ACTIONS, oneOf(ACTIONS))),
  },
  (i) =>
    i.expected === "never"
      ? `unknown field (allowed: count, window_ms, severity, action)`
      : `must be a mapping with count and window_ms, or false to drop the rule (got ${i.received})`,
);

export const XidOverride = v.strictObject(
  {
    severity: v.optional(v.picklist(SEVERITIES, oneOf(SEVERITIES))),
    action: v.optional(v.picklist(ACTIONS, oneOf(ACTIONS))),
    persistence: v.optional(v.picklist(XID_PERSISTENCES, oneOf(XID_PERSISTENCES))),
    ignore: v.optional(v.boolean((i) => `must be true or false (got ${i.received})`)),
    escalate: v.optional(v.lazy((input) => (input === false ? v.literal(false) : EscalateOverride))),
  },
  (i) =>
    i.expected === "never"
      ? `unknown field (allowed: ${OVERRIDE_FIELDS.join(", ")})`
      : `must be a mapping of ${OVERRIDE_FIELDS.join(" / ")} (got ${i.received})`,
);
export type XidOverride = v.InferOutput<typeof XidOverride>;

export const XidOverrides = v.pipe(
  v.custom<Record<string, unknown>>(
    (input) => typeof input === "object" && input !== null && !Array.isArray(input),
    (i) => `must be a mapping from Xid code to override (got ${i.received})`,
  ),
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[1-9][0-9]{0,4}$/, (i) => `is not an Xid code: keys must be whole numbers 1–99999 (got ${i.received})`),
    ),
    XidOverride,
  ),
);
export type XidOverrides = v.InferOutput<typeof XidOverrides>;

export interface XidOverrideIssue {
  /** e.g. `xid_overrides["79"].severity` */
  path: string;
  message: string;
}

export class XidOverrideError extends Error {
  readonly issues: readonly XidOverrideIssue[];
  constructor(issues: readonly XidOverrideIssue[]) {
    super(`invalid Xid overrides:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join("\n")}`);
    this.name = "XidOverrideError";
    this.issues = issues;
  }
}

function overridePath(root: string, path: v.BaseIssue<unknown>["path"]): string {
  let out = root;
  let depth = 0;
  for (const item of path ?? []) {
    const key = String(item.key);
    // The first level is the Xid code (a string key that looks like a number): bracket-quote it.
    out += depth === 0 ? `[${JSON.stringify(key)}]` : `.${key}`;
    depth++;
  }
  return out;
}

/**
 * A new catalog with per-code overrides applied (the base is never touched). `overrides` is the raw
 * config value; it is validated here and every problem is reported as `xid_overrides["79"].severity:
 * must be one of … (got "fatal")`. Codes the base lacks may be overridden too (they stay `known: false`).
 */
export function applyXidOverrides(overrides: unknown, base: XidCatalog = XID_CATALOG, opts: { path?: string } = {}): XidCatalog {
  const root = opts.path ?? "xid_overrides";
  if (overrides === undefined || overrides === null) return base;
  const parsed = v.safeParse(XidOverrides, overrides);
  if (!parsed.success) {
    throw new XidOverrideError(parsed.issues.map((issue) => ({ path: overridePath(root, issue.path), message: issue.message })));
  }
  const next = new Map(base.entries);
  for (const [key, override] of Object.entries(parsed.output)) {
    const code = Number(key);
    const current = next.get(code) ?? unknownEntry(code);
    const { escalate: escalateOverride, ...plain } = override;
    let escalate = current.escalate;
    if (escalateOverride === false) escalate = undefined;
    else if (escalateOverride) {
      escalate = {
        count: escalateOverride.count,
        windowMs: escalateOverride.window_ms,
        severity: escalateOverride.severity ?? current.escalate?.severity ?? "unhealthy",
        action: escalateOverride.action ?? current.escalate?.action ?? "contact_support",
      };
    }
    const updated: XidCatalogEntry = {
      ...current,
      severity: plain.severity ?? current.severity,
      action: plain.action ?? current.action,
      persistence: plain.persistence ?? current.persistence,
      ignored: plain.ignore ?? current.ignored,
      override: { ...current.override, ...override },
    };
    if (escalate) next.set(code, { ...updated, escalate });
    else {
      const { escalate: _dropped, ...withoutEscalate } = updated;
      next.set(code, withoutEscalate);
    }
  }
  return buildCatalog(next.values());
}

/** Every code the base catalog knows, ascending. */
export function knownXidCodes(catalog: XidCatalog = XID_CATALOG): number[] {
  return [...catalog.entries.keys()].sort((a, b) => a - b);
}
