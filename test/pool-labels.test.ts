// A pool's `labels` are tags on the instances Navarch launches for it (where the provider has
// tags; Lambda's and GCP's are made to fit their rules, tested with their fakes), and labels on
// its Kubernetes Nodes (test/kube.test.ts). Navarch's own tags win a clash: the inventory finds
// its machines by them.
import { afterEach, describe, expect, test } from "bun:test";
import { TAG_MANAGED_BY, TAG_POOL } from "../reconciler/providers/provider.ts";
import { FAST_SERVER, closeFleets, fleet, pool } from "./fleet-harness.ts";

afterEach(closeFleets);

describe("a pool's labels", () => {
  test("become tags of every instance launched for it; Navarch's own tags win a clash", async () => {
    const f = await fleet(
      `${FAST_SERVER}pools:\n${pool("tagged", 2, 2, "    labels:\n      workload: training\n      cluster: prod\n      navarch-pool: not-this\n")}`,
    );
    await f.until(async () => (await f.all()).filter((n) => n.instanceName !== null).length === 2);
    for (const n of await f.all()) {
      const instance = await f.cloud.get(n.instanceName!);
      expect(instance?.tags).toMatchObject({ workload: "training", cluster: "prod", [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: "tagged" });
    }
  });
});
