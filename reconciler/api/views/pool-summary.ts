// A pool with its sizes and counts, as the overview and the pool page show it: the parts of its
// spec the views read, its nodes by state, whether a breaker, failing launches or machines
// that never registered hold it.
import * as v from "valibot";
import type { pools } from "../../../schema/db.ts";
import { isIn } from "../../../schema/lifecycle.ts";
import { StateCounts, type StateCount } from "./node-counts.ts";
import { Ms } from "./time.ts";

/** A pool with its sizes and counts, as the overview and the pool page show it. */
export const PoolSummary = v.object({
  name: v.string(),
  paused: v.boolean(),
  pausedReason: v.nullable(v.string()),
  minNodes: v.nullable(v.number()),
  maxNodes: v.nullable(v.number()),
  autoscaler: v.nullable(v.pipe(v.string(), v.description("the autoscaler type, or null for none"))),
  requestedNodes: v.nullable(v.pipe(v.number(), v.description("the size an operator set with navarch pools scale"))),
  requestedBy: v.nullable(v.string()),
  providers: v.array(v.string()),
  instanceType: v.nullable(v.string()),
  size: v.pipe(v.number(), v.description("nodes Navarch launched that count toward the pool's size (live, not terminating); monitored nodes never do")),
  monitored: v.pipe(v.number(), v.description("live nodes that registered on their own (a DaemonSet's): watched and quarantined, never counted in size")),
  healthy: v.number(),
  unhealthy: v.number(),
  byState: StateCounts,
  lastScaleAt: v.nullable(Ms),
  lastScaleDirection: v.nullable(v.picklist(["up", "down"])),
  breaker: v.nullable(v.pipe(v.string(), v.description("why the pool's circuit breaker is tripped, when it is"))),
  launches: v.nullable(
    v.pipe(
      v.object({ failures: v.number(), kind: v.picklist(["permanent", "transient"]), error: v.string(), since: Ms, retryAt: v.nullable(Ms) }),
      v.description("set while the pool's launches keep failing: the pool backs off and says why"),
    ),
  ),
  held: v.nullable(
    v.pipe(
      v.object({ reason: v.string(), since: Ms, failures: v.number() }),
      v.description("set while the pool launches nothing because its last machines did not register (`navarch pools resume` lifts it)"),
    ),
  ),
});
export type PoolSummary = v.InferOutput<typeof PoolSummary>;

/** The parts of a pool's spec the views show; everything else stays in `spec`. */
const SpecView = v.object({
  instance_type: v.optional(v.string()),
  providers: v.optional(v.array(v.string())),
  provider: v.optional(v.string()),
  scaling: v.optional(
    v.object({
      min_nodes: v.optional(v.number()),
      max_nodes: v.optional(v.number()),
      autoscaler: v.optional(v.nullable(v.object({ type: v.optional(v.string()) }))),
    }),
  ),
});

export function summarize(p: typeof pools.$inferSelect, counts: StateCount[], tripped: { scope: string; reason: string }[]): PoolSummary {
  const spec = v.safeParse(SpecView, p.spec);
  const s = spec.success ? spec.output : {};
  const mine = counts.filter((r) => r.pool === p.name);
  const byState: Record<string, number> = {};
  for (const r of mine) byState[r.state] = r.n;
  const live = mine.filter((r) => isIn("inPool", r.state));
  return {
    name: p.name,
    paused: p.paused,
    pausedReason: p.pausedReason,
    minNodes: s.scaling?.min_nodes ?? null,
    maxNodes: s.scaling?.max_nodes ?? null,
    autoscaler: s.scaling?.autoscaler?.type ?? null,
    requestedNodes: p.requestedNodes,
    requestedBy: p.requestedBy,
    providers: s.providers ?? (s.provider ? [s.provider] : []),
    instanceType: s.instance_type ?? null,
    size: live.reduce((sum, r) => sum + r.n - r.monitored, 0),
    monitored: live.reduce((sum, r) => sum + r.monitored, 0),
    healthy: live.reduce((sum, r) => sum + r.healthy, 0),
    unhealthy: live.reduce((sum, r) => sum + r.unhealthy, 0),
    byState,
    lastScaleAt: p.lastScaleAt,
    lastScaleDirection: p.lastScaleDirection,
    breaker: tripped.find((b) => b.scope === `pool:${p.name}`)?.reason ?? null,
    launches:
      p.launchFailures > 0
        ? {
            failures: p.launchFailures,
            kind: p.launchErrorKind ?? "transient",
            error: p.launchError ?? "unknown error",
            since: p.launchFailingSince ?? p.updatedAt,
            retryAt: p.launchRetryAt,
          }
        : null,
    held: p.registrationHold === null ? null : { reason: p.registrationHold, since: p.registrationHeldAt ?? p.updatedAt, failures: p.registrationFailures },
  };
}
