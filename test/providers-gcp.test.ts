// GcpProvider against the fake Compute Engine API (test/fake-clouds/gcp.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { mapGoogleError } from "../reconciler/providers/gcp/errors.ts";
import { labelKey, labelValue } from "../reconciler/providers/gcp/labels.ts";
import { GcpProvider, type GcpProviderOptions } from "../reconciler/providers/gcp/provider.ts";
import { requestIdFor } from "../reconciler/providers/gcp/request-id.ts";
import { TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL } from "../reconciler/providers/provider.ts";
import { startGcpFake, type GcpFake } from "./fake-clouds/gcp.ts";
import { expectProviderError, fakeEnv, launchRequest } from "./fake-clouds/support.ts";
import { tempDir } from "./support.ts";

let fake: GcpFake;
const TOKEN_ENV = "GCP_ACCESS_TOKEN";

function provider(token = fake.token, options: GcpProviderOptions = {}): GcpProvider {
  return new GcpProvider({ project: fake.project, credentials_env: TOKEN_ENV, base_url: fake.url }, fakeEnv({ [TOKEN_ENV]: token }), {
    timeoutMs: 2000,
    operationTimeoutMs: 3000,
    ...options,
  });
}

function gcpRequest(overrides: Parameters<typeof launchRequest>[0] = {}) {
  return launchRequest({ instanceType: "a3-highgpu-8g", region: "us-central1", zone: "us-central1-a", ...overrides });
}

beforeAll(() => {
  fake = startGcpFake({ operationMs: 30, endpoint: (n) => ({ address: "127.0.0.1", sshPort: 23000 + n }) });
});
afterAll(async () => {
  await fake.stop();
});
afterEach(() => {
  fake.clearFaults();
});

describe("GcpProvider", () => {
  test("launch waits for the operation → get → list by labels → terminate → gone", async () => {
    const p = provider();
    const req = gcpRequest({ pool: "lifecycle", idempotencyKey: "Op:Lifecycle/0001" });
    const launched = await p.launch(req);
    expect(launched).toMatchObject({
      id: `us-central1-a/${req.name}`,
      name: req.name,
      provider: "gcp",
      instanceType: "a3-highgpu-8g",
      region: "us-central1",
      zone: "us-central1-a",
      state: "running",
      address: "127.0.0.1",
    });
    // Labels are the sanitised tags: the operation key was lowercased and ':' '/' replaced.
    expect(launched.tags).toEqual({ [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: "lifecycle", [TAG_OPERATION]: "op_lifecycle_0001" });
    const inserted = fake.state.inserts.at(-1) as { metadata: { items: { key: string; value: string }[] }; scheduling: unknown };
    expect(inserted.metadata.items[0]!.value.startsWith("ubuntu:ssh-ed25519 ")).toBe(true);
    expect(fake.state.calls.some((c) => c.call === "operation" && c.path.endsWith("/wait"))).toBe(true);

    expect(await p.get(launched.id)).toMatchObject({ id: launched.id, state: "running" });
    // A bare name is found across zones.
    expect((await p.get(req.name))?.id).toBe(launched.id);

    const other = await p.launch(gcpRequest({ pool: "elsewhere", zone: "us-central1-b" }));
    const listed = await p.list({ [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: "lifecycle" });
    expect(listed.map((i) => i.id)).toEqual([launched.id]);
    // The query's values are sanitised like the labels were.
    expect((await p.list({ [TAG_OPERATION]: "Op:Lifecycle/0001" })).map((i) => i.id)).toEqual([launched.id]);

    await p.terminate(launched.id);
    const stopping = await p.get(launched.id);
    expect(stopping === undefined || stopping.state === "stopping").toBe(true);
    await Bun.sleep(50);
    expect(await p.get(launched.id)).toBeUndefined();
    await p.terminate(other.id);
  });

  test("a launch retried after a lost answer reuses the requestId and creates one instance", async () => {
    const p = provider();
    const req = gcpRequest({ pool: "crash" });
    fake.inject({ kind: "lose_response", on: "launch", times: 1 });
    await expectProviderError(p.launch(req), "transient");
    const again = await p.launch(req);
    const named = fake.live().filter((i) => i.name === req.name);
    expect(named.length).toBe(1);
    expect(again.id).toBe(`us-central1-a/${req.name}`);
    const ids = [...fake.state.requestIds.keys()];
    expect(ids).toContain(requestIdFor(req.idempotencyKey, "us-central1-a"));
    await p.terminate(again.id);
  });

  test("after the requestId is forgotten, the name conflict adopts the existing instance", async () => {
    const p = provider();
    const req = gcpRequest({ pool: "adopt" });
    const first = await p.launch(req);
    fake.state.requestIds.clear();
    const again = await p.launch(req);
    expect(again.id).toBe(first.id);
    expect(fake.live().filter((i) => i.name === req.name).length).toBe(1);
    // Same name, different operation: refused rather than adopted.
    const clash = { ...gcpRequest({ pool: "adopt" }), name: req.name };
    await expectProviderError(p.launch(clash), "invalid");
    await p.terminate(first.id);
  });

  test("a stockout reported only in the operation surfaces as capacity", async () => {
    fake.inject({ kind: "capacity", on: "launch", instanceType: "a3-highgpu-8g", zone: "us-central1-a" });
    const err = await expectProviderError(provider().launch(gcpRequest()), "capacity");
    expect(err.message).toContain("ZONE_RESOURCE_POOL_EXHAUSTED");
    // The HTTP answer itself was 200: the error was in the operation.
    const insert = fake.state.calls.filter((c) => c.call === "launch").at(-1);
    expect(insert?.status).toBe(200);
    // Another zone still has room.
    const ok = await provider().launch(gcpRequest({ zone: "us-central1-b" }));
    await provider().terminate(ok.id);
  });

  test("quota in the operation → quota", async () => {
    fake.inject({ kind: "quota", on: "launch", times: 1 });
    const err = await expectProviderError(provider().launch(gcpRequest()), "quota");
    expect(err.message).toContain("QUOTA_EXCEEDED");
  });

  test("429 → rate_limit with Retry-After", async () => {
    fake.inject({ kind: "rate_limit", on: "list", retryAfterSeconds: 30, times: 1 });
    const err = await expectProviderError(provider().list({}), "rate_limit");
    expect(err.retryAfterSeconds).toBe(30);
  });

  test("5xx → transient; fail twice then succeed", async () => {
    const p = provider();
    fake.inject({ kind: "server_error", status: 503, on: "launch", times: 1 });
    fake.inject({ kind: "server_error", status: 502, on: "launch", times: 1 });
    const req = gcpRequest({ pool: "flaky" });
    await expectProviderError(p.launch(req), "transient");
    await expectProviderError(p.launch(req), "transient");
    // A failed poll of the operation is retried, not reported.
    fake.inject({ kind: "server_error", status: 503, on: "operation", times: 1 });
    const inst = await p.launch(req);
    expect(inst.state).toBe("running");
    expect(fake.state.calls.filter((c) => c.call === "operation" && c.status === 503).length).toBe(1);
    await p.terminate(inst.id);
  });

  test("an operation that outlives operationTimeoutMs is transient, and a retry picks it up", async () => {
    const slow = startGcpFake({ operationMs: 400, waitMaxMs: 50 });
    try {
      const p = new GcpProvider({ project: slow.project, credentials_env: TOKEN_ENV, base_url: slow.url }, fakeEnv({ [TOKEN_ENV]: slow.token }), {
        operationTimeoutMs: 120,
      });
      const req = gcpRequest({ pool: "slow" });
      const err = await expectProviderError(p.launch(req), "transient");
      expect(err.message).toContain("still RUNNING");
      await Bun.sleep(350);
      expect((await p.launch(req)).state).toBe("running");
      expect(slow.live().length).toBe(1);
    } finally {
      await slow.stop();
    }
  });

  test("a bad token → auth, and the token is in no message", async () => {
    const bad = "ya29.secret-bad-token-5e7f";
    const err = await expectProviderError(provider(bad).list({}), "auth");
    expect(err.message).not.toContain(bad);
    expect(err.message).toContain("UNAUTHENTICATED");
  });

  test("terminating an unknown or already-gone instance succeeds", async () => {
    const p = provider();
    await p.terminate("us-central1-a/nv-never-existed");
    await p.terminate("nv-never-existed-either");
    const inst = await p.launch(gcpRequest({ pool: "twice" }));
    await p.terminate(inst.id);
    await p.terminate(inst.id);
  });

  test("instanceTypes lists the GPU machine types once each", async () => {
    const types = await provider().instanceTypes();
    expect(types.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: "a2-highgpu-1g", gpus: 1, gpuModel: "nvidia-tesla-a100" },
      { name: "a3-highgpu-8g", gpus: 8, gpuModel: "nvidia-h100-80gb" },
      { name: "g2-standard-4", gpus: 1, gpuModel: "nvidia-l4" },
    ]);
  });

  test("list follows nextPageToken", async () => {
    const paged = startGcpFake({ pageSize: 2, operationMs: 0 });
    try {
      const p = new GcpProvider({ project: paged.project, credentials_env: TOKEN_ENV, base_url: paged.url }, fakeEnv({ [TOKEN_ENV]: paged.token }));
      const launched = await Promise.all([1, 2, 3, 4, 5].map(() => p.launch(gcpRequest({ pool: "paged" }))));
      const listed = await p.list({ [TAG_POOL]: "paged" });
      expect(listed.map((i) => i.id).sort()).toEqual(launched.map((i) => i.id).sort());
      expect(paged.state.calls.filter((c) => c.call === "list").length).toBe(3);
    } finally {
      await paged.stop();
    }
  });

  test("a service-account key is exchanged for a token; the private key is never in a message", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const clientEmail = "navarch@navarch-test.iam.gserviceaccount.com";
    const sa = startGcpFake({ serviceAccount: { clientEmail, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() }, operationMs: 0 });
    try {
      const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      const keyJson = {
        type: "service_account",
        project_id: sa.project,
        private_key_id: "k1",
        private_key: pem,
        client_email: clientEmail,
        token_uri: sa.tokenUri,
      };
      const file = join(tempDir(), "key.json");
      writeFileSync(file, JSON.stringify(keyJson));
      const p = new GcpProvider({ credentials_file: file, base_url: sa.url }, fakeEnv({}));
      const inst = await p.launch(gcpRequest({ pool: "sa" }));
      expect(inst.state).toBe("running");
      await p.list({});
      expect(sa.state.calls.filter((c) => c.call === "token").length).toBe(1);

      // The same key in an environment variable, but for an account the token endpoint refuses.
      const wrong = { ...keyJson, client_email: "intruder@elsewhere.iam.gserviceaccount.com" };
      const q = new GcpProvider({ project: sa.project, credentials_env: "GCP_KEY", base_url: sa.url }, fakeEnv({ GCP_KEY: JSON.stringify(wrong) }));
      const err = await expectProviderError(q.list({}), "auth");
      expect(err.message).toContain("invalid_grant");
      expect(err.message).not.toContain("PRIVATE KEY");
    } finally {
      await sa.stop();
    }
  });

  test("a zone outside the region, missing credentials or project are reported, not thrown as crashes", async () => {
    await expectProviderError(provider().launch(gcpRequest({ zone: "us-east1-b" })), "invalid");
    await expectProviderError(new GcpProvider({ project: "p-123456", base_url: fake.url }, fakeEnv({})).list({}), "auth");
    await expectProviderError(new GcpProvider({ credentials_env: TOKEN_ENV, base_url: fake.url }, fakeEnv({ [TOKEN_ENV]: "t" })).list({}), "invalid");
  });

  test("labels, request ids and synchronous Google errors", () => {
    expect(labelKey("Navarch Pool")).toBe("navarch_pool");
    expect(labelKey("9lives")).toBe("k-9lives");
    expect(labelValue("x".repeat(80)).length).toBe(63);
    expect(labelValue("x".repeat(80))).not.toBe(labelValue(`${"x".repeat(79)}y`));
    const id = requestIdFor("op-1", "us-central1-a");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(requestIdFor("op-1", "us-central1-a")).toBe(id);
    expect(requestIdFor("op-2", "us-central1-a")).not.toBe(id);
    expect(requestIdFor("op-1", "us-central1-b")).not.toBe(id);
    expect(requestIdFor("op-1", "us-central1-a", 1)).not.toBe(id);

    const failure = (status: number, reason: string, gstatus?: string) => ({
      status,
      body: { error: { code: status, message: "m", errors: [{ reason }], ...(gstatus === undefined ? {} : { status: gstatus }) } },
      text: "",
      method: "POST",
      path: "/x",
    });
    expect(mapGoogleError(failure(403, "quotaExceeded")).kind).toBe("quota");
    expect(mapGoogleError(failure(403, "rateLimitExceeded")).kind).toBe("rate_limit");
    expect(mapGoogleError(failure(403, "forbidden", "PERMISSION_DENIED")).kind).toBe("auth");
    expect(mapGoogleError(failure(404, "notFound")).kind).toBe("not_found");
    expect(mapGoogleError(failure(400, "invalid")).kind).toBe("invalid");
    expect(mapGoogleError(failure(503, "ZONE_RESOURCE_POOL_EXHAUSTED")).kind).toBe("capacity");
    expect(mapGoogleError(failure(500, "backendError")).kind).toBe("transient");
  });

  test("without zones, the region's zones come from the API and are tried in order on stockouts", async () => {
    const p = provider();
    const zonesCalls = () => fake.state.calls.filter((c) => c.call === "zones").length;
    const before = zonesCalls();
    const first = await p.launch(gcpRequest({ pool: "discover", zone: undefined }));
    // a3-highgpu-8g is offered in us-central1-a and -b; -f offers none of the fake's types.
    expect(first.zone).toBe("us-central1-a");
    fake.inject({ kind: "capacity", on: "launch", zone: "us-central1-a", times: 1 });
    const second = await p.launch(gcpRequest({ pool: "discover", zone: undefined }));
    expect(second.zone).toBe("us-central1-b");
    // The zones were listed once and reused.
    expect(zonesCalls() - before).toBe(1);

    fake.inject({ kind: "capacity", on: "launch", instanceType: "a3-highgpu-8g" });
    const err = await expectProviderError(p.launch(gcpRequest({ pool: "discover", zone: undefined })), "capacity");
    expect(err.message).toContain("us-central1-a");
    expect(err.message).toContain("us-central1-b");
    expect(err.message).toContain("ZONE_RESOURCE_POOL_EXHAUSTED");
    fake.clearFaults();
    await Promise.all([first, second].map((i) => p.terminate(i.id)));
  });

  test("the pool's own zones are tried in their order on stockouts, with no discovery", async () => {
    const p = provider();
    const zonesCalls = () => fake.state.calls.filter((c) => c.call === "zones").length;
    const before = zonesCalls();
    fake.inject({ kind: "capacity", on: "launch", zone: "us-central1-b", times: 1 });
    const placed = await p.launch(gcpRequest({ pool: "configured", zone: "us-central1-b", zones: ["us-central1-b", "us-central1-a"] }));
    expect(placed.zone).toBe("us-central1-a");
    expect(zonesCalls()).toBe(before);
    await expectProviderError(p.launch(gcpRequest({ pool: "configured", zone: "us-central1-b", zones: ["us-central1-b", "europe-west4-a"] })), "invalid");
    fake.clearFaults();
    await p.terminate(placed.id);
  });

  test("zone discovery skips zones that are DOWN, refuses regions and types it cannot place, and expires", async () => {
    const zoned = startGcpFake({ operationMs: 0, zones: [{ name: "us-central1-a", status: "DOWN" }, { name: "us-central1-b" }, { name: "us-east1-b" }] });
    try {
      let now = Date.now();
      const p = new GcpProvider({ project: zoned.project, credentials_env: TOKEN_ENV, base_url: zoned.url }, fakeEnv({ [TOKEN_ENV]: zoned.token }), {
        zoneCacheMs: 60_000,
        now: () => now,
      });
      expect((await p.launch(gcpRequest({ pool: "down", zone: undefined }))).zone).toBe("us-central1-b");
      const noRegion = await expectProviderError(p.launch(gcpRequest({ pool: "down", zone: undefined, region: "mars-north1" })), "invalid");
      expect(noRegion.message).toContain("mars-north1");
      const noType = await expectProviderError(p.launch(gcpRequest({ pool: "down", zone: undefined, instanceType: "a2-highgpu-1g" })), "invalid");
      expect(noType.message).toContain("a2-highgpu-1g");
      const listed = zoned.state.calls.filter((c) => c.call === "zones").length;
      await p.launch(gcpRequest({ pool: "down", zone: undefined }));
      expect(zoned.state.calls.filter((c) => c.call === "zones").length).toBe(listed);
      now += 61_000;
      await p.launch(gcpRequest({ pool: "down", zone: undefined }));
      expect(zoned.state.calls.filter((c) => c.call === "zones").length).toBe(listed + 1);
    } finally {
      await zoned.stop();
    }
  });

  test("after a stockout, the same operation key tries again for real (a new requestId), also after a restart", async () => {
    const req = gcpRequest({ pool: "stockout" });
    fake.inject({ kind: "capacity", on: "launch", zone: "us-central1-a", times: 2 });
    await expectProviderError(provider().launch(req), "capacity");
    // A new process: the insert replays the failed operation first, then moves on.
    await expectProviderError(provider().launch(req), "capacity");
    const p = provider();
    const inst = await p.launch(req);
    expect(inst.zone).toBe("us-central1-a");
    expect(fake.live().filter((i) => i.name === req.name).length).toBe(1);
    await p.terminate(inst.id);
  });

  test("a retry after a crash adopts what an earlier attempt created in another zone", async () => {
    const req = gcpRequest({ pool: "crash-zones", zone: undefined });
    fake.inject({ kind: "capacity", on: "launch", zone: "us-central1-a", times: 1 });
    fake.inject({ kind: "lose_response", on: "launch", zone: "us-central1-b", times: 1 });
    await expectProviderError(provider().launch(req), "transient");
    // A fresh provider (the reconciler restarted): us-central1-a has room again, but the instance exists in -b.
    const again = await provider().launch(req);
    expect(again.zone).toBe("us-central1-b");
    expect(fake.live().filter((i) => i.name === req.name).length).toBe(1);
    await provider().terminate(again.id);
  });

  test("reboot: reset for a running instance, start for a stopped one; gone → not_found", async () => {
    const p = provider();
    const inst = await p.launch(gcpRequest({ pool: "reboot" }));
    await p.reboot(inst.id);
    const stored = fake.state.instances.get(inst.id)!;
    expect(stored.boots).toBe(2);
    expect(fake.state.calls.some((c) => c.call === "reboot" && c.path.endsWith(`/instances/${inst.name}/reset`) && c.status === 200)).toBe(true);
    expect((await p.get(inst.id))?.state).toBe("running");
    // A bare name is found across zones; a stopped (TERMINATED) instance is started.
    stored.stopped = true;
    expect((await p.get(inst.name))?.state).toBe("stopping");
    await p.reboot(inst.name);
    expect(stored.boots).toBe(3);
    expect(fake.state.calls.some((c) => c.path.endsWith(`/instances/${inst.name}/start`) && c.status === 200)).toBe(true);
    expect((await p.get(inst.id))?.state).toBe("running");

    fake.inject({ kind: "rate_limit", on: "reboot", retryAfterSeconds: 4, times: 1 });
    expect((await expectProviderError(p.reboot(inst.id), "rate_limit")).retryAfterSeconds).toBe(4);
    await p.terminate(inst.id);
    await Bun.sleep(50);
    await expectProviderError(p.reboot(inst.id), "not_found");
    await expectProviderError(provider("ya29.wrong").reboot(inst.id), "auth");
  });
});
