// Simulated agents for the simulator and the lifecycle tests: one per running
// instance of a simulated cloud, talking to the reconciler's store through the
// same registry functions the HTTP API calls (registration, heartbeats, health
// events with per-node sequence numbers). Faults are injected as the events a
// real agent would push.
import { appendEvents, recordHeartbeat, registerNode, type Clock } from "../fleet/registry.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Db } from "../store/store.ts";
import type { GpuInfo, HealthEvent, RecommendedAction, Severity } from "../../schema/wire.ts";
import { lookupXid, classifyXid } from "../../schema/xid-catalog.ts";

interface SimAgent {
  nodeId: string;
  bootId: string;
  gpus: GpuInfo[];
  seq: number;
  /** Per-GPU utilisation, 0–100. */
  utilization: number[];
  silent: boolean;
}

export class SimulatedAgents {
  private readonly agents = new Map<string, SimAgent>();

  constructor(
    private readonly db: Db,
    private readonly cloud: SimulatedCloud,
    private readonly now: Clock,
    private readonly gpusPerNode = 8,
  ) {}

  /** Registers agents on new running instances and heartbeats all of them. */
  async tick(): Promise<void> {
    const running = new Set<string>();
    for (const instance of this.cloud.running()) {
      if (instance.state !== "running") continue;
      running.add(instance.name);
      let agent = this.agents.get(instance.name);
      if (agent === undefined) {
        agent = {
          nodeId: instance.name,
          bootId: `boot-${instance.id}`,
          gpus: Array.from({ length: this.gpusPerNode }, (_, i) => ({
            index: i,
            uuid: `GPU-${instance.id}-${i}`,
            pciBusId: `00000000:${(0x18 + i * 0x10).toString(16).toUpperCase().padStart(2, "0")}:00.0`,
            name: "NVIDIA H100 80GB HBM3",
          })),
          seq: 0,
          utilization: Array.from({ length: this.gpusPerNode }, () => 0),
          silent: false,
        };
        const result = await registerNode(
          this.db,
          {
            nodeId: agent.nodeId,
            hostname: agent.nodeId,
            bootId: agent.bootId,
            agentVersion: "sim",
            spoolId: "00000000-0000-4000-8000-000000000000",
            nvml: { available: true },
            gpus: agent.gpus,
            ...(instance.tags["navarch-pool"] ? { pool: instance.tags["navarch-pool"] } : {}),
          },
          this.now,
        );
        if (!result.ok) continue;
        this.agents.set(instance.name, agent);
      }
      if (!agent.silent) await this.heartbeat(agent);
    }
    for (const id of this.agents.keys()) if (!running.has(id)) this.agents.delete(id);
  }

  /** Reports an Xid on one GPU, classified by the catalog as the real agent would. */
  async xid(nodeId: string, code: number, gpuIndex = 0): Promise<void> {
    const entry = lookupXid(code);
    const verdict = classifyXid(entry);
    await this.event(nodeId, { check: "xid", code: String(code), severity: verdict.severity, action: verdict.action, message: `Xid ${code} (${entry.meaning})` }, gpuIndex);
  }

  async event(nodeId: string, e: { check: string; code?: string; severity: Severity; action: RecommendedAction; message: string }, gpuIndex = 0): Promise<void> {
    const agent = this.agents.get(nodeId);
    if (agent === undefined) throw new Error(`no simulated agent for ${nodeId}`);
    const gpu = agent.gpus[gpuIndex];
    const event: HealthEvent = {
      seq: ++agent.seq,
      time: new Date(this.now()).toISOString(),
      bootId: agent.bootId,
      ...e,
      ...(gpu ? { gpu: { index: gpu.index, uuid: gpu.uuid, pciBusId: gpu.pciBusId } } : {}),
    };
    await appendEvents(this.db, { nodeId, events: [event] }, this.now);
  }

  setUtilization(nodeId: string, pct: number): void {
    const agent = this.agents.get(nodeId);
    if (agent) agent.utilization = agent.utilization.map(() => pct);
  }

  /** Stops (or resumes) an agent's heartbeats, as a hung host or a partition would. */
  setSilent(nodeId: string, silent: boolean): void {
    const agent = this.agents.get(nodeId);
    if (agent) agent.silent = silent;
  }

  private async heartbeat(agent: SimAgent): Promise<void> {
    await recordHeartbeat(
      this.db,
      {
        nodeId: agent.nodeId,
        bootId: agent.bootId,
        sentAt: new Date(this.now()).toISOString(),
        nvml: { available: true },
        health: { checked: true, worst: "healthy", openIncidents: 0 },
        gpus: agent.gpus.map((g, i) => ({ index: g.index, temperatureC: 45, utilizationPct: agent.utilization[i] ?? 0 })),
      },
      this.now,
    );
  }
}
