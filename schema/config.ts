// The reconciler's configuration file: one valibot schema for the whole YAML document and
// the types of the normalised result. This is the only definition of the config format;
// the loader (reconciler/config/load.ts) adds YAML parsing and error formatting around it.
//
// Conventions:
// - Keys stay snake_case in the normalised config, exactly as written in YAML, so one name
//   is used by the file, by every error path (`pools[1].scaling.max_nodes`) and by the code.
// - Durations are written like Go's (`30s`, `5m`, `1h30m`, `500ms`) and normalised to
//   milliseconds (`Millis`). `formatDuration` turns them back into the short form. Each
//   duration key has a range (`duration("1s", "10m")`), and every integer a ceiling.
// - Defaults are filled in, so consumers never handle an absent optional with a default.
// - Every object is strict: an unknown key is an error, with a suggestion when it is a typo.
// - Messages are sentence fragments that name what was expected and what was
//   found (`expected a non-negative integer, got "two"`); the loader prefixes the path.
// - Cross-field rules also run on objects that have other errors, as long as the fields
//   they compare are themselves valid, so one run reports every problem.
import * as v from "valibot";
import { TEMPLATE_VARIABLES, parseTemplate } from "./template.ts";
import { accept, closestMatch, isRecord, issuePathAt, oneOf, show, strict, unknownNameMessage, withJsonShape, type PathKey } from "./shapes.ts";
import { MAX_TIMER_MS } from "./wire.ts";
import { WellFormedStrings } from "./text.ts";
import { parsePublicKey } from "./minisign.ts";

// ───────────────────────────── normalised types ─────────────────────────────

/** A duration in milliseconds. */
export type Millis = number;

export const PROVIDER_TYPES = ["lambda", "gcp", "aws", "coreweave", "local"] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export interface NavarchConfig {
  server: ServerConfig;
  /** Limits on what the reconciler may do on its own (docs/remediation.md). */
  safety: SafetyConfig;
  /**
   * Settings per provider type. Contains every provider a pool uses: one a pool names
   * without a `providers:` entry gets that type's defaults.
   */
  providers: ProvidersConfig;
  pools: PoolConfig[];
  /** Mirror cordons into Kubernetes, drain through the Eviction API, pools as custom resources; absent: no Kubernetes. */
  kubernetes?: KubernetesConfig;
  /** Mirror cordons into Slurm as DRAIN, drain by waiting for (or requeueing) jobs, queue depth per partition; absent: no Slurm. */
  slurm?: SlurmConfig;
  /** Autoscaling inputs that live elsewhere (queue depth or utilisation in Prometheus); absent: only what Navarch measures itself. */
  metrics?: MetricsConfig;
}

/** The `metrics:` section: where autoscalers read what the reconciler does not measure itself. */
export interface MetricsConfig {
  prometheus?: PrometheusSourceConfig;
}

/** A Prometheus server answering PromQL over its HTTP API (`/api/v1/query`). */
export interface PrometheusSourceConfig {
  /** The server's base URL, e.g. `http://prometheus.monitoring:9090`. */
  url: string;
  /** Name of the environment variable holding a bearer token (never the token). */
  bearer_token_env?: string;
  /** How long one query may take; a slower answer is unknown for that autoscale tick. */
  timeout: Millis;
  /** Queries for every pool; a pool's `scaling.metrics.prometheus` replaces them key by key. */
  queries: PrometheusQueries;
}

export const PROMETHEUS_QUERY_KEYS = ["queue_pending", "queue_running", "gpu_utilization"] as const;
export type PrometheusQueryKey = (typeof PROMETHEUS_QUERY_KEYS)[number];

/**
 * PromQL instant queries for a pool's autoscaling inputs, each answering one number;
 * `{{.Pool}}` in a query stands for the pool's name.
 */
export type PrometheusQueries = Partial<Record<PrometheusQueryKey, string>>;

export const NODE_MAPPING_RULES = ["node_name", "hostname_label", "provider_id", "label"] as const;
export type NodeMappingRule = (typeof NODE_MAPPING_RULES)[number];

/** The `kubernetes:` section (reconciler/schedulers/kubernetes). */
export interface KubernetesConfig {
  /** A kubeconfig file; absent (and no server, not in_cluster): $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** The kubeconfig context to use; absent: its current-context. */
  context?: string;
  /** Use the pod's service account (token, CA and namespace under /var/run/secrets/kubernetes.io). */
  in_cluster: boolean;
  /** API server URL for bearer-token access without a kubeconfig (with token_env). */
  server?: string;
  /** Name of the environment variable holding the bearer token (never the token). */
  token_env?: string;
  /** CA bundle for `server`; absent: the system's trust store. */
  ca_file?: string;
  /**
   * How a Navarch node finds its Kubernetes Node: node_name (Node name = node id),
   * hostname_label (`kubernetes.io/hostname` = the agent's hostname), provider_id
   * (spec.providerID ends with the provider's instance id), label (node_label = node id).
   */
  node_mapping: NodeMappingRule;
  /** The label the `label` rule matches (the CoreWeave provider sets it on its nodes). */
  node_label: string;
  /** Our NoSchedule taint's key. */
  taint_key: string;
  /** The node condition carrying the GPU health verdict. */
  condition_type: string;
  /** Client-side rate budgets (token buckets) per lane: cordons never queue behind evictions. */
  client: { cordon_qps: number; cordon_burst: number; eviction_qps: number; eviction_burst: number; qps: number; burst: number };
  drain: KubernetesDrainConfig;
  /** Pools as GpuPool custom resources (deploy/crds/gpupool.yaml) in this namespace. */
  pools_crd: { enabled: boolean; namespace: string };
  /** Pending + running pods labelled navarch.dev/pool=<pool> feed queue autoscalers; namespace absent: all. */
  queue_metrics: { enabled: boolean; namespace?: string };
}

export interface KubernetesDrainConfig {
  /** Evict pods using emptyDir volumes (their data is lost), like `kubectl drain --delete-emptydir-data`. */
  delete_emptydir_data: boolean;
  /** At the pool's health.drain_timeout: delete what is left (delete), or hold the node for a human (hold). */
  on_deadline: "delete" | "hold";
  /** Grace period for evictions and deletions; absent: each pod's own. */
  grace_period?: Millis;
  /** Kubernetes Node not Ready and agent silent this long: the dead-kubelet fast path (delete with 1 s grace). */
  unreachable_after: Millis;
  /** Longest wait between eviction retries of a pod a PodDisruptionBudget protects (429). */
  max_backoff: Millis;
}

export const SLURM_NODE_MAPPING_RULES = ["node_name", "hostname", "feature"] as const;
export type SlurmNodeMappingRule = (typeof SLURM_NODE_MAPPING_RULES)[number];

/** The `slurm:` section (reconciler/schedulers/slurm). */
export interface SlurmConfig {
  /** slurmrestd: reads nodes, jobs and partitions; updates nodes where its API can (v0.0.39, Slurm 23.02+). */
  rest_url: string;
  /** The Slurm user Navarch acts as; drains, resumes and requeues need an operator or admin (SlurmUser). */
  user: string;
  /** slurm.conf's jwt_key: Navarch mints its own short-lived tokens with it, as `scontrol token` does. */
  jwt_key_file?: string;
  /** Or the environment variable holding a token (never the token); it expires, the key does not. */
  token_env?: string;
  /** How long a minted token lives. */
  token_lifespan: Millis;
  /** The scontrol binary: node updates where slurmrestd has none (Slurm 22.05's v0.0.38), and requeue. */
  scontrol: string;
  /** SLURM_CONF for scontrol (where the controller is); absent: scontrol's own default. */
  slurm_conf?: string;
  /**
   * How a Navarch node finds its Slurm node: node_name (NodeName = node id), hostname
   * (NodeHostname = the agent's hostname; it defaults to NodeName), feature (the node has
   * the feature `<node_feature_prefix><node id>`).
   */
  node_mapping: SlurmNodeMappingRule;
  node_feature_prefix: string;
  /** How often slurmrestd is read: a human's resume is seen within this. */
  poll_interval: Millis;
  /** At the pool's health.drain_timeout: requeue the node's jobs (requeue), or hold the node for a human (hold). */
  drain: { on_deadline: "requeue" | "hold" };
  /** The partition whose jobs feed each pool's queue autoscaler; a pool not named here: the partition named like it. */
  partitions: Record<string, string>;
  /** Pending and running jobs of a pool's partition feed queue autoscalers. */
  queue_metrics: { enabled: boolean };
}

export interface ServerConfig {
  /** `host:port` the API listens on; split it with `parseAddress`. */
  address: string;
  heartbeat_interval: Millis;
  /** A node silent for this long is Lost. Defaults to 3 × heartbeat_interval. */
  heartbeat_timeout: Millis;
  health_check_interval: Millis;
  autoscale_interval: Millis;
  health_policy_path?: string;
  data_dir: string;
  /** `file:…`, `libsql://…`, `http(s)://…` or `ws(s)://…`; absent means a file under data_dir. */
  database_url?: string;
  /** Name of the environment variable holding the admin/bootstrap token (never the token). */
  auth_token_env: string;
  /**
   * The URL machines reach this reconciler at: `{{.ControlPlane}}` in setup_commands and the
   * server baked into /install.sh. Absent: derived from `address` (0.0.0.0 → this host's name).
   */
  public_url?: string;
  /** HTTPS for the API (and the metrics listener); absent: plain HTTP (off loopback with a warning, or refused with require_tls). */
  tls?: ServerTlsConfig;
  /** Refuse to start serving plain HTTP on an address that is not loopback (instead of warning). */
  require_tls: boolean;
  /**
   * Deprecated and silences nothing: plain HTTP off loopback is served with a warning whatever
   * it says. Kept so that files written for earlier versions still load; `config check` says so.
   */
  allow_plain_http?: boolean;
  /** `host:port` of a listener that serves only /metrics; absent: /metrics on `address`. */
  metrics_address?: string;
  /** Who may read /metrics: anyone who reaches it (`none`, the default), or a token of the viewer role or above. */
  metrics_auth: MetricsAuth;
  /**
   * Per-GPU series on /metrics (navarch_node_gpu_*{node,gpu}): `auto` while the fleet has at most
   * 40,000 GPUs with readings (5,000 nodes of 8), `on`, or `off`. Pool aggregates are always there.
   */
  metrics_per_gpu: MetricsPerGpu;
  /** A signed release directory (`npm run release`) whose navarch-node /install.sh installs, instead of the one beside this executable. */
  agent_release?: string;
  /** The minisign public key (base64, `RWQ…`) agent_release must be signed with; never one found inside it. */
  agent_release_public_key?: string;
}

export const METRICS_AUTH = ["viewer", "none"] as const;
export type MetricsAuth = (typeof METRICS_AUTH)[number];
export const METRICS_PER_GPU = ["auto", "on", "off"] as const;
export type MetricsPerGpu = (typeof METRICS_PER_GPU)[number];

export interface ServerTlsConfig {
  /** PEM certificate chain the reconciler presents (leaf first); re-read when it changes. */
  cert_file: string;
  /** PEM private key of cert_file; re-read with it. */
  key_file: string;
  /** PEM CA certificates: when set, every client must present a certificate one of them signed (mTLS). */
  client_ca_file?: string;
}

export interface SafetyConfig {
  /** Compute and record every decision, change nothing (no cordon, terminate, launch). */
  dry_run: boolean;
  /** Per pool, nodes that may be out of service for health at once: max(floor, ceil(percent × size)). */
  unhealthy_budget: { floor: number; percent: number };
  /** Replacements (cordoned through terminating, plus pending replacements) in flight at once. */
  max_in_flight_per_pool: number;
  max_in_flight_fleet: number;
  /** New cordons, fleet-wide: a token bucket of `burst` refilled at `per_minute`. */
  cordon_rate: { per_minute: number; burst: number };
  /**
   * Trips when max_cordons nodes, or percent of a pool (and at least min_cordons), are cordoned
   * within the window; blocks destructive actions until a human resets it.
   */
  breaker: { window: Millis; max_cordons: number; percent: number; min_cordons: number };
  /** Freeze Lost handling when this share of nodes (and at least min_nodes) went silent within the window. */
  partition: { window: Millis; percent: number; min_nodes: number };
  /** Replacement attempts for one failing slot before the node is Held for a human. */
  max_attempts: number;
}

export interface LambdaProviderConfig {
  api_key_env: string;
  /**
   * The SSH key (a list of one name) registered with Lambda for pools that name none. Absent
   * too: the account's one key, else a key Navarch creates and keeps in the data directory.
   */
  ssh_key_names?: string[];
  /** Overrides the API endpoint (tests point it at a fake server). */
  base_url?: string;
}
export interface GcpProviderConfig {
  project?: string;
  credentials_env?: string;
  credentials_file?: string;
  base_url?: string;
}
export interface AwsProviderConfig {
  region?: string;
  access_key_id_env?: string;
  secret_access_key_env?: string;
  endpoint?: string;
}
export interface CoreWeaveProviderConfig {
  namespace?: string;
  kubeconfig?: string;
}
export interface LocalProviderConfig {
  agent_binary?: string;
  nvml_library?: string;
  nodes_dir?: string;
}
export interface ProvidersConfig {
  lambda?: LambdaProviderConfig;
  gcp?: GcpProviderConfig;
  aws?: AwsProviderConfig;
  coreweave?: CoreWeaveProviderConfig;
  local?: LocalProviderConfig;
}

export interface PoolConfig {
  /** DNS-1123 label; unique in the file. */
  name: string;
  /** Providers in failover order (YAML `provider: x` becomes `[x]`). Never empty. */
  providers: ProviderType[];
  instance_type: string;
  region: string;
  zones: string[];
  scaling: ScalingConfig;
  health: HealthConfig;
  /** Tags on the pool's instances where the provider has them, and labels on its Kubernetes Nodes. */
  labels: Record<string, string>;
  /** Taints on the pool's Kubernetes Nodes (the kubernetes: section). */
  taints: PoolTaint[];
  ssh_user: string;
  /** The bootstrap key; absent with setup_commands only in a pool that launches on Lambda alone (Navarch's own key). */
  ssh_private_key_path?: string;
  /** The SSH key registered with Lambda to install, a list of one name; else providers.lambda's, else the account's. */
  ssh_key_names?: string[];
  /** Go-template strings, already checked by `parseTemplate`. */
  setup_commands: string[];
}

export const TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"] as const;

/** A Kubernetes taint, as `kubectl taint` writes it: key=value:effect. */
export interface PoolTaint {
  key: string;
  value?: string;
  effect: (typeof TAINT_EFFECTS)[number];
}

export interface ScalingConfig {
  min_nodes: number;
  /** ≥ min_nodes. */
  max_nodes: number;
  cooldown_period: Millis;
  /** Absent: the pool does not scale by itself (Pattern 2 of the seed). */
  autoscaler?: AutoscalerConfig;
  /** This pool's inputs from a metrics source configured under `metrics:`. */
  metrics?: { prometheus?: PrometheusQueries };
}

export interface HealthConfig {
  /** Consecutive failed checks before a node is declared unhealthy. */
  unhealthy_threshold: number;
  auto_replace: boolean;
  drain_timeout: Millis;
  /**
   * A new machine whose agent has not registered within this is Failed, unless the pool has
   * learned that its machines take longer (nodes/registration-deadlines.ts): then a margin over the
   * recent registrations' p99, never past registration_timeout_max.
   */
  registration_timeout: Millis;
  /** The longest deadline the pool may learn. */
  registration_timeout_max: Millis;
  /** After this many machines in a row did not register, the pool stops launching (held). */
  max_registration_failures: number;
  /**
   * terminate_first: the unhealthy node is terminated, then its replacement launched.
   * surge: the replacement is launched when the node is cordoned, and the node is terminated
   * once the replacement is Ready (capacity never dips; needs room under max_nodes).
   */
  replacement: "terminate_first" | "surge";
  /**
   * reboot_first: a fault whose recommended action is a GPU reset or a reboot is drained and
   * rebooted through the provider first; the node is replaced when the fault survives the
   * reboot, the reboot does not come back within reboot_timeout, or the node was already
   * rebooted for its health within reboot_window. replace: every unhealthy node is replaced.
   */
  remediation: "reboot_first" | "replace";
  /** How long a rebooted machine has to come back with a new boot and pass its health check. */
  reboot_timeout: Millis;
  /** A node rebooted for its health within this long is replaced instead the next time. */
  reboot_window: Millis;
}

export const AUTOSCALER_TYPES = ["reactive", "queue", "scheduled", "predictive", "composite", "idle"] as const;
export type AutoscalerType = (typeof AUTOSCALER_TYPES)[number];

export type AutoscalerConfig =
  | ReactiveAutoscalerConfig
  | QueueAutoscalerConfig
  | ScheduledAutoscalerConfig
  | PredictiveAutoscalerConfig
  | CompositeAutoscalerConfig
  | IdleAutoscalerConfig;

/** Scales on GPU utilisation (percent): up above scale_up_threshold, down below scale_down_threshold. */
export interface ReactiveAutoscalerConfig {
  type: "reactive";
  scale_up_threshold: number;
  /** < scale_up_threshold. */
  scale_down_threshold: number;
}

/** Sizes the pool to ceil(queued + running jobs / jobs_per_node). */
export interface QueueAutoscalerConfig {
  type: "queue";
  jobs_per_node: number;
}

/**
 * Time windows that override the pool's bounds; `fallback` picks the size inside the
 * bounds in force (without one, the pool holds the lower bound).
 */
export interface ScheduledAutoscalerConfig {
  type: "scheduled";
  /** Canonical IANA name (`Intl` resolved), e.g. `Europe/Berlin`. */
  timezone: string;
  windows: ScheduleWindow[];
  fallback?: AutoscalerConfig;
}

export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface ScheduleWindow {
  /** Days on which the window starts; deduplicated, as three-letter lowercase names. */
  days: Weekday[];
  /** `HH:MM`, 24-hour. When end ≤ start the window runs past midnight into the next day. */
  start: string;
  end: string;
  /** At least one of the two is set. */
  min_nodes?: number;
  max_nodes?: number;
}

/** Extrapolates the demand trend over lookback_window, times growth_factor. */
export interface PredictiveAutoscalerConfig {
  type: "predictive";
  lookback_window: Millis;
  growth_factor: number;
  fallback?: AutoscalerConfig;
}

/** Combines the recommendations of several autoscalers (nesting allowed). */
export interface CompositeAutoscalerConfig {
  type: "composite";
  mode: "max" | "min" | "avg";
  autoscalers: AutoscalerConfig[];
}

/** Interactive pools (velda's AgentPool): keep between min_idle and max_idle nodes idle. */
export interface IdleAutoscalerConfig {
  type: "idle";
  min_idle: number;
  /** ≥ min_idle. */
  max_idle: number;
  /** How long an idle node above max_idle is kept before removal. */
  idle_decay: Millis;
}

// ───────────────────────────── durations ─────────────────────────────

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;

/** `1h30m` → 5400000. Undefined for anything else (no sign, no bare numbers, no spaces). */
export function parseDuration(text: string): Millis | undefined {
  if (text === "0") return 0; // Go accepts a bare zero too
  if (!DURATION_PATTERN.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS_MS[unit as keyof typeof DURATION_UNITS_MS];
  }
  return Math.round(total);
}

/** 5400000 → `1h30m`; 500 → `500ms`; 0 → `0s`. Round-trips through `parseDuration`. */
export function formatDuration(ms: Millis): string {
  if (ms === 0) return "0s";
  let rest = Math.round(ms);
  let out = "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

/** Every key whose value is a duration, so printers can turn `Millis` back into `5m`. */
export const DURATION_KEYS: ReadonlySet<string> = new Set([
  "heartbeat_interval",
  "heartbeat_timeout",
  "health_check_interval",
  "autoscale_interval",
  "cooldown_period",
  "drain_timeout",
  "registration_timeout",
  "registration_timeout_max",
  "reboot_timeout",
  "reboot_window",
  "lookback_window",
  "idle_decay",
  "window",
  "grace_period",
  "unreachable_after",
  "max_backoff",
  "token_lifespan",
  "poll_interval",
  "timeout",
]);

// ───────────────────────────── leaf schemas ─────────────────────────────

const Str = accept<string>((x) => typeof x === "string", "a string", { type: "string" });
const Text = accept<string>((x) => typeof x === "string" && x.trim() !== "", "a non-empty string", { type: "string", minLength: 1 });
const Bool = accept<boolean>((x) => typeof x === "boolean", "true or false", { type: "boolean" });

/**
 * An integer from `min` to `max`. Every integer setting has a ceiling: they size loops,
 * token buckets and node counts, and YAML reads `1e300` as an integer too.
 */
function int(min: number, max: number) {
  const below = min === 0 ? "a non-negative integer" : `an integer ≥ ${min}`;
  const schema = v.custom<number>(
    (x) => typeof x === "number" && Number.isInteger(x) && x >= min && x <= max,
    (issue) =>
      typeof issue.input === "number" && Number.isInteger(issue.input) && issue.input > max
        ? `expected an integer from ${min} to ${max}, got ${show(issue.input)}`
        : `expected ${below}, got ${show(issue.input)}`,
  );
  return withJsonShape(schema, { type: "integer", minimum: min, maximum: max });
}
/** Nodes in one pool (and anything counted in nodes): far above any real pool, far below a runaway loop. */
const MAX_NODES = 100_000;
const NodeCount = int(0, MAX_NODES);

/** Any YAML mapping (valibot's object schemas would also take a list). */
const Mapping = accept<Record<string, unknown>>(isRecord, "a mapping", { type: "object" });

/** A string matching `pattern`; `what` describes the shape for the message. */
function shaped(pattern: RegExp, what: string) {
  return accept<string>((x) => typeof x === "string" && pattern.test(x), what, { type: "string", pattern: pattern.source });
}

const DAY: Millis = 24 * 3_600_000;

/**
 * A duration from `min` to `max` (both written as durations). Every duration key has its
 * own range: a typo like `600h` for `600s` must fail here, not as a timer that overflows
 * (JS timers hold at most 2^31-1 ms, about 24.8 days) or a node that is never judged.
 */
function duration(min: string, max: string) {
  const [lo, hi] = [parseDuration(min)!, parseDuration(max)!];
  if (hi > MAX_TIMER_MS) throw new Error(`duration bound ${max} exceeds what a timer holds`);
  const range = `from ${min} to ${max}${hi >= 2 * DAY && hi % DAY === 0 ? ` (${hi / DAY} days)` : ""}`;
  return withJsonShape(
    v.pipe(
      v.custom<string>(
        (x) => {
          const ms = typeof x === "string" ? parseDuration(x) : undefined;
          return ms !== undefined && ms >= lo && ms <= hi;
        },
        (issue) => {
          const ms = typeof issue.input === "string" ? parseDuration(issue.input) : undefined;
          if (ms === undefined) return `expected a duration like 30s or 5m, got ${show(issue.input)}`;
          if (ms === 0 && lo > 0) return `must be longer than zero, got ${show(issue.input)}`;
          return `expected a duration ${range}, got ${show(issue.input)}`;
        },
      ),
      v.transform((text) => parseDuration(text)!),
    ),
    { type: "string", pattern: lo === 0 ? "^(0|([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)$" : "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" },
  );
}

function list<TItem extends v.GenericSchema>(item: TItem, { nonEmpty = false, noun = "item" } = {}) {
  return v.pipe(
    v.array(item, (issue) => `expected a list, got ${show(issue.input)}`),
    v.check((items) => !nonEmpty || items.length > 0, `must list at least one ${noun}`),
  );
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DnsLabel = shaped(DNS_LABEL, "a DNS label (lowercase letters, digits and '-', at most 63, starting and ending alphanumeric)");
const EnvVarName = v.custom<string>(
  (x) => typeof x === "string" && /^[A-Z_][A-Z0-9_]*$/.test(x),
  // Don't echo the value: a secret pasted where its variable's name belongs would end up in logs.
  (issue) =>
    typeof issue.input === "string"
      ? "expected the name of an environment variable, like LAMBDA_API_KEY (capital letters, digits and _); the value is not shown in case it is a secret"
      : `expected the name of an environment variable, like LAMBDA_API_KEY, got ${show(issue.input)}`,
);
/**
 * The name of an SSH key registered with Lambda (1 to 64 characters), as a list of one: Lambda's
 * launch call takes exactly one (`ssh_key_names`), so a second name would fail every launch.
 */
const SshKeyNames = v.pipe(
  list(
    accept<string>((x) => typeof x === "string" && x.trim() !== "" && x.length <= 64, "an SSH key name as registered with the provider (1 to 64 characters)", {
      type: "string",
      minLength: 1,
      maxLength: 64,
    }),
    { nonEmpty: true, noun: "SSH key name" },
  ),
  v.check(
    (names) => names.length <= 1,
    (issue) => `Lambda's launch call takes exactly one SSH key name, got ${issue.input.length} (${issue.input.join(", ")}): keep one`,
  ),
);
const HttpUrl = accept<string>((x) => {
  if (typeof x !== "string" || !URL.canParse(x)) return false;
  return ["http:", "https:"].includes(new URL(x).protocol);
}, "an http:// or https:// URL");

/** Go templates over TEMPLATE_VARIABLES; one issue per template error. */
const SetupCommand = v.pipe(
  Str,
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const parsed = parseTemplate(dataset.value);
    if (parsed.ok) return;
    for (const error of parsed.errors) {
      let message = error.message;
      if (error.variable !== undefined) {
        const guess = closestMatch(error.variable, TEMPLATE_VARIABLES);
        const allowed = TEMPLATE_VARIABLES.map((n) => `{{.${n}}}`).join(", ");
        message += guess === undefined ? ` (allowed: ${allowed})` : ` (did you mean {{.${guess}}}?)`;
      }
      addIssue({ message });
    }
  }),
);

// ───────────────────────────── objects and cross-field rules ─────────────────────────────

type Report = (path: PathKey | readonly PathKey[], message: string) => void;

/**
 * Cross-field rules for one object. `check` sees only the fields that passed their own
 * schema (so a rule never piles onto an error already reported) plus the raw input (to ask
 * whether a key was written at all), and reports issues at paths below the object.
 */
function rules<T>(check: (fields: Record<string, unknown>, report: Report, raw: Record<string, unknown>) => void) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    const raw: unknown = dataset.value;
    if (!isRecord(raw)) return;
    const issues = dataset.issues ?? [];
    if (issues.some((issue) => !issue.path?.length)) return;
    const broken = new Set(issues.map((issue) => issue.path![0]!.key));
    const fields = Object.fromEntries(Object.entries(raw).filter(([key]) => !broken.has(key)));
    check(fields, (path, message) => addIssue({ message, path: issuePathAt(raw, Array.isArray(path) ? path : [path]) }), raw);
  });
}

const num = (x: unknown): number | undefined => (typeof x === "number" ? x : undefined);

// ───────────────────────────── server ─────────────────────────────

/** Splits `host:port` (`[::1]:80` for IPv6). Undefined when it is not one. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) return undefined;
  // `:50051`, as Go's listeners (and upstream Navarch's examples) write it: every interface.
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

const Address = v.pipe(
  accept<string>(
    (x) => typeof x === "string" && parseAddress(x) !== undefined,
    "host:port with a port from 1 to 65535, like 0.0.0.0:50051 (or :50051 for every interface)",
  ),
  v.transform((address) => (address.startsWith(":") ? `0.0.0.0${address}` : address)),
);

/**
 * Whether `host` is a loopback address written as an address (127.0.0.0/8, ::1, ::ffff:127.x).
 * Names, `localhost` included, are not: what a name means is /etc/hosts' and DNS's to say, so
 * a name is resolved and its addresses checked (reconciler/config/exposure.ts).
 */
export function isLoopbackIp(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "::1" || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Two addresses that would bind the same port (a wildcard host overlaps every host). */
function sameListener(a: string, b: string): boolean {
  const [x, y] = [parseAddress(a), parseAddress(b)];
  if (x === undefined || y === undefined || x.port !== y.port) return false;
  const wildcard = (h: string) => h === "0.0.0.0" || h === "::";
  return x.host === y.host || wildcard(x.host) || wildcard(y.host);
}

const ServerTls = strict({
  cert_file: Text,
  key_file: Text,
  client_ca_file: v.optional(Text),
});

const MinisignPublicKey = accept<string>((x) => {
  if (typeof x !== "string") return false;
  try {
    parsePublicKey(x);
    return true;
  } catch {
    return false;
  }
}, "a minisign public key: the base64 line of its .pub file (RWQ…), as `minisign -G` and `npm run release` print it");

const DatabaseUrl = shaped(/^(file:.+|(libsql|https?|wss?):\/\/.+)$/, "a database URL: file:…, libsql://…, http(s)://… or ws(s)://…");

const Server: v.GenericSchema<unknown, ServerConfig> = v.pipe(
  strict({
    address: v.optional(Address, "127.0.0.1:50051"),
    // Agents set their heartbeat timer from this (the reconciler tells them).
    heartbeat_interval: v.optional(duration("1s", "10m"), "30s"),
    heartbeat_timeout: v.optional(duration("1s", "1h")),
    health_check_interval: v.optional(duration("1s", "1h"), "60s"),
    // Only gates the loop's passes (at most one a second), so sub-second values are harmless.
    autoscale_interval: v.optional(duration("100ms", "1h"), "30s"),
    health_policy_path: v.optional(Text),
    data_dir: v.optional(Text, "data"),
    database_url: v.optional(DatabaseUrl),
    auth_token_env: v.optional(EnvVarName, "NAVARCH_AUTH_TOKEN"),
    public_url: v.optional(HttpUrl),
    tls: v.optional(ServerTls),
    require_tls: v.optional(Bool, false),
    allow_plain_http: v.optional(Bool),
    metrics_address: v.optional(Address),
    // Open, as every Prometheus exporter is and the seed's ServiceMonitor assumes; label values
    // are pool names, node ids, states and codes (never a token or an agent's free text).
    metrics_auth: v.optional(oneOf(METRICS_AUTH), "none"),
    metrics_per_gpu: v.optional(oneOf(METRICS_PER_GPU), "auto"),
    agent_release: v.optional(Text),
    agent_release_public_key: v.optional(MinisignPublicKey),
  }),
  rules((f, report, raw) => {
    const [interval, timeout] = [num(f.heartbeat_interval), num(f.heartbeat_timeout)];
    if (interval !== undefined && timeout !== undefined && timeout <= interval) {
      report("heartbeat_timeout", `must be longer than heartbeat_interval (${formatDuration(interval)}), got ${formatDuration(timeout)}`);
    }
    // Whether an address is loopback needs its name resolved: reconciler/config/exposure.ts.
    const tls = raw.tls !== undefined;
    if (f.require_tls === true && f.allow_plain_http === true) {
      report("allow_plain_http", "contradicts server.require_tls: true (which refuses plain HTTP off loopback); remove one of them");
    }
    if (tls && typeof f.public_url === "string" && f.public_url.startsWith("http://")) {
      report("public_url", `the API serves HTTPS (server.tls is set), so new machines must be told https://, got ${JSON.stringify(f.public_url)}`);
    }
    // The key comes from the operator: one shipped inside the release would vouch for itself.
    if (raw.agent_release !== undefined && raw.agent_release_public_key === undefined) {
      report("agent_release_public_key", "is required with server.agent_release: the minisign public key its SHA256SUMS must be signed with");
    }
    if (raw.agent_release === undefined && raw.agent_release_public_key !== undefined)
      report("agent_release", "is required with server.agent_release_public_key");
    if (typeof f.address === "string" && typeof f.metrics_address === "string" && sameListener(f.address, f.metrics_address)) {
      report("metrics_address", `must differ from server.address (${f.address}): it is a listener of its own`);
    }
  }),
  // Three missed heartbeats: one lost packet or a slow GC pause must not declare a node Lost.
  v.transform(({ address, heartbeat_interval, heartbeat_timeout, ...rest }) => ({
    address,
    heartbeat_interval,
    heartbeat_timeout: heartbeat_timeout ?? 3 * heartbeat_interval,
    ...rest,
  })),
);

// ───────────────────────────── providers ─────────────────────────────

/** One schema per provider type; `{}` through any of them gives that type's defaults. */
export const PROVIDER_SCHEMAS = {
  lambda: strict({
    api_key_env: v.optional(EnvVarName, "LAMBDA_API_KEY"),
    ssh_key_names: v.optional(SshKeyNames),
    base_url: v.optional(HttpUrl),
  }),
  gcp: v.pipe(
    strict({
      project: v.optional(shaped(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, "a GCP project id (6–30 lowercase letters, digits and '-')")),
      credentials_env: v.optional(EnvVarName),
      credentials_file: v.optional(Text),
      base_url: v.optional(HttpUrl),
    }),
    rules((_f, report, raw) => {
      if (raw.credentials_env !== undefined && raw.credentials_file !== undefined) {
        report("credentials_file", "set credentials_env or credentials_file, not both");
      }
    }),
  ),
  aws: v.pipe(
    strict({
      region: v.optional(Text),
      access_key_id_env: v.optional(EnvVarName),
      secret_access_key_env: v.optional(EnvVarName),
      endpoint: v.optional(HttpUrl),
    }),
    rules((_f, report, raw) => {
      // Half a key pair would silently fall back to the default credential chain for the other half.
      const [id, secret] = [raw.access_key_id_env !== undefined, raw.secret_access_key_env !== undefined];
      if (id && !secret) report("secret_access_key_env", "is required when access_key_id_env is set");
      if (secret && !id) report("access_key_id_env", "is required when secret_access_key_env is set");
    }),
  ),
  coreweave: strict({
    namespace: v.optional(DnsLabel),
    kubeconfig: v.optional(Text),
  }),
  local: strict({
    agent_binary: v.optional(Text),
    nvml_library: v.optional(Text),
    nodes_dir: v.optional(Text),
  }),
} satisfies Record<ProviderType, v.GenericSchema>;

const Providers: v.GenericSchema<unknown, ProvidersConfig> = strict(
  {
    lambda: v.optional(PROVIDER_SCHEMAS.lambda),
    gcp: v.optional(PROVIDER_SCHEMAS.gcp),
    aws: v.optional(PROVIDER_SCHEMAS.aws),
    coreweave: v.optional(PROVIDER_SCHEMAS.coreweave),
    local: v.optional(PROVIDER_SCHEMAS.local),
  },
  { unknownNoun: "provider type" },
);

const ProviderName = oneOf(PROVIDER_TYPES, "provider type");

// ───────────────────────────── autoscalers ─────────────────────────────

const Percent = accept<number>((x) => typeof x === "number" && x >= 0 && x <= 100, "a number from 0 to 100", { type: "number", minimum: 0, maximum: 100 });

const Reactive = v.pipe(
  strict({
    type: v.literal("reactive"),
    scale_up_threshold: v.optional(Percent, 80),
    scale_down_threshold: v.optional(Percent, 20),
  }),
  rules((f, report) => {
    const [up, down] = [num(f.scale_up_threshold), num(f.scale_down_threshold)];
    if (up !== undefined && down !== undefined && down >= up) {
      report("scale_down_threshold", `must be < scale_up_threshold (${up}), got ${down}`);
    }
  }),
);

const Queue = strict({
  type: v.literal("queue"),
  jobs_per_node: int(1, 10_000),
});

const DAY_NAMES: Record<string, Weekday> = Object.fromEntries(
  ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].flatMap((name, i) => [
    [name, WEEKDAYS[i]!],
    [WEEKDAYS[i]!, WEEKDAYS[i]!],
  ]),
);
const Day = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && x.toLowerCase() in DAY_NAMES,
    (issue) =>
      typeof issue.input === "string" ? unknownNameMessage("day", issue.input, WEEKDAYS) : `expected a day like mon or monday, got ${show(issue.input)}`,
  ),
  v.transform((day) => DAY_NAMES[day.toLowerCase()]!),
);

const ClockTime = v.pipe(
  shaped(/^([01]?\d|2[0-3]):[0-5]\d$/, "a time of day as HH:MM (00:00 to 23:59)"),
  v.transform((t) => t.padStart(5, "0")),
);

const Window = v.pipe(
  strict({
    days: list(Day, { nonEmpty: true, noun: "day" }),
    start: ClockTime,
    end: ClockTime,
    min_nodes: v.optional(NodeCount),
    max_nodes: v.optional(NodeCount),
  }),
  rules((f, report, raw) => {
    if (f.start !== undefined && f.start === f.end) report("end", `must differ from start (${String(f.start)})`);
    const [min, max] = [num(f.min_nodes), num(f.max_nodes)];
    if (min !== undefined && max !== undefined && max < min) report("max_nodes", `must be ≥ min_nodes (${min}), got ${max}`);
    if (raw.min_nodes === undefined && raw.max_nodes === undefined) {
      report("min_nodes", "set min_nodes or max_nodes (a window without either changes nothing)");
    }
  }),
  v.transform((w) => ({ ...w, days: [...new Set(w.days)] })),
);

const TimeZone = v.pipe(
  v.custom<string>(
    (x) => typeof x === "string" && canonicalTimeZone(x) !== undefined,
    (issue) => {
      if (typeof issue.input !== "string") return `expected an IANA time zone like Europe/Berlin or UTC, got ${show(issue.input)}`;
      const guess = closestMatch(issue.input, Intl.supportedValuesOf("timeZone"));
      return `unknown time zone ${show(issue.input)} (expected an IANA name like Europe/Berlin or UTC${guess ? `; did you mean "${guess}"?` : ""})`;
    },
  ),
  v.transform((tz) => canonicalTimeZone(tz)!),
);

function canonicalTimeZone(name: string): string | undefined {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

const Scheduled = strict({
  type: v.literal("scheduled"),
  timezone: v.optional(TimeZone, "UTC"),
  windows: list(Window, { nonEmpty: true, noun: "window" }),
  fallback: v.optional(v.lazy(() => Autoscaler)),
});

const Predictive = strict({
  type: v.literal("predictive"),
  lookback_window: v.optional(duration("1m", "168h"), "1h"),
  growth_factor: v.optional(
    v.custom<number>(
      (x) => typeof x === "number" && x > 0 && x <= 100,
      (issue) => `expected a number > 0${typeof issue.input === "number" && issue.input > 100 ? " (at most 100)" : ""}, got ${show(issue.input)}`,
    ),
    1,
  ),
  fallback: v.optional(v.lazy(() => Autoscaler)),
});

const Composite = strict({
  type: v.literal("composite"),
  mode: v.optional(oneOf(["max", "min", "avg"] as const, "composite mode"), "max"),
  autoscalers: list(
    v.lazy(() => Autoscaler),
    { nonEmpty: true, noun: "autoscaler" },
  ),
});

const Idle = v.pipe(
  strict({
    type: v.literal("idle"),
    min_idle: NodeCount,
    max_idle: NodeCount,
    idle_decay: v.optional(duration("0s", "24h"), "60s"), // velda's idleDecaySecond default
  }),
  rules((f, report) => {
    const [min, max] = [num(f.min_idle), num(f.max_idle)];
    if (min !== undefined && max !== undefined && max < min) report("max_idle", `must be ≥ min_idle (${min}), got ${max}`);
  }),
);

const AUTOSCALER_SCHEMAS: Record<AutoscalerType, v.GenericSchema<unknown, AutoscalerConfig>> = {
  reactive: Reactive,
  queue: Queue,
  scheduled: Scheduled,
  predictive: Predictive,
  composite: Composite,
  idle: Idle,
};

/** What an autoscaler without a known `type` fails with (always): the message names the types. */
const UnknownAutoscaler = v.pipe(
  accept<Record<string, unknown>>(isRecord, `a mapping with a "type" (one of ${AUTOSCALER_TYPES.join(", ")})`),
  v.looseObject(
    {
      type: v.custom<never>(
        () => false,
        (issue) =>
          typeof issue.input === "string"
            ? unknownNameMessage("autoscaler type", issue.input, AUTOSCALER_TYPES)
            : `expected an autoscaler type (one of ${AUTOSCALER_TYPES.join(", ")}), got ${show(issue.input)}`,
      ),
    },
    `is required (one of ${AUTOSCALER_TYPES.join(", ")})`,
  ),
) as unknown as v.GenericSchema<unknown, never>;

/** Discriminated on `type`, dispatched by hand so each variant keeps its own strict keys and rules. */
// Nested (composite, fallback) autoscalers cannot be written as a structural schema: a
// generated schema keeps the type and leaves the rest to these rules.
const Autoscaler: v.GenericSchema<unknown, AutoscalerConfig> = withJsonShape(
  v.lazy((input) => {
    const type = isRecord(input) ? input.type : undefined;
    return typeof type === "string" && type in AUTOSCALER_SCHEMAS ? AUTOSCALER_SCHEMAS[type as AutoscalerType] : UnknownAutoscaler;
  }),
  {
    type: "object",
    required: ["type"],
    "x-kubernetes-preserve-unknown-fields": true,
    properties: { type: { type: "string", enum: AUTOSCALER_TYPES } },
  },
);

// ───────────────────────────── metrics sources ─────────────────────────────

/** The one placeholder a query may hold. Pool names are DNS labels, safe inside a PromQL string as they are. */
export const POOL_PLACEHOLDER = "{{.Pool}}";
const MAX_QUERY_LENGTH = 4096;
const PromQL = withJsonShape(
  v.custom<string>(
    (x) => typeof x === "string" && x.trim() !== "" && x.length <= MAX_QUERY_LENGTH && !x.replaceAll(POOL_PLACEHOLDER, "").includes("{{"),
    (issue) => {
      const q = issue.input;
      if (typeof q !== "string" || q.trim() === "") return `expected a PromQL query, got ${show(q)}`;
      if (q.length > MAX_QUERY_LENGTH) return `expected a PromQL query of at most ${MAX_QUERY_LENGTH} characters, got ${q.length}`;
      return `only ${POOL_PLACEHOLDER} (the pool's name) may be used in a query, got ${show(q)}`;
    },
  ),
  { type: "string", minLength: 1, maxLength: MAX_QUERY_LENGTH },
);
const Queries = strict(
  Object.fromEntries(PROMETHEUS_QUERY_KEYS.map((k) => [k, v.optional(PromQL)])) as Record<PrometheusQueryKey, v.OptionalSchema<typeof PromQL, undefined>>,
);

const Metrics: v.GenericSchema<unknown, MetricsConfig> = strict({
  prometheus: v.optional(
    strict({
      url: HttpUrl,
      bearer_token_env: v.optional(EnvVarName),
      // An autoscale tick waits for its queries: a slow answer must not stall the loop.
      timeout: v.optional(duration("100ms", "1m"), "5s"),
      queries: v.optional(Queries, {}),
    }),
  ),
});

const PoolMetricsSources = strict({
  prometheus: v.optional(
    v.pipe(
      Queries,
      v.check((q) => Object.keys(q).length > 0, `set at least one of ${PROMETHEUS_QUERY_KEYS.join(", ")}`),
    ),
  ),
});

// ───────────────────────────── pools ─────────────────────────────

const Scaling: v.GenericSchema<unknown, ScalingConfig> = v.pipe(
  strict({
    min_nodes: v.optional(NodeCount, 0),
    max_nodes: v.optional(NodeCount),
    cooldown_period: v.optional(duration("0s", "24h"), "5m"),
    autoscaler: v.optional(Autoscaler),
    metrics: v.optional(PoolMetricsSources),
  }),
  rules((f, report, raw) => {
    const [min, max] = [num(f.min_nodes), num(f.max_nodes)];
    if (min !== undefined && max !== undefined && max < min) report("max_nodes", `must be ≥ min_nodes (${min}), got ${max}`);
    // Without an autoscaler an absent max means a fixed-size pool (max = min). With one it
    // would silently cap the autoscaler at min_nodes, so the ceiling must be stated.
    if (raw.autoscaler !== undefined && raw.max_nodes === undefined) report("max_nodes", "is required when an autoscaler is set");
  }),
  v.transform(({ min_nodes, max_nodes, ...rest }) => ({ min_nodes, max_nodes: max_nodes ?? min_nodes, ...rest })),
);

const Health: v.GenericSchema<unknown, HealthConfig> = strict({
  unhealthy_threshold: v.optional(int(1, 100), 2),
  auto_replace: v.optional(Bool, true),
  drain_timeout: v.optional(duration("1s", "168h"), "30m"),
  // GPU images routinely take longer than Cluster API's 10 min default to come up.
  // Under 30 s no machine boots and registers; over a day it is not coming.
  registration_timeout: v.optional(duration("30s", "24h"), "15m"),
  // What a slow cloud may teach the pool is bounded: past this a machine is not coming.
  registration_timeout_max: v.optional(duration("1m", "24h"), "2h"),
  // Three machines in a row that never register are a pattern (a bootstrap, an image, a
  // timeout too short), not bad luck: stop paying for more until someone changes something.
  max_registration_failures: v.optional(int(1, 1000), 3),
  replacement: v.optional(oneOf(["terminate_first", "surge"] as const, "replacement strategy"), "terminate_first"),
  remediation: v.optional(oneOf(["reboot_first", "replace"] as const, "remediation"), "reboot_first"),
  // A GPU machine's reboot (firmware, driver load, the agent's first check) takes minutes.
  reboot_timeout: v.optional(duration("30s", "24h"), "20m"),
  reboot_window: v.optional(duration("0s", "504h"), "168h"),
});

// Kubernetes label rules (labels are mirrored onto Kubernetes nodes).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LabelKey = accept<string>(
  (x) => {
    if (typeof x !== "string") return false;
    const slash = x.lastIndexOf("/");
    const [prefix, name] = slash < 0 ? [undefined, x] : [x.slice(0, slash), x.slice(slash + 1)];
    return LABEL_NAME.test(name) && (prefix === undefined || DNS_SUBDOMAIN.test(prefix));
  },
  "a Kubernetes label key ([prefix/]name: name at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends)",
  { type: "string", minLength: 1, maxLength: 317 },
);
const LabelValue = withJsonShape(
  v.custom<string>(
    (x) => typeof x === "string" && (x === "" || LABEL_NAME.test(x)),
    (issue) =>
      typeof issue.input === "string"
        ? `expected a Kubernetes label value (at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends), got ${show(issue.input)}`
        : `expected a string (quote it: "${String(issue.input)}"), got ${show(issue.input)}`,
  ),
  { type: "string", maxLength: 63 },
);
const Labels = v.pipe(Mapping, v.record(LabelKey, LabelValue));
const Taint: v.GenericSchema<unknown, PoolTaint> = strict({
  key: LabelKey,
  value: v.optional(LabelValue),
  effect: oneOf(TAINT_EFFECTS, "taint effect"),
});

const Pool: v.GenericSchema<unknown, PoolConfig> = v.pipe(
  strict({
    name: DnsLabel,
    provider: v.optional(ProviderName),
    providers: v.optional(
      v.pipe(
        list(ProviderName, { nonEmpty: true, noun: "provider" }),
        v.check((p) => new Set(p).size === p.length, "must not name a provider twice"),
      ),
    ),
    instance_type: Text,
    region: Text,
    zones: v.optional(list(Text), []),
    // The seed's SSH bootstrap pool has none: a fixed pool of zero, grown only on request.
    scaling: v.optional(Scaling, {}),
    health: v.optional(Health, {}),
    labels: v.optional(Labels, {}),
    taints: v.optional(list(Taint), []),
    // The login user of the stock GPU images on Lambda, GCP and AWS; only used for setup_commands.
    ssh_user: v.optional(shaped(/^[a-z_][a-z0-9_-]{0,31}$/, "a user name like ubuntu"), "ubuntu"),
    ssh_private_key_path: v.optional(Text),
    ssh_key_names: v.optional(SshKeyNames),
    setup_commands: v.optional(list(SetupCommand), []),
  }),
  rules((_f, report, raw) => {
    const [one, many] = [raw.provider !== undefined, raw.providers !== undefined];
    if (one && many) report("providers", "set provider or providers (a failover list), not both");
    if (!one && !many) report("provider", "is required (or providers: a list in failover order)");
    const commands = raw.setup_commands;
    // On Lambda alone, Navarch logs in with the key it keeps for the account (providers/lambda.ts).
    const lambdaOnly = one ? raw.provider === "lambda" : Array.isArray(raw.providers) && raw.providers.every((p) => p === "lambda");
    if (Array.isArray(commands) && commands.length > 0 && raw.ssh_private_key_path === undefined && !lambdaOnly) {
      report("ssh_private_key_path", "is required when setup_commands is not empty (they run over SSH), unless the pool launches on Lambda alone");
    }
  }),
  v.transform(({ name, provider, providers, ...rest }) => ({ name, providers: providers ?? (provider ? [provider] : []), ...rest })),
);

// ───────────────────────────── safety rails ─────────────────────────────

// Defaults are safe for a 3-node and a 3,000-node pool alike (docs/remediation.md):
// budgets have an absolute floor and a share; the breaker counts both.
const Safety: v.GenericSchema<unknown, SafetyConfig> = strict({
  dry_run: v.optional(Bool, false),
  unhealthy_budget: v.optional(strict({ floor: v.optional(int(0, MAX_NODES), 1), percent: v.optional(Percent, 20) }), {}),
  max_in_flight_per_pool: v.optional(int(1, MAX_NODES), 2),
  max_in_flight_fleet: v.optional(int(1, MAX_NODES), 10),
  cordon_rate: v.optional(strict({ per_minute: v.optional(int(1, MAX_NODES), 6), burst: v.optional(int(1, MAX_NODES), 5) }), {}),
  // A breaker window shorter than a few passes never sees a storm.
  breaker: v.optional(
    strict({
      window: v.optional(duration("1m", "24h"), "10m"),
      max_cordons: v.optional(int(1, MAX_NODES), 10),
      percent: v.optional(Percent, 30),
      // The share alone trips only past this many: one flapping slot of a small pool is no storm.
      min_cordons: v.optional(int(1, MAX_NODES), 3),
    }),
    {},
  ),
  partition: v.optional(
    strict({ window: v.optional(duration("10s", "24h"), "2m"), percent: v.optional(Percent, 50), min_nodes: v.optional(int(1, MAX_NODES), 3) }),
    {},
  ),
  max_attempts: v.optional(int(1, 100), 3),
});

// ───────────────────────────── kubernetes ─────────────────────────────

const Qps = accept<number>((x) => typeof x === "number" && x > 0 && x <= 10_000, "a number of requests per second > 0 (at most 10000)");
const Burst = int(1, 10_000);

const KubeDrain: v.GenericSchema<unknown, KubernetesDrainConfig> = strict({
  delete_emptydir_data: v.optional(Bool, false),
  on_deadline: v.optional(oneOf(["delete", "hold"] as const, "deadline behaviour"), "delete"),
  grace_period: v.optional(duration("0s", "1h")),
  unreachable_after: v.optional(duration("10s", "1h"), "1m"),
  max_backoff: v.optional(duration("1s", "10m"), "30s"),
});

const Kubernetes: v.GenericSchema<unknown, KubernetesConfig> = v.pipe(
  strict({
    kubeconfig: v.optional(Text),
    context: v.optional(Text),
    in_cluster: v.optional(Bool, false),
    server: v.optional(HttpUrl),
    token_env: v.optional(EnvVarName),
    ca_file: v.optional(Text),
    node_mapping: v.optional(oneOf(NODE_MAPPING_RULES, "node mapping rule"), "node_name"),
    node_label: v.optional(LabelKey, "navarch.dev/node-id"),
    taint_key: v.optional(LabelKey, "navarch.dev/unhealthy"),
    condition_type: v.optional(shaped(/^[A-Za-z][A-Za-z0-9]{0,62}$/, "a condition type like GpuHealthy (letters and digits)"), "GpuHealthy"),
    // Cordons get their own budget, well above what the cordon-rate rail lets through.
    client: v.optional(
      strict({
        cordon_qps: v.optional(Qps, 100),
        cordon_burst: v.optional(Burst, 200),
        eviction_qps: v.optional(Qps, 20),
        eviction_burst: v.optional(Burst, 40),
        qps: v.optional(Qps, 50),
        burst: v.optional(Burst, 100),
      }),
      {},
    ),
    drain: v.optional(KubeDrain, {}),
    pools_crd: v.optional(strict({ enabled: v.optional(Bool, false), namespace: v.optional(DnsLabel, "navarch") }), {}),
    queue_metrics: v.optional(strict({ enabled: v.optional(Bool, true), namespace: v.optional(DnsLabel) }), {}),
  }),
  rules((_f, report, raw) => {
    const [file, cluster, server] = [raw.kubeconfig !== undefined, raw.in_cluster === true, raw.server !== undefined];
    if (file && cluster) report("in_cluster", "set kubeconfig or in_cluster, not both");
    if (server && (file || cluster)) report("server", "set server (with token_env) or kubeconfig or in_cluster, only one");
    if (server && raw.token_env === undefined) report("token_env", "is required when server is set (the bearer token's variable)");
    if (!server && raw.token_env !== undefined) report("server", "is required when token_env is set");
    if (!server && raw.ca_file !== undefined) report("ca_file", "only applies with server (a kubeconfig carries its own CA)");
    if (raw.context !== undefined && (cluster || server)) report("context", "only applies with a kubeconfig");
  }),
);

// ───────────────────────────── slurm ─────────────────────────────

const SlurmName = shaped(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/, "a Slurm name (letters, digits, '.', '_' and '-', at most 64)");
const SlurmUser = shaped(/^[a-z_][a-z0-9_.-]{0,31}$/, "a user name (lowercase letters, digits, '_', '.', '-', at most 32)");
// Feature names may not hold what Slurm's constraint expressions use: , & | [ ] ( ) * and spaces.
const FeaturePrefix = shaped(/^[A-Za-z0-9._:=/-]{1,64}$/, "a feature prefix (letters, digits, '.', '_', ':', '=', '/', '-', at most 64)");

const Slurm: v.GenericSchema<unknown, SlurmConfig> = v.pipe(
  strict({
    rest_url: HttpUrl,
    user: v.optional(SlurmUser, "slurm"),
    jwt_key_file: v.optional(Text),
    token_env: v.optional(EnvVarName),
    token_lifespan: v.optional(duration("1m", "24h"), "30m"),
    scontrol: v.optional(Text, "scontrol"),
    slurm_conf: v.optional(Text),
    node_mapping: v.optional(oneOf(SLURM_NODE_MAPPING_RULES, "node mapping rule"), "hostname"),
    node_feature_prefix: v.optional(FeaturePrefix, "navarch-node="),
    poll_interval: v.optional(duration("200ms", "1m"), "1s"),
    drain: v.optional(strict({ on_deadline: v.optional(oneOf(["requeue", "hold"] as const, "deadline behaviour"), "requeue") }), {}),
    partitions: v.optional(v.pipe(Mapping, v.record(DnsLabel, SlurmName)), {}),
    queue_metrics: v.optional(strict({ enabled: v.optional(Bool, true) }), {}),
  }),
  rules((_f, report, raw) => {
    const [key, env] = [raw.jwt_key_file !== undefined, raw.token_env !== undefined];
    if (key && env) report("token_env", "set jwt_key_file or token_env, not both");
    if (!key && !env) report("jwt_key_file", "is required, or token_env: slurmrestd takes JWTs only");
  }),
);

// ───────────────────────────── the file ─────────────────────────────

export const NavarchConfigSchema: v.GenericSchema<unknown, NavarchConfig> = v.pipe(
  strict({
    server: v.optional(Server, {}),
    safety: v.optional(Safety, {}),
    providers: v.optional(Providers, {}),
    pools: v.optional(list(Pool), []),
    kubernetes: v.optional(Kubernetes),
    slurm: v.optional(Slurm),
    metrics: v.optional(Metrics),
  }),
  rules((_f, report, raw) => {
    // One scheduler at a time: a node is drained in one place.
    if (raw.kubernetes !== undefined && raw.slurm !== undefined) report("slurm", "set kubernetes or slurm, not both (Navarch mirrors into one scheduler)");
    // The raw list, so duplicates are found even when some pool has other errors.
    const pools: unknown = raw.pools;
    if (!Array.isArray(pools)) return;
    const prometheus = isRecord(raw.metrics) && raw.metrics.prometheus !== undefined;
    pools.forEach((pool: unknown, i) => {
      const scaling = isRecord(pool) ? pool.scaling : undefined;
      const sources = isRecord(scaling) ? scaling.metrics : undefined;
      if (!prometheus && isRecord(sources) && sources.prometheus !== undefined) {
        report(["pools", i, "scaling", "metrics", "prometheus"], "needs a Prometheus server to ask: set metrics.prometheus.url");
      }
    });
    const firstIndex = new Map<string, number>();
    pools.forEach((pool: unknown, i) => {
      const name = isRecord(pool) ? pool.name : undefined;
      if (typeof name !== "string") return;
      const first = firstIndex.get(name);
      if (first === undefined) firstIndex.set(name, i);
      else report(["pools", i, "name"], `duplicate pool name "${name}" (already used by pools[${first}])`);
    });
  }),
  v.transform((config) => ({ ...config, providers: withImplicitProviders(config.providers, config.pools) })),
);

/** Adds the defaults of every provider type a pool uses but `providers:` does not configure. */
function withImplicitProviders(providers: ProvidersConfig, pools: readonly PoolConfig[]): ProvidersConfig {
  const out: ProvidersConfig = { ...providers };
  for (const type of new Set(pools.flatMap((p) => p.providers))) {
    if (out[type] === undefined) Object.assign(out, { [type]: v.parse(PROVIDER_SCHEMAS[type], {}) });
  }
  return out;
}

/**
 * Validates one pool on its own (e.g. a pool that comes from a Kubernetes custom resource),
 * whose every string must be text the store can hold, as a config file's (reconciler/config/yaml-source.ts).
 */
export const PoolSchema = v.pipe(WellFormedStrings, Pool);
