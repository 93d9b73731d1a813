// A MetricsSource over a Prometheus server: the pool's PromQL queries (metrics.prometheus.
// queries, replaced key by key by the pool's scaling.metrics.prometheus), each an instant
// query on the HTTP API (`POST /api/v1/query`) that must answer one number. The answer is
// checked like any input from outside: its shape, one series, a finite value in the range
// the input can have. Whatever fails is unknown for this tick (the autoscaler then holds,
// saying why) and is reported in `problems`; a query never throws into the loop.
import * as v from "valibot";
import {
  formatDuration,
  POOL_PLACEHOLDER,
  PROMETHEUS_QUERY_KEYS,
  type PoolConfig,
  type PrometheusQueries,
  type PrometheusQueryKey,
  type PrometheusSourceConfig,
} from "../../schema/config.ts";
import type { Dependency } from "../dependencies/status.ts";
import type { MetricsSource, SourcedMetrics } from "./metrics-source.ts";

/** `[unix seconds, "value"]`: Prometheus writes sample values as strings ("NaN", "+Inf" included). */
const SampleValue = v.tuple([v.number(), v.string()]);

const QueryAnswer = v.variant("status", [
  v.object({
    status: v.literal("success"),
    data: v.variant("resultType", [
      v.object({ resultType: v.literal("vector"), result: v.array(v.object({ metric: v.record(v.string(), v.string()), value: SampleValue })) }),
      v.object({ resultType: v.literal("scalar"), result: SampleValue }),
      v.object({ resultType: v.literal("matrix"), result: v.array(v.unknown()) }),
      v.object({ resultType: v.literal("string"), result: v.unknown() }),
    ]),
  }),
  v.object({ status: v.literal("error"), errorType: v.string(), error: v.string() }),
]);

/** What each input may be: utilisation is a percentage, queue counts are whole and never negative. */
const RANGES: Record<PrometheusQueryKey, { min: number; max: number; whole: boolean }> = {
  queue_pending: { min: 0, max: Number.MAX_SAFE_INTEGER, whole: true },
  queue_running: { min: 0, max: Number.MAX_SAFE_INTEGER, whole: true },
  gpu_utilization: { min: 0, max: 100, whole: false },
};

/** A query that did not answer one usable number. */
export class PromQLError extends Error {
  override readonly name = "PromQLError";
}

export interface PrometheusSourceOptions {
  /** Where bearer_token_env is read (default: process.env). */
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
  /** Told of each answer and each query that got none (reconciler/dependencies/status.ts). */
  dependency?: Dependency;
}

export class PrometheusMetricsSource implements MetricsSource {
  readonly name = "prometheus";
  private readonly endpoint: string;

  constructor(
    private readonly config: PrometheusSourceConfig,
    private readonly options: PrometheusSourceOptions = {},
  ) {
    this.endpoint = `${config.url.replace(/\/+$/, "")}/api/v1/query`;
  }

  /** The queries a pool is read with: the global ones, each replaced by the pool's own. */
  queriesFor(pool: PoolConfig): PrometheusQueries {
    return { ...this.config.queries, ...pool.scaling.metrics?.prometheus };
  }

  async poolMetrics(pool: PoolConfig): Promise<SourcedMetrics> {
    const queries = this.queriesFor(pool);
    const keys = PROMETHEUS_QUERY_KEYS.filter((k) => queries[k] !== undefined);
    if (keys.length === 0) return {};
    const answers = await Promise.all(
      keys.map(async (key) => {
        const promql = queries[key]!.replaceAll(POOL_PLACEHOLDER, pool.name);
        try {
          return { key, value: checked(key, await this.query(promql)) };
        } catch (err) {
          return { key, problem: `prometheus: ${key} (${promql}): ${err instanceof Error ? err.message : String(err)}` };
        }
      }),
    );
    const value = new Map(answers.flatMap((a) => (a.value === undefined ? [] : [[a.key, a.value] as const])));
    const out: SourcedMetrics = {};
    const problems = answers.flatMap((a) => (a.problem === undefined ? [] : [a.problem]));
    if (value.has("gpu_utilization")) out.gpuUtilization = value.get("gpu_utilization")!;
    // The queue only when every queue query that is configured answered: half a queue is not a depth.
    const queueKeys = keys.filter((k) => k !== "gpu_utilization");
    if (queueKeys.length > 0 && queueKeys.every((k) => value.has(k)))
      out.queue = { pending: value.get("queue_pending") ?? 0, running: value.get("queue_running") ?? 0 };
    if (problems.length > 0) out.problems = problems;
    return out;
  }

  /** One instant query that must answer one number (a scalar, or a vector of one series). */
  async query(promql: string): Promise<number> {
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    const tokenEnv = this.config.bearer_token_env;
    if (tokenEnv !== undefined) {
      const token = (this.options.env ?? process.env)[tokenEnv];
      if (token === undefined || token === "") throw new PromQLError(`${tokenEnv} is not set (metrics.prometheus.bearer_token_env)`);
      headers.authorization = `Bearer ${token}`;
    }
    const body = new URLSearchParams({ query: promql, timeout: formatDuration(this.config.timeout) });
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(this.endpoint, { method: "POST", headers, body, signal: AbortSignal.timeout(this.config.timeout) });
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      const error = new PromQLError(
        timedOut
          ? `no answer from ${this.endpoint} within ${formatDuration(this.config.timeout)}`
          : `${this.endpoint}: ${err instanceof Error ? err.message : String(err)}`,
      );
      this.options.dependency?.failed(error);
      throw error;
    }
    // A query Prometheus refuses (bad PromQL: 400, 422) is an answer; 5xx and refused credentials are not.
    if (response.status >= 500 || response.status === 401 || response.status === 403)
      this.options.dependency?.failed(new PromQLError(`${this.endpoint} answered ${response.status}`));
    else this.options.dependency?.ok();
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new PromQLError(`${this.endpoint} answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    const parsed = v.safeParse(QueryAnswer, json);
    if (!parsed.success) {
      throw new PromQLError(
        `${this.endpoint} answered ${response.status} with a body that is not a Prometheus query answer (${parsed.issues.map((i) => `${v.getDotPath(i) ?? "body"}: ${i.message}`).join("; ")})`,
      );
    }
    const answer = parsed.output;
    if (answer.status === "error") throw new PromQLError(`${answer.errorType}: ${answer.error}`);
    const data = answer.data;
    switch (data.resultType) {
      case "scalar":
        return sampleNumber(data.result[1]);
      case "vector": {
        if (data.result.length === 0) throw new PromQLError("no series (an empty vector); write `… or vector(0)` where none means zero");
        if (data.result.length > 1) throw new PromQLError(`${data.result.length} series; aggregate them to one (sum, avg, max)`);
        return sampleNumber(data.result[0]!.value[1]);
      }
      default:
        throw new PromQLError(`a ${data.resultType}, not one number (write an instant query)`);
    }
  }
}

function sampleNumber(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n)) throw new PromQLError(`the value is ${text}, not a finite number`);
  return n;
}

/** The value as the input it stands for, or an error saying why it cannot be. */
function checked(key: PrometheusQueryKey, n: number): number {
  const { min, max, whole } = RANGES[key];
  if (n < min || n > max) throw new PromQLError(`the value ${n} is outside ${min} to ${max === Number.MAX_SAFE_INTEGER ? "any count" : max}`);
  return whole ? Math.round(n) : n;
}
