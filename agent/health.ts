// The agent's health monitor: NVML events and polls, the kernel log and the NVML
// watchdog, turned into incidents (agent/checks/incidents.ts) and handed to the
// reporter the moment they open. It is also the agent's GpuSource: inventory and
// readings for registration and heartbeats come from its latest poll, so a
// heartbeat never waits on the driver.
import { findingKey, timerMs, type AgentHealth, type GpuIdentity, type GpuInfo, type GpuSnapshot, type NvmlStatus, type Severity } from "../schema/wire.ts";
import { classifyXid, lookupXid, type XidCatalog, XID_CATALOG } from "../schema/xid-catalog.ts";
import type { GpuSource } from "./agent.ts";
import { GpuCheckState, evaluateSnapshot, gpuIdentityOf, type Finding } from "./checks/gpu.ts";
import { IncidentTracker, type FindingSource } from "./checks/incidents.ts";
import { followKmsg, kmsgFindingToEvent, type KmsgFinding, type KmsgFollower } from "./checks/kmsg.ts";
import { startNvmlMonitor, toWireGpuSnapshot, toWireGpus, type NvmlEvent, type NvmlMonitor, type NvmlSnapshot } from "./nvml/index.ts";
import { normalizePciBusId } from "./pci.ts";

export interface HealthMonitorOptions {
  libraryPath?: string | undefined;
  /** Kernel log to follow; null to not follow one. Default /dev/kmsg. */
  kmsgPath?: string | null;
  /** Between full checks; held to what a timer can hold (main.ts refuses such flags outright). */
  pollIntervalMs?: number;
  /** Deadline of one NVML snapshot before the watchdog calls the driver unresponsive. */
  pollDeadlineMs?: number;
  expectedGpus?: number;
  catalog?: XidCatalog;
  /** Receives each finding to report (already deduplicated). */
  onFinding: (finding: Finding) => void;
  log: (line: string) => void;
  now?: () => number;
}

const RANK: Record<Severity, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

export class HealthMonitor implements GpuSource {
  private readonly tracker = new IncidentTracker();
  private readonly checkState = new GpuCheckState();
  private readonly catalog: XidCatalog;
  private readonly now: () => number;
  private nvml: NvmlMonitor | undefined;
  private kmsg: KmsgFollower | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private gpuInfos: GpuInfo[] = [];
  /** Bus id → identity, from every inventory this boot (a GPU that falls off stays known). */
  private readonly byBusId = new Map<string, GpuIdentity>();
  private lastSnapshot: NvmlSnapshot | undefined;
  private driver: string | undefined;
  private cuda: string | undefined;
  private polling = false;
  /** True once a full check has completed: never report "healthy" before. */
  checked = false;

  constructor(private readonly opts: HealthMonitorOptions) {
    this.catalog = opts.catalog ?? XID_CATALOG;
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    const { opts } = this;
    this.nvml = await startNvmlMonitor({
      // A library the operator named is the only one tried: never a silent substitute.
      ...(opts.libraryPath !== undefined ? { libraryPath: opts.libraryPath, explicitOnly: true } : {}),
      pollDeadlineMs: timerMs(opts.pollDeadlineMs ?? 5000, 5000),
      onEvent: (e) => this.onNvmlEvent(e),
      onHang: (hang) => this.report(this.tracker.poll([watchdogFinding(hang.message)], this.now(), () => false, "watchdog")),
      onRecover: () => this.report(this.tracker.poll([], this.now(), () => false, "watchdog")),
      onEventError: (err) => opts.log(`NVML event wait failed (${err.error.name}); ${err.action} in ${err.retryInMs} ms`),
      onWorkerError: (err) => opts.log(`NVML worker error: ${err.message}`),
    });
    if (this.nvml.status.available) {
      await this.refreshInventory();
    } else {
      opts.log(`NVML unavailable: ${this.nvml.status.error ?? "unknown"}`);
    }
    this.startKmsg();
    await this.poll();
    // At least 100 ms: an interval of 0 would poll the driver in a tight loop.
    this.timer = setInterval(() => void this.poll(), Math.max(100, timerMs(opts.pollIntervalMs ?? 10_000, 10_000)));
  }

  openFindingKeys(): ReadonlySet<string> {
    return new Set(this.tracker.current().map((f) => findingKey(f)));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.kmsg?.stop();
    await this.nvml?.close();
  }

  /** Open incidents, worst first. */
  current(): Finding[] {
    return this.tracker.current();
  }

  worst(): Severity {
    return this.current().reduce<Severity>((w, f) => (RANK[f.severity] > RANK[w] ? f.severity : w), "healthy");
  }

  // GpuSource
  health(): AgentHealth {
    return { checked: this.checked, worst: this.worst(), openIncidents: this.current().length };
  }
  status(): NvmlStatus {
    return this.nvml?.status ?? { available: false, error: "NVML not started" };
  }
  driverVersion(): string | undefined {
    return this.driver;
  }
  cudaVersion(): string | undefined {
    return this.cuda;
  }
  inventory(): GpuInfo[] {
    return this.gpuInfos;
  }
  async snapshot(): Promise<GpuSnapshot[]> {
    return this.lastSnapshot?.devices.filter((d) => d.fatal === null).map(toWireGpuSnapshot) ?? [];
  }

  /** One full check: snapshot, level checks, repeat counts. Overlapping polls are skipped. */
  async poll(): Promise<void> {
    if (this.polling || this.nvml === undefined) return;
    this.polling = true;
    try {
      if (this.nvml.status.available) {
        let snapshot: NvmlSnapshot;
        try {
          snapshot = await this.nvml.snapshot();
        } catch (err) {
          // The watchdog reports the hang itself; the agent keeps running.
          this.opts.log(`NVML snapshot failed: ${err instanceof Error ? err.message : String(err)}`);
          return;
        }
        this.lastSnapshot = snapshot;
        for (const d of snapshot.devices) {
          const id = gpuIdentityOf(d);
          if (id) this.byBusId.set(id.pciBusId, id);
        }
        const findings = evaluateSnapshot(snapshot, this.checkState, this.opts.expectedGpus ? { expectedGpus: this.opts.expectedGpus } : {});
        this.report(this.tracker.poll(findings, this.now(), isSticky, "nvml"));
      }
      this.report(this.tracker.due(this.now()));
      this.checked = true;
    } finally {
      this.polling = false;
    }
  }

  private async refreshInventory(): Promise<void> {
    if (!this.nvml) return;
    try {
      const inv = await this.nvml.inventory();
      this.gpuInfos = toWireGpus(inv);
      for (const g of this.gpuInfos) this.byBusId.set(g.pciBusId, { index: g.index, uuid: g.uuid, pciBusId: g.pciBusId });
      if (inv.system.driverVersion.ok) this.driver = inv.system.driverVersion.value;
      if (inv.system.cudaDriverVersion.ok) this.cuda = inv.system.cudaDriverVersion.value.version;
    } catch (err) {
      this.opts.log(`NVML inventory failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private startKmsg(): void {
    const path = this.opts.kmsgPath === undefined ? "/dev/kmsg" : this.opts.kmsgPath;
    if (path === null) return;
    try {
      this.kmsg = followKmsg(path, (f) => this.onKmsg(f), { log: (m) => this.opts.log(`kmsg: ${m}`) });
    } catch (err) {
      // Containers without /dev/kmsg still get NVML's events; say so once.
      this.opts.log(`kernel log ${path} not followed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private onNvmlEvent(e: NvmlEvent): void {
    if (e.xid === null) return;
    const busId = e.pciBusId ? normalizePciBusId(e.pciBusId) : undefined;
    const gpu = (busId && this.byBusId.get(busId)) || (e.deviceIndex !== null && e.uuid ? { index: e.deviceIndex, uuid: e.uuid, pciBusId: busId ?? "" } : undefined);
    const entry = lookupXid(e.xid, this.catalog);
    if (entry.ignored) return;
    const verdict = classifyXid(entry);
    const finding: Finding = {
      check: "xid",
      code: String(e.xid),
      severity: verdict.severity,
      action: verdict.action,
      message: `Xid ${e.xid} (${entry.known ? entry.meaning : "unknown Xid"}) on GPU ${gpu?.index ?? "?"}${busId ? ` (${busId})` : ""} [${verdict.basis}; NVML event]`,
      ...(gpu ? { gpu } : busId ? { pciBusId: busId } : {}),
    };
    this.occur(finding, "nvml_event", verdict.persistence !== "transient", entry.escalate);
  }

  private onKmsg(f: KmsgFinding): void {
    const fields = kmsgFindingToEvent(f, { catalog: this.catalog });
    if (fields === null) return;
    const gpu = f.pciBusId ? this.byBusId.get(f.pciBusId) : undefined;
    const finding: Finding = {
      check: fields.check,
      severity: fields.severity,
      action: fields.action,
      message: fields.message,
      ...(fields.code !== undefined ? { code: fields.code } : {}),
      ...(gpu ? { gpu } : f.pciBusId ? { pciBusId: f.pciBusId } : {}),
    };
    const entry = fields.check === "xid" && fields.code ? lookupXid(Number(fields.code), this.catalog) : undefined;
    const sticky = entry ? entry.persistence !== "transient" : fields.severity === "unhealthy";
    this.occur(finding, f.kind === "fallen_off_bus" ? "kmsg_bus" : "kmsg", sticky, entry?.escalate);
  }

  private occur(finding: Finding, source: FindingSource, sticky: boolean, escalate: Parameters<IncidentTracker["occur"]>[0]["escalate"]): void {
    const out = this.tracker.occur({ finding, source, at: this.now(), sticky, ...(escalate ? { escalate } : {}) });
    if (out) this.report([out]);
  }

  private report(findings: Finding[]): void {
    for (const f of findings) this.opts.onFinding(f);
  }
}

/** Fatal and replace-worthy conditions never clear by themselves (architecture.md). */
function isSticky(f: Finding): boolean {
  return f.action === "replace" || f.check === "gpu_lost" || (f.check === "row_remap" && f.code === "failed");
}

function watchdogFinding(message: string): Finding {
  return { check: "nvml", code: "driver_unresponsive", severity: "unhealthy", action: "reboot", message: `GPU driver unresponsive: ${message}` };
}
