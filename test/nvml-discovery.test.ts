// Library discovery, the core/optional symbol split and capability fallbacks, init failures.
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  NvmlLibrary,
  NvmlVersionMismatchError,
  nvmlErrorFromInfo,
  nvmlLibraryCandidates,
  openNvml,
  readSnapshot,
  startNvmlMonitor,
  type NvmlMonitor,
} from "../agent/nvml/index.ts";
import { FAKE_NVML, FakeNvml, buildFakeNvml } from "./fake-nvml/control.ts";
import { REPO_ROOT, tempDir } from "./support.ts";

let fake: FakeNvml;
const monitors: NvmlMonitor[] = [];
const libs: NvmlLibrary[] = [];

beforeAll(() => {
  buildFakeNvml();
  fake = new FakeNvml();
  fake.reset();
});
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.close();
  for (const l of libs.splice(0)) {
    try {
      l.shutdown();
    } catch {
      // not initialised
    }
    l.close();
  }
  fake.reset();
});

async function monitor(options: Parameters<typeof startNvmlMonitor>[0]): Promise<NvmlMonitor> {
  const m = await startNvmlMonitor({ eventWaitSliceMs: 50, pollDeadlineMs: 2000, ...options });
  monitors.push(m);
  return m;
}

describe("discovery", () => {
  test("candidate order: explicit path, driver root, host and container roots, then the bare soname", () => {
    const c = nvmlLibraryCandidates({ libraryPath: "/opt/x/libnvidia-ml.so.1", driverRoot: "/drv", env: {}, arch: "x64" });
    expect(c.map((x) => x.path)).toEqual([
      "/opt/x/libnvidia-ml.so.1",
      "/drv/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
      "/drv/usr/lib64/libnvidia-ml.so.1",
      "/drv/usr/lib/libnvidia-ml.so.1",
      "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
      "/usr/lib64/libnvidia-ml.so.1",
      "/usr/lib/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib64/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib/libnvidia-ml.so.1",
      "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
      "/home/kubernetes/bin/nvidia/lib64/libnvidia-ml.so.1",
      "libnvidia-ml.so.1",
    ]);
    expect(c[0]!.source).toBe("option");
    expect(c.at(-1)!.source).toBe("loader");
    // the env variables are the defaults for the options; arm64 uses its own multiarch directory
    const e = nvmlLibraryCandidates({ env: { NAVARCH_NVML_LIBRARY: "/e/lib.so", NAVARCH_NVIDIA_DRIVER_ROOT: "/r" }, arch: "arm64" });
    expect(e[0]).toEqual({ path: "/e/lib.so", source: "env" });
    expect(e[1]!.path).toBe("/r/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1");
    expect(nvmlLibraryCandidates({ libraryPath: "/only", explicitOnly: true, env: {} })).toEqual([{ path: "/only", source: "option" }]);
    // the fake is never a default
    expect(nvmlLibraryCandidates({ env: {} }).some((x) => x.path.includes("fake-nvml"))).toBe(false);
  });

  test("a bogus path: unavailable, every path tried listed with its reason (fresh process)", async () => {
    // A fresh process: once the fake is loaded here, the bare soname would resolve to it.
    const dir = tempDir();
    const script = join(dir, "discover.ts");
    writeFileSync(
      script,
      `import { startNvmlMonitor } from ${JSON.stringify(join(REPO_ROOT, "agent/nvml/index.ts"))};
       const m = await startNvmlMonitor({ events: false });
       console.log(JSON.stringify({ status: m.status, failure: m.failure, attempts: m.attempts, snapshot: await m.snapshot() }));
       await m.close();`,
    );
    const proc = Bun.spawn([process.execPath, script], {
      env: { ...process.env, NAVARCH_NVML_LIBRARY: "/nonexistent/bogus/libnvidia-ml.so.1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const r = JSON.parse(out) as {
      status: { available: boolean; error?: string; triedPaths?: string[] };
      failure: { stage: string } | null;
      attempts: { path: string; outcome: string; reason?: string }[];
      snapshot: { devices: unknown[]; deviceCount: { ok: boolean; error?: { kind: string } } };
    };
    const expected = nvmlLibraryCandidates({ libraryPath: "/nonexistent/bogus/libnvidia-ml.so.1" }).map((c) => c.path);
    if (r.status.available) {
      // A machine with a real driver: it was found, and it is not the bogus path.
      expect(r.attempts.at(-1)!.outcome).toBe("loaded");
      expect(r.attempts[0]).toMatchObject({ path: "/nonexistent/bogus/libnvidia-ml.so.1", outcome: "missing" });
      return;
    }
    expect(r.failure!.stage).toBe("load");
    expect(r.status.triedPaths).toEqual(expected);
    expect(r.attempts.map((a) => a.path)).toEqual(expected);
    for (const a of r.attempts) {
      expect(a.reason).toBeTruthy();
      expect(a.outcome).toBe(existsSync(a.path) || !a.path.includes("/") ? "dlopen_failed" : "missing");
      expect(r.status.error).toContain(a.path);
    }
    expect(r.attempts[0]!.reason).toBe("no such file");
    expect(r.attempts.at(-1)!.reason).toContain("libnvidia-ml.so.1");
    // never fake GPUs
    expect(r.snapshot.devices).toEqual([]);
    expect(r.snapshot.deviceCount).toMatchObject({ ok: false, error: { kind: "library_not_found" } });
  });

  test("files that are not NVML are rejected with the reason", () => {
    const dir = tempDir();
    const notElf = join(dir, "libnvidia-ml.so.1");
    writeFileSync(notElf, "not a library");
    const r1 = openNvml({ libraryPath: notElf, explicitOnly: true });
    expect(r1.ok).toBe(false);
    // Refused before dlopen: a file that is no shared object (or a truncated one) never reaches the loader.
    expect(r1.attempts[0]).toMatchObject({ path: notElf, outcome: "bad_file", reason: "not an ELF shared object (13 bytes)" });
    const r2 = openNvml({ libraryPath: "libm.so.6", explicitOnly: true });
    expect(r2.ok).toBe(false);
    expect(r2.attempts[0]!.outcome).toBe("not_nvml");
    expect(r2.attempts[0]!.reason).toContain("nvmlInit_v2 or nvmlInit");
  });

  test("a truncated library is refused before dlopen (mapping it would be a SIGBUS)", () => {
    const dir = tempDir();
    const truncated = join(dir, "libnvidia-ml.so.1");
    writeFileSync(truncated, readFileSync(FAKE_NVML.full).subarray(0, 20_000));
    const r = openNvml({ libraryPath: truncated, explicitOnly: true });
    expect(r.ok).toBe(false);
    expect(r.attempts[0]).toMatchObject({ path: truncated, outcome: "bad_file" });
    expect(r.attempts[0]!.reason).toMatch(/^truncated: loadable segment \d extends past the end of the file \(needs \d+ bytes, the file has 20000\)$/);
    const header = join(dir, "header-only.so");
    writeFileSync(header, readFileSync(FAKE_NVML.full).subarray(0, 100));
    expect(openNvml({ libraryPath: header, explicitOnly: true }).attempts[0]!.reason).toContain("truncated: the program headers");
  });

  test("the fake, chosen explicitly by path, loads and enumerates", async () => {
    const m = await monitor({ libraryPath: FAKE_NVML.full, explicitOnly: true });
    expect(m.status).toEqual({ available: true, libraryPath: FAKE_NVML.full, triedPaths: [FAKE_NVML.full] });
    expect(m.failure).toBeNull();
    const inv = await m.inventory();
    expect(inv.deviceCount).toEqual({ ok: true, value: 4 });
    expect(inv.system.driverVersion).toEqual({ ok: true, value: "580.95.05" });
    expect(inv.system.cudaDriverVersion).toEqual({ ok: true, value: { raw: 13000, version: "13.0" } });
    expect(inv.devices[1]!.identity).toMatchObject({ ok: true, value: { index: 1, pciBusId: "00000000:2A:00.0", name: "NVIDIA H100 80GB HBM3" } });
  });

  test("a directory holding libnvidia-ml.so.1 works as the explicit path", () => {
    const r = openNvml({ libraryPath: join(FAKE_NVML.r535, ".."), explicitOnly: true });
    expect(r.ok).toBe(true);
    if (r.ok) libs.push(r.library);
  });
});

describe("capability probing", () => {
  test("recent fake: versioned names resolved, every optional symbol present", () => {
    const lib = NvmlLibrary.load(FAKE_NVML.full);
    libs.push(lib);
    const f = lib.capabilities.functions;
    expect(f.init).toBe("nvmlInit_v2");
    expect(f.deviceGetCount).toBe("nvmlDeviceGetCount_v2");
    expect(f.deviceGetHandleByIndex).toBe("nvmlDeviceGetHandleByIndex_v2");
    expect(f.deviceGetPciInfo).toBe("nvmlDeviceGetPciInfo_v3");
    expect(f.eventSetWait).toBe("nvmlEventSetWait_v2");
    expect(f.systemGetCudaDriverVersion).toBe("nvmlSystemGetCudaDriverVersion_v2");
    for (const [key, symbol] of Object.entries(f)) expect([key, symbol]).not.toEqual([key, null]);
    // fallbacks were probed too
    expect(lib.capabilities.symbols.nvmlInit).toBe(true);
    expect(lib.capabilities.symbols.nvmlDeviceGetHandleByPciBusId).toBe(false);
  });

  test("r535: loads, lacks the newer symbols, and the readings fall back without throwing", async () => {
    const m = await monitor({ libraryPath: FAKE_NVML.r535, explicitOnly: true });
    expect(m.status.available).toBe(true);
    const s = m.capabilities!.symbols;
    for (const sym of ["nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetTemperatureV", "nvmlDeviceGetMarginTemperature"]) expect(s[sym]).toBe(false);
    for (const sym of ["nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetGpuFabricInfo", "nvmlDeviceGetMemoryInfo_v2"]) expect(s[sym]).toBe(true);
    const snap = await m.snapshot();
    expect(snap.devices).toHaveLength(4);
    const d = snap.devices[0]!;
    expect(d.fatal).toBeNull();
    expect(d.temperatureC).toEqual({ ok: true, value: 34 });
    expect(d.clocksEventReasons).toMatchObject({ ok: true, value: { fn: "nvmlDeviceGetCurrentClocksEventReasons" } });
    // fabric: no GetGpuFabricInfoV, so the v1 call (no health mask)
    expect(d.fabric).toMatchObject({ ok: true, value: { version: 1, fn: "nvmlDeviceGetGpuFabricInfo", stateName: "completed", healthMask: null } });
    expect(d.marginTemperatureC).toMatchObject({ ok: false, error: { kind: "function_not_found", fn: "nvmlDeviceGetMarginTemperature" } });
    // the recovery-action field does not exist before R570: only that field fails
    expect(d.recoveryAction).toMatchObject({ ok: false, error: { kind: "not_supported" } });
    expect(d.fields.ok && d.fields.value.find((v) => v.fieldId === 4)?.value).toEqual({ ok: true, value: 0 });
    expect(m.eventRegistrations.map((r) => r.registeredMask)).toEqual([0xb, 0xb, 0xb, 0xb]);
  });

  test("r470: ClocksEventReasons → ThrottleReasons, no fabric info, v1 memory info", () => {
    const r = openNvml({ libraryPath: FAKE_NVML.r470, explicitOnly: true });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    libs.push(r.library);
    const lib = r.library;
    expect(lib.capabilities.symbols.nvmlDeviceGetCurrentClocksEventReasons).toBe(false);
    expect(lib.capabilities.functions.deviceGetGpuFabricInfo).toBeNull();
    const snap = readSnapshot(lib);
    const d = snap.devices[2]!;
    expect(d.clocksEventReasons).toEqual({ ok: true, value: { mask: 1, reasons: ["GpuIdle"], fn: "nvmlDeviceGetCurrentClocksThrottleReasons" } });
    expect(d.fabric).toMatchObject({ ok: false, error: { kind: "function_not_found", code: 13, fn: "nvmlDeviceGetGpuFabricInfo", device: 2 } });
    expect(d.memory).toMatchObject({ ok: true, value: { fn: "nvmlDeviceGetMemoryInfo", reservedBytes: null } });
    expect(d.pcie.gpuMaxGen).toMatchObject({ ok: false, error: { kind: "function_not_found" } });
    expect(d.pcie.maxGen).toEqual({ ok: true, value: 5 });
    expect(d.identity.ok).toBe(true);
  });
});

describe("init failures", () => {
  test("LIB_RM_VERSION_MISMATCH (18) from nvmlInit: typed error, no crash", async () => {
    fake.setInitReturn(18);
    const m = await monitor({ libraryPath: FAKE_NVML.full, explicitOnly: true });
    expect(m.status.available).toBe(false);
    expect(m.status.error).toContain("LIB_RM_VERSION_MISMATCH");
    expect(m.failure).toMatchObject({ stage: "init", libraryPath: FAKE_NVML.full, error: { kind: "lib_rm_version_mismatch", code: 18, fn: "nvmlInit_v2" } });
    if (m.failure?.stage === "init") expect(nvmlErrorFromInfo(m.failure.error)).toBeInstanceOf(NvmlVersionMismatchError);
    const snap = await m.snapshot();
    expect(snap.devices).toEqual([]);
    expect(snap.deviceCount).toMatchObject({ ok: false, error: { kind: "lib_rm_version_mismatch" } });
    // the synchronous layer throws the typed class
    const lib = NvmlLibrary.load(FAKE_NVML.full);
    libs.push(lib);
    expect(() => lib.init()).toThrow(NvmlVersionMismatchError);
  });

  test("DRIVER_NOT_LOADED (9) from nvmlInit", async () => {
    fake.command("init 9");
    const m = await monitor({ libraryPath: FAKE_NVML.full, explicitOnly: true });
    expect(m.failure).toMatchObject({ stage: "init", error: { kind: "driver_not_loaded", code: 9 } });
    expect(m.status.error).toContain("kernel driver is not loaded");
  });

  test("a hang inside nvmlInit: reported as unresponsive within the init deadline", async () => {
    fake.setHangMs("nvmlInit_v2", -1);
    const hangs: string[] = [];
    const t0 = performance.now();
    const m = await monitor({ libraryPath: FAKE_NVML.full, explicitOnly: true, initDeadlineMs: 300, onHang: (h) => hangs.push(h.fn ?? "?") });
    const took = performance.now() - t0;
    fake.setHangMs("nvmlInit_v2", 0);
    expect(took).toBeLessThan(2000);
    expect(m.status.available).toBe(false);
    expect(m.failure).toMatchObject({ stage: "unresponsive", hang: { fn: "nvmlInit_v2", operation: "init" } });
    expect(hangs).toEqual(["nvmlInit_v2"]);
  });
});
