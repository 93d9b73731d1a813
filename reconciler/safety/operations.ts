// The write-ahead log of side effects. Every call that changes the world (cloud
// launch/terminate, scheduler cordon, …) first gets an operation row under a
// deterministic key; the call carries the key as its idempotency token. After a
// crash at any point the same key is retried and finds the same result, so no
// instance is created twice and none is terminated twice.
import { and, eq, sql } from "drizzle-orm";
import { operations } from "../../schema/db.ts";
import { FencedError, type Fence } from "../nodes/writer.ts";
import type { BesideCalls, CallOptions, CallOutcome } from "../dependencies/beside.ts";
import type { Db } from "../store/store.ts";

export type OperationOutcome<T> =
  | { ok: true; result: T; replayed: boolean }
  | { ok: false; error: unknown }
  /** The call runs beside the loop (dependencies/beside.ts) and has not answered yet: ask again later. */
  | { ok: false; inFlightSince: number };

export interface OperationSpec {
  key: string;
  kind: string;
  nodeId?: string;
  pool?: string;
  payload?: unknown;
}

/** Where the call runs when not in the caller's own time: beside the loop, with its deadline and its dependency. */
export type BesideCall = CallOptions & { calls: BesideCalls };

/**
 * Runs `effect` under the operation `spec.key`. A key that already succeeded
 * returns its stored result without calling `effect` again. A key left `running`
 * (the process died during the call) is first checked with `observe`: if the world
 * shows the effect happened, it is recorded without calling `effect` a second time.
 * With a `fence` (the leader lease), the row is marked running only while the lease is
 * still ours, and `effect` is never called by a reconciler that lost it.
 * With `beside`, `observe` and `effect` run beside the loop: the row is marked running
 * before the call starts and written with its outcome when it settles; until then the
 * answer is `inFlightSince`, and the same key asked again never calls a second time.
 */
export async function runOperation<T>(
  db: Db,
  spec: OperationSpec,
  at: number,
  effect: () => Promise<T>,
  observe?: () => Promise<{ done: true; result: T } | { done: false }>,
  fence?: Fence,
  beside?: BesideCall,
): Promise<OperationOutcome<T>> {
  fence?.check();
  // A call of this key already under way here: its outcome, never a second call.
  if (beside?.calls.has(spec.key)) return settledOutcome(await beside.calls.run<T>(spec.key, effect, beside));
  const read = async () => (await db.select().from(operations).where(eq(operations.key, spec.key)))[0];
  // Read first: a step asks again every pass while its node waits (a rebooting node), and a
  // key that already succeeded needs no write.
  let row = await read();
  if (row === undefined) {
    await db
      .insert(operations)
      .values({
        key: spec.key,
        kind: spec.kind,
        nodeId: spec.nodeId ?? null,
        pool: spec.pool ?? null,
        state: "pending",
        payload: spec.payload ?? null,
        createdAt: at,
        updatedAt: at,
      })
      .onConflictDoNothing();
    // Another writer may have created it first (two reconcilers): its row is the one.
    row = await read();
  }
  if (row?.state === "succeeded") return { ok: true, result: row.result as T, replayed: true };
  if (row?.state === "running" && observe) {
    const seen: CallOutcome<{ done: true; result: T } | { done: false }> =
      beside === undefined ? { settled: true, ok: true, value: await observe() } : await beside.calls.run(`observe:${spec.key}`, observe, beside);
    if (!seen.settled || !seen.ok) return settledOutcome(seen as CallOutcome<T>);
    if (seen.value.done) {
      await db
        .update(operations)
        .set({ state: "succeeded", result: (seen.value.result ?? null) as unknown, updatedAt: at })
        .where(eq(operations.key, spec.key));
      return { ok: true, result: seen.value.result, replayed: true };
    }
  }
  const started = await db
    .update(operations)
    .set({ state: "running", attempts: sql`${operations.attempts} + 1`, updatedAt: at })
    .where(fence ? and(eq(operations.key, spec.key), fence.guard()) : eq(operations.key, spec.key))
    .returning({ key: operations.key });
  if (started.length === 0) return { ok: false, error: new FencedError() };
  fence?.check();
  // The outcome is recorded where the call settles: beside the loop, whoever reads it later.
  const recorded = async (): Promise<T> => {
    try {
      const result = await effect();
      await db
        .update(operations)
        .set({ state: "succeeded", result: (result ?? null) as unknown, error: null, updatedAt: at })
        .where(eq(operations.key, spec.key));
      return result;
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      await db.update(operations).set({ state: "failed", error: text, updatedAt: at }).where(eq(operations.key, spec.key));
      throw error;
    }
  };
  if (beside !== undefined) return settledOutcome(await beside.calls.run(spec.key, recorded, beside));
  try {
    return { ok: true, result: await recorded(), replayed: false };
  } catch (error) {
    return { ok: false, error };
  }
}

function settledOutcome<T>(outcome: CallOutcome<T>): OperationOutcome<T> {
  if (!outcome.settled) return { ok: false, inFlightSince: outcome.since };
  return outcome.ok ? { ok: true, result: outcome.value, replayed: false } : { ok: false, error: outcome.error };
}
