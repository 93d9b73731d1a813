// The parts of Compute Engine's compute/v1 answers the GCP provider reads (as its discovery
// document describes them), checked with valibot: operations, instances, the aggregated
// instance and machine-type lists, and zones.
import * as v from "valibot";

export const Operation = v.object({
  name: v.string(),
  status: v.picklist(["PENDING", "RUNNING", "DONE"]),
  targetLink: v.optional(v.string()),
  error: v.optional(v.object({ errors: v.optional(v.array(v.object({ code: v.optional(v.string()), message: v.optional(v.string()) })), []) })),
  httpErrorStatusCode: v.optional(v.number()),
  httpErrorMessage: v.optional(v.string()),
});
export type Operation = v.InferOutput<typeof Operation>;

export const GceInstance = v.object({
  id: v.optional(v.string()),
  name: v.string(),
  zone: v.string(),
  machineType: v.string(),
  status: v.string(),
  creationTimestamp: v.optional(v.string()),
  labels: v.optional(v.record(v.string(), v.string()), {}),
  networkInterfaces: v.optional(
    v.array(
      v.object({
        networkIP: v.optional(v.string()),
        accessConfigs: v.optional(v.array(v.object({ natIP: v.optional(v.string()) })), []),
      }),
    ),
    [],
  ),
});
export type GceInstance = v.InferOutput<typeof GceInstance>;

const ScopedWarning = v.optional(v.object({ code: v.optional(v.string()) }));
export const AggregatedInstances = v.object({
  items: v.optional(v.record(v.string(), v.object({ instances: v.optional(v.array(GceInstance), []), warning: ScopedWarning })), {}),
  nextPageToken: v.optional(v.string()),
});
export const AggregatedMachineTypes = v.object({
  items: v.optional(
    v.record(
      v.string(),
      v.object({
        machineTypes: v.optional(
          v.array(
            v.object({
              name: v.string(),
              zone: v.optional(v.string()),
              accelerators: v.optional(v.array(v.object({ guestAcceleratorType: v.string(), guestAcceleratorCount: v.number() })), []),
            }),
          ),
          [],
        ),
        warning: ScopedWarning,
      }),
    ),
    {},
  ),
  nextPageToken: v.optional(v.string()),
});

export const ZoneList = v.object({
  items: v.optional(
    v.array(
      v.object({
        name: v.string(),
        region: v.optional(v.string()),
        status: v.optional(v.string()),
        deprecated: v.optional(v.object({ state: v.optional(v.string()) })),
      }),
    ),
    [],
  ),
  nextPageToken: v.optional(v.string()),
});

/** The last segment of a resource URL (`…/zones/us-central1-a` → `us-central1-a`). */
export function lastSegment(url: string): string {
  return url.slice(url.lastIndexOf("/") + 1);
}
