// `navarch config check` checks what `navarch serve` will need, and the two agree: every config
// block of the seed passes check and starts; what serve refuses, check refuses with the same
// lines; what only this machine lacks (secrets, a key file, the seed's health policy file) is a
// warning from both. The ConfigMap config through the compiled binaries is in binaries.test.ts.
import { afterEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configCheckCommand } from "../reconciler/cli/config-check.ts";
import { serveCommand, serveSettings } from "../reconciler/cli/serve.ts";
import { prepareServeConfig, type EnvLookup } from "../reconciler/app/preflight.ts";
import { plainHttpWarning } from "../reconciler/config/exposure.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import type { HealthPolicy } from "../reconciler/health/policy-evaluation.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import type { NavarchConfig } from "../schema/config.ts";
import { tempDir, waitFor } from "./support.ts";

const SEED = join(import.meta.dir, "fixtures", "config", "valid");
/** Every Navarch config block of the seed, as the fixtures hold them. */
const SEED_CONFIGS = ["seed-pattern1.yaml", "seed-pattern2.yaml", "seed-configmap.yaml", "seed-ssh-bootstrap.yaml", "seed-queue.yaml", "seed-complete.yaml"];
const SECRETS: Record<string, string> = { NAVARCH_AUTH_TOKEN: "t0ken", LAMBDA_API_KEY: "k3y" };
const withSecrets: EnvLookup = (name) => SECRETS[name];
const bare: EnvLookup = () => undefined;

function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, sinks: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) } };
}

const running: Reconciler[] = [];
afterEach(async () => {
  for (const rec of running.splice(0)) await rec.stop();
});

/** serve's start-up on a prepared config, with simulated clouds so no test reaches a real one. */
async function startsInProcess(config: NavarchConfig, policy: HealthPolicy): Promise<void> {
  const settings = { ...serveSettings(config, tempDir("navarch-start-")), host: "127.0.0.1", port: 0 };
  const providers = new Map(
    [...new Set(config.pools.flatMap((p) => p.providers))].map((type) => [type, new SimulatedCloud({ name: type, now: Date.now })] as const),
  );
  const lines: string[] = [];
  const rec = await startReconciler(settings, (line) => lines.push(line), Date.now, { config, policy, providers });
  running.push(rec);
  await waitFor("the reconcile loop", () => rec.loop);
  expect((await fetch(`${rec.url}/readyz`)).status).toBe(200);
  expect(lines.join("\n")).toContain("leading (lease epoch");
}

/** check's problem lines (without its summary) and serve's (without its own), for one file. */
async function bothRefuse(file: string): Promise<string[]> {
  const check = capture();
  expect(await configCheckCommand([file], check.sinks)).toBe(2);
  const serve = capture();
  expect(await serveCommand(["--config", file], serve.sinks)).toBe(2);
  const checkLines = check.out.stderr.trimEnd().split("\n");
  const serveLines = serve.out.stderr.trimEnd().split("\n");
  expect(checkLines.at(-1)).toMatch(/: \d+ problems?; nothing was changed$/);
  expect(serveLines.at(-1)).toMatch(/^navarch: \d+ problem\(s\) in .*; nothing was started$/);
  expect(serveLines.slice(0, -1)).toEqual(checkLines.slice(0, -1));
  expect(serve.out.stderr).not.toContain("    at ");
  return checkLines.slice(0, -1);
}

function write(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const LAMBDA_POOL = "pools:\n  - name: a\n    provider: lambda\n    instance_type: gpu_8x_h100_sxm5\n    region: us-west-2\n";

describe("every config block of the seed passes check and starts", () => {
  for (const name of SEED_CONFIGS) {
    test(name, async () => {
      const file = join(SEED, name);
      const { out, sinks } = capture();
      expect(await configCheckCommand([file], sinks, { env: withSecrets })).toBe(0);
      expect(out.stdout).toContain(`# ${file} is valid`);
      const prepared = await prepareServeConfig(file, { env: withSecrets });
      if (!prepared.ok) throw new Error(prepared.problems.join("\n"));
      const plainHttp = prepared.plainHttp.length > 0 ? [`${file}: ${plainHttpWarning(prepared.plainHttp)}`] : [];
      expect(out.stderr).toBe([...prepared.warnings, ...plainHttp].map((w) => `warning: ${w}\n`).join(""));
      await startsInProcess(prepared.config, prepared.policy);
    });
  }

  test("the ConfigMap names a health policy it does not ship: the default policy, and a warning from check and serve alike", async () => {
    const file = join(SEED, "seed-configmap.yaml");
    const prepared = await prepareServeConfig(file, { env: withSecrets });
    if (!prepared.ok) throw new Error(prepared.problems.join("\n"));
    expect(prepared.policy).toBe(defaultHealthPolicy());
    expect(prepared.warnings).toContain(
      `${file}: server.health_policy_path: /etc/navarch/health-policy.yaml does not exist; serving with the default health policy (the Xid catalog's) until the file is there and navarch restarts`,
    );
  });

  test("without secrets: a warning per variable serve would read, never an error", async () => {
    const file = join(SEED, "seed-ssh-bootstrap.yaml");
    const { out, sinks } = capture();
    expect(await configCheckCommand([file], sinks, { env: bare })).toBe(0);
    const lines = out.stderr.trimEnd().split("\n");
    for (const line of [
      `warning: ${file}: pools[0].ssh_private_key_path: cannot read /etc/navarch/ssh-key: no such file or directory (ENOENT); pool k8s-gpu-workers cannot bootstrap new machines until serve can read it`,
      `warning: ${file}: server.auth_token_env: $NAVARCH_AUTH_TOKEN is not set; serve uses the token in data/auth-token (generating one), which agents and the CLI then need`,
      `warning: ${file}: providers.lambda.api_key_env: $LAMBDA_API_KEY is not set; launches in k8s-gpu-workers fail until it is`,
    ]) {
      expect(lines).toContain(line);
    }
  });
});

/** The warnings about queue metrics only (other warnings, e.g. about SSH key names, are not this file's subject). */
const queueWarnings = (result: Awaited<ReturnType<typeof prepareServeConfig>>) => {
  if (!result.ok) throw new Error(result.problems.join("\n"));
  return result.warnings.filter((w) => w.includes("queue autoscaler"));
};

describe("an autoscaler without its metrics source is a warning", () => {
  test("the seed's queue pool without a kubernetes: section", async () => {
    const file = join(SEED, "seed-queue.yaml");
    expect(queueWarnings(await prepareServeConfig(file, { env: withSecrets }))).toEqual([
      `${file}: pools[0].scaling.autoscaler: a queue autoscaler without queue metrics (there is no kubernetes: section; they count pods labelled navarch.dev/pool=k8s-gpu-workers): pool k8s-gpu-workers holds its size ("queue depth unknown")`,
    ]);
  });

  test("with a kubernetes: section it has its source; with queue_metrics off it has none", async () => {
    const dir = tempDir("navarch-preflight-");
    const kubeconfig = write(
      dir,
      "kubeconfig",
      "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: { server: https://127.0.0.1:1 }\nusers:\n- name: u\n  user: { token: abc }\ncontexts:\n- name: x\n  context: { cluster: c, user: u }\ncurrent-context: x\n",
    );
    const queue = `${LAMBDA_POOL}    scaling:\n      max_nodes: 4\n      autoscaler: { type: scheduled, windows: [{ days: [mon], start: "09:00", end: "17:00", min_nodes: 1 }], fallback: { type: queue, jobs_per_node: 8 } }\n`;
    expect(queueWarnings(await prepareServeConfig(write(dir, "on.yaml", `${queue}kubernetes:\n  kubeconfig: ${kubeconfig}\n`), { env: withSecrets }))).toEqual(
      [],
    );
    const off = write(dir, "off.yaml", `${queue}kubernetes:\n  kubeconfig: ${kubeconfig}\n  queue_metrics: { enabled: false }\n`);
    expect(queueWarnings(await prepareServeConfig(off, { env: withSecrets }))).toEqual([
      `${off}: pools[0].scaling.autoscaler.fallback: a queue autoscaler without queue metrics (kubernetes.queue_metrics.enabled is false; they count pods labelled navarch.dev/pool=a): the scheduled autoscaler gets no size from this fallback`,
    ]);
  });
});

describe("what serve refuses, check refuses, with the same lines", () => {
  test("a health policy that exists but does not parse, or cannot be read", async () => {
    const dir = tempDir("navarch-preflight-");
    const policy = write(dir, "policy.yaml", "rules:\n  - { name: a, when: 'event.check == 13', result: unhealthy }\n");
    const lines = await bothRefuse(write(dir, "navarch.yaml", `server:\n  health_policy_path: ${policy}\n`));
    expect(lines).toEqual([
      `${policy}: rules[0].when: CEL type error at column 13: found no matching overload for '_==_' applied to '(string, int)' (a string is never equal to a number: quote the number)`,
    ]);
    mkdirSync(join(dir, "a-directory"));
    const unreadable = write(dir, "dir.yaml", `server:\n  health_policy_path: ${join(dir, "a-directory")}\n`);
    expect(await bothRefuse(unreadable)).toEqual([
      `${unreadable}: server.health_policy_path: cannot read ${join(dir, "a-directory")}: illegal operation on a directory (EISDIR)`,
    ]);
  });

  test("an SSH key that is not a usable private key", async () => {
    const dir = tempDir("navarch-preflight-");
    const key = write(dir, "ssh-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n");
    const file = write(dir, "navarch.yaml", `${LAMBDA_POOL}    ssh_private_key_path: ${key}\n    setup_commands: [echo hi]\n`);
    const [line, ...rest] = await bothRefuse(file);
    expect(rest).toEqual([]);
    expect(line).toStartWith(
      `${file}: pools[0].ssh_private_key_path: ${key} is not a private key serve can use (expected an unencrypted OpenSSH or PEM private key): `,
    );
    // A real one passes.
    const good = write(dir, "good-key", generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs1", format: "pem" }).toString());
    const ok = await prepareServeConfig(write(dir, "ok.yaml", `${LAMBDA_POOL}    ssh_private_key_path: ${good}\n    setup_commands: [echo hi]\n`), {
      env: withSecrets,
    });
    expect(ok.ok ? ok.warnings.filter((w) => w.includes("ssh_private_key_path")) : ok.problems).toEqual([]);
  });

  test("a Kubernetes connection that cannot be loaded (serve used to die with a stack trace)", async () => {
    const dir = tempDir("navarch-preflight-");
    const token = write(dir, "token.yaml", `${LAMBDA_POOL}kubernetes:\n  server: https://127.0.0.1:1\n  token_env: NAVARCH_TEST_UNSET_KUBE_TOKEN\n`);
    expect(await bothRefuse(token)).toEqual([
      `${token}: kubernetes.token_env: $NAVARCH_TEST_UNSET_KUBE_TOKEN is not set (it must hold the bearer token for https://127.0.0.1:1)`,
    ]);
    const missing = write(dir, "kubeconfig.yaml", `${LAMBDA_POOL}kubernetes:\n  kubeconfig: ${dir}/no-such-kubeconfig\n`);
    const [line] = await bothRefuse(missing);
    expect(line).toStartWith(`${missing}: kubernetes: cannot load the Kubernetes connection: `);
  });

  test("a local pool whose fake libnvidia-ml is not there", async () => {
    const dir = tempDir("navarch-preflight-");
    const file = write(
      dir,
      "navarch.yaml",
      `providers:\n  local: { nvml_library: ${dir}/libnvidia-ml.so.1 }\npools:\n  - { name: l, provider: local, instance_type: local-8gpu, region: local }\n`,
    );
    expect(await bothRefuse(file)).toEqual([
      `${file}: providers.local.nvml_library: ${dir}/libnvidia-ml.so.1 does not exist (expected the path of a libnvidia-ml, e.g. the fake one npm run build makes)`,
    ]);
  });

  test("upstream's config format", async () => {
    const file = join(import.meta.dir, "fixtures", "upstream", "fake-minimal.yaml");
    expect(await bothRefuse(file)).toEqual([
      `${file}: this is upstream Navarch's config format (pools as a mapping of names, providers.fake.type, pools.test-pool.min_nodes, …); run \`navarch config migrate ${file}\` to turn it into this one`,
    ]);
  });
});

describe("health_policy_path", () => {
  test("loads upstream's policy format, saying so", async () => {
    const dir = tempDir("navarch-preflight-");
    const policy = join(import.meta.dir, "fixtures", "upstream", "default-health-policy.yaml");
    const file = write(dir, "navarch.yaml", `server:\n  health_policy_path: ${policy}\n${LAMBDA_POOL}`);
    const prepared = await prepareServeConfig(file, { env: withSecrets });
    if (!prepared.ok) throw new Error(prepared.problems.join("\n"));
    expect(prepared.policy.rules.map((r) => r.name)[0]).toBe("fatal-xid");
    const policyWarnings = prepared.warnings.filter((w) => w.startsWith(policy));
    expect(policyWarnings).toHaveLength(1);
    expect(policyWarnings[0]).toStartWith(`${policy}: upstream Navarch's health policy format "default" (10 rules): `);
  });
});
