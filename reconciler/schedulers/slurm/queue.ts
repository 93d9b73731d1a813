// Queue depth per pool for the `queue` autoscaler: the jobs of the partition mapped to the
// pool (slurm.partitions, else the partition named like the pool). Pending jobs count when
// more capacity would let them run: not those held or waiting on a dependency. Running
// jobs count as running (COMPLETING and CONFIGURING too: they hold nodes). A pool whose
// partition does not exist, or a cluster that cannot be read, gives "unknown", and the
// autoscaler holds the pool where it is.
import type { SlurmConfig } from "../../../schema/config.ts";
import type { QueueDepth, QueueSource } from "../scheduler.ts";
import type { SlurmJob } from "./api.ts";
import type { SlurmCache } from "./cache.ts";

/** Pending reasons more nodes would not help. */
const NOT_WAITING_FOR_CAPACITY = new Set(["JobHeldUser", "JobHeldAdmin", "Dependency", "DependencyNeverSatisfied"]);
const HOLDING_NODES = new Set(["RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"]);

export class SlurmQueue implements QueueSource {
  private readonly said = new Set<string>();

  constructor(
    private readonly cache: SlurmCache,
    private readonly config: Pick<SlurmConfig, "partitions" | "poll_interval">,
    private readonly log: (line: string) => void,
  ) {}

  partitionOf(pool: string): string {
    return this.config.partitions[pool] ?? pool;
  }

  async depth(pool: string): Promise<QueueDepth | undefined> {
    const partition = this.partitionOf(pool);
    try {
      const fresh = Date.now() - this.config.poll_interval;
      // Partitions change rarely: a minute-old listing will do.
      const partitions = await this.cache.partitions.since(Date.now() - 60_000);
      if (!partitions.items.some((p) => p.name === partition)) {
        this.once(`${pool}:missing`, `slurm: pool ${pool}'s partition ${partition} does not exist (set slurm.partitions.${pool}); its queue depth is unknown`);
        return undefined;
      }
      const depth = queueDepth((await this.cache.jobs.since(fresh)).items, partition);
      this.said.delete(`${pool}:error`); // a later failure is said again
      return depth;
    } catch (err) {
      this.once(`${pool}:error`, `slurm: queue depth of pool ${pool} (partition ${partition}): ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  private once(key: string, line: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.log(line);
  }
}

export function queueDepth(jobs: readonly SlurmJob[], partition: string): QueueDepth {
  let pending = 0;
  let running = 0;
  for (const job of jobs) {
    if (!job.partitions.includes(partition)) continue;
    if (job.state === "PENDING" && !NOT_WAITING_FOR_CAPACITY.has(job.reason)) pending++;
    else if (HOLDING_NODES.has(job.state)) running++;
  }
  return { pending, running };
}
