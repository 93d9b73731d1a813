// The config file: every seed config loads unchanged, every kind of mistake is reported at
// its key path with a useful message, `navarch config check` prints and exits accordingly,
// and setup_commands templates render with shell-safe values.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTemplate, renderTemplate, shellEscape, TEMPLATE_VARIABLES } from "../schema/template.ts";
import { configCheckCommand } from "../reconciler/cli/config-check.ts";
import { loadConfigFile, parseConfig, type LoadResult } from "../reconciler/config/load.ts";
import { formatProblems } from "../reconciler/config/yaml-source.ts";
import { configToYaml } from "../reconciler/config/print.ts";
import { formatDuration, parseAddress, parseDuration, type NavarchConfig } from "../schema/config.ts";
import { closestMatch } from "../schema/shapes.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "config");

async function fixture(kind: "valid" | "invalid", name: string): Promise<LoadResult> {
  return loadConfigFile(join(FIXTURES, kind, name));
}

async function valid(name: string): Promise<NavarchConfig> {
  const result = await fixture("valid", name);
  if (!result.ok) throw new Error(formatProblems(result.problems, name).join("\n"));
  return result.config;
}

function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, sinks: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) } };
}

const MIN = 60_000;

describe("seed configs load unchanged", () => {
  test("Pattern 1: reactive lambda pool with labels; server and providers get defaults", async () => {
    const config = await valid("seed-pattern1.yaml");
    expect(config.server).toEqual({
      address: "127.0.0.1:50051",
      heartbeat_interval: 30_000,
      heartbeat_timeout: 90_000,
      health_check_interval: 60_000,
      autoscale_interval: 30_000,
      data_dir: "data",
      auth_token_env: "NAVARCH_AUTH_TOKEN",
      require_tls: false,
      metrics_auth: "none",
      metrics_per_gpu: "auto",
    });
    // lambda has no providers: entry, so it gets lambda's defaults
    expect(config.providers).toEqual({ lambda: { api_key_env: "LAMBDA_API_KEY" } });
    const [pool] = config.pools;
    expect(pool).toEqual({
      name: "k8s-gpu-workers",
      providers: ["lambda"],
      instance_type: "gpu_8x_h100_sxm5",
      region: "us-west-2",
      zones: [],
      scaling: {
        min_nodes: 2,
        max_nodes: 50,
        cooldown_period: 5 * MIN,
        autoscaler: { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 },
      },
      health: {
        unhealthy_threshold: 2,
        auto_replace: true,
        drain_timeout: 30 * MIN,
        registration_timeout: 15 * MIN,
        registration_timeout_max: 120 * MIN,
        max_registration_failures: 3,
        replacement: "terminate_first",
        remediation: "reboot_first",
        reboot_timeout: 20 * MIN,
        reboot_window: 7 * 24 * 60 * MIN,
      },
      labels: { workload: "training", cluster: "prod" },
      taints: [],
      ssh_user: "ubuntu",
      setup_commands: [],
    });
  });

  test("Pattern 2: gcp pool without autoscaler", async () => {
    const config = await valid("seed-pattern2.yaml");
    expect(config.providers).toEqual({ gcp: {} });
    const scaling = config.pools[0]!.scaling;
    expect(scaling).toEqual({ min_nodes: 0, max_nodes: 100, cooldown_period: 5 * MIN });
    expect(scaling.autoscaler).toBeUndefined();
  });

  test("the ConfigMap's embedded config.yaml", async () => {
    const config = await valid("seed-configmap.yaml");
    expect(config.server.address).toBe("0.0.0.0:50051");
    expect(config.server.health_policy_path).toBe("/etc/navarch/health-policy.yaml");
    expect(config.server.health_check_interval).toBe(60_000);
    expect(config.providers.lambda).toEqual({ api_key_env: "LAMBDA_API_KEY" });
    expect(config.pools.map((p) => p.name)).toEqual(["k8s-gpu-workers"]);
  });

  test("SSH bootstrap pool keeps its setup_commands verbatim", async () => {
    const pool = (await valid("seed-ssh-bootstrap.yaml")).pools[0]!;
    expect(pool.ssh_user).toBe("ubuntu");
    expect(pool.ssh_private_key_path).toBe("/etc/navarch/ssh-key");
    expect(pool.setup_commands).toHaveLength(3);
    expect(pool.setup_commands[1]).toContain("ExecStart=/usr/local/bin/navarch-node --server {{.ControlPlane}} --node-id {{.NodeID}}\n");
    expect(pool.setup_commands[2]).toBe("systemctl daemon-reload && systemctl enable navarch-node && systemctl start navarch-node");
    // no scaling section in this snippet: a fixed pool of zero
    expect(pool.scaling).toEqual({ min_nodes: 0, max_nodes: 0, cooldown_period: 5 * MIN });
  });

  test("queue-based scaling pool", async () => {
    const scaling = (await valid("seed-queue.yaml")).pools[0]!.scaling;
    expect(scaling.autoscaler).toEqual({ type: "queue", jobs_per_node: 8 });
  });

  test("the complete example", async () => {
    const config = await valid("seed-complete.yaml");
    expect(config.providers).toEqual({ lambda: { api_key_env: "LAMBDA_API_KEY" }, gcp: { project: "my-gcp-project" } });
    const [training, inference] = config.pools;
    expect(training!.scaling).toEqual({
      min_nodes: 2,
      max_nodes: 20,
      cooldown_period: 10 * MIN,
      autoscaler: {
        type: "composite",
        mode: "max",
        autoscalers: [
          { type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 },
          { type: "queue", jobs_per_node: 8 },
        ],
      },
    });
    expect(training!.labels).toEqual({ workload: "training" });
    expect(inference!.providers).toEqual(["gcp"]);
    expect(inference!.scaling).toEqual({
      min_nodes: 4,
      max_nodes: 100,
      cooldown_period: 120_000,
      autoscaler: { type: "reactive", scale_up_threshold: 60, scale_down_threshold: 30 },
    });
    expect(inference!.health.unhealthy_threshold).toBe(1);
  });
});

describe("every option normalises", () => {
  test("all-features.yaml", async () => {
    const result = await fixture("valid", "all-features.yaml");
    if (!result.ok) throw new Error(formatProblems(result.problems, "all-features.yaml").join("\n"));
    expect(result.warnings).toEqual([]);
    const { server, providers, pools } = result.config;
    expect(server).toMatchObject({ address: "[::1]:8080", heartbeat_interval: 10_000, heartbeat_timeout: 60_000, autoscale_interval: 500 });
    expect(server.health_check_interval).toBe(90_000);
    expect(server.database_url).toBe("libsql://navarch.example.com");
    expect(providers.lambda).toEqual({ api_key_env: "LAMBDA_API_KEY", base_url: "http://127.0.0.1:18080" });
    expect(providers.local?.nodes_dir).toBe("/tmp/navarch-nodes");

    const [batch, office, notebooks, fixed] = pools;
    expect(batch!.providers).toEqual(["lambda", "aws", "gcp"]);
    expect(batch!.zones).toEqual(["us-west-2a", "us-west-2b"]);
    expect(batch!.scaling.cooldown_period).toBe(0);
    expect(batch!.scaling.autoscaler).toEqual({
      type: "composite",
      mode: "avg",
      autoscalers: [
        { type: "predictive", lookback_window: 2 * 60 * MIN, growth_factor: 1.5, fallback: { type: "queue", jobs_per_node: 4 } },
        { type: "composite", mode: "min", autoscalers: [{ type: "reactive", scale_up_threshold: 80, scale_down_threshold: 20 }] },
      ],
    });
    expect(batch!.health).toEqual({
      unhealthy_threshold: 3,
      auto_replace: false,
      drain_timeout: 60 * MIN,
      registration_timeout: 25 * MIN,
      registration_timeout_max: 120 * MIN,
      max_registration_failures: 3,
      replacement: "surge",
      remediation: "reboot_first",
      reboot_timeout: 20 * MIN,
      reboot_window: 7 * 24 * 60 * MIN,
    });
    expect(batch!.labels).toEqual({ "navarch.dev/tier": "batch", empty: "" });

    expect(office!.scaling.autoscaler).toEqual({
      type: "scheduled",
      timezone: "Europe/Berlin", // canonical spelling
      windows: [
        { days: ["mon", "tue", "wed", "thu", "fri"], start: "08:00", end: "18:30", min_nodes: 4 },
        { days: ["fri"], start: "22:00", end: "06:00", max_nodes: 2 }, // crosses midnight
      ],
      fallback: { type: "reactive", scale_up_threshold: 70, scale_down_threshold: 10 },
    });
    expect(notebooks!.scaling.autoscaler).toEqual({ type: "idle", min_idle: 1, max_idle: 2, idle_decay: 10 * MIN });
    // no autoscaler and no max_nodes: a fixed-size pool
    expect(fixed!.scaling).toMatchObject({ min_nodes: 3, max_nodes: 3 });
  });

  test("printing the normalised config and reading it back gives the same config", async () => {
    for (const name of ["all-features.yaml", "seed-complete.yaml", "seed-ssh-bootstrap.yaml", "seed-pattern2.yaml"]) {
      const config = await valid(name);
      const again = parseConfig(configToYaml(config), "printed");
      expect(again.ok ? again.config : again.problems).toEqual(config);
    }
  });

  test("a provider nobody uses is a warning, not an error", () => {
    const result = parseConfig("providers:\n  aws:\n    region: us-east-1\n", "c.yaml");
    expect(result).toEqual({ ok: true, config: expect.anything(), warnings: ["c.yaml: providers.aws: configured but no pool in this file uses it"] });
  });
});

// [fixture, key path, message fragment]; each fixture has exactly one problem unless listed in MULTI.
const INVALID: [string, string, string][] = [
  ["yaml-syntax.yaml", "", "YAML syntax error at line 3, column 11"],
  ["yaml-duplicate-key.yaml", "", "line 8, column 7: Map keys must be unique"],
  ["empty.yaml", "", "the file is empty"],
  ["top-level-list.yaml", "", "expected a mapping, got a list"],
  ["unknown-top-level-key.yaml", "pool", 'unknown key "pool" (did you mean "pools"?)'],
  ["unknown-pool-key.yaml", "pools[0].instancetype", 'did you mean "instance_type"?'],
  ["unknown-scaling-key.yaml", "pools[0].scaling.cooldown", 'unknown key "cooldown" (did you mean "cooldown_period"?)'],
  ["max-below-min.yaml", "pools[1].scaling.max_nodes", "must be ≥ min_nodes (4), got 2"],
  ["duplicate-pool-names.yaml", "pools[1].name", 'duplicate pool name "training" (already used by pools[0])'],
  [
    "bad-pool-name.yaml",
    "pools[0].name",
    "expected a DNS label (lowercase letters, digits and '-', at most 63, starting and ending alphanumeric), got \"GPU_Pool\"",
  ],
  ["bad-duration.yaml", "pools[0].scaling.cooldown_period", 'expected a duration like 30s or 5m, got "5 minutes"'],
  ["negative-duration.yaml", "server.heartbeat_interval", 'expected a duration like 30s or 5m, got "-1s"'],
  ["zero-duration.yaml", "server.heartbeat_interval", 'must be longer than zero, got "0s"'],
  ["duration-without-unit.yaml", "pools[0].scaling.cooldown_period", "expected a duration like 30s or 5m, got 300"],
  ["negative-min-nodes.yaml", "pools[0].scaling.min_nodes", "expected a non-negative integer, got -1"],
  ["string-for-number.yaml", "pools[0].scaling.min_nodes", 'expected a non-negative integer, got "two"'],
  [
    "unknown-autoscaler-type.yaml",
    "pools[0].scaling.autoscaler.type",
    'unknown autoscaler type "reactiv" (expected one of reactive, queue, scheduled, predictive, composite, idle; did you mean "reactive"?)',
  ],
  ["autoscaler-without-type.yaml", "pools[0].scaling.autoscaler.type", "is required (one of reactive, queue,"],
  ["autoscaler-without-max-nodes.yaml", "pools[0].scaling.max_nodes", "is required when an autoscaler is set"],
  ["composite-empty.yaml", "pools[0].scaling.autoscaler.autoscalers", "must list at least one autoscaler"],
  ["composite-nested-error.yaml", "pools[0].scaling.autoscaler.autoscalers[1].autoscalers[0].jobs_per_node", "expected an integer ≥ 1, got 0"],
  ["composite-bad-mode.yaml", "pools[0].scaling.autoscaler.mode", 'unknown composite mode "maximum" (expected one of max, min, avg; did you mean "max"?)'],
  ["reactive-down-not-below-up.yaml", "pools[0].scaling.autoscaler.scale_down_threshold", "must be < scale_up_threshold (60), got 60"],
  ["threshold-over-100.yaml", "pools[0].scaling.autoscaler.scale_up_threshold", "expected a number from 0 to 100, got 150"],
  ["idle-max-below-min.yaml", "pools[0].scaling.autoscaler.max_idle", "must be ≥ min_idle (3), got 1"],
  ["predictive-zero-growth.yaml", "pools[0].scaling.autoscaler.growth_factor", "expected a number > 0, got 0"],
  [
    "bad-timezone.yaml",
    "pools[0].scaling.autoscaler.timezone",
    'unknown time zone "Europe/Berln" (expected an IANA name like Europe/Berlin or UTC; did you mean "Europe/Berlin"?)',
  ],
  ["bad-hhmm.yaml", "pools[0].scaling.autoscaler.windows[0].start", 'expected a time of day as HH:MM (00:00 to 23:59), got "25:00"'],
  [
    "bad-weekday.yaml",
    "pools[0].scaling.autoscaler.windows[0].days[1]",
    'unknown day "tues" (expected one of mon, tue, wed, thu, fri, sat, sun; did you mean "tue"?)',
  ],
  ["window-without-bounds.yaml", "pools[0].scaling.autoscaler.windows[0].min_nodes", "set min_nodes or max_nodes"],
  ["scheduled-bad-fallback.yaml", "pools[0].scaling.autoscaler.fallback.scale_down_threshold", "must be < scale_up_threshold (80), got 90"],
  ["bad-template-variable.yaml", "pools[0].setup_commands[1]", "unknown template variable {{.NodeId}} on line 3 (did you mean {{.NodeID}}?)"],
  ["unterminated-template.yaml", "pools[0].setup_commands[0]", 'unterminated "{{": no closing "}}"'],
  ["unsupported-template-action.yaml", "pools[0].setup_commands[0]", "unsupported template action {{if .NodeID}}: only {{.Variable}} is supported"],
  ["setup-commands-without-key.yaml", "pools[0].ssh_private_key_path", "is required when setup_commands is not empty"],
  ["provider-and-providers.yaml", "pools[0].providers", "set provider or providers (a failover list), not both"],
  ["no-provider.yaml", "pools[0].provider", "is required (or providers: a list in failover order)"],
  ["duplicate-failover-provider.yaml", "pools[0].providers", "must not name a provider twice"],
  [
    "unknown-pool-provider.yaml",
    "pools[0].provider",
    'unknown provider type "lamda" (expected one of lambda, gcp, aws, coreweave, local; did you mean "lambda"?)',
  ],
  [
    "unknown-provider-type.yaml",
    "providers.lamda",
    'unknown provider type "lamda" (expected one of lambda, gcp, aws, coreweave, local; did you mean "lambda"?)',
  ],
  ["bad-env-var-name.yaml", "providers.lambda.api_key_env", "expected the name of an environment variable, like LAMBDA_API_KEY"],
  ["gcp-both-credentials.yaml", "providers.gcp.credentials_file", "set credentials_env or credentials_file, not both"],
  ["aws-half-key-pair.yaml", "providers.aws.secret_access_key_env", "is required when access_key_id_env is set"],
  ["bad-base-url.yaml", "providers.lambda.base_url", 'expected an http:// or https:// URL, got "ftp://127.0.0.1:9000"'],
  [
    "bad-label-value.yaml",
    "pools[0].labels.team",
    "expected a Kubernetes label value (at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends), got \"has spaces\"",
  ],
  ["label-value-not-string.yaml", "pools[0].labels.preemptible", 'expected a string (quote it: "true"), got true'],
  ["bad-label-key.yaml", "pools[0].labels.-team", "expected a Kubernetes label key"],
  [
    "bad-port.yaml",
    "server.address",
    'expected host:port with a port from 1 to 65535, like 0.0.0.0:50051 (or :50051 for every interface), got "0.0.0.0:70000"',
  ],
  ["bad-database-url.yaml", "server.database_url", 'got "postgres://db/navarch"'],
  ["heartbeat-timeout-too-short.yaml", "server.heartbeat_timeout", "must be longer than heartbeat_interval (30s), got 20s"],
  ["unhealthy-threshold-zero.yaml", "pools[0].health.unhealthy_threshold", "expected an integer ≥ 1, got 0"],
  ["auto-replace-not-bool.yaml", "pools[0].health.auto_replace", 'expected true or false, got "yes"'],
  ["missing-instance-type.yaml", "pools[0].instance_type", "is required"],
  ["scaling-not-mapping.yaml", "pools[0].scaling", "expected a mapping, got 4"],
  // Bounds: every duration has a range of its own, every integer a ceiling.
  ["heartbeat-interval-too-long.yaml", "server.heartbeat_interval", 'expected a duration from 1s to 10m, got "600h"'],
  ["heartbeat-timeout-too-long.yaml", "server.heartbeat_timeout", 'expected a duration from 1s to 1h, got "2h"'],
  ["health-check-interval-overflow.yaml", "server.health_check_interval", 'expected a duration from 1s to 1h, got "1000000h"'],
  ["drain-timeout-too-long.yaml", "pools[0].health.drain_timeout", 'expected a duration from 1s to 168h (7 days), got "1000h"'],
  ["registration-timeout-too-short.yaml", "pools[0].health.registration_timeout", 'expected a duration from 30s to 24h, got "1s"'],
  ["cooldown-too-long.yaml", "pools[0].scaling.cooldown_period", 'expected a duration from 0s to 24h, got "48h"'],
  ["lookback-too-long.yaml", "pools[0].scaling.autoscaler.lookback_window", 'expected a duration from 1m to 168h (7 days), got "400h"'],
  ["growth-factor-infinite.yaml", "pools[0].scaling.autoscaler.growth_factor", "expected a number > 0 (at most 100), got Infinity"],
  ["max-nodes-huge.yaml", "pools[0].scaling.max_nodes", "expected an integer from 0 to 100000, got 1e+300"],
  ["breaker-window-too-long.yaml", "safety.breaker.window", 'expected a duration from 1m to 24h, got "720h"'],
  ["max-attempts-too-many.yaml", "safety.max_attempts", "expected an integer from 1 to 100, got 1000"],
  ["kube-max-backoff-too-long.yaml", "kubernetes.drain.max_backoff", 'expected a duration from 1s to 10m, got "1h"'],
];
const MULTI: Record<string, number> = { "unsupported-template-action.yaml": 2 };

describe("invalid configs name the key path and what is wrong", () => {
  test.each(INVALID)("%s → %s", async (name, path, fragment) => {
    const result = await fixture("invalid", name);
    if (result.ok) throw new Error(`${name} loaded`);
    expect(result.problems).toHaveLength(MULTI[name] ?? 1);
    const problem = result.problems[0]!;
    expect(problem.path).toBe(path);
    expect(problem.message).toContain(fragment);
  });

  test("every invalid fixture is in the table", async () => {
    const files = [...new Bun.Glob("*.yaml").scanSync(join(FIXTURES, "invalid"))].sort();
    expect(files).toEqual([...INVALID.map(([name]) => name), "three-problems.yaml"].sort());
  });

  test("the problem carries the value as written in the file", async () => {
    const values: [string, unknown][] = [
      ["max-below-min.yaml", 2],
      ["string-for-number.yaml", "two"],
      ["heartbeat-timeout-too-short.yaml", "20s"],
      ["unknown-scaling-key.yaml", "5m"],
      ["no-provider.yaml", undefined],
    ];
    for (const [name, value] of values) {
      const result = await fixture("invalid", name);
      expect(result.ok ? "loaded" : result.problems[0]!.value).toEqual(value);
    }
  });

  test("a secret pasted as api_key_env is not echoed in the message", async () => {
    const result = parseConfig("providers:\n  lambda:\n    api_key_env: sk-live-abc123\n", "c.yaml");
    expect(result.ok ? "" : result.problems[0]!.message).not.toContain("sk-live");
  });

  test("cross-field rules still run next to other errors in the same object", () => {
    const text = `pools:
  - name: a
    provider: lambda
    instance_type: x
    region: r
    scaling: { min_nodes: 4, max_nodes: 2, cooldown: 5m, idle: true }
`;
    const result = parseConfig(text, "c.yaml");
    // in file order: max_nodes comes first in the flow mapping
    expect(result.ok ? [] : formatProblems(result.problems, "c.yaml")).toEqual([
      "c.yaml: pools[0].scaling.max_nodes: must be ≥ min_nodes (4), got 2",
      'c.yaml: pools[0].scaling.cooldown: unknown key "cooldown" (did you mean "cooldown_period"?)',
      'c.yaml: pools[0].scaling.idle: unknown key "idle"',
    ]);
  });

  test("duplicate pool names are found even when a pool has other errors", () => {
    const pool = "    provider: lambda\n    instance_type: x\n    region: r\n";
    const text = `pools:\n  - name: a\n${pool}    scaling: { min_nodes: -1 }\n  - name: a\n${pool}`;
    const result = parseConfig(text, "c.yaml");
    expect(result.ok ? [] : formatProblems(result.problems, "c.yaml")).toEqual([
      "c.yaml: pools[0].scaling.min_nodes: expected a non-negative integer, got -1",
      'c.yaml: pools[1].name: duplicate pool name "a" (already used by pools[0])',
    ]);
  });

  test("problems come in file order, formatted one per line", async () => {
    const result = await fixture("invalid", "three-problems.yaml");
    expect(result.ok ? [] : formatProblems(result.problems, "config.yaml")).toEqual([
      'config.yaml: server.address: expected host:port with a port from 1 to 65535, like 0.0.0.0:50051 (or :50051 for every interface), got "localhost:0"',
      "config.yaml: pools[0].scaling.max_nodes: must be ≥ min_nodes (4), got 2",
      'config.yaml: pools[0].health.auto_replce: unknown key "auto_replce" (did you mean "auto_replace"?)',
    ]);
  });

  test("a YAML alias to a missing anchor is reported, not thrown", () => {
    const result = parseConfig("pools: *missing\n", "c.yaml");
    expect(result.ok ? "" : result.problems[0]!.message).toContain("missing");
  });

  test("a missing file names the file and the OS reason", async () => {
    const result = await loadConfigFile("/nonexistent/navarch.yaml");
    expect(result.ok ? [] : formatProblems(result.problems, "/nonexistent/navarch.yaml")).toEqual([
      "/nonexistent/navarch.yaml: cannot read /nonexistent/navarch.yaml: no such file or directory (ENOENT)",
    ]);
    const dir = await loadConfigFile(FIXTURES);
    expect(dir.ok ? "" : dir.problems[0]!.message).toContain("(EISDIR)");
  });
});

describe("navarch config check", () => {
  test("valid file: prints the normalised config as YAML, exit 0", async () => {
    const { out, sinks } = capture();
    const file = join(FIXTURES, "valid", "seed-complete.yaml");
    const code = await configCheckCommand([file], sinks, { env: () => undefined });
    expect(code).toBe(0);
    // What serve would lack on this machine: secrets, and the queue autoscaler's metrics.
    const warnings = out.stderr.trimEnd().split("\n");
    for (const line of [
      `warning: ${file}: server.auth_token_env: $NAVARCH_AUTH_TOKEN is not set; serve uses the token in data/auth-token (generating one), which agents and the CLI then need`,
      `warning: ${file}: providers.lambda.api_key_env: $LAMBDA_API_KEY is not set; launches in training fail until it is`,
      `warning: ${file}: providers.gcp: no credentials_env or credentials_file; launches in inference fail until one is set`,
      `warning: ${file}: pools[0].scaling.autoscaler.autoscalers[1]: a queue autoscaler without queue metrics (there is no kubernetes: section; they count pods labelled navarch.dev/pool=training): the composite goes by its other autoscalers`,
    ]) {
      expect(warnings).toContain(line);
    }
    expect(out.stdout).toContain("is valid (2 pools)");
    expect(out.stdout).toContain("      cooldown_period: 2m\n");
    expect(out.stdout).toContain("  heartbeat_timeout: 1m30s\n");
    const reparsed = parseConfig(out.stdout, "stdout");
    expect(reparsed.ok).toBe(true);
  });

  test("invalid file: prints every problem, one per line, exit 2", async () => {
    const { out, sinks } = capture();
    const file = join(FIXTURES, "invalid", "three-problems.yaml");
    const code = await configCheckCommand([file], sinks);
    expect(code).toBe(2);
    expect(out.stdout).toBe("");
    const lines = out.stderr.trimEnd().split("\n");
    expect(lines.filter((l) => l.startsWith(`${file}: pools`) || l.startsWith(`${file}: server`))).toHaveLength(3);
    expect(lines.at(-1)).toBe(`${file}: 3 problems; nothing was changed`);
  });

  test("warnings go to stderr and do not fail the check", async () => {
    const dir = mkdtempSync(join(tmpdir(), "navarch-config-"));
    const file = join(dir, "config.yaml");
    writeFileSync(file, "providers:\n  gcp:\n    project: my-gcp-project\n");
    const { out, sinks } = capture();
    expect(await configCheckCommand([file], sinks, { env: (name) => (name === "NAVARCH_AUTH_TOKEN" ? "t0ken" : undefined) })).toBe(0);
    expect(out.stderr).toBe(`warning: ${file}: providers.gcp: configured but no pool in this file uses it\n`);
  });

  test("usage errors exit 2 with a usage line", async () => {
    for (const args of [[], ["a.yaml", "b.yaml"], ["--verbose"]]) {
      const { out, sinks } = capture();
      expect(await configCheckCommand(args, sinks)).toBe(2);
      expect(out.stderr).toBe("usage: navarch config check FILE\n");
    }
    const { out, sinks } = capture();
    expect(await configCheckCommand(["--help"], sinks)).toBe(0);
    expect(out.stdout).toStartWith("usage: navarch config check FILE\n");
  });

  test("a missing file exits 2", async () => {
    const { out, sinks } = capture();
    expect(await configCheckCommand(["/nonexistent/c.yaml"], sinks)).toBe(2);
    expect(out.stderr).toContain("/nonexistent/c.yaml: cannot read /nonexistent/c.yaml: no such file or directory (ENOENT)\n");
  });
});

describe("durations, addresses, suggestions", () => {
  test("parseDuration accepts Go-style durations only", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("2h")).toBe(7_200_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["5 minutes", "-1s", "30", "", "5M", "1d", "m5", "1h 30m"]) expect(parseDuration(bad)).toBeUndefined();
  });

  test("formatDuration is the inverse", () => {
    for (const ms of [0, 500, 1500, 30_000, 90_000, 300_000, 5_400_000, 7_200_000, 90_061_001]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(5_400_000)).toBe("1h30m");
  });

  test("parseAddress", () => {
    expect(parseAddress("0.0.0.0:50051")).toEqual({ host: "0.0.0.0", port: 50051 });
    expect(parseAddress("[::1]:80")).toEqual({ host: "::1", port: 80 });
    // Go's `:port` (upstream Navarch's examples): every interface.
    expect(parseAddress(":50051")).toEqual({ host: "0.0.0.0", port: 50051 });
    for (const bad of ["0.0.0.0:0", "host:65536", ":0", "50051", "a b:1"]) expect(parseAddress(bad)).toBeUndefined();
  });

  test("closestMatch", () => {
    expect(closestMatch("reactiv", ["reactive", "queue"])).toBe("reactive");
    expect(closestMatch("minNodes", ["min_nodes", "max_nodes"])).toBe("min_nodes");
    expect(closestMatch("cooldown", ["cooldown_period", "autoscaler"])).toBe("cooldown_period");
    expect(closestMatch("banana", ["reactive", "queue"])).toBeUndefined();
  });
});

describe("setup_commands templates", () => {
  test("parseTemplate lists the variables used", () => {
    const parsed = parseTemplate("navarch-node --server {{.ControlPlane}} --node-id {{ .NodeID }} {{.NodeID}}");
    expect(parsed).toMatchObject({ ok: true, variables: ["ControlPlane", "NodeID"] });
    expect(TEMPLATE_VARIABLES).toContain("BootstrapToken");
  });

  test("parseTemplate reports every error with its position", () => {
    const parsed = parseTemplate("echo {{.NodeId}}\necho {{.Zone}} {{.Pool");
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors.map((e) => [e.kind, e.line, e.column, e.variable])).toEqual([
      ["unknown_variable", 1, 6, "NodeId"],
      ["unknown_variable", 2, 6, "Zone"],
      ["unterminated", 2, 16, undefined],
    ]);
  });

  test("renderTemplate escapes values, never the template text", () => {
    const values = {
      ControlPlane: "http://10.0.0.1:50051",
      NodeID: "gpu-1",
      Pool: "it's $(rm -rf /) `id`",
      Region: "us west\nrm -rf /",
      BootstrapToken: "",
    };
    const text = "run --cp {{.ControlPlane}} --id {{.NodeID}} --pool {{.Pool}} --region {{.Region}} --token {{.BootstrapToken}} 'literal'";
    expect(renderTemplate(text, values, shellEscape)).toBe(
      "run --cp http://10.0.0.1:50051 --id gpu-1 --pool 'it'\\''s $(rm -rf /) `id`' --region 'us west\nrm -rf /' --token '' 'literal'",
    );
    expect(renderTemplate("a {{.NodeID}} b", values, (s) => `<${s}>`)).toBe("a <gpu-1> b");
  });

  test("shellEscape output is one word that the shell reads back unchanged", () => {
    const tricky = ["plain", "", "with space", "it's", "$(touch /tmp/pwned)", "`id`", "a\nb", '"dq"', "back\\slash", "*", "~root", "a;b|c&d"];
    const script = tricky.map((s) => `printf '%s\\0' ${shellEscape(s)}`).join("\n");
    const result = Bun.spawnSync(["sh", "-c", script]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.toString().split("\0").slice(0, -1)).toEqual(tricky);
  });

  test("whitespace trimming and comments follow Go", () => {
    const values = { NodeID: "n1" };
    expect(renderTemplate("a  {{- .NodeID -}}  b", values, (s) => s)).toBe("an1b");
    expect(renderTemplate("a {{/* note */}}b", values, (s) => s)).toBe("a b");
  });

  test("renderTemplate refuses an invalid template or a missing value", () => {
    expect(() => renderTemplate("{{.Nope}}", {}, shellEscape)).toThrow("unknown template variable {{.Nope}}");
    expect(() => renderTemplate("{{.NodeID}}", {}, shellEscape)).toThrow("no value was given");
  });

  test("the seed's systemd heredoc renders with the agent's flags", async () => {
    const pool = (await valid("seed-ssh-bootstrap.yaml")).pools[0]!;
    const rendered = renderTemplate(pool.setup_commands[1]!, { ControlPlane: "http://10.0.0.1:50051", NodeID: "gpu-7" }, shellEscape);
    expect(rendered).toContain("ExecStart=/usr/local/bin/navarch-node --server http://10.0.0.1:50051 --node-id gpu-7\n");
  });
});
