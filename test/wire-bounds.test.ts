// Bounds on every number of the agent wire, through the real API: out-of-range values
// are a 400 naming the field, and nothing of the refused body is stored. /metrics never
// renders a non-finite or impossible reading, even one an old database already holds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { join } from "node:path";
import * as v from "valibot";
import { startReconciler, type Reconciler } from "../reconciler/app/serve.ts";
import { HeartbeatResponse, RegisterResponse, type HealthEvent, type RegisterRequest } from "../schema/wire.ts";
import { tempDir } from "./support.ts";

let rec: Reconciler;
const dataDir = join(tempDir(), "data");
const TOKEN = "wire-bounds-token";

beforeAll(async () => {
  process.env.NAVARCH_WIRE_BOUNDS_TOKEN = TOKEN;
  rec = await startReconciler(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      databaseUrl: `file:${dataDir}/navarch.db`,
      authTokenEnv: "NAVARCH_WIRE_BOUNDS_TOKEN",
      heartbeatIntervalSeconds: 7,
    },
    () => undefined,
  );
});
afterAll(() => rec.stop());

/** Posts a body; a string is sent as is (JSON.stringify cannot write 1e999). */
function post(path: string, body: unknown) {
  return fetch(`${rec.url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function node(
  id: string,
): Promise<{ node: { lastEventSeq: number; lastHeartbeatAt: number | null }; gpus: { lastSnapshot: Record<string, unknown> | null }[]; events: unknown[] }> {
  const res = await fetch(`${rec.url}/v1/nodes/${id}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as never;
}

/** Expects a 400 whose issues are exactly at `paths`. */
async function refused(res: Response, paths: string[]): Promise<{ path: string; message: string }[]> {
  expect(res.status).toBe(400);
  const body = (await res.json()) as { error: string; issues: { path: string; message: string }[] };
  expect(body.error).toBe("invalid request body");
  expect(body.issues.map((i) => i.path)).toEqual(paths);
  return body.issues;
}

const registration = (nodeId: string): RegisterRequest => ({
  nodeId,
  hostname: `${nodeId}.example`,
  bootId: "boot-1",
  agentVersion: "0.1.0",
  spoolId: "6f1c2a7e-0d5b-4c53-9a51-2f7f0f3c9b10",
  nvml: { available: true },
  gpus: [
    { index: 0, uuid: "GPU-aaaa", pciBusId: "00000000:3B:00.0", name: "NVIDIA H100 80GB HBM3", memoryTotalBytes: 85899345920 },
    { index: 1, uuid: "GPU-bbbb", pciBusId: "00000000:86:00.0", name: "NVIDIA H100 80GB HBM3" },
  ],
});

function event(seq: number, over: Record<string, unknown> = {}): HealthEvent {
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
  } as HealthEvent;
}

const heartbeat = (nodeId: string, gpu: Record<string, unknown>) => ({
  nodeId,
  bootId: "boot-1",
  sentAt: new Date().toISOString(),
  nvml: { available: true },
  health: { checked: true, worst: "healthy", openIncidents: 0 },
  gpus: [
    { index: 0, temperatureC: 61, powerW: 412.5, utilizationPct: 97 },
    { index: 1, ...gpu },
  ],
});

describe("events", () => {
  beforeAll(async () => {
    expect((await post("/v1/register", registration("ev-node"))).status).toBe(200);
    const first = await post("/v1/events", { nodeId: "ev-node", events: [event(1), event(2)] });
    expect(await first.json()).toEqual({ ackedSeq: 2, stored: 2 });
  });

  test.each([
    ["seq 2^53+2 (not a safe integer)", { seq: 2 ** 53 + 2 }, "events[0].seq"],
    ["seq 1e300", { seq: 1e300 }, "events[0].seq"],
    ["seq 0", { seq: 0 }, "events[0].seq"],
    ["seq 3.5", { seq: 3.5 }, "events[0].seq"],
    ["count 1e300", { count: 1e300 }, "events[0].count"],
    ["gpu.index 1e300", { gpu: { index: 1e300, uuid: "GPU-bbbb", pciBusId: "00000000:86:00.0" } }, "events[0].gpu.index"],
    ["gpu.index 64 (past the 64-GPU limit)", { gpu: { index: 64, uuid: "GPU-bbbb", pciBusId: "00000000:86:00.0" } }, "events[0].gpu.index"],
  ])("%s is a 400 at its path and stores nothing", async (_what, over, path) => {
    const { seq = 3, ...rest } = over as { seq?: number };
    const issues = await refused(await post("/v1/events", { nodeId: "ev-node", events: [event(seq, rest)] }), [path]);
    expect(issues[0]!.message).toMatch(/^must be a whole number from \d+ to \d+, got /);
    const detail = await node("ev-node");
    expect(detail.node.lastEventSeq).toBe(2);
    expect(detail.events).toHaveLength(2);
  });

  test("the message names the bounds and the value", async () => {
    const issues = await refused(await post("/v1/events", { nodeId: "ev-node", events: [event(2 ** 53 + 2)] }), ["events[0].seq"]);
    expect(issues[0]!.message).toBe("must be a whole number from 1 to 9007199254740991, got 9007199254740994");
  });

  test("an event in range is still stored, and a seq of 1e300 never tells the agent to drop its spool", async () => {
    const ok = await post("/v1/events", { nodeId: "ev-node", events: [event(3, { count: 4 })] });
    expect(await ok.json()).toEqual({ ackedSeq: 3, stored: 1 });
    const again = await post("/v1/register", registration("ev-node"));
    expect(await again.json()).toMatchObject({ lastEventSeq: 3, sameSpool: true });
  });
});

describe("heartbeats", () => {
  beforeAll(async () => {
    expect((await post("/v1/register", registration("hb-node"))).status).toBe(200);
    expect((await post("/v1/heartbeat", heartbeat("hb-node", { temperatureC: 55, utilizationPct: 10 }))).status).toBe(200);
  });

  test.each([
    ["temperatureC 1e308", { temperatureC: 1e308 }, "gpus[1].temperatureC", "must be a number from -50 to 200 °C, got 1e+308"],
    ["temperatureC -1e308", { temperatureC: -1e308 }, "gpus[1].temperatureC", "must be a number from -50 to 200 °C, got -1e+308"],
    ["utilizationPct 1e300", { utilizationPct: 1e300 }, "gpus[1].utilizationPct", "must be a number from 0 to 100 %, got 1e+300"],
    ["powerW 1e300", { powerW: 1e300 }, "gpus[1].powerW", "must be a number from 0 to 10000 W, got 1e+300"],
    [
      "memoryUsedBytes 2^60",
      { memoryUsedBytes: 2 ** 60 },
      "gpus[1].memoryUsedBytes",
      "must be a whole number from 0 to 9007199254740991, got 1152921504606847000",
    ],
    ["eccVolatileDbe 1e300", { eccVolatileDbe: 1e300 }, "gpus[1].eccVolatileDbe", "must be a whole number from 0 to 9007199254740991, got 1e+300"],
    [
      "clocksEventReasons 2^64",
      { clocksEventReasons: 2 ** 64 },
      "gpus[1].clocksEventReasons",
      "must be a whole number from 0 to 9007199254740991, got 18446744073709552000",
    ],
    ["index 1e300", { index: 1e300 }, "gpus[1].index", "must be a whole number from 0 to 63, got 1e+300"],
  ])("%s is a 400 at its path and stores nothing", async (_what, gpu, path, message) => {
    const before = await node("hb-node");
    const issues = await refused(await post("/v1/heartbeat", heartbeat("hb-node", gpu)), [path]);
    expect(issues[0]!.message).toBe(message);
    const after = await node("hb-node");
    expect(after.node.lastHeartbeatAt).toBe(before.node.lastHeartbeatAt);
    expect(after.gpus.map((g) => g.lastSnapshot)).toEqual(before.gpus.map((g) => g.lastSnapshot));
  });

  test("1e999 (JSON for Infinity) is refused too", async () => {
    const body = JSON.stringify(heartbeat("hb-node", { temperatureC: 0 })).replace('"temperatureC":0', '"temperatureC":1e999');
    await refused(await post("/v1/heartbeat", body), ["gpus[1].temperatureC"]);
  });

  test("openIncidents must be a safe integer", async () => {
    const hb = { ...heartbeat("hb-node", {}), health: { checked: true, worst: "healthy", openIncidents: 1e300 } };
    await refused(await post("/v1/heartbeat", hb), ["health.openIncidents"]);
  });

  test("/metrics is free of the refused readings", async () => {
    const text = await (await fetch(`${rec.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } })).text();
    expect(text).toContain('navarch_node_gpu_temperature_celsius{pool="",node="hb-node",gpu="1"} 55');
    expect(text).not.toContain("1e+308");
    expect(text).not.toContain("1e+300");
  });
});

describe("registration", () => {
  test("a GPU index past 63 or a memory size past 2^53 is a 400 at its path", async () => {
    const req = registration("reg-node");
    const bad = {
      ...req,
      gpus: [
        { ...req.gpus[0]!, index: 64 },
        { ...req.gpus[1]!, memoryTotalBytes: 2 ** 60 },
      ],
    };
    await refused(await post("/v1/register", bad), ["gpus[0].index", "gpus[1].memoryTotalBytes"]);
    const missing = await fetch(`${rec.url}/v1/nodes/reg-node`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(missing.status).toBe(404);
  });

  test("the agent refuses a heartbeat interval no timer holds (the answers' schemas)", () => {
    const answer = { nodeId: "n", heartbeatIntervalSeconds: 600 * 3600, lastEventSeq: 0, sameSpool: false };
    const register = v.safeParse(RegisterResponse, answer);
    expect(register.success ? [] : register.issues.map((i) => [v.getDotPath(i), i.message])).toEqual([
      ["heartbeatIntervalSeconds", "must be a number from 1 to 3600 seconds, got 2160000"],
    ]);
    expect(v.safeParse(HeartbeatResponse, { heartbeatIntervalSeconds: 0 }).success).toBe(false);
    expect(v.safeParse(HeartbeatResponse, { heartbeatIntervalSeconds: 3600 }).success).toBe(true);
    expect(v.safeParse(RegisterResponse, { ...answer, heartbeatIntervalSeconds: 30, lastEventSeq: 1e300 }).success).toBe(false);
  });
});

describe("/metrics with values an old database already holds", () => {
  test("an impossible or non-finite reading is left out, never rendered", async () => {
    expect((await post("/v1/register", registration("old-node"))).status).toBe(200);
    expect((await post("/v1/heartbeat", heartbeat("old-node", { temperatureC: 40, utilizationPct: 5 }))).status).toBe(200);
    // Written behind the API's back, as a database from before the bounds may hold them.
    await rec.store.db.run(
      sql`update gpu_readings set readings = '[{"index":0,"temperatureC":1e308,"utilizationPct":9e999},{"index":1,"temperatureC":-1e308,"utilizationPct":1e300}]' where node_id = 'old-node'`,
    );
    const lines = (await (await fetch(`${rec.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } })).text())
      .split("\n")
      .filter((l) => l.includes('node="old-node"'));
    expect(lines.filter((l) => l.startsWith("navarch_node_gpu_"))).toEqual([]);
    for (const l of lines) expect(l).not.toMatch(/ (NaN|[+-]Inf|-?\d(\.\d+)?e\+\d+)$/);
  });
});
