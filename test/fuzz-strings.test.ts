// The API fuzzed with strings, through the compiled reconciler: Schemathesis (its document, every
// operation) with hooks that swap any string of any body, keys included, for a lone surrogate (as
// a JSON escape and as raw bytes), invalid or overlong UTF-8 bytes, NUL, forged log lines, or the
// longest text the wire allows (test/schemathesis/hostile_strings.py); then a seeded random run of
// our own over the agent and operator bodies. Either fails on any 5xx, and on the reconciler
// exiting or no longer being ready. (One lone surrogate in an event once aborted it.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Random } from "../reconciler/sim/random.ts";
import { CompiledFleet, type Proc } from "./compiled.ts";
import { heartbeat, registration, xidEvent } from "./agent-bodies.ts";
import { ensureSchemathesis, runSchemathesis } from "./schemathesis/run.ts";
import { REPO_ROOT } from "./support.ts";

const HOOKS_DIR = join(REPO_ROOT, "test/schemathesis");
const EXAMPLES = Number(process.env.NAVARCH_SCHEMATHESIS_EXAMPLES ?? 20);
const SEED = Number(process.env.NAVARCH_SCHEMATHESIS_SEED ?? 20261123);

let fleet: CompiledFleet;
let server: Proc;
let st: string;
let nodeToken: string;
const BOOT = "boot-fuzz";

const post = (path: string, body: string | Uint8Array, token = fleet.token) =>
  fetch(`${fleet.url}${path}`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body });

async function expectAlive(after: string): Promise<void> {
  expect({ after, exited: server.exitCode, signal: server.signalCode }).toEqual({ after, exited: null, signal: null });
  const ready = await fetch(`${fleet.url}/readyz`).catch(() => undefined);
  expect({ after, ready: ready?.status }).toEqual({ after, ready: 200 });
  // A 500 is logged as "error: METHOD PATH: …" with its stack.
  expect({ after, errors: (fleet.output.get("navarch") ?? "").split("\n").filter((l) => / navarch: error: /.test(l)) }).toEqual({ after, errors: [] });
}

beforeAll(async () => {
  st = ensureSchemathesis();
  fleet = await CompiledFleet.create();
  fleet.writeConfig(
    "pools:\n  - name: fz\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: 0\n      max_nodes: 4\n",
    "1m",
  );
  server = fleet.startServer();
  await fleet.waitReady();
  for (const id of ["fz-1", "fz-2"]) expect((await post("/v1/register", JSON.stringify(registration(id, BOOT)))).status).toBe(200);
  const enroll = (await (await post("/v1/tokens", JSON.stringify({ role: "enroll", pool: "fz" }))).json()) as { token: string };
  const registered = await post("/v1/register", JSON.stringify(registration("fz-node", BOOT)), enroll.token);
  nodeToken = ((await registered.json()) as { nodeToken: string }).nodeToken;
}, 240_000);

afterAll(() => fleet.stop());

/** A run with the hostile-strings hooks, checking for server errors only (the bodies are meant to be refused). */
const schemathesis = (token: string, nodeId: string) =>
  runSchemathesis(st, {
    url: fleet.url,
    token,
    phases: "examples,coverage,fuzzing",
    checks: "not_a_server_error",
    examples: EXAMPLES,
    seed: SEED,
    env: { PYTHONPATH: HOOKS_DIR, SCHEMATHESIS_HOOKS: "hostile_strings", NAVARCH_FUZZ_NODE_ID: nodeId },
  });

describe("Schemathesis with hostile strings, through the compiled reconciler", () => {
  // The node's credential first: the admin's run may revoke it.
  // Bodies about a registered node, so that what they carry is stored, not refused as unknown.
  for (const [role, token, nodeId] of [
    ["node", () => nodeToken, "fz-node"],
    ["admin", () => fleet.token, "fz-1"],
  ] as const) {
    test(`with the ${role} token: no 5xx, and the reconciler stays up and ready`, async () => {
      const run = await schemathesis(token(), nodeId);
      if (run.code !== 0) throw new Error(`schemathesis exited ${run.code} with the ${role} token:\n${run.output.slice(-12_000)}`);
      expect(run.generated).toBeGreaterThan(role === "admin" ? 300 : 30);
      await expectAlive(`schemathesis as ${role}`);
    }, 300_000);
  }
});

/** Strings that broke programs before; `RAW:` ones are bytes written into the body as they are. */
const HOSTILE: (string | { raw: number[] })[] = [
  "\udfff",
  "\ud800",
  "ok \ud83d",
  "a\u0000b",
  { raw: [0xc0, 0xaf] },
  { raw: [0xe0, 0x80, 0xaf] },
  { raw: [0xed, 0xa0, 0x80] },
  { raw: [0xff] },
  { raw: [0x80] },
  { raw: [0xe2, 0x82] },
  { raw: [0xf4, 0x90, 0x80, 0x80] },
  "line\n2026-11-23T00:00:00.000Z navarch: FORGED\r\u001b[2J\u009b31m\u202e",
  "🎉".repeat(2048),
  "x".repeat(4096),
  "🎉".repeat(128),
  "🎉".repeat(2049),
];
const MARK = "\ue000";

/** The body with some of its strings swapped for hostile ones (raw bytes marked for `encode`). */
function hostile(body: unknown, random: Random): unknown {
  if (typeof body === "string") return random.next() < 0.4 ? pickHostile(random) : body;
  if (Array.isArray(body)) return body.map((item) => hostile(item, random));
  if (body !== null && typeof body === "object") {
    return Object.fromEntries(Object.entries(body).map(([k, item]) => [random.next() < 0.05 ? pickHostile(random) : k, hostile(item, random)]));
  }
  return body;
}
function pickHostile(random: Random): string {
  const h = HOSTILE[random.int(HOSTILE.length)]!;
  return typeof h === "string" ? h : `${MARK}${h.raw.join(",")}${MARK}`;
}
/** JSON bytes: lone surrogates as escapes (JSON.stringify's), marked raw bytes as those bytes. */
function encode(value: unknown): Uint8Array {
  const parts = JSON.stringify(value).split(/\\ue000/);
  const out: number[] = [];
  parts.forEach((part, i) => out.push(...(i % 2 === 1 ? part.split(",").map(Number) : new TextEncoder().encode(part))));
  return new Uint8Array(out);
}

describe("a seeded random run of our own", () => {
  test("600 bodies of every agent and operator route with hostile strings: no 5xx, and the reconciler stays up", async () => {
    const random = new Random(38, "fuzz-strings");
    const routes: [string, () => unknown][] = [
      ["/v1/register", () => registration("fz-1", BOOT)],
      ["/v1/heartbeat", () => heartbeat("fz-1", BOOT, { nvml: { available: false, error: "x" } })],
      ["/v1/events", () => ({ nodeId: "fz-1", events: [xidEvent("fz-1", 1 + random.int(1000), BOOT)] })],
      ["/v1/nodes/fz-2/cordon", () => ({ actor: "fuzz", reason: "fuzzing" })],
      ["/v1/nodes/fz-2/uncordon", () => ({ actor: "fuzz" })],
      ["/v1/pools/fz/pause", () => ({ actor: "fuzz", reason: "fuzzing" })],
      ["/v1/tokens", () => ({ role: "viewer", name: "fuzz" })],
      ["/v1/bootstrap-tokens", () => ({ nodeId: "fz-9", ttlSeconds: 60, actor: "fuzz" })],
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      const [path, make] = routes[i % routes.length]!;
      const body = hostile(make(), random);
      const res = await post(path, encode(body));
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`case ${i}: ${path} answered ${res.status} to ${JSON.stringify(body).slice(0, 500)}`);
    }
    // Not vacuous: many refused, many accepted.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(100);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(50);
    await expectAlive("the random run");
  }, 120_000);
});
