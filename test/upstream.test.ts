// Upstream Navarch's files: its health policy format loads as it is and judges every Xid the way
// its rules do (fatal stays fatal, recoverable stays recoverable); its config format is named in
// one line by check, and `navarch config migrate` turns it into ours, which then passes check and
// starts. The fixtures in test/fixtures/upstream/ were written for these tests in upstream's
// formats, after its default policy and its example configs.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configCheckCommand } from "../reconciler/cli/config-check.ts";
import { configMigrateCommand } from "../reconciler/cli/config-migrate.ts";
import { serveSettings } from "../reconciler/cli/serve.ts";
import { parseConfig } from "../reconciler/config/load.ts";
import { prepareServeConfig } from "../reconciler/app/preflight.ts";
import { migrateUpstreamConfig } from "../reconciler/config/upstream.ts";
import { YamlSource } from "../reconciler/config/yaml-source.ts";
import { trackFinding } from "../reconciler/health/findings.ts";
import { nodeVerdict } from "../reconciler/health/node-verdict.ts";
import type { HealthPolicy, PolicyNode } from "../reconciler/health/policy-evaluation.ts";
import { loadPolicyFile, parsePolicy } from "../reconciler/health/policy-file.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import type { NavarchConfig } from "../schema/config.ts";
import type { HealthEvent, Severity } from "../schema/wire.ts";
import { lookupXid, XID_CATALOG } from "../schema/xid-catalog.ts";
import { tempDir, waitFor } from "./support.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "upstream");
const NODE: PolicyNode = { id: "gpu-node-1", pool: "training", bootId: "boot-1" };
const T0 = Date.parse("2025-03-01T00:00:00Z");
const GPU = { index: 2, uuid: "GPU-2", pciBusId: "00000000:3B:00.0" };
/** The Xids upstream's default policy calls unhealthy (its fatal-xid rule); every other Xid is degraded. */
const UPSTREAM_FATAL_XIDS = [13, 31, 32, 43, 45, 48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 100, 119, 120];

let seq = 1;
function event(check: string, code: string, severity: Severity = "degraded", action: HealthEvent["action"] = "none"): HealthEvent {
  return { seq: seq++, time: new Date(T0).toISOString(), bootId: "boot-1", check, code, severity, action, gpu: GPU, message: `${check} ${code}` };
}

function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, sinks: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) } };
}

async function upstreamDefault(): Promise<HealthPolicy> {
  const loaded = await loadPolicyFile(join(FIXTURES, "default-health-policy.yaml"));
  if (!loaded.ok) throw new Error(loaded.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return loaded.policy;
}

describe("upstream's health policy format", () => {
  test("upstream's default policy loads, with one line saying how it is mapped", async () => {
    const loaded = await loadPolicyFile(join(FIXTURES, "default-health-policy.yaml"));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    expect(loaded.policy.rules.map((r) => r.name)).toEqual([
      "fatal-xid",
      "recoverable-xid",
      "ecc-dbe",
      "ecc-sbe-high",
      "thermal-critical",
      "thermal-warning",
      "nvlink-error",
      "pcie-error",
      "power-warning",
      "default",
    ]);
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0]).toContain(`upstream Navarch's health policy format "default" (10 rules)`);
  });

  test("every Xid is judged as upstream's rules judge it: its fatal list unhealthy, every other Xid degraded", async () => {
    const policy = await upstreamDefault();
    const codes = [...new Set([...XID_CATALOG.entries.keys(), ...UPSTREAM_FATAL_XIDS, 1, 999, 65535])].sort((a, b) => a - b);
    expect(codes.length).toBeGreaterThan(80);
    for (const code of codes) {
      const entry = lookupXid(code);
      // Whatever the agent said, upstream's rules decide an Xid.
      const out = policy.evaluate(
        { event: event("xid", String(code), entry.severity === "healthy" ? "degraded" : entry.severity, entry.action), node: NODE },
        [],
        T0,
      );
      const fatal = UPSTREAM_FATAL_XIDS.includes(code);
      expect({ code, result: out.result, rule: out.rule, errors: out.errors }).toEqual({
        code,
        result: fatal ? "unhealthy" : "degraded",
        rule: fatal ? "fatal-xid" : "recoverable-xid",
        errors: [],
      });
      // The catalog still says how long it lasts: a GPU off the bus never recovers by itself.
      expect(out.persistence).toBe(entry.persistence);
    }
  });

  test("fatal stays fatal: Xid 79 takes the node out at once; a recoverable Xid waits for unhealthy_threshold", async () => {
    const policy = await upstreamDefault();
    const judge = (e: HealthEvent) =>
      nodeVerdict(trackFinding([], e, policy.evaluate({ event: e, node: NODE }, [], T0)), { now: T0, bootId: "boot-1", unhealthyThreshold: 2 });
    expect(judge(event("xid", "79", "unhealthy", "reboot"))).toMatchObject({ verdict: "unhealthy", fatal: true });
    expect(judge(event("xid", "44"))).toMatchObject({ verdict: "degraded" });
    // Xid 13 is on upstream's fatal list (ours calls it app-caused): unhealthy, but not fatal, so it is counted.
    expect(judge(event("xid", "13"))).toMatchObject({ verdict: "degraded" });
  });

  test("findings that mean an Xid are judged as that Xid; ECC DBE, NVLink and PCIe by upstream's rules", async () => {
    const policy = await upstreamDefault();
    const judge = (e: HealthEvent) => policy.evaluate({ event: e, node: NODE }, [], T0);
    expect(judge(event("gpu_lost", "lost", "unhealthy"))).toMatchObject({ result: "unhealthy", rule: "fatal-xid", persistence: "fatal" });
    expect(judge(event("row_remap", "failed", "unhealthy"))).toMatchObject({ result: "unhealthy", rule: "fatal-xid" });
    expect(judge(event("row_remap", "pending"))).toMatchObject({ result: "unhealthy", rule: "fatal-xid" });
    expect(judge(event("ecc", "dbe", "unhealthy"))).toMatchObject({ result: "unhealthy", rule: "ecc-dbe" });
    expect(judge(event("nvlink", "link_down", "unhealthy"))).toMatchObject({ result: "degraded", rule: "nvlink-error" });
    expect(judge(event("pcie", "replays"))).toMatchObject({ result: "degraded", rule: "pcie-error" });
  });

  test("findings upstream never reported go to the default policy, not to its closing `true → healthy`", async () => {
    const policy = await upstreamDefault();
    const judge = (e: HealthEvent) => policy.evaluate({ event: e, node: NODE }, [], T0);
    // A GPU at its shutdown temperature carries no reading for upstream's thermal rules.
    expect(judge(event("thermal", "shutdown", "unhealthy", "contact_support"))).toMatchObject({
      result: "unhealthy",
      rule: "default/thermal",
      source: "default",
    });
    expect(judge(event("nvml", "timeout", "unhealthy"))).toMatchObject({ result: "unhealthy", source: "default" });
    expect(judge(event("ecc", "sbe_rate"))).toMatchObject({ result: "degraded", rule: "default/ecc" });
    // Recovery events are never matched by upstream's rules (its agent sent none).
    expect(judge(event("nvlink", "link_down", "healthy"))).toMatchObject({ result: "healthy", source: "default" });
  });

  test("upstream's own examples: a permissive policy keeps every other Xid healthy; per-GPU rules see gpu_index", () => {
    const loaded = parsePolicy(
      [
        "rules:",
        "  - name: gpu0-strict",
        '    condition: event.gpu_index == 0 && event.event_type == "xid"',
        "    result: unhealthy",
        "  - name: bus-error-only",
        '    condition: event.event_type == "xid" && event.metrics.xid_code == 79',
        "    result: unhealthy",
        "  - name: default",
        '    condition: "true"',
        "    result: healthy",
        "",
      ].join("\n"),
      "permissive.yaml",
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const judge = (e: HealthEvent) => loaded.policy.evaluate({ event: e, node: NODE }, [], T0);
    expect(judge(event("xid", "79")).result).toBe("unhealthy");
    expect(judge(event("xid", "48", "unhealthy"))).toMatchObject({ result: "healthy", rule: "default" });
    expect(judge({ ...event("xid", "31"), gpu: { ...GPU, index: 0 } })).toMatchObject({ result: "unhealthy", rule: "gpu0-strict" });
  });

  test("a field the event does not have skips the rule, as upstream did", () => {
    const loaded = parsePolicy(
      'version: v1\nrules:\n  - { name: hot, condition: "event.metrics.temperature > 90", result: unhealthy }\n  - { name: any-xid, condition: event.event_type == "xid", result: degraded }\n',
      "p.yaml",
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const out = loaded.policy.evaluate({ event: event("xid", "79", "unhealthy"), node: NODE }, [], T0);
    expect(out).toMatchObject({ result: "degraded", rule: "any-xid" });
    expect(out.errors.map((e) => e.rule)).toEqual(["hot"]);
  });

  test("problems name the key path: CEL errors at their place in the condition, unknown keys, no rules, duplicates", () => {
    const problems = (text: string) => {
      const loaded = parsePolicy(text, "bad.yaml");
      expect(loaded.ok).toBe(false);
      return loaded.ok ? [] : loaded.problems.map((p) => [p.path, p.message]);
    };
    expect(problems('version: v1\nrules:\n  - name: a\n    condition: event.event_type == "xid" &&\n    result: unhealthy\n')).toEqual([
      ["rules[0].condition", expect.stringMatching(/^CEL syntax error at column \d+: /)],
    ]);
    expect(
      problems(
        'version: v1\nrules:\n  - name: a\n    condition: |\n      event.event_type == "xid" &&\n      event.metrics.xid_code in 13\n    result: unhealthy\n',
      ),
    ).toEqual([["rules[0].condition", expect.stringContaining("CEL type error at line 2, column")]]);
    expect(problems('version: v1\nrules:\n  - { name: a, condtion: "true", result: healthy }\n')).toEqual([
      ["rules[0].condition", "is required"],
      ["rules[0].condtion", 'unknown key "condtion" (did you mean "condition"?)'],
    ]);
    expect(problems("version: v1\nrules: []\n")).toEqual([["rules", "must list at least one rule (upstream refused a policy without rules)"]]);
    expect(problems('version: v1\nrules:\n  - { name: a, condition: "true", result: fatal }\n  - { name: a, condition: "true", result: healthy }\n')).toEqual([
      ["rules[0].result", 'expected one of healthy, degraded, unhealthy, got "fatal"'],
      ["rules[1].name", 'duplicate rule name "a" (rules[0] has it already)'],
    ]);
  });
});

// ───────────────────────────── the config format ─────────────────────────────

const UPSTREAM_CONFIGS = ["config.yaml", "lambda-bootstrap.yaml", "fake-minimal.yaml"];

function migrate(name: string): { yaml: string; notes: string[] } {
  const parsed = YamlSource.parse(readFileSync(join(FIXTURES, name), "utf8"));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const result = migrateUpstreamConfig(parsed.source, name);
  if (!result.ok) throw new Error(result.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return result;
}

function migratedConfig(name: string): NavarchConfig {
  const parsed = parseConfig(migrate(name).yaml, name);
  if (!parsed.ok) throw new Error(parsed.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return parsed.config;
}

const running: Reconciler[] = [];
afterEach(async () => {
  for (const rec of running.splice(0)) await rec.stop();
});

/** serve's start-up on a prepared config, with simulated clouds so no test reaches a real one. */
export async function startsInProcess(config: NavarchConfig, policy: HealthPolicy): Promise<Reconciler> {
  const settings = { ...serveSettings(config, tempDir("navarch-start-")), host: "127.0.0.1", port: 0 };
  const providers = new Map(
    [...new Set(config.pools.flatMap((p) => p.providers))].map((type) => [type, new SimulatedCloud({ name: type, now: Date.now })] as const),
  );
  const lines: string[] = [];
  const rec = await startReconciler(settings, (line) => lines.push(line), Date.now, { config, policy, providers });
  running.push(rec);
  await waitFor("the reconcile loop", () => rec.loop);
  const ready = await fetch(`${rec.url}/readyz`);
  expect(ready.status).toBe(200);
  expect(lines.join("\n")).toContain("leading (lease epoch");
  return rec;
}

describe("upstream's config format", () => {
  test("check and serve name it in one line and point at `navarch config migrate`", async () => {
    for (const name of UPSTREAM_CONFIGS) {
      const file = join(FIXTURES, name);
      const { out, sinks } = capture();
      expect(await configCheckCommand([file], sinks)).toBe(2);
      const lines = out.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toStartWith(`${file}: this is upstream Navarch's config format (`);
      expect(lines[0]).toEndWith(`; run \`navarch config migrate ${file}\` to turn it into this one`);
      const prepared = await prepareServeConfig(file);
      expect(prepared.ok ? [] : prepared.problems).toEqual([lines[0]!]);
    }
  });

  test("upstream's keys in a file of ours (pools as a list) are ordinary unknown-key errors", () => {
    const one = parseConfig("server:\n  health_policy: p.yaml\npools:\n  - name: a\n    provider: lambda\n    instance_type: x\n    region: r\n", "c.yaml");
    expect(one.ok ? [] : one.problems.map((p) => [p.path, p.message])).toEqual([
      ["server.health_policy", 'unknown key "health_policy" (did you mean "health_policy_path"?)'],
    ]);
    const two = parseConfig(
      "pools:\n  - name: a\n    provider: lambda\n    instance_type: x\n    region: r\n    cooldown: 5m\n    autoscaling: { type: reactive }\n",
      "c.yaml",
    );
    expect(two.ok ? [] : two.problems.map((p) => p.path)).toEqual(["pools[0].cooldown", "pools[0].autoscaling"]);
  });

  test("upstream's example configs migrate, then pass check and start", async () => {
    const env = (name: string) => ({ NAVARCH_AUTH_TOKEN: "t", LAMBDA_API_KEY: "k" })[name];
    for (const name of UPSTREAM_CONFIGS) {
      const dir = tempDir("navarch-migrate-");
      const target = join(dir, "navarch.yaml");
      const migrated = capture();
      expect(await configMigrateCommand([join(FIXTURES, name), "-o", target], migrated.sinks)).toBe(0);
      expect(migrated.out.stdout).toBe("");
      expect(migrated.out.stderr).toContain(`migrated (`);
      const checked = capture();
      expect(await configCheckCommand([target], checked.sinks, { env })).toBe(0);
      const prepared = await prepareServeConfig(target, { env });
      if (!prepared.ok) throw new Error(prepared.problems.join("\n"));
      await startsInProcess(prepared.config, prepared.policy);
    }
  }, 30_000);

  test("what the example config becomes", () => {
    const config = migratedConfig("config.yaml");
    expect(config.server.address).toBe("0.0.0.0:50051");
    expect(config.pools.map((p) => [p.name, p.providers, p.instance_type, p.region])).toEqual([
      ["training", ["lambda"], "gpu_8x_h100_sxm5", "us-west-2"],
      // Priority 1 first; the abstract type resolved for it; GCP (another type and region) left out.
      ["fungible", ["lambda"], "gpu_8x_h100_sxm5", "us-west-2"],
      ["inference", ["lambda"], "gpu_1x_a100_sxm4", "us-east-1"],
      ["batch", ["lambda"], "gpu_1x_a100_80gb_sxm4", "us-west-2"],
      ["dev", ["local"], "local-8gpu", "local"],
    ]);
    const training = config.pools[0]!;
    expect(training.scaling).toMatchObject({
      min_nodes: 2,
      max_nodes: 20,
      cooldown_period: 5 * 60_000,
      autoscaler: { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 },
    });
    expect(training.health).toMatchObject({ unhealthy_threshold: 2, auto_replace: true });
    // defaults.ssh_keys, for every pool that names none: the first, since Lambda's launch call takes exactly one.
    expect(config.pools.map((p) => p.ssh_key_names)).toEqual(Array(5).fill(["ops-team"]));
    expect(migrate("config.yaml").notes).toContain(
      "pools.training.ssh_keys: → ssh_key_names [ops-team]: Lambda's launch call takes exactly one SSH key name, so the first is kept and ml-team left out",
    );
    expect(config.pools[2]!.scaling.autoscaler).toEqual({ type: "queue", jobs_per_node: 100 });
    // Whole hours; 0 to 24 is the whole day, in two halves (a window here cannot start where it ends).
    expect(config.pools[3]!.scaling.autoscaler).toMatchObject({
      type: "scheduled",
      timezone: "UTC",
      windows: [
        { days: ["mon", "tue", "wed", "thu", "fri"], start: "09:00", end: "18:00", min_nodes: 10, max_nodes: 100 },
        { days: ["sat", "sun"], start: "00:00", end: "12:00", min_nodes: 0, max_nodes: 10 },
        { days: ["sat", "sun"], start: "12:00", end: "00:00", min_nodes: 0, max_nodes: 10 },
      ],
      fallback: { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 },
    });
    const { notes } = migrate("config.yaml");
    expect(notes).toContain(
      "pools.fungible.providers.gcp: left out: this pool launches gpu_8x_h100_sxm5 in us-west-2 on each of its providers, and gcp launches a3-highgpu-8g in us-central1; add a pool for it to keep it",
    );
    expect(notes).toContain("pools.fungible: one region per pool here: lambda launches in us-west-2, not in us-east-1 (add a pool per region to keep them)");
  });

  test("upstream's defaults where ours differ: auto_replace of a health block, jobs_per_node, lookback in intervals, growth_factor", () => {
    const text = [
      "server:",
      "  autoscale_interval: 20s",
      "providers:",
      "  lam: { type: lambda }",
      "pools:",
      "  a:",
      "    provider: lam",
      "    instance_type: h100-8x",
      "    region: us-west-2",
      "    max_nodes: 4",
      "    health: { unhealthy_after: 3 }",
      "    autoscaling:",
      "      type: composite",
      "      mode: avg",
      "      autoscalers:",
      "        - { type: queue }",
      "        - { type: predictive, lookback_window: 30, fallback: { type: reactive } }",
      "    frobnicate: true",
      "",
    ].join("\n");
    const parsed = YamlSource.parse(text);
    if (!parsed.ok) throw new Error("yaml");
    const result = migrateUpstreamConfig(parsed.source, "a.yaml");
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    const config = parseConfig(result.yaml, "a.yaml");
    if (!config.ok) throw new Error(JSON.stringify(config.problems));
    const pool = config.config.pools[0]!;
    expect(config.config.server.address).toBe("0.0.0.0:50051");
    expect(pool.providers).toEqual(["lambda"]);
    expect(pool.instance_type).toBe("gpu_8x_h100_sxm5");
    expect(pool.health).toMatchObject({ unhealthy_threshold: 3, auto_replace: false });
    expect(pool.scaling.autoscaler).toEqual({
      type: "composite",
      mode: "avg",
      autoscalers: [
        { type: "queue", jobs_per_node: 10 },
        {
          type: "predictive",
          lookback_window: 10 * 60_000,
          growth_factor: 1.2,
          fallback: { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 },
        },
      ],
    });
    expect(result.notes).toContain("pools.a.health.auto_replace: not set, which upstream read as false: kept false (set true to replace unhealthy nodes)");
    expect(result.notes).toContain("pools.a.frobnicate: not a key of upstream's format (upstream ignored it): left out");
    expect(result.notes).toContain("pools.a.autoscaling.autoscalers[1].lookback_window: 30 autoscale intervals of 20s → 10m");
    expect(result.yaml.split("\n").filter((l) => l.startsWith("#   - "))).toHaveLength(result.notes.length);
  });

  test("what upstream refused, migrate refuses, with the key path", () => {
    const problems = (text: string) => {
      const parsed = YamlSource.parse(text);
      if (!parsed.ok) throw new Error("yaml");
      const result = migrateUpstreamConfig(parsed.source, "u.yaml");
      return result.ok ? [] : result.problems.map((p) => [p.path, p.message]);
    };
    expect(problems("pools:\n  a: { provider: nope, instance_type: x, region: r, max_nodes: 1 }\n")).toEqual([
      ["pools.a.provider", 'unknown provider "nope" (not under providers:), which upstream refused'],
    ]);
    expect(problems("providers:\n  l: { type: lambda }\npools:\n  a: { provider: l, instance_type: x, region: r }\n")).toEqual([
      ["pools.a.max_nodes", "must be > 0, as upstream required, got nothing"],
    ]);
    expect(problems("providers:\n  d: { type: docker }\npools:\n  a: { provider: d, instance_type: x, region: r, max_nodes: 1, min_nodes: two }\n")).toEqual([
      ["pools.a.min_nodes", 'expected an integer, got "two"'],
    ]);
    expect(problems("providers:\n  d: { type: docker }\npools:\n  a: { provider: d, instance_type: x, region: r, max_nodes: 1 }\n")).toEqual([
      ["providers.d.type", 'unknown provider type "docker" (upstream knew lambda, gcp, aws and fake)'],
      ["pools.a.provider", 'unknown provider "d" (not under providers:), which upstream refused'],
    ]);
  });

  test("navarch config migrate: stdout, -o, --force, and files with nothing to migrate", async () => {
    const dir = tempDir("navarch-migrate-cli-");
    const source = join(FIXTURES, "fake-minimal.yaml");
    const printed = capture();
    expect(await configMigrateCommand([source], printed.sinks)).toBe(0);
    expect(printed.out.stdout).toStartWith("# Migrated from upstream Navarch's format");
    expect(parseConfig(printed.out.stdout, "stdout").ok).toBe(true);
    expect(printed.out.stderr).toContain(`note: ${source}: pools.test-pool.instance_type: fake-8xgpu on the fake provider → local-8gpu (8 fake GPUs)\n`);

    const target = join(dir, "out.yaml");
    writeFileSync(target, "keep me\n");
    const refused = capture();
    expect(await configMigrateCommand([source, "-o", target], refused.sinks)).toBe(2);
    expect(refused.out.stderr).toBe(`navarch: ${target} exists; pass --force to replace it\n`);
    expect(readFileSync(target, "utf8")).toBe("keep me\n");
    expect(await configMigrateCommand([source, "-o", target, "--force"], capture().sinks)).toBe(0);
    expect(readFileSync(target, "utf8")).toBe(printed.out.stdout);

    const ours = capture();
    const seed = join(import.meta.dir, "fixtures", "config", "valid", "seed-complete.yaml");
    expect(await configMigrateCommand([seed], ours.sinks)).toBe(2);
    expect(ours.out.stderr).toBe(`${seed}: nothing to migrate: it is already in this format; \`navarch config check ${seed}\` validates it\n`);

    const policy = capture();
    const policyFile = join(FIXTURES, "default-health-policy.yaml");
    expect(await configMigrateCommand([policyFile], policy.sinks)).toBe(2);
    expect(policy.out.stderr).toContain("this is a health policy, not a config: server.health_policy_path loads upstream's policy format as it is");

    const usage = capture();
    expect(await configMigrateCommand([], usage.sinks)).toBe(2);
    expect(usage.out.stderr).toBe("usage: navarch config migrate FILE [-o OUT [--force]]\n");
    expect(existsSync(join(dir, ".out.yaml.tmp"))).toBe(false);
  });
});
