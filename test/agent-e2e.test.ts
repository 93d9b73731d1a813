// The compiled agent with the fake libnvidia-ml (chosen explicitly by path) and a
// compiled reconciler: every injected fault becomes the right stored event; the
// kernel log and NVML report one fault once; events survive a reconciler outage
// in order; a hung NVML call is reported and the agent keeps serving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

interface StoredEvent {
  seq: number;
  check: string;
  code: string | null;
  severity: string;
  action: string;
  gpuIndex: number | null;
  message: string;
  count: number;
}
interface Detail {
  node: { nvmlAvailable: boolean; agentHealth: string | null; lastHeartbeatAt: number; driverVersion: string | null };
  gpus: { index: number; pciBusId: string }[];
  events: StoredEvent[];
}

let fleet: CompiledFleet;
let server: Proc;
const GPUS = 8;

/** One agent with its own fake-library state, control FIFO and kernel-log file. */
function agentFiles(nodeId: string) {
  const dir = join(fleet.dir, nodeId);
  Bun.spawnSync(["mkdir", "-p", dir]);
  const state = join(dir, "nvml-state");
  writeFileSync(state, `count ${GPUS}\ndriver 570.86.15\n`);
  const kmsg = join(dir, "kmsg");
  writeFileSync(kmsg, "");
  return { state, control: join(dir, "nvml-control"), kmsg };
}

function startFakeAgent(nodeId: string, extra: string[] = []) {
  const files = agentFiles(nodeId);
  const proc = fleet.startAgent(
    nodeId,
    ["--nvml-library", FAKE_NVML.full, "--kmsg-path", files.kmsg, "--poll-interval", "0.2", "--nvml-deadline", "1", ...extra],
    { FAKE_NVML_STATE: files.state, FAKE_NVML_CONTROL: files.control },
  );
  return { proc, ...files, inject: (line: string) => appendFileSync(files.control, `${line}\n`) };
}

/** NVML's `00000000:3A:00.0` as the kernel log prints it: `PCI:0000:3a:00`. */
function kmsgPci(nvmlBusId: string): string {
  const [domain = "", bus = "", devfn = ""] = nvmlBusId.split(":");
  return `PCI:${domain.slice(4)}:${bus.toLowerCase()}:${devfn.slice(0, 2)}`;
}

const detail = (id: string) => fleet.api<Detail>(`/v1/nodes/${id}?events=1000`);

async function eventMatching(nodeId: string, pred: (e: StoredEvent) => boolean, what: string): Promise<StoredEvent> {
  return waitFor(`${nodeId}: ${what}`, async () => (await detail(nodeId))?.events.find(pred), 10_000);
}

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig();
  server = fleet.startServer();
  await fleet.waitReady();
}, 240_000);

afterAll(() => fleet.stop());

describe("compiled agent with the fake libnvidia-ml", () => {
  test("registers its GPUs and reports healthy only after its first full check", async () => {
    const a = startFakeAgent("fake-ok");
    const d = await waitFor("fake-ok checked", async () => {
      const n = await detail("fake-ok");
      return n?.node.agentHealth ? n : undefined;
    });
    expect(d.node.nvmlAvailable).toBe(true);
    expect(d.node.driverVersion).toBe("570.86.15");
    expect(d.gpus).toHaveLength(GPUS);
    expect(d.gpus[0]?.pciBusId).toMatch(/^[0-9A-F]{8}:[0-9A-F]{2}:00\.0$/);
    expect(d.node.agentHealth).toBe("healthy");
    expect(d.events).toEqual([]);
    a.proc.kill("SIGTERM");
  }, 30_000);

  test("each injected fault is stored as the right event", async () => {
    const a = startFakeAgent("fake-faults");
    await waitFor("registered", async () => ((await detail("fake-faults"))?.node.agentHealth ? true : undefined));
    const cases: { inject: string; check: string; code?: string; severity: string; gpu: number }[] = [
      { inject: "xid 0 79", check: "xid", code: "79", severity: "unhealthy", gpu: 0 },
      { inject: "ecc 1 0 3", check: "ecc", code: "dbe", severity: "unhealthy", gpu: 1 },
      { inject: "remap 2 0 1 1 0", check: "row_remap", code: "pending", severity: "degraded", gpu: 2 },
      { inject: "remap 3 0 4 0 1", check: "row_remap", code: "failed", severity: "unhealthy", gpu: 3 },
      { inject: "temp 4 95", check: "thermal", code: "shutdown", severity: "unhealthy", gpu: 4 },
      { inject: "clocks 5 0x8", check: "clocks", code: "hw_slowdown", severity: "degraded", gpu: 5 },
      { inject: "nvlink 6 3 down", check: "nvlink", code: "link_down", severity: "unhealthy", gpu: 6 },
      { inject: "resetrequired 7 on", check: "reset_required", severity: "unhealthy", gpu: 7 },
    ];
    for (const c of cases) a.inject(c.inject);
    for (const c of cases) {
      const e = await eventMatching("fake-faults", (e) => e.check === c.check && (c.code === undefined || e.code === c.code), c.inject);
      expect({ inject: c.inject, severity: e.severity, gpu: e.gpuIndex }).toEqual({ inject: c.inject, severity: c.severity, gpu: c.gpu });
    }
    a.inject("lost 6 on");
    const lost = await eventMatching("fake-faults", (e) => e.check === "gpu_lost", "GPU lost");
    expect(lost).toMatchObject({ severity: "unhealthy", gpuIndex: 6 });
    await waitFor("agent verdict unhealthy", async () => ((await detail("fake-faults"))?.node.agentHealth === "unhealthy" ? true : undefined));
    a.proc.kill("SIGTERM");
  }, 60_000);

  test("the kernel log and NVML report one fault once, not twice", async () => {
    const a = startFakeAgent("fake-join");
    const d = await waitFor("registered", async () => {
      const n = await detail("fake-join");
      return n?.node.agentHealth ? n : undefined;
    });
    a.inject("xid 2 48");
    appendFileSync(
      a.kmsg,
      `3,1201,${Date.now() * 1000},-;NVRM: Xid (${kmsgPci(d.gpus[2]!.pciBusId)}): 48, pid=4242, name=python3, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.\n`,
    );
    // kmsg alone for another code on another GPU: still one event, joined to its GPU.
    appendFileSync(
      a.kmsg,
      `3,1202,${Date.now() * 1000},-;NVRM: Xid (${kmsgPci(d.gpus[5]!.pciBusId)}): 94, pid=4243, name=python3, Contained: SM (0x1). RST: No, D-RST: No\n`,
    );
    await eventMatching("fake-join", (e) => e.code === "94", "Xid 94 from kmsg");
    await Bun.sleep(1000);
    const events = (await detail("fake-join"))!.events;
    expect(events.filter((e) => e.code === "48")).toHaveLength(1);
    expect(events.find((e) => e.code === "48")).toMatchObject({ gpuIndex: 2, count: 1 });
    expect(events.find((e) => e.code === "94")).toMatchObject({ gpuIndex: 5 });
    a.proc.kill("SIGTERM");
  }, 30_000);

  test("reconciler stopped, 50 faults injected, restarted: all 50 arrive once, in order", async () => {
    const a = startFakeAgent("fake-outage");
    await waitFor("registered", async () => ((await detail("fake-outage"))?.node.agentHealth ? true : undefined));
    server.kill("SIGTERM");
    await server.exited;
    // 50 distinct incidents: 8 GPUs × 7 Xid codes, minus 6.
    const codes = [13, 31, 43, 45, 63, 64, 74];
    const injected: string[] = [];
    for (let i = 0; i < 50; i++) {
      const gpu = i % GPUS;
      const code = codes[Math.floor(i / GPUS)]!;
      a.inject(`xid ${gpu} ${code}`);
      injected.push(`${gpu}:${code}`);
      await Bun.sleep(10); // keep the order the agent observes equal to the order injected
    }
    await Bun.sleep(1500); // the agent retries against a dead reconciler
    server = fleet.startServer();
    await fleet.waitReady();
    const events = await waitFor(
      "50 Xid events",
      async () => {
        const evs = (await detail("fake-outage"))?.events.filter((e) => e.check === "xid");
        return evs && evs.length >= 50 ? evs : undefined;
      },
      20_000,
    );
    const ascending = [...events].sort((x, y) => x.seq - y.seq);
    expect(ascending.map((e) => `${e.gpuIndex}:${e.code}`)).toEqual(injected);
    expect(events).toHaveLength(50);
    a.proc.kill("SIGTERM");
  }, 60_000);

  test("a hung NVML call is reported within its deadline and the agent keeps serving", async () => {
    const a = startFakeAgent("fake-hang");
    const d = await waitFor("registered", async () => {
      const n = await detail("fake-hang");
      return n?.node.agentHealth ? n : undefined;
    });
    const hungAt = Date.now();
    a.inject("hang nvmlDeviceGetPowerUsage -1");
    const e = await eventMatching("fake-hang", (e) => e.check === "nvml" && e.code === "driver_unresponsive", "driver unresponsive");
    expect(e.severity).toBe("unhealthy");
    expect(e.message).toContain("nvmlDeviceGetPowerUsage");
    // Deadline 1 s plus one poll interval and the push: well inside 5 s.
    expect(Date.now() - hungAt).toBeLessThan(5000);
    // Still serving: heartbeats keep arriving and kmsg Xids are still reported.
    const beat = (await detail("fake-hang"))!.node.lastHeartbeatAt;
    await waitFor("a heartbeat while NVML hangs", async () => (((await detail("fake-hang"))?.node.lastHeartbeatAt ?? 0) > beat ? true : undefined), 5000);
    appendFileSync(
      a.kmsg,
      `3,1300,${Date.now() * 1000},-;NVRM: Xid (${kmsgPci(d.gpus[0]!.pciBusId)}): 119, pid=1, name=x, Timeout after 6s of waiting for RPC response from GPU0 GSP!\n`,
    );
    await eventMatching("fake-hang", (e) => e.code === "119", "Xid 119 from kmsg during the hang");
    a.inject("hang nvmlDeviceGetPowerUsage 0");
    await eventMatching("fake-hang", (e) => e.check === "nvml" && e.severity === "healthy", "recovery after the hang");
    a.proc.kill("SIGKILL");
  }, 30_000);
});
