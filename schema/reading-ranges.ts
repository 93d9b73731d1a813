// Physical ranges of a GPU's readings: outside them a value is a broken sensor or a forged body.
// On its own (no schema library) so the agent's NVML worker can use it without loading the wire schemas.
export const READING_RANGES = {
  temperatureC: { min: -50, max: 200 },
  powerW: { min: 0, max: 10_000 },
  utilizationPct: { min: 0, max: 100 },
} as const;

/** `n` when it is within `range` (NaN and ±Infinity never are), else undefined. */
export function withinRange(n: number, range: { readonly min: number; readonly max: number }): number | undefined {
  return n >= range.min && n <= range.max ? n : undefined;
}
