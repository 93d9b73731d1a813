// Upstream Navarch's file formats (the Go project this one replaces), as valibot schemas:
// the config file (`navarch config migrate` turns it into ours) and the health policy file
// (`server.health_policy_path` loads it as it is). Only the shape lives here; the mapping onto
// our formats is in reconciler/config/upstream.ts and reconciler/health/upstream-policy.ts.
//
// Upstream read both with a YAML decoder that ignores unknown keys, so these schemas are loose:
// the config mapping lists the unknown keys as notes, and the policy loader rejects them (a
// misspelt `condition` must not silently drop a rule).
import * as v from "valibot";
import { accept, isRecord, oneOf, show, reportDuplicateRuleNames, strict } from "./shapes.ts";

// ───────────────────────────── durations ─────────────────────────────

const GO_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const GO_DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;

/**
 * Milliseconds of a duration as upstream's decoder read it: Go's `time.ParseDuration` text
 * (`1h30m`, `1.5h`, `300ms`, `0`), or a bare integer counting nanoseconds. Negative: undefined.
 */
export function parseGoDuration(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? value / 1e6 : undefined;
  if (typeof value !== "string") return undefined;
  const text = value.startsWith("+") ? value.slice(1) : value;
  if (text === "0") return 0;
  if (!GO_DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/((?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(amount) * GO_UNITS_MS[unit!]!;
  return total;
}

const GoDuration = v.pipe(
  v.custom<string | number>(
    (x) => parseGoDuration(x) !== undefined,
    (issue) => `expected a Go duration like 30s or 5m, got ${show(issue.input)}`,
  ),
  v.transform((x) => parseGoDuration(x)!),
);

// ───────────────────────────── leaves ─────────────────────────────

const Str = accept<string>((x) => typeof x === "string", "a string");
const Text = accept<string>((x) => typeof x === "string" && x.trim() !== "", "a non-empty string");
const Bool = accept<boolean>((x) => typeof x === "boolean", "true or false");
/** Go `int` fields: YAML integers only (upstream's decoder refused "80" and 80.5). */
const Int = accept<number>((x) => typeof x === "number" && Number.isSafeInteger(x), "an integer");
const NonNegative = accept<number>((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0, "a non-negative integer");
const Float = accept<number>((x) => typeof x === "number" && Number.isFinite(x), "a number");

function list<T extends v.GenericSchema>(item: T) {
  return v.array(item, (issue) => `expected a list, got ${show(issue.input)}`);
}
const Mapping = accept<Record<string, unknown>>(isRecord, "a mapping");
function mapOf<T extends v.GenericSchema>(item: T) {
  return v.pipe(Mapping, v.record(v.string(), item));
}
/** Keys upstream knew are checked; others pass through (listed as notes by the migration). */
function loose<const T extends v.ObjectEntries>(entries: T) {
  return v.pipe(Mapping, v.looseObject(entries, "is required"));
}

// ───────────────────────────── the config file ─────────────────────────────

export const UPSTREAM_AUTOSCALER_TYPES = ["reactive", "queue", "scheduled", "predictive", "composite"] as const;

export interface UpstreamWindow {
  days?: string[];
  /** Hour of the day, inclusive. */
  start?: number;
  /** Hour of the day, exclusive (24: midnight). */
  end?: number;
  min_nodes?: number;
  max_nodes?: number;
}

export interface UpstreamAutoscaling {
  type: (typeof UPSTREAM_AUTOSCALER_TYPES)[number];
  scale_up_at?: number;
  scale_down_at?: number;
  jobs_per_node?: number;
  schedule?: UpstreamWindow[];
  fallback?: UpstreamAutoscaling;
  /** A number of autoscale intervals, not a duration. */
  lookback_window?: number;
  growth_factor?: number;
  mode?: string;
  autoscalers?: UpstreamAutoscaling[];
}

const Window: v.GenericSchema<unknown, UpstreamWindow> = loose({
  days: v.optional(list(Str)),
  start: v.optional(Int),
  end: v.optional(Int),
  min_nodes: v.optional(Int),
  max_nodes: v.optional(Int),
});

const Autoscaling: v.GenericSchema<unknown, UpstreamAutoscaling> = loose({
  type: oneOf(UPSTREAM_AUTOSCALER_TYPES, "autoscaler type"),
  scale_up_at: v.optional(Int),
  scale_down_at: v.optional(Int),
  jobs_per_node: v.optional(Int),
  schedule: v.optional(list(Window)),
  fallback: v.optional(v.lazy(() => Autoscaling)),
  lookback_window: v.optional(Int),
  growth_factor: v.optional(Float),
  mode: v.optional(Str),
  autoscalers: v.optional(list(v.lazy(() => Autoscaling))),
});

const Health = loose({
  unhealthy_after: v.optional(Int),
  auto_replace: v.optional(Bool),
});
export type UpstreamHealth = v.InferOutput<typeof Health>;

const PoolProvider = loose({
  name: Text,
  priority: v.optional(Int),
  weight: v.optional(Int),
  regions: v.optional(list(Text)),
  instance_type: v.optional(Text),
});
export type UpstreamPoolProvider = v.InferOutput<typeof PoolProvider>;

const Pool = loose({
  provider: v.optional(Str),
  providers: v.optional(list(PoolProvider)),
  strategy: v.optional(Str),
  instance_type: v.optional(Str),
  region: v.optional(Str),
  zones: v.optional(list(Text)),
  ssh_keys: v.optional(list(Text)),
  min_nodes: v.optional(Int),
  max_nodes: v.optional(Int),
  cooldown: v.optional(GoDuration),
  autoscaling: v.optional(Autoscaling),
  health: v.optional(Health),
  labels: v.optional(mapOf(Str)),
  setup_commands: v.optional(list(Str)),
  ssh_user: v.optional(Str),
  ssh_private_key_path: v.optional(Str),
});
export type UpstreamPool = v.InferOutput<typeof Pool>;

const Provider = loose({
  type: Str,
  api_key_env: v.optional(Str),
  project: v.optional(Str),
  zone: v.optional(Str),
  region: v.optional(Str),
  gpu_count: v.optional(NonNegative),
});
export type UpstreamProvider = v.InferOutput<typeof Provider>;

const Server = loose({
  address: v.optional(Str),
  external_address: v.optional(Str),
  heartbeat_interval: v.optional(GoDuration),
  heartbeat_timeout: v.optional(GoDuration),
  health_check_interval: v.optional(GoDuration),
  autoscale_interval: v.optional(GoDuration),
  health_policy: v.optional(Str),
  notifier: v.optional(v.unknown()),
});

const Defaults = loose({
  ssh_keys: v.optional(list(Text)),
  health: v.optional(Health),
  ssh_user: v.optional(Str),
  ssh_private_key_path: v.optional(Str),
});

/** Upstream's config file: pools and providers are mappings keyed by name. */
export const UpstreamConfigSchema = loose({
  server: v.optional(Server),
  providers: v.optional(mapOf(Provider)),
  pools: v.optional(mapOf(Pool)),
  defaults: v.optional(Defaults),
});
export type UpstreamConfig = v.InferOutput<typeof UpstreamConfigSchema>;

/** The keys upstream knew, per place in the file (everything else it ignored). */
export const UPSTREAM_KEYS = {
  top: ["server", "providers", "pools", "defaults"],
  server: [
    "address",
    "external_address",
    "heartbeat_interval",
    "heartbeat_timeout",
    "health_check_interval",
    "autoscale_interval",
    "health_policy",
    "notifier",
  ],
  provider: ["type", "api_key_env", "project", "zone", "region", "gpu_count"],
  pool: [
    "provider",
    "providers",
    "strategy",
    "instance_type",
    "region",
    "zones",
    "ssh_keys",
    "min_nodes",
    "max_nodes",
    "cooldown",
    "autoscaling",
    "health",
    "labels",
    "setup_commands",
    "ssh_user",
    "ssh_private_key_path",
  ],
  poolProvider: ["name", "priority", "weight", "regions", "instance_type"],
  autoscaling: ["type", "scale_up_at", "scale_down_at", "jobs_per_node", "schedule", "fallback", "lookback_window", "growth_factor", "mode", "autoscalers"],
  window: ["days", "start", "end", "min_nodes", "max_nodes"],
  health: ["unhealthy_after", "auto_replace"],
  defaults: ["ssh_keys", "health", "ssh_user", "ssh_private_key_path"],
} as const satisfies Record<string, readonly string[]>;

// ───────────────────────────── the health policy file ─────────────────────────────

export const UPSTREAM_RESULTS = ["healthy", "degraded", "unhealthy"] as const;

/** Longest `condition` accepted (the same bound as our `when`). */
export const MAX_CONDITION_LENGTH = 4096;

const Condition = v.custom<string>(
  (x) => typeof x === "string" && x.trim() !== "" && x.length <= MAX_CONDITION_LENGTH,
  (issue) =>
    typeof issue.input === "string"
      ? issue.input.trim() === ""
        ? "expected a CEL expression, got an empty string"
        : `expected a CEL expression of at most ${MAX_CONDITION_LENGTH} characters, got ${issue.input.length}`
      : typeof issue.input === "boolean"
        ? `expected a CEL expression (a string; quote it: "${String(issue.input)}"), got ${show(issue.input)}`
        : `expected a CEL expression (a string), got ${show(issue.input)}`,
);

export interface UpstreamPolicyRule {
  name: string;
  description?: string;
  /** CEL over upstream's `event` (event_type, system, gpu_index, gpu_uuid, metrics, message, timestamp). */
  condition: string;
  result: (typeof UPSTREAM_RESULTS)[number];
}

export interface UpstreamPolicyFile {
  version?: string;
  metadata?: { name?: string; description?: string };
  rules: UpstreamPolicyRule[];
}

const RuleName = accept<string>((x) => typeof x === "string" && x.trim() !== "" && x.length <= 256, "a rule name (a non-empty string)");

const Rule: v.GenericSchema<unknown, UpstreamPolicyRule> = strict(
  { name: RuleName, description: v.optional(Str), condition: Condition, result: oneOf(UPSTREAM_RESULTS) },
  { what: "a rule", listAllowed: true },
);

/**
 * Upstream's policy file: `version`, `metadata`, and at least one rule (upstream refused an
 * empty list); rule names unique. Unknown keys are errors here (see the top of this file).
 */
export const UpstreamPolicySchema: v.GenericSchema<unknown, UpstreamPolicyFile> = v.pipe(
  strict(
    {
      version: v.optional(Str),
      metadata: v.optional(strict({ name: v.optional(Str), description: v.optional(Str) }, { listAllowed: true })),
      rules: v.pipe(
        list(Rule),
        v.check((rules) => rules.length > 0, "must list at least one rule (upstream refused a policy without rules)"),
        v.maxLength(500, (issue) => `expected at most 500 rules, got ${issue.input.length}`),
      ),
    },
    { what: "a health policy", listAllowed: true },
  ),
  v.rawCheck(({ dataset, addIssue }) => reportDuplicateRuleNames(dataset.value, addIssue)),
);

/**
 * Whether a parsed policy document is written in upstream's format: a `version` or `metadata`
 * key, or rules with `condition` and none with `when` (ours).
 */
export function isUpstreamPolicy(raw: unknown): boolean {
  if (!isRecord(raw)) return false;
  if ("version" in raw || "metadata" in raw) return true;
  const rules = Array.isArray(raw.rules) ? raw.rules.filter(isRecord) : [];
  return rules.some((r) => "condition" in r) && !rules.some((r) => "when" in r);
}
