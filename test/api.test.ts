// The /v1 agent API against a real reconciler on loopback with a real libSQL file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { MAX_BODY_BYTES, type HealthEvent, type RegisterRequest } from "../schema/wire.ts";
import { seed } from "../bench/reconciler.ts";
import { BUN, REPO_ROOT, tempDir } from "./support.ts";

let rec: Reconciler;
const dataDir = join(tempDir(), "data");

beforeAll(async () => {
  process.env.NAVARCH_TEST_TOKEN = "test-token";
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_TEST_TOKEN",
      heartbeatIntervalSeconds: 7,
    },
    () => undefined,
  );
});
afterAll(() => rec.stop());

function call(path: string, body: unknown, token: string | null = "test-token", method = "POST") {
  return fetch(`${rec.url}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    ...(method === "GET" ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
}

const registration: RegisterRequest = {
  nodeId: "node-a",
  pool: "training",
  hostname: "host-a",
  bootId: "boot-1",
  agentVersion: "0.1.0",
  spoolId: "6f1c2a7e-0d5b-4c53-9a51-2f7f0f3c9b10",
  driverVersion: "570.86.15",
  cudaVersion: "12.8",
  nvml: { available: true, libraryPath: "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1" },
  gpus: [
    { index: 0, uuid: "GPU-aaaa", pciBusId: "00000000:3B:00.0", name: "NVIDIA H100 80GB HBM3", memoryTotalBytes: 85899345920 },
    { index: 1, uuid: "GPU-bbbb", pciBusId: "00000000:86:00.0", name: "NVIDIA H100 80GB HBM3" },
  ],
};

function event(seq: number, over: Partial<HealthEvent> = {}): HealthEvent {
  return {
    seq,
    time: new Date().toISOString(),
    bootId: "boot-1",
    check: "xid",
    code: "79",
    severity: "unhealthy",
    action: "replace",
    gpu: { index: 1, uuid: "GPU-bbbb", pciBusId: "00000000:86:00.0" },
    message: "GPU has fallen off the bus",
    ...over,
  };
}

describe("agent API", () => {
  test("probes and /metrics answer without a token (server.metrics_auth: none, the default)", async () => {
    expect((await fetch(`${rec.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${rec.url}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await fetch(`${rec.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("navarch_nodes_total");
  });

  test("no token or a wrong one is 401", async () => {
    expect((await call("/v1/register", registration, null)).status).toBe(401);
    const wrong = await call("/v1/register", registration, "nope");
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: string }).error).toContain("NAVARCH_AUTH_TOKEN");
  });

  test("register stores the node and its GPUs", async () => {
    const res = await call("/v1/register", registration);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ nodeId: "node-a", heartbeatIntervalSeconds: 7, lastEventSeq: 0, sameSpool: false });
    const detail = (await (await call("/v1/nodes/node-a", undefined, "test-token", "GET")).json()) as {
      node: { state: string; driverVersion: string; pool: string };
      gpus: { uuid: string; pciBusId: string }[];
    };
    expect(detail.node.state).toBe("validating");
    expect(detail.node.driverVersion).toBe("570.86.15");
    expect(detail.gpus.map((g) => g.uuid)).toEqual(["GPU-aaaa", "GPU-bbbb"]);
  });

  test("a bad payload is 400 with every failing field path", async () => {
    const res = await call("/v1/register", {
      ...registration,
      nodeId: "bad id!",
      gpus: [{ index: -1, uuid: "x", pciBusId: "y", name: "z" }],
      extra: true,
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { issues: { path: string }[] };
    const paths = body.issues.map((i) => i.path);
    expect(paths).toContain("nodeId");
    expect(paths).toContain("gpus[0].index");
    expect(paths).toContain("extra");
  });

  test("a body that is not JSON is 400", async () => {
    const res = await call("/v1/heartbeat", "{not json");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toContain("not valid JSON");
  });

  test("an oversize body is refused with 413", async () => {
    const res = await call("/v1/register", { ...registration, hostname: "x".repeat(MAX_BODY_BYTES + 10) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toBe(`request body over ${MAX_BODY_BYTES} bytes`);
  });

  test("an oversize chunked body (no Content-Length) is counted and refused with 413 too", async () => {
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > MAX_BODY_BYTES + chunk.length) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${rec.url}/v1/register`, {
      method: "POST",
      body,
      headers: { Authorization: "Bearer test-token", "Content-Type": "application/json" },
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toBe(`request body over ${MAX_BODY_BYTES} bytes`);
  });

  test("a chunked body under the limit is read whole", async () => {
    const text = JSON.stringify(registration);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const bytes = new TextEncoder().encode(text);
        controller.enqueue(bytes.subarray(0, 10));
        controller.enqueue(bytes.subarray(10));
        controller.close();
      },
    });
    const res = await fetch(`${rec.url}/v1/register`, {
      method: "POST",
      body,
      headers: { Authorization: "Bearer test-token", "Content-Type": "application/json" },
    });
    expect(res.status).toBe(200);
  });

  test("heartbeat updates readings; an unknown node is told to register", async () => {
    const hb = {
      nodeId: "node-a",
      bootId: "boot-1",
      sentAt: new Date().toISOString(),
      nvml: { available: true },
      health: { checked: true, worst: "healthy", openIncidents: 0 },
      gpus: [{ index: 0, temperatureC: 61, powerW: 412.5, utilizationPct: 97 }],
    };
    expect((await call("/v1/heartbeat", hb)).status).toBe(200);
    const detail = (await (await call("/v1/nodes/node-a", undefined, "test-token", "GET")).json()) as {
      gpus: { lastSnapshot: { temperatureC: number } | null }[];
    };
    expect(detail.gpus[0]?.lastSnapshot?.temperatureC).toBe(61);
    const unknown = await call("/v1/heartbeat", { ...hb, nodeId: "ghost" });
    expect(unknown.status).toBe(404);
  });

  test("events are stored once: resends are dropped by seq, order is enforced", async () => {
    const first = await call("/v1/events", { nodeId: "node-a", events: [event(1), event(2)] });
    expect(await first.json()).toEqual({ ackedSeq: 2, stored: 2 });
    const resend = await call("/v1/events", { nodeId: "node-a", events: [event(2), event(3)] });
    expect(await resend.json()).toEqual({ ackedSeq: 3, stored: 1 });
    const disorder = await call("/v1/events", { nodeId: "node-a", events: [event(5), event(4)] });
    expect(disorder.status).toBe(400);
    const badSeverity = await call("/v1/events", { nodeId: "node-a", events: [event(6, { severity: "fine" as never })] });
    expect(badSeverity.status).toBe(400);
    expect(((await badSeverity.json()) as { issues: { path: string }[] }).issues[0]?.path).toBe("events[0].severity");
    // Re-registering tells the agent where the reconciler's log ends.
    const again = await call("/v1/register", registration);
    expect(await again.json()).toMatchObject({ lastEventSeq: 3, sameSpool: true });
    const otherSpool = await call("/v1/register", { ...registration, spoolId: "0e2b7a3c-8f61-4d2e-b1a4-5c9d7e8f0a12" });
    expect(await otherSpool.json()).toMatchObject({ lastEventSeq: 3, sameSpool: false });
    const detail = (await (await call("/v1/nodes/node-a", undefined, "test-token", "GET")).json()) as {
      events: { seq: number; code: string; gpuUuid: string }[];
    };
    expect(detail.events.map((e) => e.seq)).toEqual([3, 2, 1]);
    expect(detail.events[0]?.gpuUuid).toBe("GPU-bbbb");
  });
});

describe("GET /v1/nodes at size: filtered and paged on the server", () => {
  test("2,345 nodes come in pages of at most 1,000, each once, in id order; filters apply before paging", async () => {
    await seed(rec.store, 2345, Date.now());
    const page = async (query: string) => {
      const res = await call(`/v1/nodes?${query}`, undefined, "test-token", "GET");
      expect(res.status).toBe(200);
      return (await res.json()) as { nodes: { id: string; pool: string | null }[]; next: string | null };
    };
    const ids: string[] = [];
    const sizes: number[] = [];
    for (let after: string | null = ""; after !== null; ) {
      const p = await page(`pool=bench${after === "" ? "" : `&after=${after}`}`);
      sizes.push(p.nodes.length);
      ids.push(...p.nodes.map((n) => n.id));
      after = p.next;
    }
    expect(sizes).toEqual([1000, 1000, 345]);
    expect(new Set(ids).size).toBe(2345);
    expect([...ids].sort()).toEqual(ids);
    const small = await page("pool=bench&limit=2");
    expect(small.nodes.map((n) => n.id)).toEqual(["bench-000000", "bench-000001"]);
    expect(small.next).toBe("bench-000001");
    expect((await page("pool=bench&state=cordoned")).nodes).toEqual([]);
    expect((await page("pool=training")).nodes.map((n) => n.id)).toEqual(["node-a"]);
  });

  test("a bad query is 400 naming the parameter", async () => {
    for (const [query, error] of [
      ["limit=0", "limit: expected 1 to 1000, got 0"],
      ["limit=1001", "limit: expected 1 to 1000, got 1001"],
      ["limit=abc", "limit: must be a whole number from 1 to 1000"],
      ["state=sleeping", "state: Invalid type"],
      ["unhealthy=yes", "unhealthy: Invalid type"],
    ]) {
      const res = await call(`/v1/nodes?${query}`, undefined, "test-token", "GET");
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: string }).error, query).toStartWith(error!);
    }
  });

  test("navarch nodes list reads every page", async () => {
    const proc = Bun.spawn([BUN, join(REPO_ROOT, "reconciler/main.ts"), "nodes", "list", "--pool", "bench", "-o", "json"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tempDir(), NAVARCH_SERVER: rec.url, NAVARCH_AUTH_TOKEN: "test-token" },
      cwd: tempDir(),
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect((JSON.parse(out) as { nodes: unknown[] }).nodes).toHaveLength(2345);
  }, 30_000);
});
