// The `compare:` section of a scenario file: variants of the same run, each a name and a few
// overrides of the scenario's config (a pool's keys, the safety rails, the server settings,
// the workload), or no automation at all (Navarch only opens incidents; a simulated human
// acts on each one after `human_delay`). `navarch sim run` replays the same fault trace and
// workload under every variant and sets their goodput side by side, each against the first.
//
//   compare:
//     - name: navarch                        # the first is the baseline (here: as written)
//     - name: replace
//       pools: { training: { health: { remediation: replace } } }
//     - name: more-spares
//       pools: { training: { scaling: { min_nodes: 2130, max_nodes: 2130 } } }
//     - name: no-automation
//       automation: none
//       human_delay: 4h                      # the default
//
// An override is merged into the section it names (mappings key by key, anything else
// replaced), and the merged scenario is checked as a whole; a problem is reported at the
// override's own key path (compare[1].pools.training.health.remediation). schema/scenario.ts
// does the merging.
import * as v from "valibot";
import type { Millis } from "../config.ts";
import { isRecord, issuePathAt, oneOf, show, strict } from "../shapes.ts";
import { Name, PositiveDuration, Str } from "./fields.ts";

export const AUTOMATIONS = ["navarch", "none"] as const;
export type Automation = (typeof AUTOMATIONS)[number];

/** A human acts on an incident this long after it opens, where no automation acts. */
export const DEFAULT_HUMAN_DELAY: Millis = 4 * 3_600_000;

/** A variant as written: its overrides are still raw (merged and checked by schema/scenario.ts). */
export interface VariantOverrides {
  name: string;
  description: string;
  /** Per pool name: keys of that pool's config (fleet.pools[]). */
  pools: Record<string, Record<string, unknown>>;
  /** Keys of fleet.safety, fleet.server and the workload section. */
  safety?: Record<string, unknown>;
  server?: Record<string, unknown>;
  workload?: Record<string, unknown>;
  automation: Automation;
  human_delay: Millis;
}

const Mapping = (what: string) => v.custom<Record<string, unknown>>(isRecord, (i) => `expected ${what} (a mapping), got ${show(i.input)}`);

const Variant = v.pipe(
  strict({
    name: Name,
    description: v.optional(Str, ""),
    pools: v.optional(
      v.pipe(Mapping("a mapping of pool name to the keys of its config to change"), v.record(v.string(), Mapping("keys of the pool's config"))),
      {},
    ),
    safety: v.optional(Mapping("keys of fleet.safety")),
    server: v.optional(Mapping("keys of fleet.server")),
    workload: v.optional(Mapping("keys of the workload section")),
    automation: v.optional(oneOf(AUTOMATIONS, "automation"), "navarch"),
    human_delay: v.optional(PositiveDuration),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const x = dataset.value;
    if (x.human_delay !== undefined && x.automation !== "none")
      addIssue({
        message: "a human acts only where no automation does: set automation: none, or remove human_delay",
        path: [{ type: "object", origin: "value", input: x, key: "human_delay", value: x.human_delay }],
      });
  }),
  v.transform((x): VariantOverrides => ({ ...x, human_delay: x.human_delay ?? DEFAULT_HUMAN_DELAY })),
);

export const Compare = v.pipe(
  v.array(
    Variant,
    (i) => `expected a list of variants like - { name: replace, pools: { training: { health: { remediation: replace } } } }, got ${show(i.input)}`,
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const list = dataset.value;
    if (list.length < 2) addIssue({ message: "list at least two variants: the baseline first, then what to compare with it" });
    const seen = new Map<string, number>();
    list.forEach((variant, i) => {
      const first = seen.get(variant.name);
      if (first !== undefined)
        addIssue({
          message: `the name ${variant.name} is taken by compare[${first}]`,
          path: issuePathAt(list, [i, "name"]),
        });
      else seen.set(variant.name, i);
    });
  }),
);

/** Merges `override` into `base`: mappings key by key, anything else replaced. Neither is changed. */
export function mergeRaw(base: unknown, override: unknown): unknown {
  if (!isRecord(base) || !isRecord(override)) return override;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = key in base ? mergeRaw(base[key], value) : value;
  return out;
}
