// The warm start: a fleet that was already up when the run began. For every pool,
// min_nodes machines are created running in the simulated cloud, and their rows are
// written as the reconciler itself would have left them after launching them and seeing
// their agents pass the first health check (nodes Ready, GPUs with readings, the
// instance and its launch operation recorded). Bulk inserts: 10,000 nodes take about a
// second, where launching them through the loop would take most of a minute.
import type { PoolConfig } from "../../schema/config.ts";
import { gpuReadings, gpus as gpusTable, instances, nodes, operations } from "../../schema/db.ts";
import type { Scenario } from "../../schema/scenario.ts";
import { TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance } from "../providers/provider.ts";
import type { SimulatedCloud } from "../providers/simulated.ts";
import type { Store } from "../store/store.ts";
import type { SimulatedAgents } from "./agents.ts";
import type { Random } from "./random.ts";

export interface SeededNode {
  id: string;
  pool: string;
  instance: Instance;
  gpus: number;
}

const SPOOL = "00000000-0000-4000-8000-000000000000";

export async function seedRunningFleet(
  store: Store,
  scenario: Scenario,
  clouds: ReadonlyMap<string, SimulatedCloud>,
  agents: SimulatedAgents,
  random: Random,
  at: number,
): Promise<SeededNode[]> {
  const seeded: SeededNode[] = [];
  const used = new Set<string>();
  const placed = new Map<string, number>(); // provider/type → count, for capacity
  for (const pool of scenario.config.pools) {
    for (let i = 0; i < pool.scaling.min_nodes; i++) {
      const provider = providerWithRoom(pool, scenario, placed);
      if (provider === undefined) break; // no capacity anywhere: the reconciler will keep trying
      const cloud = clouds.get(provider)!;
      let id: string;
      do id = `${pool.name.slice(0, 50)}-${random.hex(4)}`;
      while (used.has(id));
      used.add(id);
      const key = `launch:${id}:${provider}`;
      const instance = cloud.createRunning({
        name: id,
        idempotencyKey: key,
        pool: pool.name,
        instanceType: pool.instance_type,
        region: pool.region,
        ...(pool.zones[0] ? { zone: pool.zones[0] } : {}),
        tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool.name, [TAG_OPERATION]: key },
      });
      const k = `${provider}/${pool.instance_type}`;
      placed.set(k, (placed.get(k) ?? 0) + 1);
      seeded.push({ id, pool: pool.name, instance, gpus: 0 });
    }
  }

  const db = store.db;
  const nodeRows: (typeof nodes.$inferInsert)[] = [];
  const gpuRows: (typeof gpusTable.$inferInsert)[] = [];
  const readingRows: (typeof gpuReadings.$inferInsert)[] = [];
  const instanceRows: (typeof instances.$inferInsert)[] = [];
  const operationRows: (typeof operations.$inferInsert)[] = [];
  for (const node of seeded) {
    const { instance } = node;
    const bootId = `boot-${instance.id}`;
    const gpus = agents.adopt(node.id, instance, bootId);
    node.gpus = gpus.length;
    const key = `launch:${node.id}:${instance.provider}`;
    nodeRows.push({
      id: node.id,
      pool: node.pool,
      provider: instance.provider,
      instanceType: instance.instanceType,
      instanceName: instance.id,
      state: "ready",
      stateReason: "ready at the start of the simulation",
      stateChangedAt: at,
      requestedAt: at,
      hostname: node.id,
      bootId,
      agentVersion: "sim",
      nvmlAvailable: true,
      agentHealth: "healthy",
      registeredAt: at,
      lastHeartbeatAt: at,
      spoolId: SPOOL,
      verdict: "healthy",
      updatedAt: at,
    });
    for (const g of gpus) {
      gpuRows.push({
        nodeId: node.id,
        index: g.index,
        uuid: g.uuid,
        pciBusId: g.pciBusId,
        name: g.name,
        updatedAt: at,
      });
    }
    readingRows.push({ nodeId: node.id, readings: gpus.map((g) => ({ index: g.index, temperatureC: 45, utilizationPct: 0 })), updatedAt: at });
    instanceRows.push({
      name: node.id,
      provider: instance.provider,
      providerId: instance.id,
      pool: node.pool,
      instanceType: instance.instanceType,
      region: instance.region,
      state: "running",
      address: instance.address ?? null,
      operationKey: key,
      createdAt: at,
      updatedAt: at,
    });
    operationRows.push({
      key,
      kind: "launch",
      nodeId: node.id,
      pool: node.pool,
      state: "succeeded",
      attempts: 1,
      result: instance,
      createdAt: at,
      updatedAt: at,
    });
  }
  await db.transaction(async (tx) => {
    for (const chunk of chunks(nodeRows, 200)) await tx.insert(nodes).values(chunk);
    for (const chunk of chunks(gpuRows, 1000)) await tx.insert(gpusTable).values(chunk);
    for (const chunk of chunks(readingRows, 1000)) await tx.insert(gpuReadings).values(chunk);
    for (const chunk of chunks(instanceRows, 500)) await tx.insert(instances).values(chunk);
    for (const chunk of chunks(operationRows, 500)) await tx.insert(operations).values(chunk);
  });
  return seeded;
}

function providerWithRoom(pool: PoolConfig, scenario: Scenario, placed: ReadonlyMap<string, number>): string | undefined {
  for (const provider of pool.providers) {
    const cloud = scenario.clouds[provider];
    const cap = cloud?.capacity[pool.instance_type];
    const n = placed.get(`${provider}/${pool.instance_type}`) ?? 0;
    const total = [...placed.entries()].filter(([k]) => k.startsWith(`${provider}/`)).reduce((a, [, c]) => a + c, 0);
    if (cap !== undefined && n >= cap) continue;
    if (cloud?.quota !== undefined && total >= cloud.quota) continue;
    return provider;
  }
  return undefined;
}

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}
