// How bad a result or a persistence is, in order: the default policy's repeat rules and the
// findings take the worse of two persistences, the findings and the node verdict the worse of
// two results.
import type { Severity } from "../../schema/wire.ts";
import type { XidPersistence } from "../../schema/xid-catalog.ts";

const PERSISTENCE_RANK: Readonly<Record<XidPersistence, number>> = { transient: 0, reboot: 1, fatal: 2 };
export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { healthy: 0, degraded: 1, unhealthy: 2 };

export function worsePersistence(a: XidPersistence, b: XidPersistence): XidPersistence {
  return PERSISTENCE_RANK[a] >= PERSISTENCE_RANK[b] ? a : b;
}
