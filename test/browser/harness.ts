// A running reconciler (the real API: startReconciler without a fleet) over a libSQL
// file, and a separate reconcile loop with the simulated cloud and simulated agents
// on virtual time writing the same store: what the dashboard, CLI and metrics tests
// look at. step() advances the clock, lets the agents heartbeat and runs one pass.
import { eq } from "drizzle-orm";
import { join } from "node:path";
import { defaultHealthPolicy } from "../../reconciler/health/compile-policy.ts";
import { Reconciler } from "../../reconciler/lifecycle/loop.ts";
import { SimulatedCloud } from "../../reconciler/providers/simulated.ts";
import { startReconciler, type Reconciler as Running } from "../../reconciler/app/serve.ts";
import { SimulatedAgents } from "../../reconciler/sim/agents.ts";
import { nodes } from "../../schema/db.ts";
import { testConfig } from "../fleet-harness.ts";
import { tempDir } from "../support.ts";

export const START = Date.parse("2026-11-21T00:00:00Z");

export interface SimFleet {
  rec: Running;
  url: string;
  token: string;
  agents: SimulatedAgents;
  cloud: SimulatedCloud;
  loop: Reconciler;
  now: () => number;
  step(ms?: number): Promise<void>;
  until(what: string, done: () => Promise<boolean>, maxSteps?: number, ms?: number): Promise<void>;
  node(id: string): Promise<typeof nodes.$inferSelect>;
  all(): Promise<(typeof nodes.$inferSelect)[]>;
  api<T>(path: string, init?: RequestInit): Promise<T>;
  stop(): Promise<void>;
}

let tokens = 0;

export async function simFleet(yaml: string, token = "dashboard-test-token-0123456789"): Promise<SimFleet> {
  let clock = START;
  const now = () => clock;
  const dataDir = join(tempDir("navarch-ui-"), "data");
  const env = `NAVARCH_SIM_TEST_TOKEN_${++tokens}`;
  process.env[env] = token;
  const rec = await startReconciler(
    { host: "127.0.0.1", port: 0, dataDir, databaseUrl: `file:${dataDir}/navarch.db`, authTokenEnv: env, heartbeatIntervalSeconds: 10 },
    () => undefined,
    now,
  );
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 30_000 });
  const agents = new SimulatedAgents(rec.store.db, cloud, now);
  const loop = new Reconciler({ store: rec.store, config: testConfig(yaml), providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now });
  const step = async (ms = 5000) => {
    clock += ms;
    await agents.tick();
    await loop.pass();
  };
  const all = () => rec.store.db.select().from(nodes);
  return {
    rec,
    url: rec.url,
    token,
    agents,
    cloud,
    loop,
    now,
    step,
    async until(what, done, maxSteps = 200, ms = 5000) {
      for (let i = 0; i < maxSteps; i++) {
        if (await done()) return;
        await step(ms);
      }
      throw new Error(`${what}: not done after ${maxSteps} steps`);
    },
    async node(id) {
      const [n] = await rec.store.db.select().from(nodes).where(eq(nodes.id, id));
      if (n === undefined) throw new Error(`no node ${id}`);
      return n;
    },
    all,
    async api<T>(path: string, init: RequestInit = {}) {
      const res = await fetch(`${rec.url}${path}`, {
        ...init,
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(init.headers ?? {}) },
      });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    },
    async stop() {
      await rec.stop();
    },
  };
}

export const POOLS_YAML = (pools: { name: string; min: number; max: number }[], extra = "") =>
  `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\npools:\n${pools
    .map(
      (p) =>
        `  - name: ${p.name}\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${p.min}\n      max_nodes: ${p.max}\n    health:\n      drain_timeout: 5m\n      registration_timeout: 10m\n`,
    )
    .join("")}${extra}`;
