// Seeded randomized runs of the real reconcile loop on virtual time, tried as a
// hostile operator and a broken fleet would: fatal and app-caused Xids, silent agents,
// provider errors (transient and permanent), config edits (shrink and grow a pool's
// bounds, remove and re-add a pool), reconciler restarts, a restore from an older copy
// of the database, registrations of nodes nobody launched and of nodes claiming another
// pool, operator actions, two reconcilers on one database, one of them paused past its
// lease, and dependency outages: the cloud's API hanging (every call waits until the outage
// ends) and the scheduler not answering (cordons wait, drains make no progress). After every
// pass the invariants must hold. One seed's run is here; the test
// (test/randomized.test.ts) spreads the seeds over child processes (child.ts).
import { asc, desc, gt } from "drizzle-orm";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../reconciler/config/load.ts";
import { Operator } from "../../reconciler/nodes/operator-actions.ts";
import { defaultHealthPolicy } from "../../reconciler/health/compile-policy.ts";
import { NO_SCHEDULER, type SchedulerMirror } from "../../reconciler/schedulers/scheduler.ts";
import { registerNode } from "../../reconciler/nodes/agent-reports.ts";
import { Reconciler } from "../../reconciler/lifecycle/loop.ts";
import { FencedError } from "../../reconciler/nodes/writer.ts";
import { SimulatedCloud } from "../../reconciler/providers/simulated.ts";
import { LeaderLease } from "../../reconciler/safety/lease.ts";
import { SimulatedAgents } from "../../reconciler/sim/agents.ts";
import { openStore, type Store } from "../../reconciler/store/store.ts";
import type { NavarchConfig } from "../../schema/config.ts";
import { auditLog, breakers, nodes } from "../../schema/db.ts";
import { isIn, type NodeState } from "../../schema/lifecycle.ts";
import { tempDir } from "../support.ts";

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const PASSES = 40;
const TRACE = process.env.NAVARCH_RANDOM_TRACE === "1";
const PER_POOL = 2;
const FLEET = 3;
const CORDONS_PER_MINUTE = 4;
const CORDON_BURST = 3;
/** Lease timing on the virtual clock: passes come every 5–15 s, so a leader renews in time. */
const LEASE = { durationMs: 60_000, renewDeadlineMs: 40_000, retryMs: 5_000 };

interface Bounds {
  min: number;
  max: number;
}

function configFor(p: Bounds, q: Bounds | undefined): NavarchConfig {
  const pool = (name: string, b: Bounds) =>
    `  - name: ${name}\n    provider: local\n    instance_type: local-8gpu\n    region: local\n    scaling:\n      min_nodes: ${b.min}\n      max_nodes: ${b.max}\n    health:\n      drain_timeout: 1m\n      registration_timeout: 2m\n`;
  const yaml =
    `server:\n  heartbeat_interval: 10s\n  health_check_interval: 10s\n  autoscale_interval: 30s\n` +
    `safety:\n  max_in_flight_per_pool: ${PER_POOL}\n  max_in_flight_fleet: ${FLEET}\n  cordon_rate:\n    per_minute: ${CORDONS_PER_MINUTE}\n    burst: ${CORDON_BURST}\n  breaker:\n    max_cordons: 8\n    percent: 80\n` +
    `pools:\n${pool("p", p)}${q ? pool("q", q) : ""}`;
  const parsed = parseConfig(yaml, "randomized");
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

/** One reconciler process: its lease, its loop, whether it is paused (SIGSTOP). */
interface Proc {
  name: string;
  lease: LeaderLease;
  loop: Reconciler;
  paused: boolean;
  /** Resumed since its last pass: it tries to act before it looks at its lease. */
  resumed: boolean;
}

/** What a run exercised: summed over all runs, a kind of perturbation never exercised proves nothing. */
export interface Exercised {
  restores: number;
  takeovers: number;
  fenced: number;
  replacements: number;
  scaleDowns: number;
  launchRefusals: number;
  held: number;
  monitored: number;
  quarantinedWaiting: number;
  reboots: number;
  /** Outages of the cloud's API (calls hang) and of the scheduler (nothing answers). */
  providerOutages: number;
  schedulerOutages: number;
  /** Passes that ended with a provider call still under way beside the loop. */
  callsInFlight: number;
}

export function noneExercised(): Exercised {
  return {
    restores: 0,
    takeovers: 0,
    fenced: 0,
    replacements: 0,
    scaleDowns: 0,
    launchRefusals: 0,
    held: 0,
    monitored: 0,
    quarantinedWaiting: 0,
    reboots: 0,
    providerOutages: 0,
    schedulerOutages: 0,
    callsInFlight: 0,
  };
}

/** The calls of the provider contract that reach the cloud's API. */
const API_CALLS = new Set(["launch", "terminate", "reboot", "get", "list"]);

/** One seeded run: the invariants' violations (empty when all held) and what it exercised. */
export async function run(seed: number): Promise<{ violations: string[]; exercised: Exercised }> {
  const exercised = noneExercised();
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(rand() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  let clock = Date.parse("2026-11-21T00:00:00Z");
  const now = () => clock;
  const dir = tempDir("navarch-rand-");
  const dbPath = join(dir, "navarch.db");
  let store: Store = await openStore({ url: `file:${dbPath}` });
  const cloud = new SimulatedCloud({ name: "local", now, launchLatencyMs: 10_000 });
  const agents = new SimulatedAgents(store.db, cloud, now);
  // Some faults survive the reboot the ladder tries first.
  agents.rebootFixes = () => rand() < 0.6;
  let p: Bounds = { min: 3, max: 5 };
  let q: Bounds | undefined = { min: 1, max: 2 };
  let config = configFor(p, q);
  // Dependency outages. The cloud's API hangs: each call waits until the outage ends (then it
  // goes through). The scheduler does not answer: cordons wait, a drain makes no progress.
  let cloudOutage: { over: Promise<void>; end: () => void } | undefined;
  let schedulerDown = false;
  const hanging = new Proxy(cloud, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (!API_CALLS.has(String(prop))) return fn.bind(target);
      return async (...args: unknown[]) => {
        if (cloudOutage !== undefined) await cloudOutage.over;
        return fn.apply(target, args);
      };
    },
  });
  const scheduler: SchedulerMirror = {
    name: "outage",
    async cordon(node, reason, incidentId) {
      if (schedulerDown) return "waiting for the scheduler (unreachable)";
      return NO_SCHEDULER.cordon(node, reason, incidentId);
    },
    async uncordon(node) {
      if (!schedulerDown) await NO_SCHEDULER.uncordon(node);
    },
    async drain(node, deadlineAt, at) {
      if (schedulerDown)
        return { done: false, detail: "waiting for the scheduler (unreachable)", waiting: "waiting for the scheduler (unreachable)", again: true };
      return NO_SCHEDULER.drain(node, deadlineAt, at);
    },
  };
  const providers = new Map([["local", hanging]]);
  const makeProc = (name: string): Proc => {
    const lease = new LeaderLease({ db: store.db, holder: `proc-${name}`, now, monotonic: now, timing: LEASE });
    const loop = new Reconciler({ store, config, providers, policy: defaultHealthPolicy(), now, fence: lease, scheduler });
    return { name, lease, loop, paused: false, resumed: false };
  };
  let procs = [makeProc("a"), makeProc("b")];
  let operator = new Operator(store.db, now);
  let snapshot: string | undefined;
  let rogue = 0;
  const violations: string[] = [];
  /** The state of each node when the cloud was asked to terminate its instance. */
  const terminations: { instance: string; node: string | undefined; state: NodeState | "none" }[] = [];
  const cloudTerminate = cloud.terminate.bind(cloud);
  cloud.terminate = async (id: string) => {
    const rows = await store.db.select().from(nodes);
    const owner = rows.find((n) => n.instanceName === id);
    if (cloud.peek(id)?.state !== "terminated") terminations.push({ instance: id, node: owner?.id, state: owner?.state ?? "none" });
    return cloudTerminate(id);
  };
  /** Running instances with no live node, since when (on the clock of the time a leader ran). */
  const orphans = new Map<string, number>();
  let ledTime = 0;
  let lastClock = clock;
  /** The pool each launched node was first seen in. */
  const poolOf = new Map<string, string | null>();
  let auditSeen = 0;
  const cordonTimes: number[] = [];
  try {
    for (let pass = 0; pass < PASSES; pass++) {
      const rows = await store.db.select().from(nodes);
      const serving = rows.filter((n) => isIn("inService", n.state));
      const target = pick(serving);
      const r = rand();
      if (TRACE)
        console.log(
          `pass ${pass} r=${r.toFixed(3)} clock+${(clock - Date.parse("2026-11-21T00:00:00Z")) / 1000}s leaders=${procs.map((x) => `${x.name}:${x.lease.leading ? "L" : "-"}${x.paused ? "P" : ""}`).join(",")}`,
        );
      if (r < 0.07 && target) await agents.xid(target.id, 79, int(0, 7)).catch(() => undefined);
      else if (r < 0.11 && target) await agents.xid(target.id, 13, int(0, 7)).catch(() => undefined);
      else if (r < 0.14 && target) agents.setSilent(target.id, true);
      else if (r < 0.16) for (const n of rows) agents.setSilent(n.id, false);
      else if (r < 0.21) {
        const kind = pick(["capacity", "transient", "rate_limit", "invalid", "auth", "quota"] as const)!;
        cloud.inject({ on: pick(["launch", "launch", "terminate", "get", "list"] as const)!, kind, times: int(1, 4) });
      } else if (r < 0.24) {
        // A restart of one process: everything in its memory is gone.
        const i = int(0, 1);
        procs[i] = makeProc(procs[i]!.name);
      } else if (r < 0.3) {
        // A config edit, applied by restarting both processes with it.
        if (rand() < 0.25) q = q === undefined ? { min: int(0, 1), max: int(1, 3) } : undefined;
        else {
          const min = int(0, 5);
          p = { min, max: int(Math.max(min, 1), 6) };
        }
        config = configFor(p, q);
        procs = procs.map((x) => makeProc(x.name));
      } else if (r < 0.33) {
        snapshot = join(dir, `backup-${pass}.db`);
        await store.client.execute(`VACUUM INTO '${snapshot}'`);
      } else if (r < 0.36 && snapshot !== undefined) {
        // Restore the database from the older copy; both processes restart on it.
        store.close();
        for (const suffix of ["", "-wal", "-shm"]) rmSync(dbPath + suffix, { force: true });
        copyFileSync(snapshot, dbPath);
        store = await openStore({ url: `file:${dbPath}` });
        agents.useDatabase(store.db);
        operator = new Operator(store.db, now);
        procs = procs.map((x) => makeProc(x.name));
        // The restored history was judged when it was made (under the config of its time).
        auditSeen = (await store.db.select({ id: auditLog.id }).from(auditLog).orderBy(desc(auditLog.id)).limit(1))[0]?.id ?? 0;
        // The restored history lacks the cordons made since the copy: the rate starts over with it.
        cordonTimes.length = 0;
        exercised.restores++;
      } else if (r < 0.39) {
        // A machine nobody launched registers, claiming a pool (a DaemonSet agent, or an impostor).
        await registerNode(store.db, registration(`rogue-${seed}-${rogue++}`, { pool: "p", provider: "local", instanceType: "local-8gpu" }), now);
        exercised.monitored++;
      } else if (r < 0.42 && target) {
        // A node's own agent claims another pool, provider and type.
        await registerNode(
          store.db,
          registration(target.id, { pool: "q", provider: "aws", instanceType: "p5.48xlarge", bootId: target.bootId ?? "b" }),
          now,
        ).catch(() => undefined);
      } else if (r < 0.5) {
        const n = pick(rows.filter((x) => isIn("live", x.state)));
        const action = pick(["cordon", "uncordon", "drain", "replace", "reboot", "reset"] as const)!;
        try {
          if (action === "reset") {
            for (const b of await store.db.select().from(breakers)) if (b.resetAt === null) await operator.resetBreaker(b.scope, "alice");
          } else if (n && action === "cordon") await operator.cordon(n.id, "alice", "random");
          else if (n && action === "uncordon") await operator.uncordon(n.id, "alice");
          else if (n && action === "drain") await operator.drain(n.id, "alice", "random", 60_000);
          else if (n && action === "replace") await operator.replace(n.id, "alice", "random");
          else if (n && action === "reboot") await operator.reboot(n.id, "alice", "random");
        } catch {
          // refused (409/404): fine
        }
      } else if (r < 0.55) {
        const x = pick(procs.filter((y) => !y.paused));
        if (x) x.paused = true; // SIGSTOP
      } else if (r < 0.62) {
        for (const x of procs) if (x.paused) [x.paused, x.resumed] = [false, true]; // SIGCONT
      } else if (r < 0.67) {
        if (cloudOutage === undefined) {
          let end = () => undefined as void;
          const over = new Promise<void>((resolve) => (end = resolve));
          cloudOutage = { over, end };
          exercised.providerOutages++;
        } else {
          cloudOutage.end();
          cloudOutage = undefined;
        }
      } else if (r < 0.72) {
        schedulerDown = !schedulerDown;
        if (schedulerDown) exercised.schedulerOutages++;
      }

      clock += 5000 + Math.floor(rand() * 10_000);
      await agents.tick();
      for (const x of procs) {
        if (x.paused) continue;
        // A process that wakes from a pause acts before it looks at its lease: the fence must stop it.
        if (x.resumed) {
          x.resumed = false;
          await x.loop.pass().catch((err: unknown) => {
            if (!(err instanceof FencedError)) throw err;
            exercised.fenced++;
          });
        }
        const change = await x.lease.step();
        if (change?.leading && change.from !== undefined) exercised.takeovers++;
      }
      const leading = procs.filter((x) => x.lease.leading);
      if (leading.length > 1) violations.push(`seed ${seed} pass ${pass}: ${leading.length} leaders`);
      const report = leading.length === 1 && !leading[0]!.paused ? await leading[0]!.loop.pass() : undefined;
      if (report !== undefined && leading[0]!.loop.dependencies.get("provider:local")?.status().queuedCount) exercised.callsInFlight++;
      const found = (await invariants(report)).map((v) => `seed ${seed} pass ${pass}: ${v}`);
      if (TRACE) {
        for (const t of report?.transitions ?? []) console.log(`   ${t.node}: ${t.from} → ${t.to}: ${t.reason}`);
        for (const b of report?.blocked ?? []) console.log(`   ${b.node} blocked by ${b.rail}`);
        if (found.length > 0)
          for (const n of await store.db.select().from(nodes))
            console.log(`   ${n.id} ${n.pool} ${n.state} removal=${n.removal} by=${n.cordonedBy} repl=${n.replacementOf} ${n.stateReason}`);
      }
      violations.push(...found);
    }
  } finally {
    store.close();
  }
  return { violations, exercised };

  function registration(nodeId: string, extra: { pool?: string; provider?: string; instanceType?: string; bootId?: string }) {
    return {
      nodeId,
      hostname: nodeId,
      bootId: extra.bootId ?? `boot-${nodeId}`,
      agentVersion: "test",
      spoolId: "00000000-0000-4000-8000-000000000001",
      nvml: { available: true },
      gpus: [],
      ...extra,
    };
  }

  async function invariants(report: Awaited<ReturnType<Reconciler["pass"]>> | undefined): Promise<string[]> {
    const out: string[] = [];
    // Only a reconciler that runs, with a cloud that answers, can adopt or reap: orphans age while one leads and the cloud's API is up.
    if (report !== undefined && cloudOutage === undefined) ledTime += clock - lastClock;
    lastClock = clock;
    const rows = await store.db.select().from(nodes);
    const byInstance = new Map(rows.filter((n) => n.instanceName !== null).map((n) => [n.instanceName!, n]));
    const byId = new Map(rows.map((n) => [n.id, n]));

    // Every launch becomes a node or is reaped: an instance with no live node may exist only
    // until the sweeps adopt or reap it (two sweeps a minute apart, plus a pass).
    for (const i of cloud.running()) {
      const owner = byInstance.get(i.id) ?? byId.get(i.name);
      const owned = owner !== undefined && isIn("live", owner.state);
      if (owned) orphans.delete(i.id);
      else {
        const since = orphans.get(i.id) ?? ledTime;
        orphans.set(i.id, since);
        if (ledTime - since > 200_000)
          out.push(`instance ${i.id} (${i.name}) has had no live node for ${Math.round((ledTime - since) / 1000)} s of a leader's time`);
      }
    }
    // No duplicate launch: one instance per node name.
    const perName = new Map<string, number>();
    for (const i of cloud.snapshot().records) perName.set(i.instance.name, (perName.get(i.instance.name) ?? 0) + 1);
    for (const [name, count] of perName) if (count > 1) out.push(`${count} instances for node ${name}`);

    // Nothing terminated that was not drained, never served, fenced (Lost) or an orphan.
    for (const t of terminations.splice(0)) {
      if (!["terminating", "failed", "lost", "terminated", "none"].includes(t.state))
        out.push(`instance ${t.instance} of ${t.node} terminated while the node was ${t.state}`);
    }
    const fresh = await store.db.select().from(auditLog).where(gt(auditLog.id, auditSeen)).orderBy(asc(auditLog.id));
    auditSeen = fresh.at(-1)?.id ?? auditSeen;
    for (const a of fresh) {
      const d = a.details as { from?: NodeState; to?: NodeState };
      if (a.action === "replace") exercised.replacements++;
      if (a.action === "reboot" && a.actor === "navarch") exercised.reboots++;
      if (a.action === "scale_down") exercised.scaleDowns++;
      if (a.action === "launch_failing" && (a.details as { kind: string }).kind === "permanent") exercised.launchRefusals++;
      if (a.action === "transition" && d.to === "held") exercised.held++;
      if (a.action === "blocked" && ["unhealthy_budget", "in_flight_pool", "in_flight_fleet"].includes((a.details as { rail: string }).rail))
        exercised.quarantinedWaiting++;
      if (
        a.action === "transition" &&
        d.to === "terminating" &&
        !["draining", "rebooting", "requested", "provisioning", "bootstrapping", "validating", "lost"].includes(d.from ?? "")
      ) {
        out.push(`${a.target} went ${d.from} → terminating`);
      }
      if (a.action === "transition" && d.to === "cordoned" && a.actor === "navarch") cordonTimes.push(a.at);
      // Scale-down never takes a pool below its minimum.
      if (a.action === "scale") {
        const s = a.details as { from: number; to: number };
        const min = a.target === "pool:p" ? p.min : (q?.min ?? 0);
        if (s.to < s.from && s.to < min) out.push(`${a.target} scaled down ${s.from} → ${s.to} below min_nodes ${min}`);
      }
    }
    // Cordons within the rate: in any minute, at most the burst plus a minute's refill.
    for (const t of cordonTimes) {
      const inWindow = cordonTimes.filter((x) => x > t - 60_000 && x <= t).length;
      if (inWindow > CORDON_BURST + CORDONS_PER_MINUTE) out.push(`${inWindow} cordons within a minute (rate ${CORDONS_PER_MINUTE}/min, burst ${CORDON_BURST})`);
    }
    // Remediations in flight within the caps (a human's replacement is theirs to decide).
    const slots = (pool?: string) => {
      const ids = new Set<string>();
      for (const n of rows) {
        if (pool !== undefined && n.pool !== pool) continue;
        if (n.cordonedBy?.startsWith("human:")) continue;
        // Out of service on the way to removal; a scale-down of a node that never served takes nothing away.
        const tookOut = n.removal === "replace" || (n.removal === "scale_down" && n.cordonedBy !== null);
        if (n.removal !== null && (n.state === "draining" || n.state === "lost" || (n.state === "terminating" && tookOut))) ids.add(n.id);
        else if (n.replacementOf !== null && isIn("comingUp", n.state) && !byId.get(n.replacementOf)?.cordonedBy?.startsWith("human:"))
          ids.add(n.replacementOf);
      }
      return ids.size;
    };
    for (const pool of ["p", "q"]) if (slots(pool) > PER_POOL) out.push(`${slots(pool)} remediations in flight in pool ${pool}, cap ${PER_POOL}`);
    if (slots() > FLEET) out.push(`${slots()} remediations in flight fleet-wide, cap ${FLEET}`);

    for (const n of rows) {
      // No node with an open unhealthy verdict in service, unless a storm rail holds its cordon back and says so.
      if (isIn("inService", n.state) && n.verdict === "unhealthy" && !/blocked by (cordon_rate|breaker|paused|dry_run)/.test(n.stateReason ?? "")) {
        out.push(`${n.id} is ${n.state} with an unhealthy verdict (${n.stateReason})`);
      }
      // Who a node belongs to is Navarch's record, not the agent's word.
      if (n.origin === "launched") {
        if (!poolOf.has(n.id)) poolOf.set(n.id, n.pool);
        else if (poolOf.get(n.id) !== n.pool) out.push(`${n.id} moved from pool ${poolOf.get(n.id)} to ${n.pool}`);
      }
      if (n.origin === "registered" && n.removal === "scale_down") out.push(`monitored node ${n.id} chosen for scale-down`);
    }
    // What became Ready this pass passed its health check: neither verdict says unhealthy.
    for (const t of report?.transitions ?? []) {
      if (t.to !== "ready" || t.from !== "validating") continue;
      const n = byId.get(t.node);
      if (n?.agentHealth === "unhealthy" || n?.verdict === "unhealthy")
        out.push(`${t.node} became ready while ${n.agentHealth === "unhealthy" ? "its agent" : "its verdict"} says unhealthy`);
    }
    return out;
  }
}
