// Builds the scheduler integration the config names, as providers/index.ts builds providers:
// one entry per config section. A new scheduler is one folder implementing the contract in
// scheduler.ts (a factory returning a SchedulerIntegration), its config section in
// schema/config/ (assembled in schema/config.ts), and one line here. At most one section may be
// set (schema/config.ts).
import type { NavarchConfig } from "../../schema/config.ts";
import { kubernetesScheduler } from "./kubernetes/index.ts";
import { slurmScheduler } from "./slurm/index.ts";
import type { SchedulerHost, SchedulerIntegration } from "./scheduler.ts";

export interface SchedulerContext {
  env?: (name: string) => string | undefined;
}

type Section = "kubernetes" | "slurm";

const FACTORIES: { [S in Section]: (config: NonNullable<NavarchConfig[S]>, host: SchedulerHost, ctx: SchedulerContext) => Promise<SchedulerIntegration> } = {
  kubernetes: (config, host, ctx) => kubernetesScheduler(config, host, ctx.env ? { env: ctx.env } : {}),
  slurm: (config, host, ctx) => slurmScheduler(config, host, ctx.env ? { env: ctx.env } : {}),
};

/** The integration for the config's scheduler section; undefined when it has none. */
export async function createScheduler(config: NavarchConfig, host: SchedulerHost, ctx: SchedulerContext = {}): Promise<SchedulerIntegration | undefined> {
  if (config.kubernetes !== undefined) return FACTORIES.kubernetes(config.kubernetes, host, ctx);
  if (config.slurm !== undefined) return FACTORIES.slurm(config.slurm, host, ctx);
  return undefined;
}
