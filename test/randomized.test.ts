// Seeded randomized runs of the real reconcile loop: random faults (fatal and
// app-caused Xids, silent agents), reconciler restarts (a new Reconciler over the
// same database, its memory lost) and provider errors, on virtual time. After
// every pass the invariants must hold.
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../reconciler/config/load.ts";
import { defaultHealthPolicy } from "../reconciler/fleet/policy.ts";
import { IN_POOL } from "../reconciler/fleet/rails.ts";
import { Reconciler } from "../reconciler/fleet/reconciler.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { openStore } from "../reconciler/store/store.ts";
import { nodes } from "../schema/db.ts";
import { tempDir } from "./support.ts";

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RUNS = Number(process.env.NAVARCH_RANDOM_RUNS ?? 200);
const PASSES = 40;
const MIN = 3;
const MAX = 5;
const MAX_IN_FLIGHT = 2;

const parsed = parseConfig(
  `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\nsafety:\n  max_in_flight_per_pool: ${MAX_IN_FLIGHT}\n  cordon_rate:\n    per_minute: 30\n    burst: 5\n  breaker:\n    max_cordons: 1000\n    percent: 100\npools:\n  - name: p\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${MIN}\n      max_nodes: ${MAX}\n    health:\n      drain_timeout: 1m\n      registration_timeout: 2m\n`,
  "randomized",
);
if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
const config = parsed.config;

async function run(seed: number): Promise<string[]> {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(rand() * xs.length)];
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const store = await openStore({ url: `file:${tempDir("navarch-rand-")}/navarch.db` });
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 10_000 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  const make = () => new Reconciler({ store, config, providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now });
  let reconciler = make();
  const violations: string[] = [];
  try {
    for (let pass = 0; pass < PASSES; pass++) {
      const live = (await store.db.select().from(nodes)).filter((n) => n.state === "ready" || n.state === "suspect");
      const r = rand();
      const target = pick(live);
      if (r < 0.08 && target) await agents.xid(target.id, 79, Math.floor(rand() * 8)).catch(() => undefined);
      else if (r < 0.14 && target) await agents.xid(target.id, 13, Math.floor(rand() * 8)).catch(() => undefined);
      else if (r < 0.18 && target) agents.setSilent(target.id, true);
      else if (r < 0.22) cloud.inject({ on: pick(["launch", "terminate", "get", "list"] as const)!, kind: pick(["capacity", "transient", "rate_limit"] as const)!, times: 1 + Math.floor(rand() * 3) });
      else if (r < 0.27) reconciler = make(); // a restart: all in-memory state gone
      else if (r < 0.3) for (const n of live) agents.setSilent(n.id, false);
      clock += 5000 + Math.floor(rand() * 10_000);
      await agents.tick();
      await reconciler.pass();
      violations.push(...(await invariants()).map((v) => `seed ${seed} pass ${pass}: ${v}`));
    }
  } finally {
    store.close();
  }
  return violations;

  async function invariants(): Promise<string[]> {
    const out: string[] = [];
    const rows = await store.db.select().from(nodes);
    const inPool = rows.filter((n) => IN_POOL.has(n.state));
    if (inPool.length > MAX) out.push(`${inPool.length} nodes in the pool, max_nodes ${MAX}`);
    // No leak: every instance the cloud runs belongs to a node that is not terminated or failed.
    const owners = new Map(rows.filter((n) => n.instanceName !== null).map((n) => [n.instanceName!, n]));
    for (const i of cloud.running()) {
      const owner = owners.get(i.id);
      if (owner === undefined) out.push(`instance ${i.id} (${i.name}) has no node`);
      else if (owner.state === "terminated") out.push(`instance ${i.id} runs but node ${owner.id} is terminated`);
    }
    // No duplicate: one instance per node name.
    const perName = new Map<string, number>();
    for (const i of cloud.snapshot().records) perName.set(i.instance.name, (perName.get(i.instance.name) ?? 0) + 1);
    for (const [name, count] of perName) if (count > 1) out.push(`${count} instances for node ${name}`);
    // Never both Ready and cordoned.
    for (const n of rows) if (n.state === "ready" && n.cordonedBy !== null) out.push(`${n.id} is ready and cordoned by ${n.cordonedBy}`);
    // Rails: replacements in flight within the cap.
    const inFlight = rows.filter(
      (n) => (["cordoned", "draining", "terminating"].includes(n.state) && n.removal === "replace") || (n.replacementOf !== null && ["requested", "provisioning", "validating"].includes(n.state)),
    );
    // A replacement and its terminating predecessor are one replacement in flight.
    const slots = new Set(inFlight.map((n) => (n.removal === "replace" ? n.id : n.replacementOf!)));
    if (slots.size > MAX_IN_FLIGHT) out.push(`${slots.size} replacements in flight, cap ${MAX_IN_FLIGHT}: ${inFlight.map((n) => `${n.id} ${n.state}`).join(", ")}`);
    // Nothing terminated twice.
    for (const [id, calls] of cloud.terminateCalls()) if (calls > 1) out.push(`instance ${id} terminated ${calls} times`);
    return out;
  }
}

describe("randomized runs of the reconcile loop", () => {
  test(
    `${RUNS} seeded runs of ${PASSES} passes: the invariants hold after every pass`,
    async () => {
      const violations: string[] = [];
      for (let seed = 1; seed <= RUNS; seed++) violations.push(...(await run(seed)));
      expect(violations.slice(0, 20)).toEqual([]);
    },
    240_000,
  );
});
