// provisioning / bootstrapping: the machine is launched; wait for its agent to register
// (→ validating, done by registration). Pools with setup_commands first run them over
// SSH, in the background. A machine whose agent does not register by the deadline is
// failed and cleaned up, and counts against the pool's launch health.
import { isIn } from "../../../schema/lifecycle.ts";
import { move, say, type Step } from "../context.ts";
import { instanceOf } from "../inventory.ts";
import { terminateInstance } from "./terminate.ts";

const BOOTSTRAP_POLL_MS = 2_000;

export const provision: Step = async (node, ctx) => {
  const { svc, at } = ctx;
  const pool = svc.pool(node.pool);
  const timeout = pool?.health.registration_timeout ?? 15 * 60_000;
  // The deadline was set at launch: time spent backing off before it does not count.
  const deadline = node.nextActionAt ?? (node.requestedAt ?? node.stateChangedAt) + timeout;
  if (at > deadline) {
    const why = `agent did not register within ${Math.round(timeout / 60_000)} min`;
    if (pool !== undefined) await svc.launches.failed(pool.name, at, `${node.id}: ${why}`, "transient");
    if (!(await move(node, "failed", why, ctx))) return undefined;
    await terminateInstance(node, ctx);
    return undefined;
  }
  if (pool === undefined || pool.setup_commands.length === 0) return deadline;
  // SSH bootstrap: once the instance runs, its setup commands run in the background; a later
  // pass reads the outcome. Success waits here for the agent's registration.
  const bootstrapper = svc.bootstrapper();
  const next = await bootstrapper.next(node, async () => {
    const answer = await instanceOf(node, ctx);
    return answer.answered ? answer.instance : undefined; // not answered yet: no address yet
  });
  if (next.kind === "start") {
    if (node.state !== "bootstrapping") await move(node, "bootstrapping", next.reason, ctx);
    if (node.state === "bootstrapping") await bootstrapper.begin(node, pool, next.instance);
  } else if (next.kind === "failed") {
    if ((await move(node, "failed", next.reason, ctx)) && isIn("terminal", node.state)) await terminateInstance(node, ctx);
    return undefined;
  } else if (next.reason !== undefined) {
    await say(node, next.reason, ctx);
  }
  // The instance's address and the run's outcome are polled, not pushed.
  return Math.min(deadline, at + BOOTSTRAP_POLL_MS);
};
