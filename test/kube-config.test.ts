// The `kubernetes:` config section and the client's lanes, without a cluster.
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../reconciler/config/load.ts";
import { configToYaml } from "../reconciler/config/print.ts";
import { Slots, TokenBucket } from "../reconciler/clients/kube/client.ts";
import { kubeSource } from "../reconciler/schedulers/kubernetes/index.ts";
import { providerIdMatches } from "../reconciler/schedulers/kubernetes/node-mapping.ts";

const parse = (kube: string) => parseConfig(`kubernetes:\n${kube}`, "test.yaml");

describe("kubernetes config", () => {
  test("defaults", () => {
    const r = parse("  kubeconfig: /etc/navarch/kubeconfig\n");
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.config.kubernetes).toEqual({
      kubeconfig: "/etc/navarch/kubeconfig",
      in_cluster: false,
      node_mapping: "node_name",
      node_label: "navarch.dev/node-id",
      taint_key: "navarch.dev/unhealthy",
      condition_type: "GpuHealthy",
      client: { cordon_qps: 100, cordon_burst: 200, eviction_qps: 20, eviction_burst: 40, qps: 50, burst: 100 },
      drain: { delete_emptydir_data: false, on_deadline: "delete", unreachable_after: 60_000, max_backoff: 30_000 },
      pools_crd: { enabled: false, namespace: "navarch" },
      queue_metrics: { enabled: true },
    });
    // Round trip through `navarch config check`'s printer.
    const again = parseConfig(configToYaml(r.config), "again.yaml");
    expect(again.ok && again.config.kubernetes).toEqual(r.config.kubernetes!);
  });

  test("every problem with its path", () => {
    const r = parse(
      "  kubeconfig: a\n  in_cluster: true\n  server: https://k8s.example:6443\n  node_mapping: hostname\n  drain:\n    on_deadline: wait\n    grace_period: soon\n  client:\n    cordon_qps: 0\n",
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p.message]));
    expect(byPath["kubernetes.in_cluster"]).toBe("set kubeconfig or in_cluster, not both");
    expect(byPath["kubernetes.server"]).toContain("only one");
    expect(byPath["kubernetes.token_env"]).toContain("is required when server is set");
    expect(byPath["kubernetes.node_mapping"]).toContain('unknown node mapping rule "hostname"');
    expect(byPath["kubernetes.drain.on_deadline"]).toContain('unknown deadline behaviour "wait"');
    expect(byPath["kubernetes.drain.grace_period"]).toContain("expected a duration");
    expect(byPath["kubernetes.client.cordon_qps"]).toContain("requests per second");
  });

  test("a bearer token comes from the variable the config names", () => {
    const r = parse("  server: https://k8s.example:6443\n  token_env: NAVARCH_KUBE_TOKEN\n");
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(kubeSource(r.config.kubernetes!, (n) => (n === "NAVARCH_KUBE_TOKEN" ? "s3cret" : undefined))).toEqual({
      kind: "token",
      server: "https://k8s.example:6443",
      token: "s3cret",
    });
    expect(() => kubeSource(r.config.kubernetes!, () => undefined)).toThrow("$NAVARCH_KUBE_TOKEN is not set");
  });
});

describe("client lanes", () => {
  test("a lane's token bucket: a burst goes at once, then the rate", async () => {
    const bucket = new TokenBucket({ qps: 50, burst: 5 });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 10 }, () => bucket.take()));
    const took = performance.now() - t0;
    // 5 at once, 5 more at 50/s ≈ 100 ms.
    expect(took).toBeGreaterThan(80);
    expect(took).toBeLessThan(400);
  });

  test("lanes are separate: a full eviction lane does not delay the cordon lane", async () => {
    const eviction = new TokenBucket({ qps: 5, burst: 1 });
    const cordon = new TokenBucket({ qps: 100, burst: 10 });
    const queued = Array.from({ length: 20 }, () => eviction.take()); // 4 s of evictions queued
    const t0 = performance.now();
    await cordon.take();
    expect(performance.now() - t0).toBeLessThan(20);
    expect(eviction.queued).toBeGreaterThan(10);
    void Promise.all(queued);
  });

  test("a lane's cap on requests in flight: the next waits for a slot, first come first served", async () => {
    const slots = new Slots(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const next = (name: string) =>
      slots.acquire().then((release) => {
        order.push(name);
        return release;
      });
    const c = next("c");
    const d = next("d");
    await Bun.sleep(5);
    expect(order).toEqual([]);
    expect(slots.queued).toBe(2);
    a();
    a(); // a second release of the same slot frees nothing more
    await Bun.sleep(5);
    expect(order).toEqual(["c"]);
    b();
    (await d)();
    (await c)();
    expect(order).toEqual(["c", "d"]);
    // All four given back: two at once again.
    await Promise.all([slots.acquire(), slots.acquire()]);
    expect(slots.queued).toBe(0);
  });

  test("providerID matching", () => {
    expect(providerIdMatches("aws:///us-east-1a/i-0abc", "i-0abc")).toBe(true);
    expect(providerIdMatches("gce://proj/us-central1-a/gpu-1", "gpu-1")).toBe(true);
    expect(providerIdMatches("aws:///us-east-1a/i-0abcd", "i-0abc")).toBe(false);
    expect(providerIdMatches(undefined, "x")).toBe(false);
  });
});
