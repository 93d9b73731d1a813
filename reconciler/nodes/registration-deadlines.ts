// Registration deadlines learned from the pool. Each launched machine's time from launch to
// its agent's registration is kept per pool, provider and instance type (the latest
// REGISTRATION_SAMPLES of each); a machine's deadline is the larger of the pool's
// health.registration_timeout and a margin over the recent p99, never past
// health.registration_timeout_max. A cloud whose GPU machines take 25 minutes to come up
// (drivers installed at boot) thus stops being a launch storm once one of them registered;
// the first machines of a new pool get the configured timeout (the provision step also asks
// the provider again while it still reports the machine as booting).
import { and, desc, eq, notInArray, sql } from "drizzle-orm";
import { formatDuration, type HealthConfig } from "../../schema/config.ts";
import { registrations } from "../../schema/db.ts";
import type { Db } from "../store/store.ts";
import type { Executor } from "./writer.ts";

/** Registrations kept per pool, provider and instance type: "recent". */
export const REGISTRATION_SAMPLES = 50;
/** The learned deadline over the recent p99: room for a machine a little slower than any seen. */
export const DEADLINE_MARGIN = 1.5;

export interface RegistrationSample {
  pool: string;
  provider: string;
  instanceType: string;
  nodeId: string;
  launchedAt: number;
  registeredAt: number;
  late: boolean;
}

/** Records one registration, keeping only the latest REGISTRATION_SAMPLES of its key. */
export async function recordRegistration(db: Executor, s: RegistrationSample): Promise<void> {
  await db.insert(registrations).values(s);
  const key = and(eq(registrations.pool, s.pool), eq(registrations.provider, s.provider), eq(registrations.instanceType, s.instanceType));
  const keep = db
    .select({ id: registrations.id })
    .from(registrations)
    .where(key)
    .orderBy(desc(registrations.registeredAt), desc(registrations.id))
    .limit(REGISTRATION_SAMPLES);
  await db.delete(registrations).where(and(key, notInArray(registrations.id, keep)));
}

/** A machine's registration deadline, and what it was learned from. */
export interface Deadline {
  /** From launch (or adoption) to the deadline. */
  ms: number;
  configured: number;
  /** Registrations it was learned from (0: the configured timeout alone). */
  samples: number;
  p99?: number;
  slowest?: number;
}

/** The nearest-rank quantile of sorted values (with fewer than 100, p99 is the slowest). */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

/** The deadline for a machine given the recent launch → registered times of its kind (pure). */
export function deadlineFrom(health: Pick<HealthConfig, "registration_timeout" | "registration_timeout_max">, durations: readonly number[]): Deadline {
  const configured = health.registration_timeout;
  if (durations.length === 0) return { ms: configured, configured, samples: 0 };
  const sorted = [...durations].sort((a, b) => a - b);
  const p99 = quantile(sorted, 0.99);
  const learned = Math.min(health.registration_timeout_max, Math.ceil(p99 * DEADLINE_MARGIN));
  return { ms: Math.max(configured, learned), configured, samples: sorted.length, p99, slowest: sorted.at(-1)! };
}

const keyOf = (pool: string, provider: string, instanceType: string) => `${pool}\u0000${provider}\u0000${instanceType}`;

/** Whole minutes, at least one: how deadlines are said. */
export function minutes(ms: number): string {
  return formatDuration(Math.max(60_000, Math.round(ms / 60_000) * 60_000));
}

/**
 * The recent registrations of every pool, read once per pass (again only when one was
 * recorded since), and the deadlines they give.
 */
export class RegistrationDeadlines {
  private readonly durations = new Map<string, number[]>();
  /** The latest registration per pool: a pool's failures stop counting at one. */
  private readonly latest = new Map<string, { at: number; nodeId: string; tookMs: number; late: boolean }>();
  private readonly slowestByPool = new Map<string, number>();
  private lastId = -1;
  /** The learned deadline last said per key (said once per change). */
  private readonly said = new Map<string, string>();

  constructor(private readonly log: (line: string) => void) {}

  async load(db: Db): Promise<void> {
    const [top] = await db.select({ id: sql<number>`coalesce(max(${registrations.id}), 0)` }).from(registrations);
    const id = Number(top?.id ?? 0);
    if (id === this.lastId) return;
    this.lastId = id;
    this.durations.clear();
    this.latest.clear();
    this.slowestByPool.clear();
    // At most REGISTRATION_SAMPLES per key are kept: the whole table is small.
    for (const r of await db.select().from(registrations).orderBy(registrations.registeredAt, registrations.id)) {
      const took = r.registeredAt - r.launchedAt;
      const key = keyOf(r.pool, r.provider, r.instanceType);
      const list = this.durations.get(key) ?? [];
      list.push(took);
      this.durations.set(key, list);
      this.latest.set(r.pool, { at: r.registeredAt, nodeId: r.nodeId, tookMs: took, late: r.late });
      this.slowestByPool.set(r.pool, Math.max(this.slowestByPool.get(r.pool) ?? 0, took));
    }
  }

  /** The registration deadline of a machine of this pool, provider and instance type. */
  deadline(health: HealthConfig, pool: string, provider: string | null, instanceType: string | null): Deadline {
    return deadlineFrom(health, this.durations.get(keyOf(pool, provider ?? "", instanceType ?? "")) ?? []);
  }

  /** The pool's latest recorded registration, if any. */
  latestOf(pool: string): { at: number; nodeId: string; tookMs: number; late: boolean } | undefined {
    return this.latest.get(pool);
  }

  /** "the slowest registration seen was 24 min", or that none was seen. */
  slowestSaid(pool: string): string {
    const slowest = this.slowestByPool.get(pool);
    return slowest === undefined ? "no machine of this pool has registered yet" : `the slowest registration seen was ${minutes(slowest)}`;
  }

  /** Says, once per change, that a pool's machines get longer than its configured timeout. */
  sayIfLearned(pool: string, provider: string, instanceType: string, d: Deadline): void {
    if (d.ms <= d.configured || d.p99 === undefined) return;
    const key = keyOf(pool, provider, instanceType);
    const text = minutes(d.ms);
    if (this.said.get(key) === text) return;
    this.said.set(key, text);
    this.log(
      `pool ${pool}: machines on ${provider} ${instanceType} get ${text} to register, longer than health.registration_timeout (${minutes(d.configured)}): ` +
        `the p99 of the last ${d.samples} registration(s) is ${minutes(d.p99)} (deadline ${DEADLINE_MARGIN}× that, at most health.registration_timeout_max)`,
    );
  }
}
