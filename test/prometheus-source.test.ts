// The Prometheus metrics source without a Prometheus: its config section (errors with key
// paths), and every answer an HTTP server can give checked as an edge (one series, a finite
// number in range, Prometheus's own errors, timeouts, tokens). test/prometheus.test.ts runs
// it against a real Prometheus.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../reconciler/config/load.ts";
import { checkServeNeeds } from "../reconciler/app/preflight.ts";
import { configToYaml } from "../reconciler/config/print.ts";
import { formatProblems } from "../reconciler/config/yaml-source.ts";
import { layeredSources, queueSource } from "../reconciler/pools/metrics-source.ts";
import { PrometheusMetricsSource } from "../reconciler/pools/prometheus.ts";
import type { PoolConfig, PrometheusSourceConfig } from "../schema/config.ts";

const POOL = (extra = "") =>
  `  - name: batch\n    provider: lambda\n    instance_type: gpu_8x_h100_sxm5\n    region: us-west-1\n    scaling:\n      min_nodes: 1\n      max_nodes: 8\n${extra}`;

function problems(yaml: string): string[] {
  const r = parseConfig(yaml, "navarch.yaml");
  return r.ok ? [] : formatProblems(r.problems, "navarch.yaml");
}

describe("the metrics: section", () => {
  test("global queries and a pool's own, normalised with defaults", () => {
    const r = parseConfig(
      `metrics:\n  prometheus:\n    url: http://prometheus.monitoring:9090\n    queries:\n      queue_pending: 'sum(jobs_pending{partition="{{.Pool}}"})'\npools:\n${POOL(
        "      metrics:\n        prometheus:\n          gpu_utilization: avg(DCGM_FI_DEV_GPU_UTIL)\n",
      )}`,
      "navarch.yaml",
    );
    if (!r.ok) throw new Error(formatProblems(r.problems, "navarch.yaml").join("\n"));
    expect(r.config.metrics).toEqual({
      prometheus: { url: "http://prometheus.monitoring:9090", timeout: 5000, queries: { queue_pending: 'sum(jobs_pending{partition="{{.Pool}}"})' } },
    });
    expect(r.config.pools[0]!.scaling.metrics).toEqual({ prometheus: { gpu_utilization: "avg(DCGM_FI_DEV_GPU_UTIL)" } });
  });

  test("printed normalised (config check) and read back, it is the same config", () => {
    const yaml = `metrics:\n  prometheus:\n    url: http://p:9090\n    timeout: 1500ms\n    bearer_token_env: PROM_TOKEN\n    queries:\n      queue_running: 'sum(r{pool="{{.Pool}}"})'\npools:\n${POOL(
      "      metrics:\n        prometheus:\n          queue_pending: sum(p)\n",
    )}`;
    const first = parseConfig(yaml, "a.yaml");
    if (!first.ok) throw new Error(formatProblems(first.problems, "a.yaml").join("\n"));
    const printed = configToYaml(first.config);
    expect(printed).toContain("timeout: 1s500ms");
    const again = parseConfig(printed, "printed");
    expect(again.ok ? again.config : again.problems).toEqual(first.config);
  });

  test.each([
    {
      name: "a pool's queries without a server",
      yaml: `pools:\n${POOL("      metrics:\n        prometheus:\n          queue_pending: sum(x)\n")}`,
      line: "pools[0].scaling.metrics.prometheus: needs a Prometheus server to ask: set metrics.prometheus.url",
    },
    { name: "no url", yaml: "metrics:\n  prometheus:\n    timeout: 5s\n", line: "metrics.prometheus.url: is required" },
    {
      name: "a url that is not http",
      yaml: "metrics:\n  prometheus:\n    url: prometheus:9090\n",
      line: "metrics.prometheus.url: expected an http:// or https:// URL",
    },
    {
      name: "an unknown query key",
      yaml: "metrics:\n  prometheus:\n    url: http://p:9090\n    queries:\n      queue_depth: sum(x)\n",
      line: 'metrics.prometheus.queries.queue_depth: unknown key "queue_depth"',
    },
    {
      name: "another template variable",
      yaml: "metrics:\n  prometheus:\n    url: http://p:9090\n    queries:\n      queue_pending: 'sum(x{pool=\"{{.Name}}\"})'\n",
      line: "metrics.prometheus.queries.queue_pending: only {{.Pool}} (the pool's name) may be used in a query",
    },
    {
      name: "a timeout out of range",
      yaml: "metrics:\n  prometheus:\n    url: http://p:9090\n    timeout: 10m\n",
      line: "metrics.prometheus.timeout: expected a duration from 100ms to 1m",
    },
    {
      name: "a token variable that is not a name",
      yaml: "metrics:\n  prometheus:\n    url: http://p:9090\n    bearer_token_env: my-token\n",
      line: "metrics.prometheus.bearer_token_env: expected the name of an environment variable",
    },
    {
      name: "a pool's empty prometheus",
      yaml: `metrics:\n  prometheus:\n    url: http://p:9090\npools:\n${POOL("      metrics:\n        prometheus: {}\n")}`,
      line: "pools[0].scaling.metrics.prometheus: set at least one of queue_pending, queue_running, gpu_utilization",
    },
  ])("$name", ({ yaml, line }) => {
    const found = problems(yaml);
    expect(
      found.some((p) => p.includes(line)),
      `${found.join("\n")}\nshould contain: ${line}`,
    ).toBe(true);
  });
});

describe("config check's warnings", () => {
  const warnings = async (yaml: string, env: Record<string, string> = {}) => {
    const r = parseConfig(yaml, "navarch.yaml");
    if (!r.ok) throw new Error(formatProblems(r.problems, "navarch.yaml").join("\n"));
    return (await checkServeNeeds(r.config, "navarch.yaml", { env: (name) => env[name] })).warnings;
  };
  const QUEUE = POOL("      autoscaler: { type: queue, jobs_per_node: 8 }\n");

  test("a queue autoscaler with its queue in Prometheus is not warned about; without one it is", async () => {
    expect((await warnings(`pools:\n${QUEUE}`)).some((w) => w.includes("a queue autoscaler without queue metrics"))).toBe(true);
    const withPrometheus = await warnings(`metrics:\n  prometheus:\n    url: http://p:9090\n    queries:\n      queue_pending: sum(x)\npools:\n${QUEUE}`);
    expect(withPrometheus.filter((w) => w.includes("queue"))).toEqual([]);
  });

  test("an unset bearer_token_env", async () => {
    const yaml = "metrics:\n  prometheus:\n    url: http://p:9090\n    bearer_token_env: PROM_TOKEN\npools: []\n";
    expect(await warnings(yaml)).toContain(
      "navarch.yaml: metrics.prometheus.bearer_token_env: $PROM_TOKEN is not set; every query to http://p:9090 fails and the autoscalers reading it hold",
    );
    expect((await warnings(yaml, { PROM_TOKEN: "t" })).filter((w) => w.includes("PROM_TOKEN"))).toEqual([]);
  });
});

// ───────────────────────────── answers ─────────────────────────────

type Reply = { status?: number; body: unknown } | { delayMs: number } | { raw: string; status: number };
let reply: Reply = { body: {} };
const seen: { query: string; timeout: string | null; authorization: string | null }[] = [];
let server: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/api/v1/query" || req.method !== "POST") return new Response("not found", { status: 404 });
      const form = new URLSearchParams(await req.text());
      seen.push({ query: form.get("query") ?? "", timeout: form.get("timeout"), authorization: req.headers.get("authorization") });
      const r = reply;
      if ("delayMs" in r) {
        await Bun.sleep(r.delayMs);
        return Response.json({ status: "success", data: { resultType: "scalar", result: [0, "1"] } });
      }
      if ("raw" in r) return new Response(r.raw, { status: r.status });
      return Response.json(r.body, { status: r.status ?? 200 });
    },
  });
});
afterAll(() => server.stop(true));

const vector = (...values: string[]) => ({
  status: "success",
  data: { resultType: "vector", result: values.map((value, i) => ({ metric: { i: String(i) }, value: [1700000000.5, value] })) },
});
const source = (over: Partial<PrometheusSourceConfig> = {}, env: Record<string, string> = {}) =>
  new PrometheusMetricsSource({ url: `http://127.0.0.1:${server.port}/`, timeout: 500, queries: {}, ...over }, { env });

describe("one query, one number", () => {
  test.each([
    { name: "a vector of one series", body: vector("42.5"), value: 42.5 },
    { name: "a scalar", body: { status: "success", data: { resultType: "scalar", result: [1700000000, "7"] } }, value: 7 },
  ])("$name", async ({ body, value }) => {
    reply = { body };
    expect(await source().query("x")).toBe(value);
  });

  test.each([
    { name: "an empty vector", reply: { body: vector() }, error: "no series (an empty vector); write `… or vector(0)` where none means zero" },
    { name: "two series", reply: { body: vector("1", "2") }, error: "2 series; aggregate them to one (sum, avg, max)" },
    { name: "NaN", reply: { body: vector("NaN") }, error: "the value is NaN, not a finite number" },
    { name: "+Inf", reply: { body: vector("+Inf") }, error: "the value is +Inf, not a finite number" },
    { name: "a range vector", reply: { body: { status: "success", data: { resultType: "matrix", result: [] } } }, error: "a matrix, not one number" },
    {
      name: "Prometheus's own error",
      reply: { status: 400, body: { status: "error", errorType: "bad_data", error: 'parse error: unexpected "}"' } },
      error: 'bad_data: parse error: unexpected "}"',
    },
    { name: "not JSON", reply: { status: 502, raw: "<html>bad gateway</html>" }, error: "answered 502 with a body that is not JSON: <html>bad gateway</html>" },
    {
      name: "JSON of another shape",
      reply: { body: { status: "success", data: { resultType: "vector", result: [{ value: "1" }] } } },
      error: "with a body that is not a Prometheus query answer (data.result.0.metric",
    },
    { name: "too slow", reply: { delayMs: 1500 }, error: "no answer from http://127.0.0.1:" },
  ])("$name is an error that says why", async ({ reply: r, error }) => {
    reply = r as Reply;
    await expect(source().query("x")).rejects.toThrow(error);
  });

  test("the query goes as a form with the timeout; the token from bearer_token_env", async () => {
    reply = { body: vector("1") };
    seen.length = 0;
    await source({ bearer_token_env: "PROM_TOKEN", timeout: 1500 }, { PROM_TOKEN: "s3cret" }).query('sum(up{job="x"})');
    expect(seen).toEqual([{ query: 'sum(up{job="x"})', timeout: "1s500ms", authorization: "Bearer s3cret" }]);
    await expect(source({ bearer_token_env: "PROM_TOKEN" }).query("x")).rejects.toThrow("PROM_TOKEN is not set (metrics.prometheus.bearer_token_env)");
  });

  test("nothing listening: an error naming the endpoint", async () => {
    const dead = new PrometheusMetricsSource({ url: "http://127.0.0.1:1", timeout: 500, queries: {} });
    await expect(dead.query("x")).rejects.toThrow("http://127.0.0.1:1/api/v1/query:");
  });
});

describe("a pool's metrics", () => {
  const pool = (queries: Record<string, string> = {}): PoolConfig =>
    ({
      name: "batch",
      scaling: { min_nodes: 1, max_nodes: 8, cooldown_period: 0, ...(Object.keys(queries).length > 0 ? { metrics: { prometheus: queries } } : {}) },
    }) as PoolConfig;

  test("the pool's queries over the global ones, {{.Pool}} replaced; the queue needs every queue query that is configured", async () => {
    reply = { body: vector("12") };
    seen.length = 0;
    const s = source({ queries: { queue_pending: 'sum(pending{p="{{.Pool}}"})', gpu_utilization: "avg(util)" } });
    expect(await s.poolMetrics(pool({ gpu_utilization: 'avg(util{p="{{.Pool}}"})' }))).toEqual({ gpuUtilization: 12, queue: { pending: 12, running: 0 } });
    expect(seen.map((q) => q.query).sort()).toEqual(['avg(util{p="batch"})', 'sum(pending{p="batch"})']);
  });

  test("values outside what the input can be are refused; counts are whole", async () => {
    reply = { body: vector("101") };
    const over = await source({ queries: { gpu_utilization: "u" } }).poolMetrics(pool());
    expect(over.gpuUtilization).toBeUndefined();
    expect(over.problems).toEqual(["prometheus: gpu_utilization (u): the value 101 is outside 0 to 100"]);
    reply = { body: vector("-1") };
    expect((await source({ queries: { queue_pending: "q" } }).poolMetrics(pool())).problems).toEqual([
      "prometheus: queue_pending (q): the value -1 is outside 0 to any count",
    ]);
    reply = { body: vector("2.6") };
    expect((await source({ queries: { queue_running: "q" } }).poolMetrics(pool())).queue).toEqual({ pending: 0, running: 3 });
  });

  test("a failing queue query leaves the queue unknown (half a queue is not a depth), and says why", async () => {
    reply = { body: vector() };
    const r = await source({ queries: { queue_pending: "p", queue_running: "r" } }).poolMetrics(pool());
    expect(r.queue).toBeUndefined();
    expect(r.problems).toHaveLength(2);
  });

  test("no queries for the pool: nothing asked, nothing known", async () => {
    seen.length = 0;
    expect(await source().poolMetrics(pool())).toEqual({});
    expect(seen).toEqual([]);
  });

  test("layered sources: what a later one knows replaces an earlier one's; a failing scheduler is a problem, not a throw", async () => {
    reply = { body: vector("5") };
    const scheduler = queueSource("kubernetes", async () => ({ pending: 1, running: 1 }));
    const both = layeredSources([scheduler, source({ queries: { queue_pending: "p" } })]);
    expect(await both.poolMetrics(pool())).toEqual({ queue: { pending: 5, running: 0 } });
    const broken = layeredSources([queueSource("slurm", async () => Promise.reject(new Error("squeue: connection refused")))]);
    expect(await broken.poolMetrics(pool())).toEqual({ problems: ["slurm: squeue: connection refused"] });
  });
});
