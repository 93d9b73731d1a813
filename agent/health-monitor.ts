// The agent's health monitor on the main thread: the NVML worker's findings (its GPU checks run
// there, tier by tier) and events, the kernel log, the NVML watchdog, and the node checks that
// read sysfs (InfiniBand ports, the driver's kernel module), turned into incidents
// (agent/checks/incident-tracker.ts) and handed to the reporter the moment they open. It is also
// the agent's GpuSource: inventory and readings for registration and heartbeats come from the
// worker's latest full pass, so a heartbeat never waits on the driver.
import { isSticky } from "../schema/checks.ts";
import { findingKey, timerMs, type AgentHealth, type GpuIdentity, type GpuInfo, type GpuSnapshot, type NvmlStatus, type Severity } from "../schema/wire.ts";
import { type XidCatalog, XID_CATALOG } from "../schema/xid-catalog.ts";
import type { GpuSource } from "./agent.ts";
import { driverVersions, readKernelModuleVersion } from "./checks/driver.ts";
import type { Finding } from "./checks/finding.ts";
import { DEFAULT_INFINIBAND_DIR, InfinibandCheck, readInfinibandPorts } from "./checks/infiniband.ts";
import { IncidentTracker, type FindingSource } from "./checks/incident-tracker.ts";
import { xidFinding, type XidFinding } from "./checks/xid.ts";
import { kmsgFindingToEvent, kmsgXidOccurrence } from "./kmsg/event.ts";
import { DEFAULT_KMSG_PATH, followKmsg, type KmsgFollower } from "./kmsg/follow.ts";
import type { KmsgFinding } from "./kmsg/match.ts";
import { startReloadingNvmlMonitor, toWireGpus, type NvmlEvent, type NvmlInventory, type NvmlMonitor } from "./nvml/index.ts";
import type { CheckedMessage } from "./nvml/protocol.ts";
import { memoryReport } from "./memory-report.ts";
import { normalizePciBusId } from "./pci.ts";

export interface HealthMonitorOptions {
  libraryPath?: string | undefined;
  /** Kernel log to follow; null to not follow one. Default /dev/kmsg. */
  kmsgPath?: string | null;
  /** Between full checks; held to what a timer can hold (main.ts refuses such flags outright). */
  pollIntervalMs?: number;
  /** How long one NVML call may take before the watchdog calls the driver unresponsive. */
  pollDeadlineMs?: number;
  expectedGpus?: number;
  /** InfiniBand ports in sysfs; null to not look. Default /sys/class/infiniband. */
  infinibandDir?: string | null;
  /** The rate every InfiniBand port should run at (default: the fastest seen). */
  infinibandRateGbps?: number;
  /** Where sysfs is (the driver's kernel module version is read from it). Default /sys. */
  sysfsRoot?: string;
  catalog?: XidCatalog;
  /** Receives each finding to report (already deduplicated). */
  onFinding: (finding: Finding) => void;
  log: (line: string) => void;
  now?: () => number;
}

const RANK: Record<Severity, number> = { healthy: 0, degraded: 1, unhealthy: 2 };
/** The fast tier's cadence: a GPU crossing its slowdown threshold is known within about a second. */
const FAST_INTERVAL_MS = 1000;
/** The kernel log's records arrive as they are written; a regular file standing in for it (tests) is looked at this often. */
const KMSG_POLL_MS = 2000;

export class HealthMonitor implements GpuSource {
  private readonly tracker = new IncidentTracker();
  private readonly catalog: XidCatalog;
  private readonly now: () => number;
  private readonly infiniband: InfinibandCheck;
  private nvml: NvmlMonitor | undefined;
  private kmsg: KmsgFollower | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private gpuInfos: GpuInfo[] = [];
  /** Bus id → identity, from every inventory this boot (a GPU that falls off stays known). */
  private readonly byBusId = new Map<string, GpuIdentity>();
  private gpuReadings: GpuSnapshot[] = [];
  private driver: string | undefined;
  private cuda: string | undefined;
  private firstFullPass: (() => void) | undefined;
  /** True once a full check has completed: never report "healthy" before. */
  checked = false;

  constructor(private readonly opts: HealthMonitorOptions) {
    this.catalog = opts.catalog ?? XID_CATALOG;
    this.now = opts.now ?? Date.now;
    this.infiniband = new InfinibandCheck(opts.infinibandRateGbps !== undefined ? { expectedRateGbps: opts.infinibandRateGbps } : {});
  }

  /** Starts every source and resolves after the first full check (or once NVML is known unavailable). */
  async start(): Promise<void> {
    const { opts } = this;
    const intervalMs = Math.max(100, timerMs(opts.pollIntervalMs ?? 10_000, 10_000));
    const fastMs = Math.min(FAST_INTERVAL_MS, intervalMs);
    const firstFull = new Promise<void>((resolve) => (this.firstFullPass = resolve));
    // Its library file is watched: a driver upgrade that writes over it is a reload, not a crash.
    this.nvml = await startReloadingNvmlMonitor({
      // A library the operator named is the only one tried: never a silent substitute.
      ...(opts.libraryPath !== undefined ? { libraryPath: opts.libraryPath, explicitOnly: true } : {}),
      pollDeadlineMs: timerMs(opts.pollDeadlineMs ?? 5000, 5000),
      // Waits end when the next tier is due: the worker wakes about once a second.
      eventWaitSliceMs: fastMs,
      checks: { fullIntervalMs: intervalMs, fastIntervalMs: fastMs, ...(opts.expectedGpus !== undefined ? { expectedGpus: opts.expectedGpus } : {}) },
      onChecked: (m) => this.onChecked(m),
      onEvent: (e) => this.onNvmlEvent(e),
      onHang: (hang) => {
        this.report(this.tracker.poll([watchdogFinding(hang.message)], this.now(), () => false, "watchdog"));
        // A first pass that hangs is still the end of starting: the hang is the finding.
        this.firstFullPass?.();
      },
      onRecover: () => this.report(this.tracker.poll([], this.now(), () => false, "watchdog")),
      onEventError: (err) => opts.log(`NVML event wait failed (${err.error.name}); ${err.action} in ${err.retryInMs} ms`),
      onWorkerError: (err) => {
        opts.log(`NVML worker error: ${err.message}`);
        this.firstFullPass?.();
      },
      onReload: (m, phase) => {
        if (phase === "started") {
          // No readings of a library that is gone; the reload's outcome is said when it ends.
          this.gpuReadings = [];
          opts.log(m.status.error ?? "NVML unavailable, reloading");
        } else if (m.status.available && m.initialInventory) {
          this.adopt(m.initialInventory);
          opts.log(`NVML reloaded from ${m.libraryPath ?? "?"} (driver ${this.driver ?? "unknown"}, ${this.gpuInfos.length} GPUs)`);
          this.report(this.tracker.poll([], this.now(), () => false, "nvml:load"));
        } else this.unavailable(m);
      },
    });
    const inventory = this.nvml.initialInventory;
    if (this.nvml.status.available && inventory) {
      this.adopt(inventory);
      if (this.nvml.mappedInPlace !== null)
        opts.log(`NVML is mapped from its file, not a private copy (${this.nvml.mappedInPlace}): a driver upgrade that writes over it can crash the agent`);
    } else {
      this.unavailable(this.nvml);
      this.firstFullPass?.();
    }
    this.startKmsg();
    this.nodeChecks();
    this.timer = setInterval(() => this.nodeChecks(), intervalMs);
    await firstFull;
    this.checked = true;
  }

  /** The GPUs, driver and CUDA versions a loaded library reports. */
  private adopt(inventory: NvmlInventory): void {
    this.gpuInfos = toWireGpus(inventory);
    for (const g of this.gpuInfos) this.byBusId.set(g.pciBusId, { index: g.index, uuid: g.uuid, pciBusId: g.pciBusId });
    if (inventory.system.driverVersion.ok) this.driver = inventory.system.driverVersion.value;
    if (inventory.system.cudaDriverVersion.ok) this.cuda = inventory.system.cudaDriverVersion.value.version;
  }

  /** NVML could not be loaded: said in the log, and a finding when a library file is there but cannot be used. */
  private unavailable(nvml: NvmlMonitor): void {
    const why = (nvml.status.error ?? "unknown").replace(/^NVML unavailable[:,] /, "");
    this.opts.log(`NVML unavailable: ${why}`);
    // No driver installed is not a fault; a library file that is there but cannot be used is.
    const unusable = nvml.attempts.some((a) => a.path.includes("/") && a.outcome !== "missing") || nvml.failure?.stage === "worker";
    if (unusable) this.report(this.tracker.poll([unusableNvml(why)], this.now(), () => false, "nvml:load"));
  }

  /** Where the agent's memory is (agent/memory-report.ts). */
  memoryReport(): Promise<string> {
    return memoryReport(() => this.nvml?.workerHeap() ?? Promise.resolve(null));
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
  snapshot(): GpuSnapshot[] {
    return this.gpuReadings;
  }

  private onChecked(m: CheckedMessage): void {
    if (m.full) {
      this.gpuReadings = m.full.gpus;
      for (const id of m.full.identities) this.byBusId.set(id.pciBusId, id);
      this.report(this.tracker.poll(m.full.findings, m.at, isSticky, "nvml:full"));
    }
    this.report(this.tracker.poll(m.fast, m.at, isSticky, "nvml:fast"));
    if (m.full) this.firstFullPass?.();
  }

  /** The checks that read sysfs, and the repeat counts of open incidents, at the poll interval. */
  private nodeChecks(): void {
    const at = this.now();
    const findings: Finding[] = [];
    if (this.opts.infinibandDir !== null)
      findings.push(...this.infiniband.evaluate(readInfinibandPorts(this.opts.infinibandDir ?? DEFAULT_INFINIBAND_DIR), at));
    findings.push(...driverVersions(this.driver, readKernelModuleVersion(this.opts.sysfsRoot)));
    this.report(this.tracker.poll(findings, at, isSticky, "node"));
    this.report(this.tracker.due(at));
  }

  private startKmsg(): void {
    const path = this.opts.kmsgPath === undefined ? DEFAULT_KMSG_PATH : this.opts.kmsgPath;
    if (path === null) return;
    try {
      // Each record the moment it is written (agent/kmsg/follow.ts), at no cost while none is: an
      // Xid the driver only logs (NVML's events stopped, the library gone) is as prompt as one
      // NVML reports. A regular file gives no notice, and is looked at every 2 s; so is the
      // device while the follower cannot wait on it.
      this.kmsg = followKmsg(path, (f) => this.onKmsg(f), { pollIntervalMs: KMSG_POLL_MS, log: (m) => this.opts.log(`kmsg: ${m}`) });
    } catch (err) {
      // Containers without /dev/kmsg still get NVML's events; say so once.
      this.opts.log(`kernel log ${path} not followed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private gpuOf(busId: string | undefined): GpuIdentity | undefined {
    return busId ? this.byBusId.get(busId) : undefined;
  }

  private onNvmlEvent(e: NvmlEvent): void {
    if (e.xid === null) return;
    const busId = e.pciBusId ? normalizePciBusId(e.pciBusId) : undefined;
    const gpu = this.gpuOf(busId) ?? (e.deviceIndex !== null && e.uuid ? { index: e.deviceIndex, uuid: e.uuid, pciBusId: busId ?? "" } : undefined);
    const where = `GPU ${gpu?.index ?? "?"}${busId ? ` (${busId})` : ""}`;
    this.occur(xidFinding({ xid: e.xid, source: "NVML event", where }, this.catalog), gpu, busId, "nvml_event");
  }

  private onKmsg(f: KmsgFinding): void {
    const gpu = this.gpuOf(f.pciBusId);
    const occurrence = kmsgXidOccurrence(f);
    if (occurrence) {
      this.occur(xidFinding(occurrence, this.catalog), gpu, f.pciBusId, f.kind === "fallen_off_bus" ? "kmsg_bus" : "kmsg");
      return;
    }
    const fields = kmsgFindingToEvent(f, { catalog: this.catalog });
    if (fields === null) return;
    const finding: Finding = { check: fields.check, severity: fields.severity, action: fields.action, message: fields.message };
    if (fields.code !== undefined) finding.code = fields.code;
    this.occur({ finding, sticky: fields.severity === "unhealthy" }, gpu, f.pciBusId, "kmsg");
  }

  private occur(x: XidFinding | null, gpu: GpuIdentity | undefined, busId: string | undefined, source: FindingSource): void {
    if (x === null) return;
    const finding: Finding = { ...x.finding, ...(gpu ? { gpu } : busId ? { pciBusId: busId } : {}) };
    const out = this.tracker.occur({ finding, source, at: this.now(), sticky: x.sticky, ...(x.escalate ? { escalate: x.escalate } : {}) });
    if (out) this.report([out]);
  }

  private report(findings: Finding[]): void {
    for (const f of findings) this.opts.onFinding(f);
  }
}

function unusableNvml(why: string): Finding {
  return { check: "nvml", code: "unusable", severity: "degraded", action: "contact_support", message: `NVML unavailable: ${why}` };
}

function watchdogFinding(message: string): Finding {
  return { check: "nvml", code: "driver_unresponsive", severity: "unhealthy", action: "reboot", message };
}
