// A cloud provider's API that hangs, under a running Navarch: the compiled `navarch serve`
// with a Lambda pool on the Lambda fake (test/fake-clouds/lambda.ts, Lambda's OpenAPI document
// 1.8.3) whose launch call never answers, beside a local pool of compiled agents. What the
// issue saw: an Xid 79 in the local pool took 24.5 s to be cordoned, and another node's
// validation waited 30 s, because provider calls sat on the loop's critical path until their
// timeout. Now they run beside the loop: the hanging provider delays only its own pool.
import { afterAll, describe, expect, test } from "bun:test";
import { startLambdaFake } from "./fake-clouds/lambda.ts";
import { ServedFleet } from "./faults/served.ts";
import { waitFor } from "./support.ts";

const OPERATOR_KEY = { name: "navarch-ops", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyRegisteredWithLambda000000000000" };
const fake = startLambdaFake({ sshKeys: [OPERATOR_KEY] });
let fleet: ServedFleet | undefined;

afterAll(async () => {
  await fleet?.stop();
  await fake.stop();
});

describe("a provider whose launch call hangs", () => {
  test("delays only its own pool: the local pool comes up, an Xid 79 there is quarantined in its usual time, SIGTERM stops serve", async () => {
    fake.inject({ kind: "latency", ms: 10 * 60_000, on: "launch" });
    const f = (fleet = await ServedFleet.create({
      providers: `  lambda:\n    api_key_env: LAMBDA_KEY\n    base_url: ${fake.url}\n    ssh_key_names: [${OPERATOR_KEY.name}]\n`,
      pools: `  - name: lam\n    provider: lambda\n    instance_type: gpu_8x_h100_sxm5\n    region: us-west-2\n    scaling:\n      min_nodes: 1\n      max_nodes: 1\n`,
      env: { LAMBDA_KEY: fake.apiKey },
    }));
    const started = performance.now();
    await f.start();
    const [a, b] = await f.ready(2, 30_000);
    const upMs = performance.now() - started;
    console.log(`with Lambda's launch call hanging, the local pool was ready (validated) in ${Math.round(upMs)} ms`);
    expect(upMs).toBeLessThan(15_000);
    const lam = await waitFor("the Lambda node waiting for its launch call", async () =>
      (await f.nodes()).find((n) => n.id.startsWith("lam-") && n.stateReason?.includes("launch call to lambda under way")),
    );
    expect(lam.state).toBe("requested");

    // The issue measured 24.5 s; a fault is quarantined in its usual time, twice over.
    for (const id of [a!, b!]) {
      const ms = await f.xid(id);
      console.log(`Xid 79 on ${id} → out of service: ${Math.round(ms)} ms, while Lambda's launch hangs`);
      expect(ms).toBeLessThan(5_000);
    }
    const dep = await f.dependency("provider:lambda");
    expect(dep?.queued).toContainEqual(expect.objectContaining({ action: "launch", node: lam.id }));
    // The launch call is still under way (its HTTP request times out after 30 s, then the pool backs off).
    expect((await f.node(lam.id))?.state).toBe("requested");

    const stop = await f.signal("SIGTERM");
    console.log(`SIGTERM with a launch call hanging: exited ${stop.code} in ${Math.round(stop.ms)} ms`);
    expect(stop).toMatchObject({ code: 0 });
    expect(stop.ms).toBeLessThan(5_000);
    expect(f.log()).toContain("navarch: stopped");
    expect(f.leaseFlaps()).toEqual([]);
  }, 120_000);
});
