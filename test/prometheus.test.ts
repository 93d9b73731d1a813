// Metrics out and in, checked by the real thing: prometheus and promtool built from the Go
// module proxy (test/prometheus/build.sh, cached outside the repo; the first run builds them).
// - `promtool check rules` on every rule file in deploy/ (the PrometheusRule's groups too);
// - `promtool test rules`: each alert of the rules file fires and stays quiet in its unit
//   tests (test/prometheus/navarch-rules.test.yaml);
// - a real Prometheus scraping an in-process `navarch serve` (and a stand-in for a
//   scheduler's exporter) on free ports, evaluating every rule of deploy/ over the fleet's
//   own metrics, the seed's two alerts going pending when a GPU dies; and the Prometheus
//   metrics source querying it: the loop scales a pool on a queue that lives in
//   Prometheus, and says so, and is alerted on, when that queue can no longer be read.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import YAML from "yaml";
import { PrometheusMetricsSource } from "../reconciler/pools/prometheus.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { auditLog, nodes, pools } from "../schema/db.ts";
import { isIn } from "../schema/lifecycle.ts";
import { freePort } from "./support.ts";
import { testConfig } from "./fleet-harness.ts";
import { FaultyLink } from "./faults/link.ts";
import { ensurePrometheus, promtool, startPrometheus, type PrometheusServer } from "./prometheus/harness.ts";
import { REPO_ROOT, tempDir, waitFor } from "./support.ts";

const RULES = join(REPO_ROOT, "deploy/prometheus/navarch-rules.yaml");
const UNIT_TESTS = join(REPO_ROOT, "test/prometheus/navarch-rules.test.yaml");

let bin: string;
beforeAll(async () => {
  // Cold: go get + go build of prometheus and promtool (671 s on 2 cores with empty Go caches); cached: 0.06 s.
  const built = await ensurePrometheus((line) => console.log(line));
  bin = built.bin;
  if (built.builtInSeconds !== undefined) console.log(`prometheus and promtool built in ${built.builtInSeconds} s`);
}, 30 * 60_000);

const RuleGroups = v.object({ groups: v.array(v.object({ name: v.string(), rules: v.array(v.object({ alert: v.string() })) })) });
const alertNames = () => v.parse(RuleGroups, YAML.parse(readFileSync(RULES, "utf8"))).groups.flatMap((g) => g.rules.map((r) => r.alert));

describe("promtool", () => {
  test("check rules: every rule file in deploy/ (the PrometheusRule's groups as Prometheus loads them)", () => {
    const dir = tempDir();
    const files: string[] = [];
    for (const sub of ["prometheus", "kubernetes"]) {
      for (const name of readdirSync(join(REPO_ROOT, "deploy", sub)).filter((f) => f.endsWith(".yaml"))) {
        const path = join(REPO_ROOT, "deploy", sub, name);
        const doc: unknown = YAML.parse(readFileSync(path, "utf8"));
        const kind = typeof doc === "object" && doc !== null && "kind" in doc ? doc.kind : undefined;
        if (kind === "PrometheusRule") {
          const spec = (doc as { spec: unknown }).spec;
          const out = join(dir, `${sub}-${name}`);
          writeFileSync(out, YAML.stringify(spec));
          files.push(out);
        } else if (kind === undefined && typeof doc === "object" && doc !== null && "groups" in doc) files.push(path);
      }
    }
    expect(files.length).toBe(2);
    for (const f of files) {
      const r = promtool(bin, ["check", "rules", f]);
      expect(r.output, f).toContain(`SUCCESS: ${alertNames().length} rules found`);
      expect(r.code, r.output).toBe(0);
    }
  });

  test("check rules catches what a typo does (it is not a rubber stamp)", () => {
    const bad = join(tempDir(), "bad.yaml");
    writeFileSync(bad, "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(navarch_nodes_total[5m])\n");
    const r = promtool(bin, ["check", "rules", bad]);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain("parse error");
  });

  test("test rules: every alert of the rules file fires and stays quiet in its unit tests", () => {
    const r = promtool(bin, ["test", "rules", UNIT_TESTS]);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain("SUCCESS");
    const Tests = v.object({
      rule_files: v.array(v.string()),
      tests: v.array(v.object({ name: v.string(), alert_rule_test: v.array(v.object({ alertname: v.string(), exp_alerts: v.array(v.unknown()) })) })),
    });
    const unit = v.parse(Tests, YAML.parse(readFileSync(UNIT_TESTS, "utf8")));
    expect(unit.rule_files).toEqual(["../../deploy/prometheus/navarch-rules.yaml"]);
    const cases = unit.tests.flatMap((t) => t.alert_rule_test);
    for (const alert of alertNames()) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${alert} has no unit test where it fires`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${alert} has no unit test where it stays quiet`,
      ).toBe(true);
    }
  });
});

describe("a real Prometheus scraping navarch serve", () => {
  const queue = { pending: 0, running: 16 };
  let exporterUp = true;
  let exporter: ReturnType<typeof Bun.serve>;
  let rec: Reconciler;
  let prometheus: PrometheusServer;
  let agents: SimulatedAgents;
  let ticking: ReturnType<typeof setInterval>;
  let link: FaultyLink;
  const inPool = async () => (await rec.store.db.select().from(nodes)).filter((n) => n.origin === "launched" && isIn("inPool", n.state));

  beforeAll(async () => {
    // A scheduler's exporter: the queue a pool's autoscaler reads through Prometheus.
    exporter = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () =>
        exporterUp
          ? new Response(
              `# TYPE gpu_jobs gauge\ngpu_jobs{pool="gpu",state="pending"} ${queue.pending}\ngpu_jobs{pool="gpu",state="running"} ${queue.running}\n`,
            )
          : new Response("exporter down", { status: 503 }),
    });
    const promPort = freePort();
    // The loop's metrics source reaches Prometheus through a link the tests can cut (test/faults/link.ts).
    link = new FaultyLink({ port: promPort });
    const cloud = new SimulatedCloud({ name: "local", now: Date.now, launchLatencyMs: 200 });
    const config = testConfig(`server:
  heartbeat_interval: 1s
  health_check_interval: 1s
  autoscale_interval: 1s
metrics:
  prometheus:
    url: http://${link.address}
    timeout: 2s
pools:
  - name: gpu
    provider: local
    instance_type: local-8gpu
    region: local
    scaling:
      min_nodes: 2
      max_nodes: 4
      cooldown_period: 0s
      autoscaler: { type: queue, jobs_per_node: 8 }
      metrics:
        prometheus:
          queue_pending: 'sum(gpu_jobs{pool="{{.Pool}}",state="pending"})'
          queue_running: 'sum(gpu_jobs{pool="{{.Pool}}",state="running"})'
    health:
      # The node with a dead GPU stays out, unhealthy, for the alerts to see: no reboot, no replacement.
      remediation: replace
      auto_replace: false
      registration_timeout: 1m
`);
    const dataDir = tempDir();
    rec = await startReconciler(
      {
        host: "127.0.0.1",
        port: freePort(),
        dataDir,
        databaseUrl: `file:${dataDir}/navarch.db`,
        authTokenEnv: "NAVARCH_PROMETHEUS_TEST_TOKEN",
        heartbeatIntervalSeconds: 1,
      },
      () => undefined,
      Date.now,
      { config, providers: new Map([["local", cloud]]), intervalMs: 100 },
    );
    agents = new SimulatedAgents(rec.store.db, cloud, Date.now);
    ticking = setInterval(() => void agents.tick().catch(() => undefined), 250);
    const target = (url: string) => new URL(url).host;
    prometheus = await startPrometheus(
      bin,
      `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${RULES}
scrape_configs:
  - job_name: navarch
    # As the seed's ServiceMonitor scrapes it: no token (server.metrics_auth: none by default).
    metrics_path: /metrics
    static_configs:
      - targets: ["${target(rec.url)}"]
  - job_name: scheduler
    static_configs:
      - targets: ["127.0.0.1:${exporter.port}"]
`,
      promPort,
    );
    await waitFor("both targets up", async () => ((await prometheus.targets()).filter((t) => t.health === "up").length === 2 ? true : undefined), 30_000);
    await waitFor("two nodes ready", async () => ((await inPool()).filter((n) => n.state === "ready").length === 2 ? true : undefined), 30_000);
  }, 90_000);

  afterAll(async () => {
    clearInterval(ticking);
    link?.stop();
    await prometheus?.stop();
    await rec?.stop();
    exporter?.stop(true);
  }, 30_000);

  test("it parses every series the reconciler exposes", async () => {
    const text = await (await fetch(`${rec.url}/metrics`, { headers: { authorization: `Bearer ${rec.authToken}` } })).text();
    const exposed = new Set(text.split("\n").flatMap((l) => (l === "" || l.startsWith("#") ? [] : [/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]])));
    await waitFor(
      "every exposed series in Prometheus",
      async () => {
        const names = new Set(await prometheus.metricNames());
        return [...exposed].every((n) => names.has(n)) ? true : undefined;
      },
      15_000,
    );
    expect(exposed.has("navarch_nodes_total")).toBe(true);
    expect((await prometheus.query('up{job="navarch"}'))[0]?.value).toBe(1);
  }, 60_000);

  test("every rule of deploy/ evaluates without error over the fleet's own metrics", async () => {
    const rules = await waitFor("every rule evaluated", async () => {
      const all = await prometheus.rules();
      return all.length > 0 && all.every((r) => r.health !== "unknown") ? all : undefined;
    });
    expect(rules.map((r) => r.name).sort()).toEqual(alertNames().sort());
    for (const r of rules) expect(r.health, `${r.name}: ${r.lastError ?? ""}`).toBe("ok");
  }, 60_000);

  test("the seed's two alerts go pending when a GPU dies (Xid 79 on one of two nodes)", async () => {
    const [victim] = (await inPool()).filter((n) => n.state === "ready");
    await agents.xid(victim!.id, 79);
    await waitFor(
      "the node judged unhealthy",
      async () => ((await inPool()).find((n) => n.id === victim!.id)?.verdict === "unhealthy" ? true : undefined),
      15_000,
    );
    expect(await waitFor("navarch_nodes_unhealthy > 0", async () => nonEmpty(await prometheus.query("navarch_nodes_unhealthy > 0")), 15_000)).toEqual([
      { labels: expect.objectContaining({ pool: "gpu", job: "navarch" }), value: 1 },
    ]);
    const capacity = await waitFor(
      "healthy / total < 0.8",
      async () => nonEmpty(await prometheus.query("navarch_nodes_healthy / navarch_nodes_total < 0.8")),
      15_000,
    );
    expect(capacity.map((s) => [s.labels.pool, s.value])).toEqual([["gpu", 0.5]]);
    const pending = await waitFor(
      "both alerts pending",
      async () => {
        const alerts = (await prometheus.alerts()).filter((a) => a.labels.pool === "gpu");
        const names = alerts.map((a) => a.labels.alertname);
        return names.includes("NavarchNodeUnhealthy") && names.includes("NavarchPoolCapacityLow") ? alerts : undefined;
      },
      15_000,
    );
    // Their `for:` (5m, 10m) has not passed: pending, not firing (promtool's unit tests show them firing).
    for (const a of pending.filter((x) => ["NavarchNodeUnhealthy", "NavarchPoolCapacityLow"].includes(x.labels.alertname!))) expect(a.state).toBe("pending");
  }, 60_000);

  test("the Prometheus metrics source reads it: one number per query, or why not", async () => {
    const source = new PrometheusMetricsSource({ url: prometheus.url, timeout: 2000, queries: {} });
    const [busy] = (await inPool()).filter((x) => x.state === "ready");
    agents.setBusyGpus(busy!.id, 4); // 4 of its 8 GPUs at 100 %
    const util = await waitFor("its utilisation at 50 %", async () => {
      const u = await source.query(`avg(navarch_node_gpu_utilization_percent{pool="gpu",node="${busy!.id}"})`);
      return u === 50 ? u : undefined;
    });
    expect(util).toBe(50);
    expect(await source.query('sum(gpu_jobs{pool="gpu",state="running"})')).toBe(16);
    await expect(source.query("navarch_node_gpu_utilization_percent")).rejects.toThrow(/\d+ series; aggregate them to one/);
    await expect(source.query("sum(rate(navarch_nodes_total[5m])")).rejects.toThrow("bad_data");
    await expect(source.query("navarch_no_such_metric")).rejects.toThrow("no series");
  }, 60_000);

  test("the loop scales the pool on a queue that lives in Prometheus", async () => {
    queue.pending = 16; // (16 pending + 16 running) / 8 per node = 4 nodes
    await waitFor("4 nodes", async () => ((await inPool()).length === 4 ? true : undefined), 30_000);
    const reasons = (await rec.store.db.select().from(auditLog).where(eq(auditLog.action, "scale"))).map((a) =>
      String((a.details as { reason?: string }).reason),
    );
    expect(reasons.some((r) => r.startsWith("queue depth 32 (16 pending + 16 running) / jobs_per_node 8 → 4 node(s): 2 → 4"))).toBe(true);
  }, 60_000);

  test("a queue it can no longer read: the pool holds, records why, and NavarchAutoscalerBlind goes pending", async () => {
    exporterUp = false; // its series go stale: the queries answer no series
    const error = await waitFor(
      "the pool's metrics error",
      async () => (await rec.store.db.select().from(pools).where(eq(pools.name, "gpu")))[0]?.metricsError ?? undefined,
      20_000,
    );
    expect(error).toContain("prometheus: queue_pending");
    expect(error).toContain("no series");
    const blind = await waitFor(
      "NavarchAutoscalerBlind pending",
      async () => (await prometheus.alerts()).find((a) => a.labels.alertname === "NavarchAutoscalerBlind" && a.labels.pool === "gpu"),
      20_000,
    );
    expect(blind.state).toBe("pending");
    expect((await inPool()).length).toBe(4);
  }, 60_000);

  test("Prometheus paused (SIGSTOP), then black-holed: the loop goes on quarantining, the pool holds, the dependency says so; back, it is up", async () => {
    exporterUp = true;
    const dependency = () => rec.dependencies.get("prometheus")?.status();
    await waitFor("prometheus answering", async () => (dependency()?.state === "up" ? true : undefined), 20_000);
    for (const cut of ["paused", "black-holed"] as const) {
      if (cut === "paused") prometheus.signal("SIGSTOP");
      else link.set("blackhole");
      try {
        // Its queries time out (metrics.prometheus.timeout: 2s): the source is down, the pass never waited for it.
        await waitFor(`prometheus down (${cut})`, async () => (dependency()?.state === "down" ? true : undefined), 20_000);
        expect(dependency()?.lastError?.message).toContain("no answer from");
        const readyz = await (await fetch(`${rec.url}/readyz`)).text();
        expect(readyz).toContain("degraded: prometheus (Prometheus at http://127.0.0.1:");
        // A GPU fault meanwhile is quarantined in its usual time: passes go on without the source.
        const [victim] = (await inPool()).filter((n) => n.state === "ready");
        const sent = performance.now();
        await agents.event(victim!.id, { check: "temperature", code: "thermal", severity: "unhealthy", action: "reset_gpu", message: "GPU 0: 98°C" });
        await waitFor(
          `${victim!.id} out of service`,
          async () => ((await rec.store.db.select().from(nodes).where(eq(nodes.id, victim!.id)))[0]?.state !== "ready" ? true : undefined),
          10_000,
        );
        console.log(`with Prometheus ${cut}: a GPU fault out of service in ${Math.round(performance.now() - sent)} ms`);
        expect((await inPool()).length).toBe(4);
      } finally {
        if (cut === "paused") prometheus.signal("SIGCONT");
        else link.set("up");
      }
      await waitFor(`prometheus up again (${cut})`, async () => (dependency()?.state === "up" ? true : undefined), 30_000);
    }
  }, 120_000);
});

function nonEmpty<T>(xs: T[]): T[] | undefined {
  return xs.length > 0 ? xs : undefined;
}
