// The agent API's bodies as a well-behaved agent sends them, for tests that post them by hand
// (and then make one field hostile): a registration, a heartbeat, an Xid 79 event.
const GPU = (nodeId: string) => ({ index: 0, uuid: `GPU-${nodeId}`, pciBusId: "00000000:3B:00.0" });

/** A registration with one GPU and NVML available; `extra` replaces any field. */
export function registration(nodeId: string, bootId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nodeId,
    hostname: `${nodeId}.example`,
    bootId,
    agentVersion: "test",
    spoolId: crypto.randomUUID(),
    nvml: { available: true },
    gpus: [{ ...GPU(nodeId), name: "H100" }],
    ...extra,
  };
}

/** A heartbeat after a healthy full check, no GPU readings; `extra` replaces any field. */
export function heartbeat(nodeId: string, bootId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nodeId,
    bootId,
    sentAt: new Date().toISOString(),
    nvml: { available: true },
    health: { checked: true, worst: "healthy", openIncidents: 0 },
    gpus: [],
    ...extra,
  };
}

/** An Xid 79 (fallen off the bus) on the node's GPU 0; `extra` replaces any field. */
export function xidEvent(nodeId: string, seq: number, bootId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    seq,
    time: new Date().toISOString(),
    bootId,
    check: "xid",
    code: "79",
    severity: "unhealthy",
    action: "replace",
    gpu: GPU(nodeId),
    message: "GPU has fallen off the bus",
    ...extra,
  };
}
