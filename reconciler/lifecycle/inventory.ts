// What the providers have, against the nodes table. Every instance Navarch launched
// carries its tags; a sweep at start and every minute adopts an instance that was
// created but not recorded (a crash between "create sent" and "create recorded", or a
// database restored from before the launch: its agent registers again and the tags say
// whose it is). An instance tagged for a configured pool that no node row knows at all (a
// lost database) is adopted as a node of its pool at once, its registration deadline
// counted from the adoption, never from its launch: it leaves only by the pool's
// scale-down or when that deadline passes with no agent. One that a finished node's row
// knows (failed or terminated, its terminate lost), or that names no configured pool, is
// reaped once no live node owns it — only after two sweeps in a row saw it so and its
// agent had a heartbeat timeout to come back, never on one miss. Until then such an
// instance counts toward its pool's size: a reconciler that lost its database does not
// launch a second fleet beside the first.
import { and, eq, isNotNull, or } from "drizzle-orm";
import { instances, nodes } from "../../schema/db.ts";
import { TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance, type Provider } from "../providers/provider.ts";
import { runOperation } from "../safety/operations.ts";
import type { Db } from "../store/store.ts";
import type { StepContext } from "./context.ts";
import { minutes } from "../nodes/registration-deadlines.ts";
import type { Executor, NodeRow } from "../nodes/writer.ts";

export async function recordInstance(
  db: Executor,
  instance: Instance,
  pool: string,
  operationKey: string | null,
  at: number,
  orphan: { orphanSince: number | null; orphanSweeps: number } = { orphanSince: null, orphanSweeps: 0 },
): Promise<void> {
  await db
    .insert(instances)
    .values({
      name: instance.name,
      provider: instance.provider,
      providerId: instance.id,
      pool,
      instanceType: instance.instanceType,
      region: instance.region,
      state: instance.state,
      address: instance.address ?? null,
      operationKey,
      ...orphan,
      createdAt: at,
      updatedAt: at,
    })
    .onConflictDoUpdate({
      target: instances.name,
      set: { providerId: instance.id, state: instance.state, address: instance.address ?? null, ...orphan, updatedAt: at },
    });
}

export async function markInstanceTerminated(db: Db, providerId: string, at: number): Promise<void> {
  await db.update(instances).set({ state: "terminated", updatedAt: at }).where(eq(instances.providerId, providerId));
}

/** What the provider said of a node's instance, or what the question waits for (it runs beside the loop). */
export type InstanceAnswer = { answered: true; instance: Instance | undefined } | { answered: false; waiting: string };

/** The instance behind a node, as its provider sees it now (undefined: it does not know it). */
export async function instanceOf(node: NodeRow, ctx: StepContext): Promise<InstanceAnswer> {
  const provider = node.provider ? ctx.svc.providers.get(node.provider) : undefined;
  if (provider === undefined || node.instanceName === null || node.provider === null) return { answered: true, instance: undefined };
  const id = node.instanceName;
  const how = ctx.svc.providerCall(node.provider, "get", node.id);
  const outcome = await how.calls.run(`get:${node.provider}:${id}`, () => provider.get(id), how);
  if (!outcome.settled) return { answered: false, waiting: ctx.svc.providerWaiting(node.provider, "get", outcome.since) };
  if (!outcome.ok) throw outcome.error;
  return { answered: true, instance: outcome.value };
}

/** A node id as Navarch makes them (scale.ts newNodeId): DNS-safe, at most 63 characters. */
const NODE_ID = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** What a sweep needs of the pass: it runs before the rails are known. */
export type SweepContext = Pick<StepContext, "at" | "report" | "svc">;

/** A live node as the sweep needs it. */
export interface SweepNode {
  id: string;
  instanceName: string | null;
}

export class Inventory {
  /** Instances tagged for each pool that no node claims yet, per provider, as of its last sweep. */
  private readonly unclaimedByProvider = new Map<string, Map<string, number>>();
  /** When each provider's last listing was swept (the loop's clock). */
  private readonly sweptAt = new Map<string, number>();

  /** Instances tagged for `pool` that no node claims yet (as of the last sweeps). */
  unclaimed(pool: string): number {
    let n = 0;
    for (const byPool of this.unclaimedByProvider.values()) n += byPool.get(pool) ?? 0;
    return n;
  }

  /**
   * Whether provider `name` has been swept since this loop started (its listing answered or
   * failed): until then what it runs for a pool is unknown, and the pool is not grown.
   */
  swept(name: string): boolean {
    return this.sweptAt.has(name);
  }

  /**
   * Sweeps each provider whose last sweep is `intervalMs` old. Its listing runs beside the loop:
   * a provider that has not answered yet is swept at a later pass, the others now. Returns
   * whether any listing was swept. `owner`: the live node named as an instance is (a node's id
   * is its instance's name), if any.
   */
  async sweep(
    owner: (name: string) => SweepNode | undefined,
    rows: (ids: string[]) => Promise<NodeRow[]>,
    ctx: SweepContext,
    intervalMs: number,
  ): Promise<boolean> {
    const { svc, at } = ctx;
    let swept = false;
    for (const [name, provider] of svc.providers) {
      if (at - (this.sweptAt.get(name) ?? Number.NEGATIVE_INFINITY) < intervalMs) continue;
      const how = svc.providerCall(name, "list");
      const listing = await how.calls.run(`list:${name}`, () => provider.list({ [TAG_MANAGED_BY]: "navarch" }), how);
      if (!listing.settled) continue;
      this.sweptAt.set(name, at);
      swept = true;
      if (!listing.ok) {
        svc.log(`inventory sweep of ${name}: ${listing.error instanceof Error ? listing.error.message : String(listing.error)}`);
        continue;
      }
      await this.sweepProvider(name, provider, listing.value, owner, rows, ctx);
    }
    return swept;
  }

  private async sweepProvider(
    name: string,
    provider: Provider,
    found: readonly Instance[],
    owner: (name: string) => SweepNode | undefined,
    rows: (ids: string[]) => Promise<NodeRow[]>,
    ctx: SweepContext,
  ): Promise<void> {
    const { svc, at } = ctx;
    // What earlier sweeps (also of an earlier process: a restart must not reset the count) found unowned.
    const db = svc.store.db;
    const known = new Map(
      (
        await db
          .select()
          .from(instances)
          .where(and(isNotNull(instances.orphanSince), eq(instances.provider, name)))
      ).map((r) => [`${r.provider}:${r.providerId}`, r]),
    );
    const seenNow = new Set<string>();
    const unclaimed = new Map<string, number>();
    const grace = svc.config().server.heartbeat_timeout;
    for (const instance of found) {
      if (instance.state === "terminated") continue;
      const node = owner(instance.name);
      if (node !== undefined) {
        if (node.instanceName === null) await this.adopt(instance, name, (await rows([node.id]))[0], ctx);
        continue;
      }
      if (await this.adoptUnknown(instance, name, ctx)) continue;
      const key = `${name}:${instance.id}`;
      seenNow.add(key);
      const before = known.get(key);
      const since = before?.orphanSince ?? at;
      const sweeps = (before?.orphanSweeps ?? 0) + 1;
      await recordInstance(db, instance, instance.tags[TAG_POOL] ?? "", instance.tags[TAG_OPERATION] ?? null, at, {
        orphanSince: since,
        orphanSweeps: sweeps,
      });
      const pool = instance.tags[TAG_POOL];
      const count = () => void (pool !== undefined && unclaimed.set(pool, (unclaimed.get(pool) ?? 0) + 1));
      if (sweeps < 2 || at - since < grace || svc.config().safety.dry_run) {
        count();
        continue;
      }
      const outcome = await runOperation(
        db,
        { key: `reap:${name}:${instance.id}`, kind: "reap" },
        at,
        () => provider.terminate(instance.id),
        undefined,
        svc.fence,
        svc.providerCall(name, "reap"),
      );
      if (!outcome.ok) {
        count();
        continue;
      }
      await markInstanceTerminated(db, instance.id, at);
      ctx.report.terminated.push(instance.id);
      await svc.writer.audit(at, svc.actor, "reap", instance.id, { provider: name, reason: "no node for it in two sweeps" });
      svc.log(`reaped ${name} instance ${instance.id}: no node for it in two sweeps`);
    }
    // Gone since (terminated, or claimed by a node): no longer an orphan.
    for (const [key, row] of known) {
      if (!seenNow.has(key)) await db.update(instances).set({ orphanSince: null, orphanSweeps: 0, updatedAt: at }).where(eq(instances.name, row.name));
    }
    this.unclaimedByProvider.set(name, unclaimed);
  }

  /**
   * An instance tagged for a configured pool that no node row knows (the database was lost, or
   * restored from before its launch) becomes a node of that pool, provisioning, with its
   * registration deadline counted from now: its agent registers into it, or the deadline
   * passes and it is failed (provision.ts), or the pool's scale-down takes it. Returns
   * whether it was adopted.
   */
  private async adoptUnknown(instance: Instance, provider: string, ctx: SweepContext): Promise<boolean> {
    const { svc, at } = ctx;
    const pool = svc.pool(instance.tags[TAG_POOL] ?? null);
    if (pool === undefined || !NODE_ID.test(instance.name)) return false;
    const db = svc.store.db;
    const [known] = await db
      .select({ id: nodes.id })
      .from(nodes)
      .where(or(eq(nodes.id, instance.name), and(eq(nodes.provider, provider), eq(nodes.instanceName, instance.id))))
      .limit(1);
    if (known !== undefined) return false;
    const d = svc.deadlines.deadline(pool.health, pool.name, provider, instance.instanceType);
    const reason = `adopted ${provider} instance ${instance.id}: tagged for pool ${pool.name}, no node row knew it; its agent has ${minutes(d.ms)} from now to register`;
    await svc.writer.atomically(async (tx) => {
      await tx.insert(nodes).values({
        id: instance.name,
        origin: "launched",
        pool: pool.name,
        provider,
        instanceType: instance.instanceType,
        instanceName: instance.id,
        state: "provisioning",
        stateReason: reason,
        stateChangedAt: at,
        nextActionAt: at + d.ms,
        launchedAt: at,
        adoptedAt: at,
        gpuCount: svc.instanceGpus.gpus(provider, instance.instanceType) ?? null,
        updatedAt: at,
      });
      await recordInstance(tx, instance, pool.name, instance.tags[TAG_OPERATION] ?? null, at);
      await svc.writer.audit(at, svc.actor, "adopt", instance.name, { instance: instance.id, provider, pool: pool.name, unknown: true }, tx);
    });
    svc.log(`${instance.name}: ${reason}`);
    return true;
  }

  /**
   * The instance carries Navarch's tags and a node of its name exists without it: the node
   * is Navarch's (launched before a crash recorded it, or before the database it was
   * restored from). The provider's tags, not the agent's word, say which pool it is in.
   */
  private async adopt(instance: Instance, provider: string, node: NodeRow | undefined, ctx: SweepContext): Promise<void> {
    if (node === undefined || node.instanceName !== null) return;
    const pool = instance.tags[TAG_POOL] ?? node.pool;
    await recordInstance(ctx.svc.store.db, instance, pool ?? "", instance.tags[TAG_OPERATION] ?? null, ctx.at);
    await ctx.svc.writer.patch(node, { instanceName: instance.id, provider, origin: "launched", pool, instanceType: instance.instanceType }, ctx.at, {
      actor: ctx.svc.actor,
      action: "adopt",
      details: { instance: instance.id, pool },
    });
  }
}
