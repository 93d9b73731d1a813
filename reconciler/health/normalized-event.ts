// The event being judged, as the policy works with it: its time in milliseconds, "" for no
// code, a count of at least 1, and the key count_events uses for "the same GPU". Evaluation
// builds the CEL bindings from it; the history counts it when it is not stored yet.
import type { GpuIdentity, HealthEvent, RecommendedAction, Severity } from "../../schema/wire.ts";

export interface NormalizedEvent {
  seq: number;
  bootId: string;
  time: number;
  check: string;
  code: string;
  severity: Severity;
  action: RecommendedAction;
  gpu?: GpuIdentity;
  gpuKey: string;
  message: string;
  count: number;
}

/** The identity count_events uses for "the same GPU": PCI bus id, else UUID, else index ("" = no GPU). */
export function gpuKeyOf(pci: string | null | undefined, uuid: string | null | undefined, index: number | null | undefined): string {
  // The agent normalises PCI bus ids (agent/pci.ts), so they compare as they are.
  if (pci) return pci;
  if (uuid) return uuid;
  return index === null || index === undefined ? "" : `#${index}`;
}

/** The event as the policy sees it; an unparsable time is `now`. */
export function normalize(event: HealthEvent, now: number): NormalizedEvent {
  const time = Date.parse(event.time);
  const out: NormalizedEvent = {
    seq: event.seq,
    bootId: event.bootId,
    time: Number.isFinite(time) ? time : now,
    check: event.check,
    code: event.code ?? "",
    severity: event.severity,
    action: event.action,
    gpuKey: gpuKeyOf(event.gpu?.pciBusId, event.gpu?.uuid, event.gpu?.index),
    message: event.message,
    count: Math.max(1, event.count ?? 1),
  };
  if (event.gpu) out.gpu = event.gpu;
  return out;
}
