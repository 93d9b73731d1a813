// Capacity in service, measured exactly: node-time in service (Ready or Suspect) per pool,
// integrated at each change, and the shortfall, the node-time a pool had fewer nodes in
// service than its min_nodes (the capacity it lost). The `service_hours` and
// `shortfall_minutes` checks read it.

/** Node-time in service per pool and the shortfall below min_nodes, integrated at each change. */
export class ServiceClock {
  private readonly pools = new Map<string, { count: number; since: number; ms: number; shortMs: number }>();

  constructor(
    private readonly start: number,
    private readonly minOf: (pool: string) => number,
  ) {}

  change(pool: string, delta: number, at: number): void {
    const p = this.settle(pool, at);
    p.count += delta;
  }

  hours(pool: string | undefined, at: number): number {
    return this.sum(pool, at, (p) => p.ms) / 3_600_000;
  }

  shortfallMinutes(pool: string | undefined, at: number): number {
    return this.sum(pool, at, (p) => p.shortMs) / 60_000;
  }

  private sum(pool: string | undefined, at: number, pick: (p: { ms: number; shortMs: number }) => number): number {
    let total = 0;
    for (const name of this.pools.keys()) if (pool === undefined || name === pool) total += pick(this.settle(name, at));
    return total;
  }

  private settle(pool: string, at: number) {
    const p = this.pools.get(pool) ?? { count: 0, since: this.start, ms: 0, shortMs: 0 };
    const dt = at - p.since;
    p.ms += p.count * dt;
    p.shortMs += Math.max(0, this.minOf(pool) - p.count) * dt;
    p.since = at;
    this.pools.set(pool, p);
    return p;
  }
}
