// How Navarch's cordon shows on a Slurm node. The drain reason says what Navarch saw
// (`navarch: fatal: Xid 79 on GPU 3 … (incident 12)`) and marks the DRAIN as ours: only a
// DRAIN whose reason is ours is ever resumed by Navarch. The comment carries a marker
// (`[navarch-cordon node=… incident=… at=…]`, beside whatever comment was there) naming the
// Navarch node the cordon is for. `scontrol update state=resume` clears the reason but not
// the comment, so a marker on a node that is no longer drained is a human's resume, seen
// also after Navarch restarts, as Kubernetes annotations are.
import { textPrefix } from "../../../schema/text.ts";

export const REASON_PREFIX = "navarch:";

export interface CordonMarker {
  nodeId: string;
  incidentId: number;
  /** When the cordon was made (the reconciler's clock, ms). */
  at: number;
}

const MARKER = /\s*\[navarch-cordon node=([A-Za-z0-9._-]+) incident=(\d+) at=(\d+)\]/;

/** The DRAIN reason for a cordon: one line, bounded. */
export function drainReason(reason: string, incidentId: number): string {
  const oneLine = reason.replace(/\s+/g, " ").trim();
  const suffix = incidentId > 0 ? ` (incident ${incidentId})` : "";
  return `${REASON_PREFIX} ${textPrefix(oneLine, 400)}${suffix}`;
}

/** Drained, and by Navarch (the reason is ours: a human's later drain replaces it). */
export function drainedByUs(node: { flags: readonly string[]; reason: string }): boolean {
  return isDrained(node) && node.reason.startsWith(REASON_PREFIX);
}

export function isDrained(node: { flags: readonly string[] }): boolean {
  return node.flags.includes("DRAIN");
}

export function readMarker(comment: string): CordonMarker | undefined {
  const match = MARKER.exec(comment);
  if (match === null) return undefined;
  return { nodeId: match[1]!, incidentId: Number(match[2]), at: Number(match[3]) };
}

/** The comment with our marker set (replacing an older one), whatever else it holds kept. */
export function withMarker(comment: string, marker: CordonMarker): string {
  const rest = withoutMarker(comment);
  const text = `[navarch-cordon node=${marker.nodeId} incident=${marker.incidentId} at=${Math.round(marker.at)}]`;
  return rest === "" ? text : `${rest} ${text}`;
}

export function withoutMarker(comment: string): string {
  return comment.replace(MARKER, "").trim();
}
