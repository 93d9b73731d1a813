// The requestId of a GCE instances.insert: what makes a retried insert return the first
// insert's Operation instead of creating a second VM. It is derived from the operation key,
// the zone and a generation, so the same attempt always sends the same id and the next
// generation (after a failed insert, which GCE would otherwise replay) sends a new one.
import { createHash } from "node:crypto";

const NAVARCH_NAMESPACE = "6b3c1d0e-4f5a-4c7b-9e21-0a8d5f3b7c19";

/**
 * The insert's requestId: a UUID (version 5 layout: SHA-1 of a namespace and the name) that
 * is stable for an operation key, a zone and a generation.
 */
export function requestIdFor(key: string, zone: string, generation = 0): string {
  const ns = Buffer.from(NAVARCH_NAMESPACE.replaceAll("-", ""), "hex");
  const bytes = createHash("sha1").update(ns).update(`${key}\n${zone}\n${generation}`, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
