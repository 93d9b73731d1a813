// The `metrics:` section and a pool's `scaling.metrics:`: where autoscalers read what the
// reconciler does not measure itself, today a Prometheus server and the PromQL queries (per
// fleet, replaced per pool key by key) that answer each autoscaling input.
import * as v from "valibot";
import { strict, show, withJsonShape } from "../shapes.ts";
import { duration, type Millis } from "./duration.ts";
import { EnvVarName, HttpUrl } from "./leaf-schemas.ts";

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

export const Metrics: v.GenericSchema<unknown, MetricsConfig> = strict({
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

export const PoolMetricsSources = strict({
  prometheus: v.optional(
    v.pipe(
      Queries,
      v.check((q) => Object.keys(q).length > 0, `set at least one of ${PROMETHEUS_QUERY_KEYS.join(", ")}`),
    ),
  ),
});
