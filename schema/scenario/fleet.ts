// The `fleet:` section of a scenario file: the reconciler's own config format (server,
// safety, providers, pools, checked by schema/config.ts exactly as `navarch config check`
// would) plus the simulator's fleet keys (`initial`, `nodes_per_rack`). The section parses
// into both: the config the real reconcile loop runs with, and the FleetSpec.
import * as v from "valibot";
import { NavarchConfigSchema } from "../config.ts";
import { isRecord, oneOf, show, strict, suggest } from "../shapes.ts";
import { int } from "./fields.ts";

export interface FleetSpec {
  initial: "running" | "empty";
  nodes_per_rack: number;
}

const FLEET_SIM_KEYS = ["initial", "nodes_per_rack"] as const;
const FLEET_CONFIG_KEYS = ["server", "safety", "providers", "pools"] as const;

const FleetSim = strict({
  initial: v.optional(oneOf(["running", "empty"] as const, "initial fleet"), "running"),
  nodes_per_rack: v.optional(int(1), 8),
});

/** The config format (server, safety, providers, pools) plus the simulator's own fleet keys. */
export const Fleet = v.pipe(
  v.custom<Record<string, unknown>>(isRecord, (issue) => `expected the fleet (a mapping with pools, as in the config file), got ${show(issue.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const raw = dataset.value;
    const simPart: Record<string, unknown> = {};
    const configPart: Record<string, unknown> = {};
    let ok = true;
    for (const [key, value] of Object.entries(raw)) {
      if ((FLEET_SIM_KEYS as readonly string[]).includes(key)) simPart[key] = value;
      else if ((FLEET_CONFIG_KEYS as readonly string[]).includes(key)) configPart[key] = value;
      else {
        ok = false;
        addIssue({
          message: `unknown key "${key}"${suggest(key, [...FLEET_CONFIG_KEYS, ...FLEET_SIM_KEYS])}`,
          path: [{ type: "object", origin: "key", input: raw, key, value }],
        });
      }
    }
    if (!("pools" in raw)) {
      ok = false;
      addIssue({
        message: "is required (the pools to simulate, as in the config file)",
        path: [{ type: "object", origin: "value", input: raw, key: "pools", value: undefined }],
      });
    }
    const config = v.safeParse(NavarchConfigSchema, configPart);
    if (!config.success) {
      ok = false;
      for (const issue of config.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
    }
    const sim = v.safeParse(FleetSim, simPart);
    if (!sim.success) {
      ok = false;
      for (const issue of sim.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
    }
    if (!ok || !config.success || !sim.success) return NEVER;
    if (config.output.pools.length === 0) {
      addIssue({ message: "must list at least one pool", path: [{ type: "object", origin: "value", input: raw, key: "pools", value: raw.pools }] });
      return NEVER;
    }
    return { config: config.output, fleet: sim.output as FleetSpec };
  }),
);
