// Navarch's tags as GCE labels. Labels follow GCE's rules (lowercase letters, digits, `_` and
// `-`, at most 63 characters, keys starting with a letter; longer values keep a hash suffix).
// list() sanitises its query the same way, so tags round-trip through it; the tags read back
// are the sanitised labels.
import { createHash } from "node:crypto";

function sanitiseLabelPart(text: string): string {
  let out = text.toLowerCase().replace(/[^a-z0-9_-]/g, "_");
  if (out.length > 63) out = `${out.slice(0, 54)}-${createHash("sha256").update(text).digest("hex").slice(0, 8)}`;
  return out;
}

/** A GCE label key for a tag key: lowercase, allowed characters, starts with a letter, ≤ 63. */
export function labelKey(key: string): string {
  const out = sanitiseLabelPart(key);
  return /^[a-z]/.test(out) ? out : sanitiseLabelPart(`k-${key}`);
}

/** A GCE label value for a tag value. */
export function labelValue(value: string): string {
  return sanitiseLabelPart(value);
}

export function toLabels(tags: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) labels[labelKey(key)] = labelValue(value);
  return labels;
}
