// One bad string must never take the fleet down, through the compiled binaries. A lone UTF-16
// surrogate sent in an event or a heartbeat once aborted the reconciler (SQLite's JSON
// functions decoded the escape into bytes that are not UTF-8, and libSQL aborted reading them),
// at every restart again; an unmodified agent sent one itself when it cut a kernel-log line of
// emoji in the middle of a pair. Now every string is checked at the edge and refused with its
// path, raw bytes that are not UTF-8 are refused, cuts keep pairs whole, and a database that
// already holds such a string starts, with the value quarantined and reported.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "@libsql/client";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { FAKE_NVML, buildFakeNvml } from "./fake-nvml/control.ts";
import { heartbeat, registration, xidEvent } from "./agent-bodies.ts";
import { waitFor } from "./support.ts";

let fleet: CompiledFleet;
let server: Proc;
let nodeToken: string;
const NODE = "poison-1";
const BOOT = "boot-poison";

const post = (path: string, body: string | Uint8Array, token = fleet.token) =>
  fetch(`${fleet.url}${path}`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body });

const register = (nodeId: string, extra: Record<string, unknown> = {}) => JSON.stringify(registration(nodeId, BOOT, extra));
const event = (seq: number, extra: Record<string, unknown> = {}) => xidEvent(NODE, seq, BOOT, extra);
const heartbeatWith = (nvmlError: string) => JSON.stringify(heartbeat(NODE, BOOT, { nvml: { available: false, error: nvmlError } }));

/** Still running, and still answering with the store behind it. */
async function expectServing(): Promise<void> {
  await Bun.sleep(300);
  expect({ exited: server.exitCode, signal: server.signalCode }).toEqual({ exited: null, signal: null });
  const res = await fetch(`${fleet.url}/v1/nodes/${NODE}?events=1000`, { headers: { Authorization: `Bearer ${fleet.token}` } });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  buildFakeNvml();
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    "pools:\n  - name: pz\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 4\n",
  );
  server = fleet.startServer();
  await fleet.waitReady();
  // A node's own credential, as an enrolled machine has: the least an attacker needs.
  const minted = await post("/v1/tokens", JSON.stringify({ role: "enroll", pool: "pz" }));
  expect(minted.status).toBe(200);
  const enroll = ((await minted.json()) as { token: string }).token;
  const registered = await post("/v1/register", register(NODE), enroll);
  expect(registered.status).toBe(200);
  nodeToken = ((await registered.json()) as { nodeToken: string }).nodeToken;
}, 240_000);

afterAll(() => fleet.stop());

describe("a lone surrogate, sent with a node's own credential", () => {
  test("in an event's code or a heartbeat's nvml.error: refused with its field path, and the reconciler keeps serving", async () => {
    const cases: [string, string, string][] = [
      ["/v1/events", JSON.stringify({ nodeId: NODE, events: [event(1, { code: "\ud800" })] }), "events[0].code"],
      ["/v1/heartbeat", heartbeatWith("driver \udfff"), "nvml.error"],
      ["/v1/events", JSON.stringify({ nodeId: NODE, events: [event(1, { bootId: "b\udc00" })] }), "events[0].bootId"],
    ];
    for (const [path, body, field] of cases) {
      const res = await post(path, body, nodeToken);
      const answer = (await res.json()) as { issues?: { path: string; message: string }[] };
      expect({ path, status: res.status, fields: answer.issues?.map((i) => i.path) }).toEqual({ path, status: 400, fields: [field] });
      expect(answer.issues![0]!.message).toContain("lone UTF-16 surrogate");
      await expectServing();
    }
    // A good batch after them is stored as ever.
    const good = await post("/v1/events", JSON.stringify({ nodeId: NODE, events: [event(1, { message: "emoji 🎉 kept whole" })] }), nodeToken);
    expect(good.status).toBe(200);
    await expectServing();
  });

  test("in an event's message (the agent's report of a kernel-log line): stored with U+FFFD, so an agent that cut a line badly loses no finding", async () => {
    const res = await post(
      "/v1/events",
      JSON.stringify({ nodeId: NODE, events: [event(2, { message: "Xid 79 \ud83c" }), event(3, { message: "after it" })] }),
      nodeToken,
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { stored: number }).stored).toBe(2);
    await expectServing();
    const detail = await fleet.api<{ events: { seq: number; message: string }[] }>(`/v1/nodes/${NODE}?events=10`);
    expect(
      detail?.events
        .filter((e) => e.seq >= 2)
        .map((e) => e.message)
        .sort(),
    ).toEqual(["Xid 79 \ufffd", "after it"]);
  });

  test("in a registration's hostname, or an operator's reason: refused alike", async () => {
    const reg = await post("/v1/register", register("poison-2", { hostname: "host\udfff" }));
    expect(reg.status).toBe(400);
    expect(((await reg.json()) as { issues: { path: string }[] }).issues.map((i) => i.path)).toEqual(["hostname"]);
    const cordon = await post(`/v1/nodes/${NODE}/cordon`, JSON.stringify({ reason: "because \ud83d" }));
    expect(cordon.status).toBe(400);
    expect(((await cordon.json()) as { issues: { path: string }[] }).issues.map((i) => i.path)).toEqual(["reason"]);
    const token = await post("/v1/tokens", JSON.stringify({ role: "viewer", name: "x\udc00" }));
    expect(token.status).toBe(400);
    await expectServing();
  });

  test("raw bytes that are not UTF-8 in a body (overlong, an encoded surrogate, 0xFF) are refused, not repaired", async () => {
    const prefix = new TextEncoder().encode(
      `{"nodeId":"${NODE}","events":[{"seq":1,"time":"${new Date().toISOString()}","bootId":"${BOOT}","check":"xid","severity":"unhealthy","action":"replace","message":"`,
    );
    const suffix = new TextEncoder().encode('"}]}');
    for (const bad of [[0xc0, 0xaf], [0xed, 0xbf, 0xbf], [0xff], [0xe2, 0x82]]) {
      const body = new Uint8Array([...prefix, ...bad, ...suffix]);
      const res = await post("/v1/events", body, nodeToken);
      const answer = (await res.json()) as { error: string };
      expect({ bad, status: res.status }).toEqual({ bad, status: 400 });
      expect(answer.error).toContain(`not valid UTF-8`);
      expect(answer.error).toContain(`at byte ${prefix.length}`);
    }
    await expectServing();
  });
});

describe("the agent's own report of outside text", () => {
  test("a kernel-log line of more than 4,096 characters of emoji is cut on a code-point boundary and stored", async () => {
    const dir = join(fleet.dir, "emoji");
    Bun.spawnSync(["mkdir", "-p", dir]);
    const state = join(dir, "nvml-state");
    writeFileSync(state, "count 1\ndriver 570.86.15\n");
    const kmsg = join(dir, "kmsg");
    writeFileSync(kmsg, "");
    const agent = fleet.startAgent("emoji-1", ["--nvml-library", FAKE_NVML.full, "--kmsg-path", kmsg, "--poll-interval", "0.2"], { FAKE_NVML_STATE: state });
    const detail = () => fleet.api<{ gpus: { pciBusId: string }[]; events: { code: string | null; message: string }[] }>("/v1/nodes/emoji-1?events=100");
    const d = await waitFor("emoji-1 registered with its GPU", async () => ((await detail())?.gpus.length === 1 ? await detail() : undefined));
    const [domain = "", bus = "", devfn = ""] = d.gpus[0]!.pciBusId.split(":");
    // Odd and even offsets: one of them puts the cut inside a pair whatever the prefix's length.
    // Two Xids (two findings): odd and even offsets, so one of them puts the cut inside a pair.
    for (const [seq, xid, pad] of [
      [1400, 48, ""],
      [1401, 94, "x"],
    ] as const) {
      appendFileSync(
        kmsg,
        `3,${seq},${Date.now() * 1000},-;NVRM: Xid (PCI:${domain.slice(4)}:${bus.toLowerCase()}:${devfn.slice(0, 2)}): ${xid}, pid=1, ${pad}${"🎉".repeat(3000)}\n`,
      );
    }
    const events = await waitFor(
      "Xid 48 and 94 stored",
      async () => {
        const found = (await detail())?.events.filter((e) => e.code === "48" || e.code === "94") ?? [];
        return found.length >= 2 ? found : undefined;
      },
      20_000,
    ).catch((err) => {
      throw new Error(`${err}\n${fleet.output.get("emoji-1") ?? ""}`);
    });
    for (const e of events) {
      // Cut between pairs by the agent: nothing for the reconciler to repair.
      expect(e.message.includes("\ufffd")).toBe(false);
      expect(e.message).toContain("🎉🎉");
      expect(e.message.length).toBeLessThanOrEqual(4096);
    }
    await expectServing();
    expect(agent.exitCode).toBeNull();
  }, 60_000);
});

describe("a database that already holds a string it cannot read", () => {
  test("the compiled reconciler starts and serves, the value quarantined and reported", async () => {
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // Below the ORM: bytes that are not UTF-8, stored as TEXT.
    const db = createClient({ url: `file:${join(fleet.dir, "data", "navarch.db")}` });
    await db.execute({ sql: "UPDATE nodes SET hostname = CAST(X'6869EDBFBF21' AS TEXT) WHERE id = ?", args: [NODE] });
    await db.execute({ sql: "UPDATE health_events SET message = CAST(X'C0AF41FF' AS TEXT) WHERE node_id = ? AND seq = 1", args: [NODE] });
    db.close();

    const before = fleet.output.get("navarch")?.length ?? 0;
    server = fleet.startServer();
    await fleet.waitReady();
    await expectServing();
    const detail = await fleet.api<{ node: { hostname: string }; events: { seq: number; message: string }[] }>(`/v1/nodes/${NODE}?events=10`);
    expect(detail?.node.hostname).toBe("hi\ufffd\ufffd\ufffd!");
    expect(detail?.events.find((e) => e.seq === 1)?.message).toBe("\ufffd\ufffdA\ufffd");
    const log = (fleet.output.get("navarch") ?? "").slice(before);
    expect(log).toContain("quarantined 2 values");
    expect(log).toContain("nodes.hostname");
    expect(log).toContain("health_events.message");
    // The original bytes are kept, and the audit log says what was done.
    const audit = await fleet.api<{ audit: { action: string; details: Record<string, unknown> }[] }>("/v1/audit?limit=20");
    const quarantined = audit?.audit.filter((a) => a.action === "text_quarantined") ?? [];
    expect(quarantined.map((a) => a.details.column).sort()).toEqual(["health_events.message", "nodes.hostname"]);
    expect(quarantined.map((a) => a.details.originalHex).sort()).toEqual(["6869EDBFBF21", "C0AF41FF"]);
    const metrics = await fetch(`${fleet.url}/metrics`, { headers: { Authorization: `Bearer ${fleet.token}` } }).then((r) => r.text());
    expect(metrics).toMatch(/navarch_store_quarantined_values_total 2/);
    // And the operator's CLI reads the node.
    const get = await fleet.run([fleet.navarch, "nodes", "get", NODE], { NAVARCH_AUTH_TOKEN: fleet.token, NAVARCH_SERVER: fleet.url });
    expect(get.code).toBe(0);
    expect(get.stdout).toContain("hi\ufffd\ufffd\ufffd!");
  }, 60_000);
});
