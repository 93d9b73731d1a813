// LambdaProvider against the fake Lambda Cloud API (test/fake-clouds/lambda.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { publicKeyFromPrivate } from "../bootstrap/ssh.ts";
import { LambdaProvider } from "../reconciler/providers/lambda.ts";
import { TAG_MANAGED_BY, TAG_POOL } from "../reconciler/providers/provider.ts";
import { startLambdaFake, type LambdaFake } from "./fake-clouds/lambda.ts";
import { expectProviderError, fakeEnv, launchRequest, TEST_PUBLIC_KEY } from "./fake-clouds/support.ts";
import { tempDir } from "./support.ts";

let fake: LambdaFake;
const KEY_ENV = "LAMBDA_API_KEY";

function provider(key = fake.apiKey, options: ConstructorParameters<typeof LambdaProvider>[2] = {}): LambdaProvider {
  return new LambdaProvider({ api_key_env: KEY_ENV, base_url: fake.url }, fakeEnv({ [KEY_ENV]: key }), { timeoutMs: 2000, ...options });
}

beforeAll(() => {
  fake = startLambdaFake({ endpoint: (n) => ({ address: "127.0.0.1", sshPort: 22000 + n }) });
});
afterAll(async () => {
  await fake.stop();
});
afterEach(() => {
  fake.clearFaults();
});

describe("LambdaProvider", () => {
  test("launch → get → list by tags → terminate → get is undefined", async () => {
    const p = provider();
    const req = launchRequest({ pool: "lifecycle" });
    const launched = await p.launch(req);
    expect(launched).toMatchObject({ name: req.name, provider: "lambda", instanceType: req.instanceType, region: req.region, state: "pending" });

    const got = await p.get(launched.id);
    expect(got).toMatchObject({ id: launched.id, name: req.name, state: "running", address: "127.0.0.1", tags: req.tags });
    expect(fake.state.instances.get(launched.id)?.sshPort).toBeGreaterThan(22000);

    const other = await p.launch(launchRequest({ pool: "other-pool" }));
    const listed = await p.list({ [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: "lifecycle" });
    expect(listed.map((i) => i.id)).toEqual([launched.id]);

    await p.terminate(launched.id);
    expect(await p.get(launched.id)).toBeUndefined();
    expect((await p.list({ [TAG_POOL]: "lifecycle" })).length).toBe(0);
    await p.terminate(other.id);
  });

  test("registers the launch's public key once and reuses it", async () => {
    const p = provider();
    const a = await p.launch(launchRequest({ pool: "keys" }));
    const b = await p.launch(launchRequest({ pool: "keys" }));
    const keys = [...fake.state.sshKeys.values()];
    expect(keys.length).toBe(1);
    expect(keys[0]!.public_key).toBe(TEST_PUBLIC_KEY.split(" ").slice(0, 2).join(" "));
    expect(fake.state.instances.get(a.id)?.sshKeyNames).toEqual([keys[0]!.name]);
    await Promise.all([p.terminate(a.id), p.terminate(b.id)]);
  });

  test("a launch retried after a lost answer finds the first instance instead of creating another", async () => {
    const p = provider();
    const req = launchRequest({ pool: "crash" });
    fake.inject({ kind: "lose_response", on: "launch", times: 1 });
    await expectProviderError(p.launch(req), "transient");
    expect(fake.live().filter((i) => i.name === req.name).length).toBe(1);

    const again = await p.launch(req);
    const matching = fake.live().filter((i) => i.name === req.name);
    expect(matching.length).toBe(1);
    expect(again.id).toBe(matching[0]!.id);
    await p.terminate(again.id);
  });

  test("insufficient capacity → capacity; instance types show the region without capacity", async () => {
    const p = provider();
    fake.inject({ kind: "capacity", on: "launch", instanceType: "gpu_8x_h100_sxm5", region: "us-west-2" });
    const types = await p.instanceTypes();
    expect(types.find((t) => t.name === "gpu_8x_h100_sxm5")?.regionsWithCapacity).toEqual(["us-east-1"]);
    const err = await expectProviderError(p.launch(launchRequest()), "capacity");
    expect(err.retryable).toBe(true);
    // A region the type has no capacity in at all answers the same way.
    await expectProviderError(p.launch(launchRequest({ instanceType: "gpu_1x_gh200", region: "us-east-1" })), "capacity");
  });

  test("quota → quota", async () => {
    fake.inject({ kind: "quota", on: "launch" });
    await expectProviderError(provider().launch(launchRequest()), "quota");
  });

  test("429 → rate_limit with Retry-After", async () => {
    fake.inject({ kind: "rate_limit", retryAfterSeconds: 12, times: 1 });
    const err = await expectProviderError(provider().list({}), "rate_limit");
    expect(err.retryAfterSeconds).toBe(12);
  });

  test("5xx → transient; fail twice then succeed", async () => {
    const p = provider();
    fake.inject({ kind: "server_error", status: 502, on: "list", times: 1 });
    fake.inject({ kind: "server_error", on: "list", times: 1 });
    await expectProviderError(p.list({}), "transient");
    await expectProviderError(p.list({}), "transient");
    expect(Array.isArray(await p.list({}))).toBe(true);
  });

  test("a slow API times out as transient", async () => {
    fake.inject({ kind: "latency", ms: 400, on: "list", times: 1 });
    await expectProviderError(provider(fake.apiKey, { timeoutMs: 100 }).list({}), "transient");
  });

  test("a bad key → auth, and the key is in no message", async () => {
    const bad = "secret_bad-key-4f1c9a7e0d";
    const err = await expectProviderError(provider(bad).list({}), "auth");
    expect(err.message).not.toContain(bad);
    expect(err.message).toContain("invalid-api-key");
    expect(err.retryable).toBe(false);

    const missing = new LambdaProvider({ api_key_env: KEY_ENV, base_url: fake.url }, fakeEnv({}));
    const err2 = await expectProviderError(missing.list({}), "auth");
    expect(err2.message).toContain(KEY_ENV);
  });

  test("a key revoked mid-run (injected auth failure) → auth, not retryable", async () => {
    fake.inject({ kind: "auth", on: "launch", times: 1 });
    const err = await expectProviderError(provider().launch(launchRequest({ pool: "revoked" })), "auth");
    expect(err.message).not.toContain(fake.apiKey);
    expect(err.retryable).toBe(false);
  });

  test("the key is scrubbed even when the server echoes it back", async () => {
    const echo = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) =>
        Response.json({ error: { code: "global/invalid-parameters", message: `bad header ${req.headers.get("authorization")}` } }, { status: 400 }),
    });
    try {
      const key = "secret_echoed-key-99ab";
      const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: `http://127.0.0.1:${echo.port}` }, fakeEnv({ [KEY_ENV]: key }));
      const err = await expectProviderError(p.list({}), "invalid");
      expect(err.message).not.toContain(key);
      expect(err.message).toContain("[redacted]");
    } finally {
      await echo.stop(true);
    }
  });

  test("terminating an unknown or already-gone instance succeeds", async () => {
    const p = provider();
    await p.terminate("0123456789abcdef0123456789abcdef");
    const inst = await p.launch(launchRequest({ pool: "twice" }));
    await p.terminate(inst.id);
    await p.terminate(inst.id);
  });

  test("instanceTypes parses GPU counts, models and regions", async () => {
    const types = await provider().instanceTypes();
    expect(types.find((t) => t.name === "gpu_1x_a10")).toEqual({
      name: "gpu_1x_a10",
      gpus: 1,
      gpuModel: "A10 (24 GB PCIe)",
      regionsWithCapacity: ["us-west-1", "us-east-1"],
    });
    expect(types.find((t) => t.name === "gpu_1x_gh200")?.regionsWithCapacity).toEqual([]);
  });

  test("an unexpected response shape is a transient ProviderError", async () => {
    const odd = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ data: [{ nope: true }] }) });
    try {
      const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: `http://127.0.0.1:${odd.port}` }, fakeEnv({ [KEY_ENV]: "k" }));
      const err = await expectProviderError(p.list({}), "transient");
      expect(err.message).toContain("unexpected response");
    } finally {
      await odd.stop(true);
    }
  });

  test("without tags from the API, tagsFromName supplies them", async () => {
    const old = startLambdaFake({ supportsTags: false });
    try {
      const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: old.url }, fakeEnv({ [KEY_ENV]: old.apiKey }), {
        tagsFromName: (name) => {
          const m = /^nv-(.+)-[0-9a-f]+$/.exec(name);
          return m === null ? undefined : { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: m[1]! };
        },
      });
      const inst = await p.launch(launchRequest({ pool: "legacy-pool" }));
      const listed = await p.list({ [TAG_POOL]: "legacy-pool", [TAG_MANAGED_BY]: "navarch" });
      expect(listed.map((i) => i.id)).toEqual([inst.id]);
      // A retried launch still finds the instance by name.
      const again = await p.launch({ ...launchRequest({ pool: "legacy-pool" }), name: inst.name });
      expect(again.id).toBe(inst.id);
    } finally {
      await old.stop();
    }
  });

  test("no key configured: the account's one key; with none or several, a key named for this reconciler, kept in the data directory", async () => {
    const keyless = () => {
      const req = launchRequest({ pool: "keyless" });
      delete req.sshPublicKey;
      return req;
    };
    const account = (keys: { name: string; publicKey: string }[]) => startLambdaFake({ sshKeys: keys });
    const on = (f: LambdaFake, dataDir: string, logs: string[] = []) =>
      new LambdaProvider({ api_key_env: KEY_ENV, base_url: f.url }, fakeEnv({ [KEY_ENV]: f.apiKey }), { dataDir, log: (l) => logs.push(l) });
    const one = account([{ name: "ops", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps000000000000000000000000000000000000000" }]);
    const none = account([]);
    const several = account([
      { name: "alice", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice00000000000000000000000000000000000" },
      { name: "bob", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob0000000000000000000000000000000000000" },
    ]);
    try {
      // One key in the account: that one, and nothing is created.
      const viaOne = await on(one, tempDir()).launch(keyless());
      expect(one.state.instances.get(viaOne.id)!.sshKeyNames).toEqual(["ops"]);
      expect(one.state.sshKeys.size).toBe(1);

      for (const f of [none, several]) {
        const dataDir = tempDir();
        const logs: string[] = [];
        const before = f.state.sshKeys.size;
        const p = on(f, dataDir, logs);
        const [a, b] = await Promise.all([p.launch(keyless()), p.launch(keyless())]);
        // One key created (two launches at once ask once), named for this reconciler, sent on both.
        expect(f.state.sshKeys.size).toBe(before + 1);
        const name = readFileSync(join(dataDir, "lambda-ssh-key.name"), "utf8").trim();
        expect(name).toMatch(/^navarch-[a-z0-9-]+-[0-9a-f]{6}$/);
        expect(f.state.instances.get(a.id)!.sshKeyNames).toEqual([name]);
        expect(f.state.instances.get(b.id)!.sshKeyNames).toEqual([name]);
        // Its private key, as Lambda returned it once, kept 0600; its public half is the account's key.
        const keyFile = join(dataDir, "lambda-ssh-key");
        expect(statSync(keyFile).mode & 0o777).toBe(0o600);
        const privateKey = readFileSync(keyFile, "utf8");
        expect(publicKeyFromPrivate(privateKey).split(" ").slice(0, 2).join(" ")).toBe(f.state.sshKeys.get(name)!.public_key);
        expect(await p.sshPrivateKey()).toBe(privateKey);
        expect(logs.join("\n")).toContain(`created ${name}; its private key is in ${keyFile}`);
        expect(logs.join("\n")).not.toContain(privateKey.split("\n")[1]!);
        // A restarted reconciler (a new provider, the same data directory) sends the same key and creates none.
        const again = await on(f, dataDir).launch(keyless());
        expect(f.state.instances.get(again.id)!.sshKeyNames).toEqual([name]);
        expect(f.state.sshKeys.size).toBe(before + 1);
      }
      // A pool that bootstraps with Navarch's own key (setup_commands, no ssh_private_key_path) never gets the account's other key.
      const dataDir = tempDir();
      const own = await on(one, dataDir).launch({ ...keyless(), sshOwnKey: true });
      const ownName = readFileSync(join(dataDir, "lambda-ssh-key.name"), "utf8").trim();
      expect(one.state.instances.get(own.id)!.sshKeyNames).toEqual([ownName]);
      expect(ownName).not.toBe("ops");
    } finally {
      await Promise.all([one.stop(), none.stop(), several.stop()]);
    }
  });

  test("ssh_key_names is sent on every launch: the pool's, else the provider's", async () => {
    const keys = startLambdaFake({
      sshKeys: [
        { name: "ops-default", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsDefaultKey000000000000000000000000000000" },
        { name: "ops-training", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsTrainingKey00000000000000000000000000000" },
      ],
    });
    try {
      const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: keys.url, ssh_key_names: ["ops-default"] }, fakeEnv({ [KEY_ENV]: keys.apiKey }), {
        pools: new Map([
          ["training", { path: "pools[0]", sshKeyNames: ["ops-training"] }],
          ["inference", { path: "pools[1]" }],
        ]),
      });
      const plain = (pool: string) => {
        const req = launchRequest({ pool });
        delete req.sshPublicKey;
        return req;
      };
      const a = await p.launch(plain("training"));
      const b = await p.launch(plain("inference"));
      expect(keys.state.instances.get(a.id)?.sshKeyNames).toEqual(["ops-training"]);
      expect(keys.state.instances.get(b.id)?.sshKeyNames).toEqual(["ops-default"]);
      // A pool with setup_commands keeps the configured key; its bootstrap key comes through cloud-init.
      const c = await p.launch(launchRequest({ pool: "inference" }));
      expect(keys.state.instances.get(c.id)?.sshKeyNames).toEqual(["ops-default"]);
      expect(keys.state.instances.get(c.id)?.userData).toContain(TEST_PUBLIC_KEY.split(" ").slice(0, 2).join(" "));
      expect(keys.state.sshKeys.size).toBe(2);
      // The request carries only fields the reference defines; the name doubles as the hostname.
      const body = keys.state.launches.at(-1)!;
      expect(Object.keys(body).sort()).toEqual(["hostname", "instance_type_name", "name", "region_name", "ssh_key_names", "tags", "user_data"]);
      expect(body.hostname).toBe(body.name);
    } finally {
      await keys.stop();
    }
  });

  test("a configured key Lambda does not know → invalid, naming the key", async () => {
    const req = launchRequest({ pool: "unknown-key" });
    delete req.sshPublicKey;
    const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: fake.url, ssh_key_names: ["never-registered"] }, fakeEnv({ [KEY_ENV]: fake.apiKey }));
    const err = await expectProviderError(p.launch(req), "invalid");
    expect(err.message).toContain("global/object-does-not-exist");
    expect(err.message).toContain("never-registered");
  });

  test("a pool's labels become tags made to fit Lambda's rules (which the fake enforces)", async () => {
    const p = provider();
    const launched = await p.launch(launchRequest({ pool: "labelled", tags: { "navarch.dev/tier": "gold", workload: "training", "9lives": "x" } }));
    const sent = Object.fromEntries(fake.state.instances.get(launched.id)!.tags.map((t) => [t.key, t.value]));
    expect(sent).toMatchObject({ "navarch-dev:tier": "gold", workload: "training", "k-9lives": "x" });
    expect((await p.get(launched.id))?.tags).toMatchObject({ "navarch-dev:tier": "gold", workload: "training" });
    await p.terminate(launched.id);
  });

  test("reboot restarts the instance (a new boot); gone → not_found; not yet launched → transient", async () => {
    const slow = startLambdaFake({ bootMs: 150 });
    try {
      const p = new LambdaProvider({ api_key_env: KEY_ENV, base_url: slow.url }, fakeEnv({ [KEY_ENV]: slow.apiKey }));
      const inst = await p.launch(launchRequest({ pool: "reboot" }));
      // Still booting: Lambda leaves it out of restarted_instances (vm-has-not-launched).
      const early = await expectProviderError(p.reboot(inst.id), "transient");
      expect(early.message).toContain("vm-has-not-launched");
      await Bun.sleep(170);
      expect((await p.get(inst.id))?.state).toBe("running");
      await p.reboot(inst.id);
      expect(slow.state.instances.get(inst.id)?.boots).toBe(2);
      expect((await p.get(inst.id))?.state).toBe("pending");
      expect(slow.state.calls.at(-2)).toMatchObject({ call: "reboot", path: "/api/v1/instance-operations/restart", status: 200 });

      await expectProviderError(p.reboot("0123456789abcdef0123456789abcdef"), "not_found");
      slow.inject({ kind: "auth", on: "reboot", times: 1 });
      await expectProviderError(p.reboot(inst.id), "auth");
      slow.inject({ kind: "rate_limit", on: "reboot", retryAfterSeconds: 3, times: 1 });
      expect((await expectProviderError(p.reboot(inst.id), "rate_limit")).retryAfterSeconds).toBe(3);
      await p.terminate(inst.id);
    } finally {
      await slow.stop();
    }
  });
});
