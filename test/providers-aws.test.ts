// AwsProvider (through @aws-sdk/client-ec2) against the fake EC2 query API
// (test/fake-clouds/aws.ts): SigV4-signed form POSTs, XML answers.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { AwsProvider, clientTokenFor, mapAwsError, type AwsProviderOptions } from "../reconciler/providers/aws.ts";
import { TAG_MANAGED_BY, TAG_POOL } from "../reconciler/providers/provider.ts";
import { startAwsFake, type AwsFake } from "./fake-clouds/aws.ts";
import { expectProviderError, fakeEnv, launchRequest } from "./fake-clouds/support.ts";

let fake: AwsFake;
const ID_ENV = "NAVARCH_AWS_KEY_ID";
const SECRET_ENV = "NAVARCH_AWS_SECRET";

function provider(secret = fake.secretAccessKey, options: AwsProviderOptions = {}, keyId = fake.accessKeyId): AwsProvider {
  return new AwsProvider(
    { region: "us-east-1", access_key_id_env: ID_ENV, secret_access_key_env: SECRET_ENV, endpoint: fake.url },
    fakeEnv({ [ID_ENV]: keyId, [SECRET_ENV]: secret }),
    { timeoutMs: 2000, ...options },
  );
}

function awsRequest(overrides: Parameters<typeof launchRequest>[0] = {}) {
  return launchRequest({ instanceType: "p5.48xlarge", region: "us-east-1", zone: "us-east-1b", ...overrides });
}

beforeAll(() => {
  fake = startAwsFake({ endpoint: (n) => ({ address: "127.0.0.1", sshPort: 24000 + n }) });
});
afterAll(async () => {
  await fake.stop();
});
afterEach(() => {
  fake.clearFaults();
});

describe("AwsProvider", () => {
  test("launch → get → list by tags → terminate → get says terminated", async () => {
    const p = provider();
    const req = awsRequest({ pool: "lifecycle" });
    const launched = await p.launch(req);
    expect(launched).toMatchObject({ name: req.name, provider: "aws", instanceType: "p5.48xlarge", region: "us-east-1", zone: "us-east-1b", state: "pending" });
    expect(launched.id).toMatch(/^us-east-1\/i-[0-9a-f]+$/);
    expect(launched.tags).toEqual({ Name: req.name, ...req.tags });

    const run = fake.state.runs.at(-1)!;
    expect(run.ClientToken).toBe(req.idempotencyKey);
    expect(run.MinCount).toBe("1");
    expect(Buffer.from(run.UserData!, "base64").toString()).toContain("ssh-ed25519 ");
    expect(fake.state.instances.get(launched.id.split("/")[1]!)?.sshPort).toBeGreaterThan(24000);

    const got = await p.get(launched.id);
    expect(got).toMatchObject({ id: launched.id, state: "running", address: "127.0.0.1" });
    expect(got?.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    // A bare instance id is found in the known regions.
    expect((await p.get(launched.id.split("/")[1]!))?.id).toBe(launched.id);

    const other = await p.launch(awsRequest({ pool: "other" }));
    const listed = await p.list({ [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: "lifecycle" });
    expect(listed.map((i) => i.id)).toEqual([launched.id]);

    await p.terminate(launched.id);
    expect((await p.get(launched.id))?.state).toBe("terminated");
    expect(await p.list({ [TAG_POOL]: "lifecycle" })).toEqual([]);
    await p.terminate(other.id);
  });

  test("a launch retried after a lost answer returns the same instance (ClientToken)", async () => {
    const p = provider();
    const req = awsRequest({ pool: "crash" });
    fake.inject({ kind: "lose_response", on: "launch", times: 1 });
    await expectProviderError(p.launch(req), "transient");
    const again = await p.launch(req);
    const tagged = fake.live().filter((i) => i.tags.get("Name") === req.name);
    expect(tagged.length).toBe(1);
    expect(again.id).toBe(`us-east-1/${tagged[0]!.instanceId}`);
    // The same key with other parameters is refused, not silently adopted.
    const err = await expectProviderError(p.launch({ ...req, instanceType: "p4d.24xlarge" }), "invalid");
    expect(err.message).toContain("IdempotentParameterMismatch");
    await p.terminate(again.id);
  });

  test("launches in another region are listed and found there", async () => {
    const p = provider();
    const inst = await p.launch(awsRequest({ pool: "west", region: "us-west-2", zone: "us-west-2a" }));
    expect(inst.id.startsWith("us-west-2/")).toBe(true);
    expect((await p.list({ [TAG_POOL]: "west" })).map((i) => i.id)).toEqual([inst.id]);
    // A fresh provider that only knows us-east-1 does not see it, unless told the region.
    expect(await provider().list({ [TAG_POOL]: "west" })).toEqual([]);
    expect((await provider(undefined, { regions: ["us-west-2"] }).list({ [TAG_POOL]: "west" })).length).toBe(1);
    await p.terminate(inst.id);
  });

  test("tag values with EC2 wildcard characters match literally", async () => {
    const p = provider();
    const star = await p.launch(awsRequest({ pool: "wild", tags: { team: "ml*" } }));
    const plain = await p.launch(awsRequest({ pool: "wild", tags: { team: "ml-infra" } }));
    expect((await p.list({ team: "ml*" })).map((i) => i.id)).toEqual([star.id]);
    expect((await p.list({ [TAG_POOL]: "wild" })).length).toBe(2);
    await Promise.all([p.terminate(star.id), p.terminate(plain.id)]);
  });

  test("InsufficientInstanceCapacity → capacity", async () => {
    fake.inject({ kind: "capacity", on: "launch", instanceType: "p5.48xlarge", zone: "us-east-1b" });
    const err = await expectProviderError(provider().launch(awsRequest()), "capacity");
    expect(err.message).toContain("InsufficientInstanceCapacity");
  });

  test("VcpuLimitExceeded and InstanceLimitExceeded → quota", async () => {
    fake.inject({ kind: "quota", on: "launch", times: 1 });
    await expectProviderError(provider().launch(awsRequest()), "quota");
    fake.inject({ kind: "quota", code: "InstanceLimitExceeded", on: "launch", times: 1 });
    await expectProviderError(provider().launch(awsRequest()), "quota");
  });

  test("RequestLimitExceeded → rate_limit, with Retry-After when sent", async () => {
    fake.inject({ kind: "rate_limit", on: "list", retryAfterSeconds: 4, times: 1 });
    const err = await expectProviderError(provider().list({}), "rate_limit");
    expect(err.retryAfterSeconds).toBe(4);
  });

  test("5xx → transient; fail twice then succeed", async () => {
    const p = provider();
    fake.inject({ kind: "server_error", on: "list", times: 1 });
    fake.inject({ kind: "server_error", status: 503, on: "list", times: 1 });
    await expectProviderError(p.list({}), "transient");
    await expectProviderError(p.list({}), "transient");
    expect(Array.isArray(await p.list({}))).toBe(true);
  });

  test("a wrong secret → auth, and neither secret nor key id is in the message", async () => {
    const wrongSecret = "Wrong/Secret+Key9876543210abcdefghijklmn";
    const err = await expectProviderError(provider(wrongSecret).list({}), "auth");
    expect(err.message).toContain("SignatureDoesNotMatch");
    expect(err.message).not.toContain(wrongSecret);
    expect(err.message).not.toContain(fake.accessKeyId);

    const unknownId = "AKIAUNKNOWNKEY000000";
    const err2 = await expectProviderError(provider(undefined, {}, unknownId).list({}), "auth");
    expect(err2.message).toContain("AuthFailure");
    expect(err2.message).not.toContain(unknownId);

    const none = new AwsProvider({ region: "us-east-1", endpoint: fake.url }, fakeEnv({}));
    const err3 = await expectProviderError(none.list({}), "auth");
    expect(err3.message).toContain("AWS_ACCESS_KEY_ID");
  });

  test("the default variable names are used when the config names none", async () => {
    const p = new AwsProvider(
      { region: "us-east-1", endpoint: fake.url },
      fakeEnv({ AWS_ACCESS_KEY_ID: fake.accessKeyId, AWS_SECRET_ACCESS_KEY: fake.secretAccessKey }),
    );
    expect(Array.isArray(await p.list({ [TAG_POOL]: "none" }))).toBe(true);
  });

  test("terminating an unknown or already-gone instance succeeds", async () => {
    const p = provider();
    await p.terminate("us-east-1/i-0123456789abcdef0");
    await p.terminate("i-0123456789abcdef0");
    const inst = await p.launch(awsRequest({ pool: "twice" }));
    await p.terminate(inst.id);
    await p.terminate(inst.id);
    expect(await p.get("us-east-1/i-0123456789abcdef0")).toBeUndefined();
  });

  test("instanceTypes pages through DescribeInstanceTypes and keeps GPU types", async () => {
    const types = await provider().instanceTypes();
    expect(types).toEqual([
      { name: "p5.48xlarge", gpus: 8, gpuModel: "NVIDIA H100" },
      { name: "p4d.24xlarge", gpus: 8, gpuModel: "NVIDIA A100" },
      { name: "g5.xlarge", gpus: 1, gpuModel: "NVIDIA A10G" },
    ]);
  });

  test("a timeout is transient", async () => {
    fake.inject({ kind: "latency", ms: 500, on: "list", times: 1 });
    await expectProviderError(provider(undefined, { timeoutMs: 100 }).list({}), "transient");
  });

  test("client tokens and SDK error mapping", () => {
    expect(clientTokenFor("op-123")).toBe("op-123");
    const long = "x".repeat(65);
    expect(clientTokenFor(long)).toMatch(/^[0-9a-f]{64}$/);
    expect(clientTokenFor("ünïcode")).toMatch(/^[0-9a-f]{64}$/);
    const sdkError = (name: string, status?: number) =>
      Object.assign(new Error("m"), { name, ...(status === undefined ? {} : { $metadata: { httpStatusCode: status } }) });
    expect(mapAwsError(sdkError("UnauthorizedOperation", 403), "x", []).kind).toBe("auth");
    expect(mapAwsError(sdkError("InvalidInstanceID.NotFound", 400), "x", []).kind).toBe("not_found");
    expect(mapAwsError(sdkError("InvalidAMIID.NotFound", 400), "x", []).kind).toBe("invalid");
    expect(mapAwsError(sdkError("SomethingNew", 503), "x", []).kind).toBe("transient");
    expect(mapAwsError(sdkError("ECONNREFUSED"), "x", []).kind).toBe("transient");
    expect(mapAwsError(sdkError("AuthFailure", 401), "secret in x", ["secret"]).message).not.toContain("secret");
  });

  test("ClientToken: a failed RunInstances keeps no token; a retry in another AZ returns the original", async () => {
    const p = provider();
    const req = awsRequest({ pool: "token" });
    fake.inject({ kind: "capacity", on: "launch", zone: "us-east-1b", times: 1 });
    await expectProviderError(p.launch(req), "capacity");
    // The same key launches for real once capacity is back.
    const inst = await p.launch(req);
    expect(fake.state.runs.filter((r) => r.ClientToken === req.idempotencyKey).length).toBe(1);
    // EC2 does not count the Availability Zone as a changed parameter: the original comes back.
    const again = await p.launch({ ...req, zone: "us-east-1c" });
    expect(again.id).toBe(inst.id);
    expect(again.zone).toBe("us-east-1b");
    // Still the original after it terminated (the token outlives the instance).
    await p.terminate(inst.id);
    expect((await p.launch(req)).id).toBe(inst.id);
  });

  test("reboot: RebootInstances for a running instance; terminated or unknown → not_found", async () => {
    const p = provider();
    const inst = await p.launch(awsRequest({ pool: "reboot" }));
    const instanceId = inst.id.split("/")[1]!;
    await p.reboot(inst.id);
    expect(fake.state.instances.get(instanceId)?.boots).toBe(2);
    expect(fake.state.calls.filter((c) => c.path === "/?Action=RebootInstances").at(-1)?.status).toBe(200);
    // A bare instance id is found in the known regions.
    await p.reboot(instanceId);
    expect(fake.state.instances.get(instanceId)?.boots).toBe(3);

    fake.inject({ kind: "rate_limit", on: "reboot", retryAfterSeconds: 2, times: 1 });
    expect((await expectProviderError(p.reboot(inst.id), "rate_limit")).retryAfterSeconds).toBe(2);
    await expectProviderError(provider("Wrong/Secret+Key9876543210abcdefghijklmn").reboot(inst.id), "auth");

    // A stopped instance cannot be rebooted.
    fake.state.instances.get(instanceId)!.state = "stopped";
    const stopped = await expectProviderError(p.reboot(inst.id), "invalid");
    expect(stopped.message).toContain("IncorrectInstanceState");
    fake.state.instances.get(instanceId)!.state = "running";

    await p.terminate(inst.id);
    await expectProviderError(p.reboot(inst.id), "not_found");
    await expectProviderError(p.reboot("us-east-1/i-0123456789abcdef0"), "not_found");
    expect(fake.state.instances.get(instanceId)?.boots).toBe(3);
  });
});
