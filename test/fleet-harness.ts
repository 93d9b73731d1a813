// The reconcile loop on virtual time for tests: a real libSQL file, the simulated
// cloud and simulated agents, and a step() that advances the clock, lets agents
// heartbeat and runs one pass.
import { eq } from "drizzle-orm";
import { copyFileSync, rmSync } from "node:fs";
import { parseConfig } from "../reconciler/config/load.ts";
import { Operator } from "../reconciler/nodes/operator-actions.ts";
import { defaultHealthPolicy } from "../reconciler/health/compile-policy.ts";
import { Reconciler } from "../reconciler/lifecycle/loop.ts";
import { SimulatedCloud } from "../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../reconciler/sim/agents.ts";
import { openStore, type Store } from "../reconciler/store/store.ts";
import { nodes } from "../schema/db.ts";
import { tempDir } from "./support.ts";

const open: Store[] = [];
/** Closes every store opened since the last call (afterEach). */
export function closeFleets(): void {
  for (const s of open.splice(0)) s.close();
}

export function testConfig(yaml: string) {
  const parsed = parseConfig(yaml, "test");
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

/** A server section for fast virtual-time tests. */
export const FAST_SERVER = "server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n";

export function pool(name: string, min: number, max: number, extra = ""): string {
  return `  - name: ${name}\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${min}\n      max_nodes: ${max}\n    health:\n      drain_timeout: 5m\n      registration_timeout: 10m\n${extra}`;
}

export async function fleet(yaml: string) {
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const dbPath = `${tempDir()}/navarch.db`;
  let store = await openStore({ url: `file:${dbPath}` });
  open.push(store);
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 30_000 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  let config = testConfig(yaml);
  const make = () => new Reconciler({ store, config, providers: new Map([["local", cloud]]), policy: defaultHealthPolicy(), now });
  let reconciler = make();
  let operator = new Operator(store.db, now);
  const step = async (ms = 5000) => {
    clock += ms;
    await agents.tick();
    return reconciler.pass();
  };
  const all = () => store.db.select().from(nodes);
  const node = async (id: string) => (await store.db.select().from(nodes).where(eq(nodes.id, id)))[0]!;
  const count = async (state: string, poolName?: string) =>
    (await all()).filter((n) => n.state === state && (poolName === undefined || n.pool === poolName)).length;
  const until = async (done: () => Promise<boolean>, maxSteps = 200, ms = 5000) => {
    for (let i = 0; i < maxSteps; i++) {
      if (await done()) return i;
      await step(ms);
    }
    throw new Error(`not done after ${maxSteps} steps`);
  };
  /** A restart of the reconciler (its memory lost), with a new config when given. */
  const restart = (newYaml?: string) => {
    if (newYaml !== undefined) config = testConfig(newYaml);
    reconciler = make();
  };
  /** An online copy of the database (what `navarch backup` makes). */
  const backup = async (path: string) => {
    await store.client.execute({ sql: "VACUUM INTO ?", args: [path] });
  };
  /** Stops, puts an older copy of the database in place, and starts again: the agents keep running. */
  const restore = async (path: string) => {
    store.close();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(dbPath + suffix, { force: true });
    copyFileSync(path, dbPath);
    store = await openStore({ url: `file:${dbPath}` });
    open.push(store);
    agents.useDatabase(store.db);
    operator = new Operator(store.db, now);
    reconciler = make();
  };
  return {
    get store() {
      return store;
    },
    get reconciler() {
      return reconciler;
    },
    get operator() {
      return operator;
    },
    cloud,
    agents,
    step,
    all,
    node,
    count,
    until,
    restart,
    backup,
    restore,
    advance: (ms: number) => (clock += ms),
    now,
  };
}
