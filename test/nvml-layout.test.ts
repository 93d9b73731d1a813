// The TypeScript struct table (agent/nvml/layout.ts) must equal what the C compiler lays out.
import { beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, copyFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT, STRUCT_VERSIONS } from "../agent/nvml/layout.ts";
import { buildFakeNvml, FAKE_NVML } from "./fake-nvml/control.ts";
import { tempDir } from "./support.ts";

interface COffsets {
  structs: Record<string, { size: number; fields: Record<string, [number, number]> }>;
  versions: Record<string, number>;
  pointerSize: number;
}

let c: COffsets;
beforeAll(() => {
  buildFakeNvml();
  const r = Bun.spawnSync([FAKE_NVML.offsets], { stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode).toBe(0);
  c = JSON.parse(r.stdout.toString()) as COffsets;
});

describe("struct layouts", () => {
  test("the C program and the table describe the same structs", () => {
    expect(Object.keys(c.structs).sort()).toEqual(Object.keys(LAYOUT).sort());
    expect(c.pointerSize).toBe(8);
  });

  for (const [name, layout] of Object.entries(LAYOUT)) {
    test(`${name}: sizeof and every offsetof/sizeof match`, () => {
      const cs = c.structs[name];
      expect(cs).toBeDefined();
      expect(cs!.size).toBe(layout.size);
      const ts = Object.fromEntries(Object.entries(layout.fields).map(([f, l]) => [f, [l.offset, l.size]]));
      expect(ts).toEqual(cs!.fields);
    });
  }

  test("struct version tags equal the C macros (sizeof | v << 24)", () => {
    expect({ ...STRUCT_VERSIONS }).toEqual(c.versions as typeof STRUCT_VERSIONS);
    expect(STRUCT_VERSIONS.nvmlGpuFabricInfo_v3).toBe(0x03000028);
    expect(STRUCT_VERSIONS.nvmlGpuFabricInfo_v2).toBe(0x02000024);
    expect(STRUCT_VERSIONS.nvmlTemperature_v1).toBe(0x0100000c);
  });
});

describe("fake-nvml build.sh", () => {
  test("does nothing when the outputs are up to date", () => {
    const outputs = [FAKE_NVML.full, FAKE_NVML.r535, FAKE_NVML.r470, FAKE_NVML.offsets];
    const before = outputs.map((p) => statSync(p).mtimeMs);
    const t0 = performance.now();
    const r = Bun.spawnSync(["sh", FAKE_NVML.buildScript], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(0);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(outputs.map((p) => statSync(p).mtimeMs)).toEqual(before);
  });

  test("fails with the compiler's message", () => {
    const dir = tempDir();
    const src = join(FAKE_NVML.buildScript, "..");
    for (const f of ["build.sh", "fake_nvml.c", "fake_nvml.h", "offsets.c"]) copyFileSync(join(src, f), join(dir, f));
    appendFileSync(join(dir, "fake_nvml.c"), "\nint broken(void) { return undeclared_thing; }\n");
    const r = Bun.spawnSync(["sh", join(dir, "build.sh")], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).not.toBe(0);
    const err = r.stderr.toString();
    expect(err).toContain("fake-nvml build: full failed");
    expect(err).toContain("undeclared_thing");
    expect(err).toContain("error:");
  });
});
