// One condition the agent found, before it becomes a health event (seq, boot id and time are
// added by the agent). Every check returns these; the incident tracker deduplicates them.
import type { CheckName } from "../../schema/checks.ts";
import type { GpuIdentity, RecommendedAction, Severity } from "../../schema/wire.ts";

export interface Finding {
  /** A check of the catalog (schema/checks.ts). */
  check: CheckName;
  /**
   * Level findings always carry one: with the GPU and check it identifies the condition, so
   * its "healthy" (recovered) event closes the same finding on the reconciler.
   */
  code?: string;
  severity: Severity;
  action: RecommendedAction;
  gpu?: GpuIdentity;
  message: string;
  /** Occurrences so far, when more than one (set by the incident tracker). */
  count?: number;
  /** A GPU named only by its bus id (a kernel-log line for a GPU NVML does not list). */
  pciBusId?: string;
}

/** What a GPU check returns: the runner adds the GPU. */
export type GpuFinding = Omit<Finding, "gpu" | "pciBusId">;
