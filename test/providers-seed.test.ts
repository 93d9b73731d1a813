// The seed's configs, as an operator would run them: each pool of each YAML block of the
// seed that defines pools (test/fixtures/config/valid/seed-*.yaml) launches against its
// provider's fake, through the providers `navarch serve` builds from that config and a
// launch request built as the reconciler's launch step builds it: every pool launches as
// written. The seed's Lambda pools name no SSH key (Lambda's launch call needs one): the
// provider uses the account's key, or creates one it keeps in the data directory. The only
// additions are the fakes' endpoints (base_url).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { parseConfig } from "../reconciler/config/load.ts";
import { formatProblems } from "../reconciler/config/yaml-source.ts";
import { createProviders } from "../reconciler/providers/index.ts";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance, type LaunchRequest } from "../reconciler/providers/provider.ts";
import type { NavarchConfig, PoolConfig } from "../schema/config.ts";
import { startGcpFake, type GcpFake } from "./fake-clouds/gcp.ts";
import { startLambdaFake, type LambdaFake } from "./fake-clouds/lambda.ts";
import { TEST_PUBLIC_KEY } from "./fake-clouds/support.ts";
import { tempDir } from "./support.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "config", "valid");
/** Every YAML block of the seed that defines pools, in the seed's order. */
const SEED_BLOCKS = ["seed-pattern1.yaml", "seed-pattern2.yaml", "seed-configmap.yaml", "seed-ssh-bootstrap.yaml", "seed-queue.yaml", "seed-complete.yaml"];
/** The SSH key the operator registered in Lambda's console. */
const OPERATOR_KEY = { name: "navarch-ops", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyRegisteredWithLambda000000000000" };
/** The seed's complete example names this project; Pattern 2 gets it from the service-account key. */
const GCP_PROJECT = "my-gcp-project";

let lambda: LambdaFake;
let gcp: GcpFake;
/** The reconciler's data directory, shared by every launch as one reconciler's would be. */
const DATA_DIR = tempDir();
let env: Record<string, string>;

beforeAll(() => {
  lambda = startLambdaFake({ sshKeys: [OPERATOR_KEY] });
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const clientEmail = "navarch@my-gcp-project.iam.gserviceaccount.com";
  gcp = startGcpFake({
    project: GCP_PROJECT,
    operationMs: 0,
    serviceAccount: { clientEmail, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() },
  });
  // Application default credentials: the key file GOOGLE_APPLICATION_CREDENTIALS names.
  const keyFile = join(tempDir(), "service-account.json");
  const key = {
    type: "service_account",
    project_id: GCP_PROJECT,
    private_key_id: "k1",
    private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    client_email: clientEmail,
    token_uri: gcp.tokenUri,
  };
  writeFileSync(keyFile, JSON.stringify(key));
  env = { LAMBDA_API_KEY: lambda.apiKey, GOOGLE_APPLICATION_CREDENTIALS: keyFile };
});
afterAll(async () => {
  await Promise.all([lambda.stop(), gcp.stop()]);
});

type RawConfig = Record<string, unknown>;

/** The fixture as a YAML document's data, with the fakes' endpoints added. */
async function seedBlock(file: string): Promise<RawConfig> {
  const raw = parse(await Bun.file(join(FIXTURES, file)).text()) as RawConfig;
  const pools = raw.pools as { provider?: string }[];
  const providers = (raw.providers ??= {}) as Record<string, Record<string, unknown>>;
  if (pools.some((p) => p.provider === "lambda")) providers.lambda = { ...providers.lambda, base_url: lambda.url };
  if (pools.some((p) => p.provider === "gcp")) providers.gcp = { ...providers.gcp, base_url: gcp.url };
  return raw;
}

function load(raw: RawConfig, file: string): { config: NavarchConfig; warnings: string[] } {
  const result = parseConfig(stringify(raw), file);
  if (!result.ok) throw new Error(formatProblems(result.problems, file).join("\n"));
  return result;
}

/** Sets a key path like `pools[0].ssh_key_names` or `providers.lambda.ssh_key_names`. */
function setKey(raw: RawConfig, path: string, value: unknown): void {
  const parts = path.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== "");
  let at: Record<string, unknown> = raw;
  for (const part of parts.slice(0, -1)) {
    const next = (at[part] ??= {}) as Record<string, unknown>;
    at = next;
  }
  at[parts.at(-1)!] = value;
}

interface Outcome {
  pool: PoolConfig;
  provider: string;
  instance?: Instance;
  error?: ProviderError;
}

/** One launch per pool, as `navarch serve` would make it for the pool's first provider. */
async function launchEachPool(config: NavarchConfig): Promise<Outcome[]> {
  const providers = createProviders(config, {
    dataDir: DATA_DIR,
    serverUrl: "http://127.0.0.1:50051",
    authToken: "unused",
    log: () => {},
    env: (name) => env[name],
  });
  const out: Outcome[] = [];
  for (const pool of config.pools) {
    const type = pool.providers[0]!;
    const nodeId = `${pool.name.slice(0, 50)}-${randomBytes(4).toString("hex")}`;
    const key = `launch:${nodeId}:${type}`;
    const req: LaunchRequest = {
      name: nodeId,
      idempotencyKey: key,
      pool: pool.name,
      instanceType: pool.instance_type,
      region: pool.region,
      ...(pool.zones[0] ? { zone: pool.zones[0] } : {}),
      // The bootstrap key of a pool with setup_commands (the reconciler reads it from ssh_private_key_path).
      ...(pool.setup_commands.length > 0 ? { sshPublicKey: TEST_PUBLIC_KEY } : {}),
      tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool.name, [TAG_OPERATION]: key },
    };
    try {
      out.push({ pool, provider: type, instance: await providers.get(type)!.launch(req) });
    } catch (err) {
      if (!(err instanceof ProviderError)) throw err;
      out.push({ pool, provider: type, error: err });
    }
  }
  return out;
}

function expectLaunched(outcome: Outcome): Instance {
  if (outcome.instance === undefined) throw new Error(`pool ${outcome.pool.name} did not launch: ${outcome.error?.message}`);
  const instance = outcome.instance;
  if (outcome.provider === "lambda") {
    const launched = lambda.state.instances.get(instance.id)!;
    expect(launched.region).toBe(outcome.pool.region);
    expect(launched.instanceType).toBe(outcome.pool.instance_type);
    expect(launched.sshKeyNames.length).toBe(1);
  } else {
    const launched = gcp.state.instances.get(instance.id)!;
    expect(launched.zone.startsWith(`${outcome.pool.region}-`)).toBe(true);
    expect(launched.machineType).toBe(outcome.pool.instance_type);
  }
  return instance;
}

describe("each pool of the seed launches against its provider's fake", () => {
  for (const file of SEED_BLOCKS) {
    test(file, async () => {
      const { config } = load(await seedBlock(file), file);
      const outcomes = await launchEachPool(config);
      expect(outcomes.length).toBe(config.pools.length);
      for (const o of outcomes) {
        const instance = expectLaunched(o);
        if (o.provider !== "lambda") continue;
        const keys = lambda.state.instances.get(instance.id)!.sshKeyNames;
        // setup_commands: the bootstrap key, registered by its fingerprint. Else the account's one
        // key while it has one; once a bootstrap key is there too, the key this reconciler created.
        if (o.pool.setup_commands.length > 0) expect(keys[0]).toMatch(/^navarch-[0-9a-f]{12}$/);
        else if (existsSync(join(DATA_DIR, "lambda-ssh-key.name"))) expect(keys).toEqual([readFileSync(join(DATA_DIR, "lambda-ssh-key.name"), "utf8").trim()]);
        else expect(keys).toEqual([OPERATOR_KEY.name]);
      }
    });
  }

  test("providers.lambda.ssh_key_names serves every Lambda pool that names none", async () => {
    const raw = await seedBlock("seed-complete.yaml");
    setKey(raw, "providers.lambda.ssh_key_names", [OPERATOR_KEY.name]);
    const { config, warnings } = load(raw, "seed-complete.yaml");
    expect(warnings).toEqual([]);
    for (const o of await launchEachPool(config)) {
      const instance = expectLaunched(o);
      if (o.provider === "lambda") expect(lambda.state.instances.get(instance.id)!.sshKeyNames).toEqual([OPERATOR_KEY.name]);
    }
  });

  test("the GCP pools' zones were found through zones.list, in their region", () => {
    expect(gcp.state.calls.some((c) => c.call === "zones" && c.status === 200)).toBe(true);
    const zones = new Set(gcp.live().map((i) => i.zone));
    expect([...zones].every((z) => z.startsWith("us-central1-"))).toBe(true);
  });

  test("ssh_key_names is checked like every other key", () => {
    const bad = (yaml: string) => {
      const result = parseConfig(yaml, "k.yaml");
      return result.ok ? [] : formatProblems(result.problems, "k.yaml");
    };
    const pool = "pools:\n  - name: p\n    provider: lambda\n    instance_type: gpu_1x_a10\n    region: us-east-1\n";
    expect(bad(`${pool}    ssh_key_names: []\n`).join("\n")).toContain("pools[0].ssh_key_names: must list at least one SSH key name");
    expect(bad(`${pool}    ssh_key_names: navarch-ops\n`).join("\n")).toContain("pools[0].ssh_key_names");
    expect(bad(`providers:\n  lambda:\n    ssh_key_names: ["${"k".repeat(65)}"]\n${pool}`).join("\n")).toContain("providers.lambda.ssh_key_names[0]");
    expect(bad(`${pool}    ssh_key_names: [navarch-ops]\n`)).toEqual([]);
    // Lambda's launch call takes exactly one name: two would fail every launch with HTTP 400.
    expect(bad(`${pool}    ssh_key_names: [ops, ml]\n`)).toEqual([
      "k.yaml: pools[0].ssh_key_names: Lambda's launch call takes exactly one SSH key name, got 2 (ops, ml): keep one",
    ]);
    expect(bad(`providers:\n  lambda:\n    ssh_key_names: [ops, ml]\n${pool}`).join("\n")).toContain(
      "providers.lambda.ssh_key_names: Lambda's launch call takes exactly one",
    );
  });
});
