// The ONE table of NVML struct layouts (x86_64 / aarch64 LP64) that the binding's readers use.
// test/nvml-layout.test.ts checks every entry against the C compiler's sizeof/offsetof
// (test/fake-nvml/build/offsets). Change a layout here and nowhere else.

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}
export interface StructLayout {
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

const f = (offset: number, size: number): FieldLayout => ({ offset, size });

export const LAYOUT = {
  nvmlPciInfo_t: {
    size: 68,
    fields: {
      busIdLegacy: f(0, 16),
      domain: f(16, 4),
      bus: f(20, 4),
      device: f(24, 4),
      pciDeviceId: f(28, 4),
      pciSubSystemId: f(32, 4),
      busId: f(36, 32),
    },
  },
  nvmlMemory_t: {
    size: 24,
    fields: { total: f(0, 8), free: f(8, 8), used: f(16, 8) },
  },
  nvmlMemory_v2_t: {
    size: 40,
    fields: { version: f(0, 4), total: f(8, 8), reserved: f(16, 8), free: f(24, 8), used: f(32, 8) },
  },
  nvmlUtilization_t: {
    size: 8,
    fields: { gpu: f(0, 4), memory: f(4, 4) },
  },
  nvmlEventData_t: {
    size: 32,
    fields: { device: f(0, 8), eventType: f(8, 8), eventData: f(16, 8), gpuInstanceId: f(24, 4), computeInstanceId: f(28, 4) },
  },
  nvmlFieldValue_t: {
    size: 40,
    fields: {
      fieldId: f(0, 4),
      scopeId: f(4, 4),
      timestamp: f(8, 8),
      latencyUsec: f(16, 8),
      valueType: f(24, 4),
      nvmlReturn: f(28, 4),
      value: f(32, 8),
    },
  },
  nvmlGpuFabricInfo_t: {
    size: 28,
    fields: { clusterUuid: f(0, 16), status: f(16, 4), cliqueId: f(20, 4), state: f(24, 1) },
  },
  nvmlGpuFabricInfo_v2_t: {
    size: 36,
    fields: { version: f(0, 4), clusterUuid: f(4, 16), status: f(20, 4), cliqueId: f(24, 4), state: f(28, 1), healthMask: f(32, 4) },
  },
  nvmlGpuFabricInfo_v3_t: {
    size: 40,
    fields: {
      version: f(0, 4),
      clusterUuid: f(4, 16),
      status: f(20, 4),
      cliqueId: f(24, 4),
      state: f(28, 1),
      healthMask: f(32, 4),
      healthSummary: f(36, 1),
    },
  },
  nvmlTemperature_v1_t: {
    size: 12,
    fields: { version: f(0, 4), sensorType: f(4, 4), temperature: f(8, 4) },
  },
  nvmlMarginTemperature_v1_t: {
    size: 8,
    fields: { version: f(0, 4), marginTemperature: f(4, 4) },
  },
  nvmlProcessInfo_v1_t: {
    size: 16,
    fields: { pid: f(0, 4), usedGpuMemory: f(8, 8) },
  },
  nvmlProcessInfo_v2_t: {
    size: 24,
    fields: { pid: f(0, 4), usedGpuMemory: f(8, 8), gpuInstanceId: f(16, 4), computeInstanceId: f(20, 4) },
  },
  nvmlValue_t: {
    size: 8,
    fields: { dVal: f(0, 8), ullVal: f(0, 8) },
  },
} as const satisfies Record<string, StructLayout>;

export type StructName = keyof typeof LAYOUT;

/** NVML's versioned-struct tag: `sizeof(struct) | (version << 24)`. */
export function structVersion(struct: StructName, version: number): number {
  return (LAYOUT[struct].size | (version << 24)) >>> 0;
}

/** The version tags the binding sends, by NVML's macro names (checked against C in the tests). */
export const STRUCT_VERSIONS = {
  nvmlMemory_v2: structVersion("nvmlMemory_v2_t", 2),
  nvmlGpuFabricInfo_v2: structVersion("nvmlGpuFabricInfo_v2_t", 2),
  nvmlGpuFabricInfo_v3: structVersion("nvmlGpuFabricInfo_v3_t", 3),
  nvmlTemperature_v1: structVersion("nvmlTemperature_v1_t", 1),
  nvmlMarginTemperature_v1: structVersion("nvmlMarginTemperature_v1_t", 1),
} as const;

/** A zeroed struct buffer plus a little-endian view of it. */
export function allocStruct(struct: StructName): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(LAYOUT[struct].size);
  return { bytes, view: new DataView(bytes.buffer) };
}

/** Fixed-size char buffers NVML documents for string getters. */
export const STRING_BUFFER = {
  systemDriverVersion: 80,
  systemNvmlVersion: 80,
  deviceUuid: 96,
  deviceName: 96,
  deviceSerial: 30,
} as const;
