// The monitoring files in deploy/: they parse, the two rule files agree, the seed's
// alerts are there as the seed writes them, and every metric an expression names
// is one the reconciler's registry exports.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import YAML from "yaml";
import { createMetrics } from "../reconciler/metrics/metrics.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { REPO_ROOT } from "./support.ts";

const Rule = v.strictObject({
  alert: v.pipe(v.string(), v.regex(/^Navarch[A-Z][A-Za-z]+$/)),
  expr: v.pipe(v.string(), v.minLength(1)),
  for: v.pipe(v.string(), v.regex(/^\d+[smh]$/)),
  labels: v.strictObject({ severity: v.picklist(["info", "warning", "critical"]) }),
  annotations: v.object({ summary: v.pipe(v.string(), v.minLength(1)), description: v.pipe(v.string(), v.minLength(1)) }),
});
const RulesFile = v.strictObject({ groups: v.array(v.strictObject({ name: v.string(), rules: v.array(Rule) })) });
const PrometheusRule = v.object({
  apiVersion: v.literal("monitoring.coreos.com/v1"),
  kind: v.literal("PrometheusRule"),
  metadata: v.object({ name: v.string(), namespace: v.string(), labels: v.record(v.string(), v.string()) }),
  spec: RulesFile,
});
const ServiceMonitor = v.object({
  apiVersion: v.literal("monitoring.coreos.com/v1"),
  kind: v.literal("ServiceMonitor"),
  spec: v.object({
    selector: v.object({ matchLabels: v.record(v.string(), v.string()) }),
    endpoints: v.array(v.object({ port: v.string(), path: v.literal("/metrics"), interval: v.string() })),
  }),
});
const Grafana = v.object({
  title: v.string(),
  uid: v.string(),
  schemaVersion: v.number(),
  panels: v.array(
    v.object({
      id: v.number(),
      title: v.string(),
      type: v.picklist(["stat", "timeseries"]),
      gridPos: v.object({ x: v.number(), y: v.number(), w: v.number(), h: v.number() }),
      targets: v.array(v.object({ refId: v.string(), expr: v.string() })),
    }),
  ),
});

const file = (p: string) => readFileSync(join(REPO_ROOT, "deploy", p), "utf8");
const parse = <S extends v.GenericSchema>(schema: S, value: unknown, what: string): v.InferOutput<S> => {
  const r = v.safeParse(schema, value);
  if (!r.success) throw new Error(`${what}: ${r.issues.map((i) => `${v.getDotPath(i) ?? ""}: ${i.message}`).join("; ")}`);
  return r.output;
};

let store: Store;
let exported: Set<string>;
beforeAll(async () => {
  store = await openStore({ url: ":memory:" });
  const metrics = createMetrics(store.db);
  exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
});
afterAll(() => store.close());

/** Every navarch_* name an expression uses, histogram series folded to their metric. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bnavarch_[a-z0-9_]+/g)].map((m) => {
    const base = m[0].replace(/_(bucket|sum|count)$/, "");
    return exported.has(m[0]) || !exported.has(base) ? m[0] : base;
  });
}

/** Parentheses, brackets and braces balance, and quotes close. */
function balanced(expr: string): boolean {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
  let quote = false;
  for (const c of expr) {
    if (c === '"') quote = !quote;
    if (quote) continue;
    if ("([{".includes(c)) stack.push(c);
    else if (c in pairs && stack.pop() !== pairs[c]) return false;
  }
  return stack.length === 0 && !quote;
}

describe("deploy/", () => {
  const rules = parse(RulesFile, YAML.parse(file("prometheus/navarch-rules.yaml")), "navarch-rules.yaml");
  const all = rules.groups.flatMap((g) => g.rules);

  test("the rules file has the seed's alerts as the seed writes them, and more", () => {
    expect(all.find((r) => r.alert === "NavarchNodeUnhealthy")).toMatchObject({
      expr: "navarch_nodes_unhealthy > 0",
      for: "5m",
      labels: { severity: "warning" },
    });
    expect(all.find((r) => r.alert === "NavarchPoolCapacityLow")).toMatchObject({
      expr: "navarch_nodes_healthy / navarch_nodes_total < 0.8",
      for: "10m",
      labels: { severity: "critical" },
    });
    const names = all.map((r) => r.alert);
    for (const more of ["NavarchBreakerTripped", "NavarchPoolBelowMin", "NavarchBootstrapFailing", "NavarchAgentSilent", "NavarchReconcileLoopStalled"])
      expect(names).toContain(more);
    expect(new Set(names).size).toBe(names.length);
  });

  test("the name check catches a metric that does not exist", () => {
    expect(metricNames("rate(navarch_nodes_totl[5m]) + navarch_reconcile_pass_duration_seconds_bucket")).toEqual([
      "navarch_nodes_totl",
      "navarch_reconcile_pass_duration_seconds",
    ]);
    expect(exported.has("navarch_nodes_totl")).toBe(false);
  });

  test("every rule expression is balanced and names only metrics the reconciler exports", () => {
    for (const r of all) {
      expect(balanced(r.expr), r.alert).toBe(true);
      const used = metricNames(r.expr);
      expect(used.length, `${r.alert} names no navarch metric`).toBeGreaterThan(0);
      for (const name of used) expect(exported.has(name), `${r.alert}: ${name}`).toBe(true);
    }
  });

  test("the PrometheusRule carries the same groups; the ServiceMonitor scrapes /metrics", () => {
    const pr = parse(PrometheusRule, YAML.parse(file("kubernetes/prometheusrule.yaml")), "prometheusrule.yaml");
    expect(pr.spec).toEqual(rules);
    const sm = parse(ServiceMonitor, YAML.parse(file("kubernetes/servicemonitor.yaml")), "servicemonitor.yaml");
    expect(sm.spec.selector.matchLabels).toEqual({ app: "navarch-control-plane" });
    expect(sm.spec.endpoints[0]).toMatchObject({ path: "/metrics", interval: "30s" });
    // It scrapes a port the chart's Service (as rendered into deploy/manifests) really has, with the labels it selects.
    const service = YAML.parseAllDocuments(file("manifests/navarch.yaml"))
      .map((d) => d.toJSON() as { kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; spec?: { ports?: { name: string }[] } })
      .find((d) => d?.kind === "Service" && d.metadata?.name === "navarch-control-plane");
    expect(service?.spec?.ports?.map((p) => p.name)).toContain(sm.spec.endpoints[0]!.port);
    expect(service?.metadata?.labels).toMatchObject(sm.spec.selector.matchLabels);
  });

  test("the Grafana dashboard is valid JSON whose panels query exported metrics", () => {
    const dash = parse(Grafana, JSON.parse(file("grafana/navarch-dashboard.json")), "navarch-dashboard.json");
    expect(dash.panels.length).toBeGreaterThan(10);
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length);
    const seen = new Set<string>();
    for (const p of dash.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (const t of p.targets) {
        expect(balanced(t.expr), `${p.title}: ${t.expr}`).toBe(true);
        for (const name of metricNames(t.expr)) {
          expect(exported.has(name), `${p.title}: ${name}`).toBe(true);
          seen.add(name);
        }
      }
    }
    // The seed's metrics are all on the dashboard.
    for (const name of [
      "navarch_nodes_total",
      "navarch_nodes_healthy",
      "navarch_nodes_unhealthy",
      "navarch_xid_errors_total",
      "navarch_node_gpu_temperature_celsius",
      "navarch_node_gpu_utilization_percent",
    ]) {
      expect(seen.has(name), name).toBe(true);
    }
  });
});
