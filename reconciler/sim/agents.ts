// Simulated agents for the simulator and the lifecycle tests: one per running
// instance of a simulated cloud, talking to the reconciler's store through the
// same registry functions the HTTP API calls (registration, heartbeats, health
// events with per-node sequence numbers). Faults are injected as the events a
// real agent would push.
//
// Two ways to drive them:
// - tick(): registers agents on new running instances and sends one heartbeat per
//   agent through recordHeartbeat (the lifecycle tests; fine for a few nodes);
// - at fleet scale (the simulator): startNew() boots agents on instances as they start
//   (registration and first heartbeat through the real registry functions), then
//   heartbeatAll() refreshes every live agent's last_heartbeat_at in ONE statement and
//   flushReadings() writes only the GPU readings that changed. The reconciler reads
//   heartbeats only when it runs a pass, so refreshing them right before a pass, with
//   the time of the agents' latest heartbeat, is what it would have seen.
import { sql } from "drizzle-orm";
import type { Clock } from "../../schema/time.ts";
import { appendEvents, recordHeartbeat, registerNode } from "../nodes/agent-reports.ts";
import type { Instance } from "../providers/provider.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Db } from "../store/store.ts";
import { findingKey, type GpuInfo, type GpuSnapshot, type HealthEvent, type RecommendedAction, type Severity } from "../../schema/wire.ts";
import { lookupXid, classifyXid } from "../../schema/xid-catalog.ts";

interface SimAgent {
  nodeId: string;
  instanceId: string;
  bootId: string;
  boots: number;
  gpus: GpuInfo[];
  seq: number;
  /** Per-GPU utilisation, 0–100. */
  utilization: number[];
  silent: boolean;
  /** Findings of this boot still open, by finding key, as last reported (the agent's own verdict). */
  open: Map<string, HealthEvent>;
  /** The highest event seq the reconciler said it holds (a lower answer means it forgot). */
  reconcilerSeq: number;
  /** The machine's reboot count at the cloud when this boot began; down while it reboots. */
  cloudBoot: number;
  down: boolean;
}

/** An app-caused finding with no repeat for this long closes (the real agent's quiet period). */
const QUIET_MS = 10 * 60_000;

/** GPUs of a machine type: how many and what they are called. */
export type GpuLayout = (instanceType: string) => { count: number; name: string };

export interface AgentEvent {
  check: string;
  code?: string;
  severity: Severity;
  action: RecommendedAction;
  message: string;
}

export class SimulatedAgents {
  private readonly agents = new Map<string, SimAgent>();
  private readonly clouds: readonly SimulatedCloud[];
  private readonly layout: GpuLayout;
  /** Agents whose GPU readings changed since the last flushReadings(). */
  private readonly dirty = new Set<string>();
  /** JSON list of the heartbeating agents' node ids; rebuilt when the set changes. */
  private beatingJson: string | undefined;

  constructor(
    private db: Db,
    cloud: SimulatedCloud | readonly SimulatedCloud[],
    private readonly now: Clock,
    gpus: number | GpuLayout = 8,
  ) {
    this.clouds = Array.isArray(cloud) ? cloud : [cloud as SimulatedCloud];
    this.layout = typeof gpus === "number" ? () => ({ count: gpus, name: "NVIDIA H100 80GB HBM3" }) : gpus;
    // A machine the reconciler reboots goes quiet until it runs again.
    for (const c of this.clouds) {
      c.onReboot = (instance) => {
        const agent = this.agents.get(instance.name);
        if (agent === undefined) return;
        agent.down = true;
        this.beatingJson = undefined;
      };
    }
  }

  /**
   * Whether a reboot clears an open finding (default: always). A finding it does not clear is
   * found again, and reported, in the new boot: the fault survived the reboot.
   */
  rebootFixes: (nodeId: string, finding: HealthEvent) => boolean = () => true;

  /** The reconciler's database was replaced (restored from an older copy): talk to the new one. */
  useDatabase(db: Db): void {
    this.db = db;
  }

  /** Registers agents on new running instances and heartbeats all of them (one statement each). */
  async tick(): Promise<void> {
    const running = new Set<string>();
    for (const cloud of this.clouds) {
      for (const instance of cloud.running()) {
        let agent = this.agents.get(instance.name);
        // A machine rebooting is still there: its agent is quiet until it runs again.
        if (agent !== undefined) running.add(instance.name);
        if (instance.state !== "running") continue;
        running.add(instance.name);
        if (agent === undefined) {
          agent = await this.boot(instance);
          if (agent === undefined) continue;
        } else if ((cloud.bootOf(instance.id) ?? 0) > agent.cloudBoot) {
          await this.cameBack(agent, cloud.bootOf(instance.id) ?? 0); // registers and heartbeats
          continue;
        }
        if (!agent.silent) await this.heartbeat(agent);
      }
    }
    for (const id of this.agents.keys()) if (!running.has(id)) this.remove(id);
  }

  /**
   * Boots an agent on every instance that started since the last call: registration and a
   * first heartbeat through the registry functions. Returns the node ids that registered.
   */
  async startNew(): Promise<string[]> {
    const registered: string[] = [];
    for (const cloud of this.clouds) {
      for (const instance of cloud.takeStarted()) {
        const known = this.agents.get(instance.name);
        if (known !== undefined) {
          const boot = cloud.bootOf(instance.id) ?? 0;
          if (boot > known.cloudBoot && (await this.cameBack(known, boot))) registered.push(known.nodeId);
          continue;
        }
        const agent = await this.boot(instance);
        if (agent === undefined) continue;
        await this.heartbeat(agent);
        registered.push(agent.nodeId);
      }
    }
    return registered;
  }

  /** Takes over an agent whose node rows already exist (a fleet that was up before the run). */
  adopt(nodeId: string, instance: Instance, bootId: string): GpuInfo[] {
    const agent = this.newAgent(nodeId, instance);
    agent.bootId = bootId;
    this.agents.set(nodeId, agent);
    this.beatingJson = undefined;
    return agent.gpus;
  }

  /**
   * Every live, non-silent agent heartbeats at `at`: one UPDATE for all of them. The GPU
   * readings that changed go separately (flushReadings).
   */
  async heartbeatAll(at: number): Promise<void> {
    this.beatingJson ??= JSON.stringify([...this.agents.values()].filter((a) => !a.silent && !a.down).map((a) => a.nodeId));
    await this.db.run(sql`UPDATE nodes SET last_heartbeat_at = ${at}, updated_at = ${at} WHERE id IN (SELECT value FROM json_each(${this.beatingJson}))`);
  }

  /** Forgets which readings changed (nobody will read them). */
  discardReadings(): void {
    this.dirty.clear();
  }

  /** One agent heartbeats now, through recordHeartbeat (e.g. when it comes back). */
  async heartbeatOne(nodeId: string): Promise<void> {
    const agent = this.agents.get(nodeId);
    if (agent !== undefined && !agent.silent) await this.heartbeat(agent);
  }

  /** Writes the GPU readings of agents whose utilisation changed, grouped by identical readings. */
  async flushReadings(): Promise<void> {
    if (this.dirty.size === 0) return;
    const at = this.now();
    const groups = new Map<string, string[]>();
    for (const id of this.dirty) {
      const agent = this.agents.get(id);
      if (agent === undefined || agent.silent) continue;
      const snapshot = JSON.stringify(this.snapshot(agent));
      groups.set(snapshot, [...(groups.get(snapshot) ?? []), id]);
    }
    this.dirty.clear();
    for (const [snapshot, ids] of groups) {
      await this.db.run(sql`
        INSERT INTO gpu_readings (node_id, readings, updated_at)
        SELECT value, json(${snapshot}), ${at} FROM json_each(${JSON.stringify(ids)}) WHERE true
        ON CONFLICT (node_id) DO UPDATE SET readings = excluded.readings, updated_at = excluded.updated_at`);
    }
  }

  /** Reports an Xid on one GPU, classified by the catalog as the real agent would. */
  async xid(nodeId: string, code: number, gpuIndex = 0, time?: number): Promise<void> {
    const entry = lookupXid(code);
    const verdict = classifyXid(entry);
    await this.event(
      nodeId,
      { check: "xid", code: String(code), severity: verdict.severity, action: verdict.action, message: `Xid ${code} (${entry.meaning})` },
      gpuIndex,
      time,
    );
  }

  /** Pushes one health event; `time` is when it happened (default now), stored now. */
  async event(nodeId: string, e: AgentEvent, gpuIndex = 0, time?: number): Promise<void> {
    const agent = this.agents.get(nodeId);
    if (agent === undefined) throw new Error(`no simulated agent for ${nodeId}`);
    const gpu = agent.gpus[gpuIndex];
    const event: HealthEvent = {
      seq: ++agent.seq,
      time: new Date(time ?? this.now()).toISOString(),
      bootId: agent.bootId,
      ...e,
      ...(gpu ? { gpu: { index: gpu.index, uuid: gpu.uuid, pciBusId: gpu.pciBusId } } : {}),
    };
    const before = this.worst(agent);
    if (event.severity === "healthy") agent.open.delete(findingKey(event));
    else agent.open.set(findingKey(event), event);
    const stored = await appendEvents(this.db, { nodeId, events: [event] }, this.now);
    if (stored === undefined) {
      await this.reregister(agent);
      return;
    }
    agent.reconcilerSeq = Math.max(agent.reconcilerSeq, stored.ackedSeq);
    // The agent's own verdict rides on its next heartbeat; a fault makes it one at once.
    if (this.worst(agent) !== before) await this.heartbeat(agent);
  }

  /**
   * The machine the reconciler rebooted runs again: a new boot, whose agent reports again what
   * the reboot did not fix.
   */
  private async cameBack(agent: SimAgent, cloudBoot: number): Promise<boolean> {
    const survivors = [...agent.open.values()].filter((e) => !this.rebootFixes(agent.nodeId, e));
    agent.cloudBoot = cloudBoot;
    agent.down = false;
    if (!(await this.reboot(agent.nodeId, `boot-${agent.instanceId}-r${cloudBoot}`))) return false;
    for (const e of survivors) {
      const gpuIndex = e.gpu?.index ?? 0;
      await this.event(
        agent.nodeId,
        { check: e.check, ...(e.code !== undefined ? { code: e.code } : {}), severity: e.severity, action: e.action, message: e.message },
        gpuIndex,
      );
    }
    return true;
  }

  /** The machine rebooted: a new boot id, registration again and a heartbeat (reboot-class findings clear). */
  async reboot(nodeId: string, bootId?: string): Promise<boolean> {
    const agent = this.agents.get(nodeId);
    if (agent === undefined) return false;
    agent.boots++;
    agent.bootId = bootId ?? `boot-${agent.instanceId}-${agent.boots}`;
    agent.silent = false;
    agent.open.clear();
    this.beatingJson = undefined;
    const result = await registerNode(this.db, this.registration(agent), this.now);
    if (!result.ok) {
      this.remove(nodeId);
      return false;
    }
    await this.heartbeat(agent);
    return true;
  }

  has(nodeId: string): boolean {
    return this.agents.has(nodeId);
  }

  isSilent(nodeId: string): boolean {
    return this.agents.get(nodeId)?.silent ?? false;
  }

  gpuCount(nodeId: string): number {
    return this.agents.get(nodeId)?.gpus.length ?? 0;
  }

  /** The agent is gone with its machine (terminated or vanished). */
  remove(nodeId: string): void {
    if (this.agents.delete(nodeId)) this.beatingJson = undefined;
    this.dirty.delete(nodeId);
  }

  /** The provider instance an agent runs on. */
  instanceOf(nodeId: string): string | undefined {
    return this.agents.get(nodeId)?.instanceId;
  }

  /** The node id of the agent on a provider instance, if any. */
  nodeOfInstance(instanceId: string): string | undefined {
    for (const a of this.agents.values()) if (a.instanceId === instanceId) return a.nodeId;
    return undefined;
  }

  setUtilization(nodeId: string, pct: number): void {
    const agent = this.agents.get(nodeId);
    if (agent) {
      agent.utilization = agent.utilization.map(() => pct);
      this.dirty.add(nodeId);
    }
  }

  /** The first `busy` GPUs at 100 %, the rest idle (a scheduler placing whole-GPU jobs). */
  setBusyGpus(nodeId: string, busy: number): void {
    const agent = this.agents.get(nodeId);
    if (agent) {
      agent.utilization = agent.utilization.map((_, i) => (i < busy ? 100 : 0));
      this.dirty.add(nodeId);
    }
  }

  /** Stops (or resumes) an agent's heartbeats, as a hung host or a partition would. */
  setSilent(nodeId: string, silent: boolean): void {
    const agent = this.agents.get(nodeId);
    if (agent && agent.silent !== silent) {
      agent.silent = silent;
      this.beatingJson = undefined;
      if (!silent) this.dirty.add(nodeId);
    }
  }

  private newAgent(nodeId: string, instance: Instance): SimAgent {
    const { count, name } = this.layout(instance.instanceType);
    // An agent that starts on a machine the reconciler rebooted before is in that later boot.
    const cloudBoot = this.clouds.find((c) => c.bootOf(instance.id) !== undefined)?.bootOf(instance.id) ?? 0;
    return {
      nodeId,
      instanceId: instance.id,
      bootId: cloudBoot === 0 ? `boot-${instance.id}` : `boot-${instance.id}-r${cloudBoot}`,
      boots: 0,
      gpus: Array.from({ length: count }, (_, i) => ({
        index: i,
        uuid: `GPU-${instance.id}-${i}`,
        pciBusId: `00000000:${(0x18 + i * 0x10).toString(16).toUpperCase().padStart(2, "0")}:00.0`,
        name,
      })),
      seq: 0,
      utilization: Array.from({ length: count }, () => 0),
      silent: false,
      open: new Map(),
      reconcilerSeq: 0,
      cloudBoot,
      down: false,
    };
  }

  private registration(agent: SimAgent) {
    this.expire(agent);
    return {
      nodeId: agent.nodeId,
      hostname: agent.nodeId,
      bootId: agent.bootId,
      agentVersion: "sim",
      spoolId: "00000000-0000-4000-8000-000000000000",
      nvml: { available: true },
      gpus: agent.gpus,
      openFindings: [...agent.open.values()],
    };
  }

  /** The reconciler forgot the node (its database was replaced): register again, as the agent does on a 404. */
  private async reregister(agent: SimAgent): Promise<void> {
    const result = await registerNode(this.db, this.registration(agent), this.now);
    if (!result.ok) this.remove(agent.nodeId);
    else {
      agent.seq = Math.max(agent.seq, result.lastEventSeq);
      agent.reconcilerSeq = result.lastEventSeq;
    }
  }

  /** Closes app-caused findings that stayed quiet; fatal and reboot-class ones stay for the boot. */
  private expire(agent: SimAgent): void {
    const at = this.now();
    for (const [key, e] of agent.open) {
      if (e.action !== "replace" && e.action !== "reboot" && e.action !== "reset_gpu" && at - Date.parse(e.time) > QUIET_MS) agent.open.delete(key);
    }
  }

  private worst(agent: SimAgent): Severity {
    this.expire(agent);
    let worst: Severity = "healthy";
    for (const e of agent.open.values()) if (e.severity === "unhealthy" || (e.severity === "degraded" && worst === "healthy")) worst = e.severity;
    return worst;
  }

  private async boot(instance: Instance): Promise<SimAgent | undefined> {
    const agent = this.newAgent(instance.name, instance);
    const result = await registerNode(
      this.db,
      { ...this.registration(agent), ...(instance.tags["navarch-pool"] ? { pool: instance.tags["navarch-pool"] } : {}) },
      this.now,
    );
    if (!result.ok) return undefined;
    agent.reconcilerSeq = result.lastEventSeq;
    this.agents.set(instance.name, agent);
    this.beatingJson = undefined;
    return agent;
  }

  private snapshot(agent: SimAgent): GpuSnapshot[] {
    // A busy GPU runs its job's one compute process, as NVML would list it.
    return agent.gpus.map((g, i) => ({
      index: g.index,
      temperatureC: 45,
      utilizationPct: agent.utilization[i] ?? 0,
      processCount: (agent.utilization[i] ?? 0) > 0 ? 1 : 0,
    }));
  }

  private async heartbeat(agent: SimAgent): Promise<void> {
    this.dirty.delete(agent.nodeId);
    const recorded = await recordHeartbeat(
      this.db,
      {
        nodeId: agent.nodeId,
        bootId: agent.bootId,
        sentAt: new Date(this.now()).toISOString(),
        nvml: { available: true },
        health: { checked: true, worst: this.worst(agent), openIncidents: agent.open.size },
        gpus: this.snapshot(agent),
      },
      this.now,
    );
    // Unknown, or it lost events it had acknowledged: register again (with the open findings).
    if (recorded === undefined || recorded.lastEventSeq < agent.reconcilerSeq) await this.reregister(agent);
  }
}
