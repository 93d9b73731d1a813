// The normalised config written back as YAML (what `navarch config check` prints): same
// keys as the input, defaults filled in, durations in their short form (`5m`, not 300000).
// Re-parsing the output gives the same config (the tests check this round trip).
import { stringify } from "yaml";
import { DURATION_KEYS, formatDuration, type NavarchConfig } from "../../schema/config.ts";

export function configToYaml(config: NavarchConfig): string {
  return stringify(readable(config), { lineWidth: 0 });
}

function readable(value: unknown, key?: string): unknown {
  if (typeof value === "number" && key !== undefined && DURATION_KEYS.has(key)) return formatDuration(value);
  if (Array.isArray(value)) return value.map((item) => readable(item));
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, readable(v, k)]),
    );
  }
  return value;
}
