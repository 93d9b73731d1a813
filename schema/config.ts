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
//
// Each section's types and schema live side by side in schema/config/ (server.ts, safety.ts,
// providers.ts, pool.ts with pool-scaling.ts, pool-health.ts and autoscaler.ts, metrics.ts,
// kubernetes.ts, slurm.ts); this file assembles them into the whole file's schema, checks the
// rules that span sections, and re-exports what most importers need.
import * as v from "valibot";
import { isRecord, strict } from "./shapes.ts";
import { rules } from "./config/cross-field-rules.ts";
import { list } from "./config/leaf-schemas.ts";
import { Kubernetes, type KubernetesConfig } from "./config/kubernetes.ts";
import { Metrics, type MetricsConfig } from "./config/metrics.ts";
import { Pool, type PoolConfig } from "./config/pool.ts";
import { PROVIDER_SCHEMAS, Providers, type ProvidersConfig } from "./config/providers.ts";
import { Safety, type SafetyConfig } from "./config/safety.ts";
import { Server, type ServerConfig } from "./config/server.ts";
import { Slurm, type SlurmConfig } from "./config/slurm.ts";

// What importers of the config use most, from the section that defines it; new code may
// import a section directly.
export { DURATION_KEYS, formatDuration, parseDuration, type Millis } from "./config/duration.ts";
export { isLoopbackIp, parseAddress, type MetricsAuth, type MetricsPerGpu, type ServerConfig, type ServerTlsConfig } from "./config/server.ts";
export type { SafetyConfig } from "./config/safety.ts";
export {
  PROVIDER_TYPES,
  type AwsProviderConfig,
  type CoreWeaveProviderConfig,
  type GcpProviderConfig,
  type LambdaProviderConfig,
  type LocalProviderConfig,
  type ProvidersConfig,
  type ProviderType,
} from "./config/providers.ts";
export { PoolSchema, TAINT_EFFECTS, type PoolConfig, type PoolTaint } from "./config/pool.ts";
export type { ScalingConfig } from "./config/pool-scaling.ts";
export type { HealthConfig } from "./config/pool-health.ts";
export {
  AUTOSCALER_TYPES,
  WEEKDAYS,
  type AutoscalerConfig,
  type AutoscalerType,
  type CompositeAutoscalerConfig,
  type IdleAutoscalerConfig,
  type PredictiveAutoscalerConfig,
  type QueueAutoscalerConfig,
  type ReactiveAutoscalerConfig,
  type ScheduledAutoscalerConfig,
  type ScheduleWindow,
  type Weekday,
} from "./config/autoscaler.ts";
export {
  POOL_PLACEHOLDER,
  PROMETHEUS_QUERY_KEYS,
  type MetricsConfig,
  type PrometheusQueries,
  type PrometheusQueryKey,
  type PrometheusSourceConfig,
} from "./config/metrics.ts";
export type { KubernetesConfig } from "./config/kubernetes.ts";
export type { SlurmConfig } from "./config/slurm.ts";

/** The whole config file, normalised: every section with its defaults filled in. */
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
