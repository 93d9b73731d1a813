// provisioning / bootstrapping: the machine is launched; wait for its agent to register
// (→ validating, done by registration). Pools with setup_commands first run them over
// SSH, in the background. The deadline counts from the launch (from the adoption, for an
// instance a sweep adopted) and is what the pool has learned (registration.ts). Past it,
// while the provider still reports the machine as pending (booting), Navarch asks again,
// up to health.registration_timeout_max, and gives its agent a few minutes to start once
// it runs; then the machine is failed and cleaned up, and counts against the pool
// (launches.ts: back-off, then the pool is held).
import type { PoolConfig } from "../../../schema/config.ts";
import { move, say, type Step, type StepContext } from "../context.ts";
import { instanceOf } from "../inventory.ts";
import type { RegistrationFailure } from "../launches.ts";
import { minutes } from "../../nodes/registration-deadlines.ts";
import type { NodeRow } from "../../nodes/writer.ts";
import { terminateInstance } from "./terminate.ts";

const BOOTSTRAP_POLL_MS = 2_000;
/** How soon to ask the provider again about a machine past its deadline that still boots. */
const STILL_BOOTING_POLL_MS = 60_000;
/** Once it no longer boots, how long its agent then has to start and register. */
const AGENT_START_GRACE_MS = 5 * 60_000;
const DEFAULT_TIMEOUT_MS = 15 * 60_000;

export const provision: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  const pool = svc.pool(node.pool);
  const { from, ms } = registrationClock(node, ctx, pool);
  // What the pool learned since the launch may lengthen the deadline, never shorten it; a
  // machine seen booting past it got more (nextActionAt).
  const deadline = Math.max(from + ms, node.nextActionAt ?? 0);
  if (at > deadline) {
    const ceiling = from + Math.max(ms, pool?.health.registration_timeout_max ?? ms);
    const answer = at <= ceiling ? await stillBooting(node, ctx) : undefined;
    // The question runs beside the loop: the pass that reads its answer decides (woken by it).
    if (answer !== undefined && "waiting" in answer) {
      await say(node, answer.waiting, ctx);
      return at;
    }
    const booting = answer?.booting;
    if (booting !== undefined) {
      const since = node.adoptedAt !== null ? "adoption" : "launch";
      if (!node.stateReason?.endsWith("asking again"))
        svc.log(`${node.id}: past its registration deadline (${minutes(ms)}), but ${booting}: waiting, at most ${minutes(ceiling - from)} after its ${since}`);
      // Once it stops booting, its agent gets a little time to start before the machine is given up.
      const text = `${booting} ${minutes(at - from)} after its ${since} (deadline ${minutes(ms)}); asking again`;
      await svc.writer.patch(node, { stateReason: text, nextActionAt: Math.min(at + AGENT_START_GRACE_MS, ceiling) }, at);
      return Math.min(at + STILL_BOOTING_POLL_MS, ceiling + 1);
    }
    const why =
      node.adoptedAt !== null
        ? `agent did not register within ${minutes(deadline - from)} of its adoption (a tagged instance no node row knew, adopted by this reconciler)`
        : `agent did not register within ${minutes(deadline - from)}`;
    await giveUp(node, ctx, pool, why, {
      nodeId: node.id,
      pattern: `did not register within ${minutes(ms)}`,
      hint: "raise health.registration_timeout or check the bootstrap",
    });
    return undefined;
  }
  // An adopted machine was bootstrapped by whoever launched it: its agent is waited for, never set up again.
  if (pool === undefined || pool.setup_commands.length === 0 || node.adoptedAt !== null) return deadline;
  // SSH bootstrap: once the instance runs, its setup commands run in the background; a later
  // pass reads the outcome. Success waits here for the agent's registration.
  const bootstrapper = svc.bootstrapper();
  const next = await bootstrapper.next(node, async () => {
    const answer = await instanceOf(node, ctx);
    return answer.answered ? answer.instance : undefined; // not answered yet: no address yet
  });
  if (next.kind === "start") {
    if (node.state !== "bootstrapping") await move(node, "bootstrapping", next.reason, ctx);
    if (node.state === "bootstrapping") await bootstrapper.begin(node, pool, next.instance, deadline);
  } else if (next.kind === "failed") {
    await giveUp(node, ctx, pool, next.reason, {
      nodeId: node.id,
      pattern: "failed the SSH bootstrap",
      hint: `check the bootstrap (\`navarch nodes get ${node.id}\` shows its output)`,
    });
    return undefined;
  } else if (next.reason !== undefined) {
    await say(node, next.reason, ctx);
  }
  // The instance's address and the run's outcome are polled, not pushed.
  return Math.min(deadline, at + BOOTSTRAP_POLL_MS);
};

/** Since when the machine's registration deadline counts, and how long it is. */
function registrationClock(node: NodeRow, ctx: StepContext, pool: PoolConfig | undefined): { from: number; ms: number } {
  const timeout = pool?.health.registration_timeout ?? DEFAULT_TIMEOUT_MS;
  const ms = pool === undefined ? timeout : ctx.svc.deadlines.deadline(pool.health, pool.name, node.provider, node.instanceType).ms;
  // Rows from before launches were timed carry the deadline set at launch.
  const from = node.launchedAt ?? (node.nextActionAt !== null ? node.nextActionAt - timeout : (node.requestedAt ?? node.stateChangedAt));
  return { from, ms };
}

/**
 * `booting`: "still booting at aws" while the provider says the machine boots (or could not
 * say); undefined when it does not; `waiting` while the question, beside the loop, is unanswered.
 */
async function stillBooting(node: NodeRow, ctx: StepContext): Promise<{ booting: string } | { waiting: string } | undefined> {
  try {
    const answer = await instanceOf(node, ctx);
    if (!answer.answered) return { waiting: answer.waiting };
    return answer.instance?.state === "pending" ? { booting: `still booting at ${node.provider}` } : undefined;
  } catch (err) {
    // Not knowing is no reason to give a machine up: ask again (bounded by the ceiling).
    return { booting: `${node.provider} did not say whether it still boots (${err instanceof Error ? err.message : String(err)})` };
  }
}

/** The machine did not come up: failed and counted against its pool (one transaction), then its instance terminated. */
async function giveUp(node: NodeRow, ctx: StepContext, pool: PoolConfig | undefined, why: string, failure: RegistrationFailure): Promise<void> {
  const { svc, at } = ctx;
  const from = node.state;
  const moved = await svc.writer.atomically(async (tx) => {
    const ok = await svc.writer.transition(node, "failed", { at, actor: svc.actor, reason: why }, tx);
    if (ok && pool !== undefined) await svc.launches.registrationFailed(pool, at, failure, svc.deadlines, tx);
    return ok;
  });
  if (!moved) return;
  ctx.report.transitions.push({ node: node.id, from, to: "failed", reason: why });
  await terminateInstance(node, ctx);
}
