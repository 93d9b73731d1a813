// The local provider's instance types: `local-<N>gpu`, a machine with N fake GPUs (N from 1 to
// the fake libnvidia-ml's limit). The type is all a launch says about the machine's size.

/** The types instanceTypes() lists; launch accepts any `local-<N>gpu` with N from 1 to 16. */
export const LOCAL_INSTANCE_TYPES = ["local-1gpu", "local-2gpu", "local-4gpu", "local-8gpu"] as const;
/** The most GPUs of a local machine: the fake libnvidia-ml's limit. */
export const MAX_LOCAL_GPUS = 16;

/** GPUs of a `local-<N>gpu` type, or undefined for anything else. */
export function localGpuCount(instanceType: string): number | undefined {
  const m = /^local-([1-9]\d?)gpu$/.exec(instanceType);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= MAX_LOCAL_GPUS ? n : undefined;
}
