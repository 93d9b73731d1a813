// Events from the worker blocked in nvmlEventSetWait_v2, and the hung-driver watchdog.
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import {
  EVENT_TYPES,
  NvmlUnresponsiveError,
  openNvml,
  startNvmlMonitor,
  type NvmlEvent,
  type NvmlEventLoopError,
  type NvmlHang,
  type NvmlMonitor,
  type NvmlMonitorOptions,
} from "../agent/nvml/index.ts";
import { FAKE_NVML, FakeNvml } from "./fake-nvml/control.ts";
import { waitFor } from "./support.ts";

let fake: FakeNvml;
const monitors: NvmlMonitor[] = [];

beforeAll(() => {
  fake = new FakeNvml();
  fake.reset();
});
afterEach(async () => {
  fake.setHangMs("*", 0);
  for (const m of monitors.splice(0)) await m.close();
  fake.reset();
});

interface Recorded {
  events: NvmlEvent[];
  errors: NvmlEventLoopError[];
  hangs: NvmlHang[];
  recovered: { hang: NvmlHang; stalledMs: number }[];
}

async function start(options: NvmlMonitorOptions = {}): Promise<{ m: NvmlMonitor } & Recorded> {
  const rec: Recorded = { events: [], errors: [], hangs: [], recovered: [] };
  const m = await startNvmlMonitor({
    libraryPath: FAKE_NVML.full,
    explicitOnly: true,
    eventWaitSliceMs: 100,
    eventRetryDelayMs: 100,
    pollDeadlineMs: 300,
    onEvent: (e) => rec.events.push(e),
    onEventError: (e) => rec.errors.push(e),
    onHang: (h) => rec.hangs.push(h),
    onRecover: (hang, stalledMs) => rec.recovered.push({ hang, stalledMs }),
    ...options,
  });
  monitors.push(m);
  expect(m.status.available).toBe(true);
  expect(m.eventsError).toBeNull();
  return { m, ...rec };
}

describe("events", () => {
  test("N Xids injected from the main thread: exactly N delivered, in order, none twice", async () => {
    const { m, events } = await start();
    expect(m.eventRegistrations.map((r) => [r.index, r.registeredMask, r.error])).toEqual([0, 1, 2, 3].map((i) => [i, 0xfc0b, null]));
    const xids = [13, 31, 43, 45, 48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140, 999];
    const N = 64;
    const sent: [number, number][] = [];
    for (let i = 0; i < N; i++) {
      const dev = i % 4;
      const xid = xids[i % xids.length]!;
      expect(fake.injectXid(dev, xid)).toBeGreaterThanOrEqual(1); // our event set took it
      sent.push([dev, xid]);
      if (i % 16 === 0) await Bun.sleep(5); // some while the worker is blocked, some queued
    }
    await waitFor("all events", () => (events.length >= N ? true : undefined), 5000);
    await Bun.sleep(250); // and no more
    expect(events).toHaveLength(N);
    expect(events.map((e) => [e.deviceIndex, e.xid])).toEqual(sent);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const e = events.find((x) => x.xid === 999)!;
    expect(e).toMatchObject({ eventType: 8, eventTypeNames: ["XidCriticalError"], data: 999, gpuInstanceId: null, computeInstanceId: null });
    expect(events[1]).toMatchObject({ deviceIndex: 1, uuid: "GPU-8f0a1c2d-be01-4e6f-9a7b-fa4e00000001", pciBusId: "00000000:2A:00.0" });
  });

  test("the registered mask is honoured; a non-Xid event carries data 0 and no xid", async () => {
    const { events } = await start({ eventMask: EVENT_TYPES.XidCriticalError | EVENT_TYPES.Clock | 0x10000 /* not supported: dropped */ });
    expect(fake.injectEvent(0, EVENT_TYPES.PState, 0)).toBe(0); // not registered: nobody gets it
    expect(fake.injectEvent(0, EVENT_TYPES.DoubleBitEccError, 0)).toBe(0);
    expect(fake.injectEvent(1, EVENT_TYPES.Clock, 0)).toBe(1);
    expect(fake.injectXid(2, 79)).toBe(1);
    await waitFor("2 events", () => (events.length >= 2 ? true : undefined));
    await Bun.sleep(200);
    expect(events.map((e) => [e.deviceIndex, e.eventTypeNames, e.data, e.xid])).toEqual([
      [1, ["Clock"], 0, null],
      [2, ["XidCriticalError"], 79, 79],
    ]);
  });

  test("default mask: ECC and recovery-action events, not PState/Clock", async () => {
    const { m, events } = await start();
    expect(m.eventRegistrations[0]!.registeredMask & EVENT_TYPES.Clock).toBe(0);
    expect(fake.injectEvent(3, EVENT_TYPES.Clock, 0)).toBe(0);
    expect(fake.injectEvent(3, EVENT_TYPES.DoubleBitEccError, 0)).toBe(1);
    expect(fake.injectEvent(3, EVENT_TYPES.GpuRecoveryAction, 2)).toBe(1);
    await waitFor("2 events", () => (events.length >= 2 ? true : undefined));
    expect(events.map((e) => e.eventTypeNames[0])).toEqual(["DoubleBitEccError", "GpuRecoveryAction"]);
  });

  test("EventSetWait returning TIMEOUT is the quiet case: no event, no error", async () => {
    const { events, errors } = await start({ eventWaitSliceMs: 20 });
    const before = fake.callCount("nvmlEventSetWait_v2");
    await Bun.sleep(200);
    expect(fake.callCount("nvmlEventSetWait_v2") - before).toBeGreaterThan(3);
    expect(events).toEqual([]);
    expect(errors).toEqual([]);
    // and at the synchronous layer: null on TIMEOUT
    const r = openNvml({ libraryPath: FAKE_NVML.full, explicitOnly: true });
    if (!r.ok) throw new Error(r.message);
    const set = r.library.eventSetCreate();
    r.library.registerEvents(r.library.device(0), EVENT_TYPES.XidCriticalError, set);
    const t0 = performance.now();
    expect(r.library.eventSetWait(set, 30)).toBeNull();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    fake.injectXid(0, 48);
    expect(r.library.eventSetWait(set, 1000)).toMatchObject({ eventType: 8, eventData: 48 });
    r.library.eventSetFree(set);
    r.library.shutdown();
    r.library.close();
  });

  test("EventSetWait returning GPU_IS_LOST: reported, the event set is re-created, other GPUs keep delivering", async () => {
    const { m, events, errors } = await start();
    fake.injectXid(1, 79);
    fake.setLost(1, true); // the wait returns GPU_IS_LOST once, after the queued Xid
    await waitFor("event error", () => (errors.length > 0 ? true : undefined));
    expect(events.map((e) => e.xid)).toEqual([79]);
    expect(errors[0]!.error).toMatchObject({ kind: "gpu_lost", code: 15, fn: "nvmlEventSetWait_v2" });
    expect(errors[0]!.action).toBe("recreate_event_set");
    await waitFor("re-registration", () => (m.eventRegistrations[1]?.error ? true : undefined));
    expect(m.eventRegistrations[1]!.error).toMatchObject({ kind: "gpu_lost", fn: "nvmlDeviceGetSupportedEventTypes" });
    expect(fake.injectXid(0, 48)).toBe(1);
    await waitFor("event after re-create", () => (events.length >= 2 ? true : undefined));
    expect(events[1]).toMatchObject({ deviceIndex: 0, xid: 48 });
    expect(errors).toHaveLength(1);
  });

  test("an Xid injected while nobody waits is not replayed later (no history), like NVML", async () => {
    fake.injectXid(0, 13); // no event set yet
    const { events } = await start();
    fake.injectXid(0, 31);
    await waitFor("event", () => (events.length >= 1 ? true : undefined));
    await Bun.sleep(150);
    expect(events.map((e) => e.xid)).toEqual([31]);
  });
});

describe("watchdog", () => {
  test("a hung call: reported within its deadline, the main thread keeps working, requests fail fast, then recovery", async () => {
    const { m, events, hangs, recovered } = await start();
    fake.setHangMs("nvmlDeviceGetPowerUsage", -1);
    // the main thread stays responsive while the worker is stuck
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    const t0 = performance.now();
    const err = await m.snapshot().then(
      () => null,
      (e: unknown) => e,
    );
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(NvmlUnresponsiveError);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(800);
    expect(ticks).toBeGreaterThan(10);
    expect(hangs).toHaveLength(1);
    expect(hangs[0]).toMatchObject({ operation: "snapshot", fn: "nvmlDeviceGetPowerUsage", device: 0, deadlineMs: 300 });
    expect(hangs[0]!.message).toContain("GPU driver unresponsive: nvmlDeviceGetPowerUsage on GPU 0");
    expect(m.status).toMatchObject({ available: true });
    expect(m.status.error).toContain("GPU driver unresponsive");
    // further requests fail fast instead of queueing behind the stuck call
    const t1 = performance.now();
    await expect(m.inventory()).rejects.toBeInstanceOf(NvmlUnresponsiveError);
    expect(performance.now() - t1).toBeLessThan(100);
    clearInterval(ticker);
    // One worker makes every NVML call: events wait for the stuck call too (the kernel log still
    // reports Xids meanwhile). None is lost: the queued Xid arrives once the call returns.
    fake.injectXid(2, 94);
    fake.setHangMs("nvmlDeviceGetPowerUsage", 0);
    await waitFor("recovery", () => (recovered.length > 0 ? true : undefined), 2000);
    expect(recovered[0]!.hang.fn).toBe("nvmlDeviceGetPowerUsage");
    expect(m.hang()).toBeNull();
    expect(m.status.error).toBeUndefined();
    await waitFor("the Xid queued during the hang", () => (events.length >= 1 ? true : undefined), 2000);
    expect(events[0]!.xid).toBe(94);
    const s = await m.snapshot();
    expect(s.devices).toHaveLength(4);
    expect(hangs).toHaveLength(1);
  });

  test("a hang that ends by itself before the deadline is not reported", async () => {
    const { m, hangs } = await start({ pollDeadlineMs: 1000 });
    fake.setHangMs("nvmlDeviceGetTemperatureV", 100);
    const s = await m.snapshot();
    expect(s.durationMs).toBeGreaterThanOrEqual(4 * 90);
    expect(hangs).toEqual([]);
  });

  test("a hung event wait: reported after its slice plus the deadline, and requests fail fast until it returns", async () => {
    const { m, hangs, recovered } = await start({ eventWaitSliceMs: 50, pollDeadlineMs: 200 });
    fake.setHangMs("nvmlEventSetWait_v2", -1);
    await waitFor("event hang", () => (hangs.length > 0 ? true : undefined), 3000);
    expect(hangs[0]).toMatchObject({ fn: "nvmlEventSetWait_v2", operation: "event wait", deadlineMs: 250 });
    expect(hangs[0]!.elapsedMs).toBeLessThan(1000);
    await expect(m.snapshot()).rejects.toBeInstanceOf(NvmlUnresponsiveError);
    fake.setHangMs("nvmlEventSetWait_v2", 0);
    await waitFor("event recovery", () => (recovered.length > 0 ? true : undefined), 3000);
    expect(recovered[0]!.hang.operation).toBe("event wait");
    expect((await m.snapshot()).devices).toHaveLength(4);
    expect(hangs).toHaveLength(1);
  });

  test("close() does not wait for a worker stuck in a C call", async () => {
    const { m, hangs } = await start();
    fake.setHangMs("nvmlDeviceGetCount_v2", -1);
    await expect(m.snapshot()).rejects.toBeInstanceOf(NvmlUnresponsiveError);
    expect(hangs).toHaveLength(1);
    const t0 = performance.now();
    await m.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(m.snapshot()).rejects.toThrow();
  });
});
