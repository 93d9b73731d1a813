// requested → provisioning: ask the pool's provider for a machine. The operation row's
// key is the idempotency token, so a launch retried after a crash finds the machine the
// first call made. Failures never fail the node: the pool backs off (launches.ts), and
// capacity or quota errors fail over to the pool's next provider at once.
import { eq } from "drizzle-orm";
import type { PoolConfig } from "../../../schema/config.ts";
import { nodes } from "../../../schema/db.ts";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type Instance } from "../../providers/provider.ts";
import { runOperation } from "../../safety/operations.ts";
import { blocked, move, say, type Look, type Step, type StepContext } from "../context.ts";
import { recordInstance } from "../inventory.ts";
import { launchErrorKind } from "../launches.ts";
import { minutes } from "../../nodes/registration-deadlines.ts";
import { FencedError, type NodeRow } from "../../nodes/writer.ts";

export const launch: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  const pool = svc.pool(node.pool);
  if (pool === undefined) {
    // Nothing was launched for it: nothing to clean up.
    await move(node, "failed", `pool ${node.pool ?? "-"} is not configured`, ctx);
    return undefined;
  }
  if (svc.config().safety.dry_run) return blocked(node, { allowed: false, rail: "dry_run", reason: "safety.dry_run is on: would launch" }, ctx);
  const gate = svc.launches.gate(pool.name, at);
  if (!gate.ok) {
    await say(node, `waiting to launch: ${gate.reason}`, ctx);
    return gate.retryAt; // undefined while the pool is held: a resume, a config change or a registration wakes it
  }
  const providerName = node.provider ?? pool.providers[0]!;
  const provider = svc.providers.get(providerName);
  if (provider === undefined) return failed(node, pool, ctx, `provider ${providerName} is not available`, "permanent");
  let ssh: { sshPublicKey?: string; sshOwnKey?: boolean };
  try {
    ssh = svc.sshPublicKey(pool);
  } catch (err) {
    return failed(node, pool, ctx, `ssh_private_key_path ${pool.ssh_private_key_path}: ${err instanceof Error ? err.message : String(err)}`, "permanent");
  }
  const key = `launch:${node.id}:${providerName}`;
  const outcome = await runOperation(
    svc.store.db,
    { key, kind: "launch", nodeId: node.id, pool: pool.name },
    at,
    async () => {
      const instance = await provider.launch({
        name: node.id,
        idempotencyKey: key,
        pool: pool.name,
        instanceType: pool.instance_type,
        region: pool.region,
        ...(pool.zones[0] ? { zone: pool.zones[0], zones: pool.zones } : {}),
        ...ssh,
        // The pool's labels too, where the provider has tags (ours win a clash: inventory lists by them).
        tags: { ...pool.labels, [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool.name, [TAG_OPERATION]: key },
      });
      // Recorded where the call settles, beside the loop: the machine's agent may register
      // (and move the node on) before a pass reads this outcome. The launch stands either way.
      await recordLaunched(node, instance, pool, providerName, key, ctx).catch((err: unknown) =>
        svc.log(
          `launch of ${node.id}: ${instance.id} is up, but recording it failed (the inventory sweep adopts it): ${err instanceof Error ? err.message : String(err)}`,
        ),
      );
      return instance;
    },
    undefined,
    svc.fence,
    svc.providerCall(providerName, "launch", node.id),
  );
  // The provider has not answered yet (the call runs beside the loop): the pool's other work goes on.
  if ("inFlightSince" in outcome) {
    await say(node, svc.providerWaiting(providerName, "launch", outcome.inFlightSince), ctx);
    return at;
  }
  if (outcome.ok) {
    const instance = outcome.result;
    await recordInstance(svc.store.db, instance, pool.name, key, at);
    await svc.launches.succeeded(pool.name, at);
    ctx.report.launched.push(node.id);
    // The registration deadline counts from here; what the pool has learned may lengthen it.
    const d = svc.deadlines.deadline(pool.health, pool.name, providerName, pool.instance_type);
    svc.deadlines.sayIfLearned(pool.name, providerName, pool.instance_type, d);
    const deadline = at + d.ms;
    await move(node, "provisioning", `launched ${instance.id} on ${providerName}; its agent has ${minutes(d.ms)} to register`, ctx, {
      nextActionAt: deadline,
      launchedAt: at,
      instanceName: instance.id,
      provider: providerName,
      instanceType: pool.instance_type,
      gpuCount: svc.instanceGpus.gpus(providerName, pool.instance_type) ?? null,
    });
    return deadline;
  }
  const err = outcome.error;
  if (err instanceof FencedError) return undefined;
  const message = err instanceof Error ? err.message : String(err);
  // Capacity and quota: try the pool's next provider now; after the last, back off.
  const next = pool.providers[pool.providers.findIndex((p) => p === providerName) + 1];
  if (err instanceof ProviderError && (err.kind === "capacity" || err.kind === "quota") && next !== undefined) {
    await svc.writer.patch(node, { provider: next, stateReason: `${message}; failing over to ${next}` }, at);
    return at;
  }
  const retryAfter = err instanceof ProviderError && err.retryAfterSeconds ? err.retryAfterSeconds * 1000 : 0;
  return failed(node, pool, ctx, message, launchErrorKind(err), retryAfter);
};

/** The launched instance on its node's row (unless a pass already put it there), and the pool's launches healthy again. */
async function recordLaunched(node: NodeRow, instance: Instance, pool: PoolConfig, providerName: string, key: string, ctx: StepContext): Promise<void> {
  const { svc, at } = ctx;
  await recordInstance(svc.store.db, instance, pool.name, key, at);
  // The step's own row first (answered within its pass, the step goes on from it); changed
  // meanwhile (registered), the row as it is now.
  let row: NodeRow | undefined = node;
  for (let attempt = 0; attempt < 5 && row !== undefined && row.instanceName === null; attempt++) {
    const launched = {
      instanceName: instance.id,
      provider: providerName,
      instanceType: pool.instance_type,
      // When it was launched, for the registration time the pool learns from (registration.ts).
      launchedAt: row.launchedAt ?? at,
      gpuCount: row.gpuCount ?? svc.instanceGpus.gpus(providerName, pool.instance_type) ?? null,
    };
    if (await svc.writer.patch(row, launched, at)) break;
    [row] = await svc.store.db.select().from(nodes).where(eq(nodes.id, node.id));
  }
  await svc.launches.succeeded(pool.name, at);
}

/** A launch that did not happen: the pool backs off; the node waits, back on the pool's first provider. */
async function failed(node: NodeRow, pool: PoolConfig, ctx: StepContext, message: string, kind: "permanent" | "transient", retryAfterMs = 0): Promise<Look> {
  const retryAt = await ctx.svc.launches.failed(pool.name, ctx.at, message, kind, retryAfterMs);
  const reason = `launch ${kind === "permanent" ? "refused" : "failed"}: ${message}; pool ${pool.name} retries at ${new Date(retryAt).toISOString()}`;
  await ctx.svc.writer.patch(node, { provider: pool.providers[0] ?? node.provider, stateReason: reason }, ctx.at);
  return retryAt;
}
