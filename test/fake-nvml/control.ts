// Test-side handle on the fake libnvidia-ml.so.1 (fake_nvml.c): builds it (build.sh is a no-op
// when up to date) and binds its control exports with a separate dlopen of the same path, so the
// commands act on the very state the binding (and its Workers) see.
import { dlopen, FFIType } from "bun:ffi";
import { join } from "node:path";

const DIR = new URL(".", import.meta.url).pathname;
export const FAKE_NVML = {
  /** Recent driver (R580). */
  full: join(DIR, "build/libnvidia-ml.so.1"),
  /** No symbol newer than R535. */
  r535: join(DIR, "build/r535/libnvidia-ml.so.1"),
  /** No ClocksEventReasons, no fabric info, no _v2 memory info. */
  r470: join(DIR, "build/r470/libnvidia-ml.so.1"),
  offsets: join(DIR, "build/offsets"),
  buildScript: join(DIR, "build.sh"),
} as const;

let built = false;
/** Runs build.sh once per process; throws with the compiler's output when it fails. */
export function buildFakeNvml(): void {
  if (built) return;
  const r = Bun.spawnSync(["sh", FAKE_NVML.buildScript], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`fake-nvml build failed (${r.exitCode}):\n${r.stdout.toString()}${r.stderr.toString()}`);
  built = true;
}

const { i32, u32, u64, i64, ptr, cstring, void: none } = FFIType;
const CONTROL = {
  fakeNvmlCommand: { args: [ptr], returns: i32 },
  fakeNvmlLoadState: { args: [ptr], returns: i32 },
  fakeNvmlLastError: { args: [], returns: cstring },
  fakeNvmlReset: { args: [], returns: none },
  fakeNvmlBuildVersion: { args: [], returns: i32 },
  fakeNvmlInjectXid: { args: [u32, u64], returns: i32 },
  fakeNvmlInjectEvent: { args: [u32, u64, u64], returns: i32 },
  fakeNvmlSetLost: { args: [u32, i32], returns: i32 },
  fakeNvmlSetResetRequired: { args: [u32, i32], returns: i32 },
  fakeNvmlSetHangMs: { args: [ptr, i32], returns: i32 },
  fakeNvmlSetReturn: { args: [i32, ptr, i32], returns: i32 },
  fakeNvmlSetInitReturn: { args: [i32], returns: i32 },
  fakeNvmlSetTemperature: { args: [u32, u32], returns: i32 },
  fakeNvmlSetEcc: { args: [u32, u64, u64, u64, u64], returns: i32 },
  fakeNvmlSetRemap: { args: [u32, u32, u32, i32, i32], returns: i32 },
  fakeNvmlSetClockReasons: { args: [u32, u64], returns: i32 },
  fakeNvmlSetNvlink: { args: [u32, u32, i32], returns: i32 },
  fakeNvmlSetField: { args: [u32, u32, u64], returns: i32 },
  fakeNvmlCallCount: { args: [ptr], returns: i64 },
} as const;

const cstr = (s: string) => Buffer.from(`${s}\0`);

/** The control API of one fake library (state is per library file, shared by every thread). */
export class FakeNvml {
  private readonly lib;
  constructor(readonly path: string = FAKE_NVML.full) {
    buildFakeNvml();
    this.lib = dlopen(path, CONTROL);
  }

  private ok(rc: number, what: string): void {
    if (rc < 0) throw new Error(`fake-nvml ${what}: ${String(this.lib.symbols.fakeNvmlLastError())}`);
  }

  /** Runs control commands (see the comment at the top of fake_nvml.c); ';' or newlines separate them. */
  command(line: string): void {
    this.ok(this.lib.symbols.fakeNvmlCommand(cstr(line)), `command '${line}'`);
  }
  loadState(path: string): void {
    this.ok(this.lib.symbols.fakeNvmlLoadState(cstr(path)), `loadState ${path}`);
  }
  reset(): void {
    this.lib.symbols.fakeNvmlReset();
  }
  buildVersion(): number {
    return this.lib.symbols.fakeNvmlBuildVersion();
  }
  /** Returns how many event sets received it. */
  injectXid(dev: number, xid: number): number {
    return this.lib.symbols.fakeNvmlInjectXid(dev, BigInt(xid));
  }
  injectEvent(dev: number, type: number, data: number): number {
    return this.lib.symbols.fakeNvmlInjectEvent(dev, BigInt(type), BigInt(data));
  }
  setLost(dev: number, on: boolean): void {
    this.ok(this.lib.symbols.fakeNvmlSetLost(dev, on ? 1 : 0), "setLost");
  }
  setResetRequired(dev: number, on: boolean): void {
    this.ok(this.lib.symbols.fakeNvmlSetResetRequired(dev, on ? 1 : 0), "setResetRequired");
  }
  /** ms: > 0 sleep, -1 until released, 0 clear and release. fn "*" = every NVML function. */
  setHangMs(fn: string, ms: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetHangMs(cstr(fn), ms), "setHangMs");
  }
  /** dev -1 = every call; ret 0 clears. */
  setReturn(dev: number, fn: string, ret: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetReturn(dev, cstr(fn), ret), "setReturn");
  }
  setInitReturn(ret: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetInitReturn(ret), "setInitReturn");
  }
  setTemperature(dev: number, celsius: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetTemperature(dev, celsius), "setTemperature");
  }
  setEcc(dev: number, e: { sbeVolatile: number; dbeVolatile: number; sbeAggregate: number; dbeAggregate: number }): void {
    const s = this.lib.symbols;
    this.ok(s.fakeNvmlSetEcc(dev, BigInt(e.sbeVolatile), BigInt(e.dbeVolatile), BigInt(e.sbeAggregate), BigInt(e.dbeAggregate)), "setEcc");
  }
  setRemap(dev: number, r: { correctable: number; uncorrectable: number; pending: boolean; failed: boolean }): void {
    this.ok(this.lib.symbols.fakeNvmlSetRemap(dev, r.correctable, r.uncorrectable, r.pending ? 1 : 0, r.failed ? 1 : 0), "setRemap");
  }
  setClockReasons(dev: number, mask: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetClockReasons(dev, BigInt(mask)), "setClockReasons");
  }
  setNvlink(dev: number, link: number, up: boolean): void {
    this.ok(this.lib.symbols.fakeNvmlSetNvlink(dev, link, up ? 1 : 0), "setNvlink");
  }
  setField(dev: number, fieldId: number, value: number): void {
    this.ok(this.lib.symbols.fakeNvmlSetField(dev, fieldId, BigInt(value)), "setField");
  }
  /** Calls of one NVML function so far ("*" = all). */
  callCount(fn: string): number {
    return Number(this.lib.symbols.fakeNvmlCallCount(cstr(fn)));
  }
}
