// Chaos: random faults over the in-service nodes (scenario `chaos:`). Faults arrive as a
// Poisson process whose rate follows the number of nodes in service (failure_rate per
// 1,000 node-hours), with an Xid drawn by weight; a fault may hit a few more nodes of the
// same rack or zone at once (correlation). All draws come from the run's "chaos" stream.
import type { Scenario } from "../../schema/scenario.ts";
import type { ChaosSpec } from "../../schema/scenario/chaos.ts";
import type { Faults } from "./faults.ts";
import type { PassSchedule } from "./pass-schedule.ts";
import { Random } from "./random.ts";
import type { SimNode, SimNodes } from "./sim-nodes.ts";

export interface ChaosOptions {
  scenario: Scenario;
  seed: number;
  nodes: SimNodes;
  faults: Faults;
  schedule: PassSchedule;
}

export class Chaos {
  private readonly random: Random;
  private nextFaultAt: number | undefined;
  /** Drawn when the fault is scheduled, so a check pass can be planned before it. */
  private nextXid = 79;

  constructor(private readonly opts: ChaosOptions) {
    this.random = new Random(opts.seed, "chaos");
  }

  /** When the next chaos fault happens (undefined: none before the end of its window). */
  get nextAt(): number | undefined {
    return this.nextFaultAt;
  }

  /** Draws the next fault after `from`. */
  schedule(from: number): void {
    const { scenario } = this.opts;
    const chaos = scenario.chaos;
    if (chaos === undefined || chaos.failure_rate <= 0) {
      this.nextFaultAt = undefined;
      return;
    }
    const windowStart = scenario.start + chaos.from;
    const windowEnd = scenario.start + (chaos.until ?? scenario.duration);
    const inPools = poolFilter(chaos);
    let count = 0;
    for (const n of this.opts.nodes.all()) if (n.inService && inPools(n)) count++;
    const begin = Math.max(from, windowStart);
    if (count === 0) {
      // Nothing to break yet: look again in a while.
      const next = begin + 15 * 60_000;
      this.nextFaultAt = next < windowEnd ? next : undefined;
      return;
    }
    const meanMs = (1000 * 3_600_000) / (chaos.failure_rate * count);
    const next = begin + Math.max(1, Math.round(this.random.exponential(meanMs)));
    this.nextFaultAt = next < windowEnd ? next : undefined;
    this.nextXid = this.random.weighted(chaos.xids) ?? 79;
    if (this.nextFaultAt !== undefined) this.opts.schedule.planCheckBefore(this.nextFaultAt, this.nextXid);
  }

  /** Injects the faults due by `t`, each followed by the draw of the next. */
  injectDue(t: number): void {
    while (this.nextFaultAt !== undefined && this.nextFaultAt <= t) this.inject(t);
  }

  private inject(t: number): void {
    const chaos = this.opts.scenario.chaos!;
    const inPools = poolFilter(chaos);
    const pool = this.opts.nodes.candidates(true).filter(inPools);
    const first = this.random.pick(pool);
    if (first !== undefined) {
      const xid = this.nextXid;
      const hit = [first];
      const c = chaos.correlation;
      if (c !== undefined && this.random.next() < c.probability) {
        const near = pool.filter((n) => n !== first && n.pool === first.pool && (c.scope === "rack" ? n.rack === first.rack : n.zone === first.zone));
        hit.push(...this.random.sample(near, c.nodes - 1));
      }
      for (const n of hit) this.opts.faults.inject(n, xid, this.random.int(n.gpus), t, "chaos", hit.length > 1);
    }
    this.schedule(t);
  }
}

function poolFilter(chaos: ChaosSpec): (n: SimNode) => boolean {
  return chaos.pools.length === 0 ? () => true : (n) => chaos.pools.includes(n.pool);
}
