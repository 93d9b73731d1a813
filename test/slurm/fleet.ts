// The real reconcile loop (virtual clock, simulated cloud and agents, a libSQL file) with
// the Slurm integration against the harness's real slurmctld: what the Slurm tests drive.
// Machines are Slurm node slots: once a node's agent has registered, its machine boots on
// the lowest free slot (NodeHostname = the agent's hostname, then the slot's slurmd, as a
// cloud node's resume script does), and when the node is terminated its slurmd is killed. A
// replacement therefore comes up on the slot its predecessor left drained. Writes to Slurm,
// polls and jobs run in real time, so `until` alternates loop passes with short sleeps.
import type { PoolConfig } from "../../schema/config.ts";
import { nodes } from "../../schema/db.ts";
import { isIn } from "../../schema/lifecycle.ts";
import { Operator } from "../../reconciler/nodes/operator-actions.ts";
import { schedulerLoopHandle, storeSchedulerHost } from "../../reconciler/schedulers/host.ts";
import type { Reconciler } from "../../reconciler/lifecycle/loop.ts";
import { SimulatedCloud } from "../../reconciler/providers/simulated.ts";
import { SimulatedAgents } from "../../reconciler/sim/agents.ts";
import { slurmScheduler, type SlurmIntegration } from "../../reconciler/schedulers/slurm/index.ts";
import { openStore, type Store } from "../../reconciler/store/store.ts";
import { testConfig } from "../fleet-harness.ts";
import { fleetQueries, schedulerLoop } from "../scheduler-fleet.ts";
import { tempDir } from "../support.ts";
import type { SlurmHarness } from "./harness.ts";

export interface SlurmFleetOptions {
  /** Extra lines of the `slurm:` section (two-space indented), after the connection. */
  slurm?: string;
  /** Extra top-level YAML (e.g. a `safety:` section). */
  extra?: string;
  /** Slots this fleet's machines may boot on (default: all the harness has). */
  slots?: string[];
  log?: (line: string) => void;
}

export type SlurmFleet = Awaited<ReturnType<typeof slurmFleet>>;

const open: { stop(): Promise<void> }[] = [];

/** Stops every fleet started since the last call (afterEach): loops, polls, machines, stores. */
export async function stopSlurmFleets(): Promise<void> {
  for (const f of open.splice(0)) await f.stop();
}

export async function slurmFleet(slurm: SlurmHarness, poolsYaml: string, opts: SlurmFleetOptions = {}) {
  let clock = Date.now();
  const now = () => clock;
  const store: Store = await openStore({ url: `file:${tempDir()}/navarch.db` });
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 0 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  const server = "server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 10s\n";
  const connection = `  rest_url: ${slurm.restUrl}\n  user: ${slurm.user}\n  jwt_key_file: ${slurm.jwtKeyPath}\n  slurm_conf: ${slurm.confPath}\n  poll_interval: 250ms\n`;
  const yaml = `${server}${opts.extra ?? ""}slurm:\n${connection}${opts.slurm ?? ""}pools:\n${poolsYaml}`;
  const config = testConfig(yaml);
  const log = opts.log ?? (() => undefined);
  let loop: Reconciler | undefined;
  const integration: SlurmIntegration = await slurmScheduler(config.slurm!, storeSchedulerHost({ store, log, now, wake: () => loop?.wake() }), {
    sweepIntervalMs: 500,
  });
  loop = schedulerLoop({ store, config, cloud, now, log, integration: integration });
  const reconciler = loop;
  await integration.start(
    schedulerLoopHandle({ store, loop: reconciler, providers: () => new Set(["local"]), filePools: config.pools.map((p: PoolConfig) => p.name) }),
  );
  await integration.ready(); // the cluster read: the tests start from a listing

  // The machines: node id → slot, booted once the agent registered, gone once terminated.
  const slots = opts.slots ?? slurm.slots;
  const machines = new Map<string, string>();
  const syncMachines = async () => {
    const rows = await store.db.select({ id: nodes.id, state: nodes.state, hostname: nodes.hostname }).from(nodes);
    for (const row of rows) {
      const slot = machines.get(row.id);
      if (slot !== undefined && isIn("terminal", row.state)) {
        await slurm.shutdownMachine(slot);
        machines.delete(row.id);
      }
    }
    for (const row of rows) {
      if (machines.has(row.id) || row.hostname === null || isIn("terminal", row.state)) continue;
      const taken = new Set(machines.values());
      const free = slots.find((s) => !taken.has(s));
      if (free === undefined) return; // waits for a slot
      machines.set(row.id, free);
      await slurm.bootMachine(free, row.hostname);
    }
  };

  const step = async (ms = 5000) => {
    clock += ms;
    await agents.tick();
    const report = await reconciler.pass();
    await syncMachines();
    return report;
  };
  const { node, all, incident, until } = fleetQueries(store, step);
  const ready = async (pool: string, count: number) => {
    await until(
      `${count} ready nodes in ${pool} on their slots`,
      async () => {
        const up = (await all()).filter((n) => n.pool === pool && n.state === "ready");
        return up.length >= count && up.every((n) => machines.has(n.id));
      },
      { sleepMs: 0 },
    );
    return (await all()).filter((n) => n.pool === pool && n.state === "ready").map((n) => n.id);
  };
  const handle = {
    store,
    cloud,
    agents,
    reconciler,
    integration,
    mirror: integration.mirror,
    operator: new Operator(store.db, now),
    config,
    step,
    node,
    all,
    incident,
    until,
    ready,
    now,
    /** The slot a node's machine runs on. */
    slotOf: (id: string) => machines.get(id),
    advance: (ms: number) => (clock += ms),
    async stop() {
      await reconciler.stop();
      await integration.stop();
      for (const slot of machines.values()) await slurm.shutdownMachine(slot);
      machines.clear();
      store.close();
    },
  };
  open.push(handle);
  return handle;
}
