/*
 * Prints, as JSON, sizeof/offsetof of every struct the agent's NVML binding reads, as this
 * C compiler lays them out from fake_nvml.h. test/nvml-layout.test.ts compares the output with
 * agent/nvml/layout.ts.
 *   {"structs":{"T":{"size":N,"fields":{"f":[offset,size],...}},...},"versions":{"name":N,...}}
 */
#include <stddef.h>
#include <stdio.h>

#include "fake_nvml.h"

static int first_struct = 1, first_field = 1;

static void begin(const char *name, size_t size) {
  printf("%s\n    \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "" : "}},", name, size);
  first_struct = 0;
  first_field = 1;
}

static void field(const char *name, size_t offset, size_t size) {
  printf("%s\"%s\": [%zu, %zu]", first_field ? "" : ", ", name, offset, size);
  first_field = 0;
}

#define S(T) begin(#T, sizeof(T));
#define F(T, f) field(#f, offsetof(T, f), sizeof(((T *)0)->f));
#define V(name) printf("%s\"%s\": %u", first++ ? ", " : "", #name, (unsigned int)(name));

int main(void) {
  printf("{\n  \"structs\": {");
  S(nvmlPciInfo_t)
  F(nvmlPciInfo_t, busIdLegacy) F(nvmlPciInfo_t, domain) F(nvmlPciInfo_t, bus) F(nvmlPciInfo_t, device)
  F(nvmlPciInfo_t, pciDeviceId) F(nvmlPciInfo_t, pciSubSystemId) F(nvmlPciInfo_t, busId)
  S(nvmlMemory_t)
  F(nvmlMemory_t, total) F(nvmlMemory_t, free) F(nvmlMemory_t, used)
  S(nvmlMemory_v2_t)
  F(nvmlMemory_v2_t, version) F(nvmlMemory_v2_t, total) F(nvmlMemory_v2_t, reserved) F(nvmlMemory_v2_t, free)
  F(nvmlMemory_v2_t, used)
  S(nvmlUtilization_t)
  F(nvmlUtilization_t, gpu) F(nvmlUtilization_t, memory)
  S(nvmlEventData_t)
  F(nvmlEventData_t, device) F(nvmlEventData_t, eventType) F(nvmlEventData_t, eventData)
  F(nvmlEventData_t, gpuInstanceId) F(nvmlEventData_t, computeInstanceId)
  S(nvmlFieldValue_t)
  F(nvmlFieldValue_t, fieldId) F(nvmlFieldValue_t, scopeId) F(nvmlFieldValue_t, timestamp)
  F(nvmlFieldValue_t, latencyUsec) F(nvmlFieldValue_t, valueType) F(nvmlFieldValue_t, nvmlReturn)
  F(nvmlFieldValue_t, value)
  S(nvmlGpuFabricInfo_t)
  F(nvmlGpuFabricInfo_t, clusterUuid) F(nvmlGpuFabricInfo_t, status) F(nvmlGpuFabricInfo_t, cliqueId)
  F(nvmlGpuFabricInfo_t, state)
  S(nvmlGpuFabricInfo_v2_t)
  F(nvmlGpuFabricInfo_v2_t, version) F(nvmlGpuFabricInfo_v2_t, clusterUuid) F(nvmlGpuFabricInfo_v2_t, status)
  F(nvmlGpuFabricInfo_v2_t, cliqueId) F(nvmlGpuFabricInfo_v2_t, state) F(nvmlGpuFabricInfo_v2_t, healthMask)
  S(nvmlGpuFabricInfo_v3_t)
  F(nvmlGpuFabricInfo_v3_t, version) F(nvmlGpuFabricInfo_v3_t, clusterUuid) F(nvmlGpuFabricInfo_v3_t, status)
  F(nvmlGpuFabricInfo_v3_t, cliqueId) F(nvmlGpuFabricInfo_v3_t, state) F(nvmlGpuFabricInfo_v3_t, healthMask)
  F(nvmlGpuFabricInfo_v3_t, healthSummary)
  S(nvmlTemperature_v1_t)
  F(nvmlTemperature_v1_t, version) F(nvmlTemperature_v1_t, sensorType) F(nvmlTemperature_v1_t, temperature)
  S(nvmlMarginTemperature_v1_t)
  F(nvmlMarginTemperature_v1_t, version) F(nvmlMarginTemperature_v1_t, marginTemperature)
  S(nvmlProcessInfo_v1_t)
  F(nvmlProcessInfo_v1_t, pid) F(nvmlProcessInfo_v1_t, usedGpuMemory)
  S(nvmlProcessInfo_v2_t)
  F(nvmlProcessInfo_v2_t, pid) F(nvmlProcessInfo_v2_t, usedGpuMemory) F(nvmlProcessInfo_v2_t, gpuInstanceId)
  F(nvmlProcessInfo_v2_t, computeInstanceId)
  S(nvmlValue_t)
  F(nvmlValue_t, dVal) F(nvmlValue_t, ullVal)
  printf("}}\n  },\n  \"versions\": {");
  int first = 0;
  V(nvmlMemory_v2) V(nvmlGpuFabricInfo_v2) V(nvmlGpuFabricInfo_v3) V(nvmlTemperature_v1)
  V(nvmlMarginTemperature_v1)
  printf("},\n  \"pointerSize\": %zu\n}\n", sizeof(void *));
  return 0;
}
