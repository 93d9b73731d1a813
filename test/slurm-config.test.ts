// The `slurm:` config section and its credentials, without a cluster.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../reconciler/config/load.ts";
import { checkServeNeeds } from "../reconciler/app/preflight.ts";
import { configToYaml } from "../reconciler/config/print.ts";
import { slurmTokens } from "../reconciler/schedulers/slurm/index.ts";
import { tempDir } from "./support.ts";

const parse = (slurm: string, extra = "") => parseConfig(`${extra}slurm:\n${slurm}`, "test.yaml");

describe("slurm config", () => {
  test("defaults, and a round trip through config check's printer", () => {
    const r = parse("  rest_url: http://slurm-head:6820\n  jwt_key_file: /etc/slurm/jwt_hs256.key\n");
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.config.slurm).toEqual({
      rest_url: "http://slurm-head:6820",
      user: "slurm",
      jwt_key_file: "/etc/slurm/jwt_hs256.key",
      token_lifespan: 30 * 60_000,
      scontrol: "scontrol",
      node_mapping: "hostname",
      node_feature_prefix: "navarch-node=",
      poll_interval: 1000,
      drain: { on_deadline: "requeue" },
      partitions: {},
      queue_metrics: { enabled: true },
    });
    const again = parseConfig(configToYaml(r.config), "again.yaml");
    expect(again.ok && again.config.slurm).toEqual(r.config.slurm!);
  });

  test("every problem with its key path", () => {
    const r = parse(
      "  rest_url: slurm-head:6820\n  user: Root\n  node_mapping: label\n  node_feature_prefix: 'a,b'\n  poll_interval: 10ms\n  drain:\n    on_deadline: delete\n  partitions:\n    Train: gpu\n    infer: 'gpu partition'\n  queue_metrics:\n    enable: true\n",
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p.message]));
    expect(byPath["slurm.rest_url"]).toContain("expected an http:// or https:// URL");
    expect(byPath["slurm.user"]).toContain("expected a user name");
    expect(byPath["slurm.node_mapping"]).toContain('unknown node mapping rule "label" (expected one of node_name, hostname, feature');
    expect(byPath["slurm.node_feature_prefix"]).toContain("expected a feature prefix");
    expect(byPath["slurm.poll_interval"]).toContain("expected a duration from 200ms to 1m");
    expect(byPath["slurm.drain.on_deadline"]).toContain('unknown deadline behaviour "delete"');
    expect(byPath["slurm.partitions.Train"]).toContain("expected a DNS label"); // pool names
    expect(byPath["slurm.partitions.infer"]).toContain("expected a Slurm name");
    expect(byPath["slurm.queue_metrics.enable"]).toContain('unknown key "enable" (did you mean "enabled"?)');
    expect(byPath["slurm.jwt_key_file"]).toBe("is required, or token_env: slurmrestd takes JWTs only");
  });

  test("credentials: one of jwt_key_file and token_env; one scheduler at a time", () => {
    const both = parse("  rest_url: http://h:6820\n  jwt_key_file: /k\n  token_env: SLURM_JWT\n");
    expect(!both.ok && both.problems.map((p) => `${p.path}: ${p.message}`)).toContain("slurm.token_env: set jwt_key_file or token_env, not both");
    const missing = parse("  jwt_key_file: /k\n");
    expect(!missing.ok && missing.problems.map((p) => `${p.path}: ${p.message}`)).toContain("slurm.rest_url: is required");
    const two = parse("  rest_url: http://h:6820\n  jwt_key_file: /k\n", "kubernetes:\n  kubeconfig: /etc/kubeconfig\n");
    expect(!two.ok && two.problems.map((p) => `${p.path}: ${p.message}`)).toContain(
      "slurm: set kubernetes or slurm, not both (Navarch mirrors into one scheduler)",
    );
  });

  test("serve's checks load the credentials as serve does: an unreadable key or an unset token variable stops it", async () => {
    const dir = tempDir();
    const key = join(dir, "jwt.key");
    writeFileSync(key, Buffer.alloc(32, 7));
    const problems = async (yaml: string, env: Record<string, string> = {}) => {
      const r = parseConfig(yaml, "navarch.yaml");
      if (!r.ok) throw new Error(JSON.stringify(r.problems));
      return (await checkServeNeeds(r.config, "navarch.yaml", { env: (n) => env[n] })).problems;
    };
    expect(await problems(`slurm:\n  rest_url: http://h:6820\n  jwt_key_file: ${key}\n`)).toEqual([]);
    expect(await problems(`slurm:\n  rest_url: http://h:6820\n  jwt_key_file: ${join(dir, "missing.key")}\n`)).toEqual([
      expect.stringContaining(`navarch.yaml: slurm.jwt_key_file: cannot read ${join(dir, "missing.key")}`),
    ]);
    expect(await problems("slurm:\n  rest_url: http://h:6820\n  token_env: NAVARCH_SLURM_JWT\n")).toEqual([
      "navarch.yaml: slurm.token_env: $NAVARCH_SLURM_JWT is not set (it must hold a token for slurm, e.g. from scontrol token)",
    ]);
    expect(await problems("slurm:\n  rest_url: http://h:6820\n  token_env: NAVARCH_SLURM_JWT\n", { NAVARCH_SLURM_JWT: "eyJ.x.y" })).toEqual([]);
    expect(slurmTokens({ user: "slurm", token_env: "T", token_lifespan: 60_000 }, (n) => (n === "T" ? "tok" : undefined)).token()).toBe("tok");
  });

  test("a queue autoscaler is fed by slurm.queue_metrics", async () => {
    const pool =
      "pools:\n  - name: train\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      max_nodes: 4\n      autoscaler:\n        type: queue\n        jobs_per_node: 4\n";
    const warnings = async (yaml: string) => {
      const r = parseConfig(yaml, "navarch.yaml");
      if (!r.ok) throw new Error(JSON.stringify(r.problems));
      return (await checkServeNeeds(r.config, "navarch.yaml", { env: () => "x" })).warnings.filter((w) => w.includes("queue autoscaler"));
    };
    expect(await warnings(`slurm:\n  rest_url: http://h:6820\n  token_env: T\n${pool}`)).toEqual([]);
    expect(await warnings(`slurm:\n  rest_url: http://h:6820\n  token_env: T\n  queue_metrics:\n    enabled: false\n${pool}`)).toEqual([
      expect.stringContaining("slurm.queue_metrics.enabled is false"),
    ]);
  });
});
