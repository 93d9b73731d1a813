// The `slurm:` section as a scheduler integration (schedulers/scheduler.ts): a client for the
// cluster's slurmrestd (and scontrol), the DRAIN mirror + job-aware drain, and the queue
// source per partition. Only one of `kubernetes:` and `slurm:` may be set.
import { readFileSync } from "node:fs";
import type { SlurmConfig } from "../../../schema/config.ts";
import { SchedulerError, type SchedulerHost, type SchedulerIntegration } from "../scheduler.ts";
import { SlurmCache } from "./cache.ts";
import { SlurmClient } from "./client.ts";
import { SlurmMirror } from "./mirror.ts";
import { SlurmQueue } from "./queue.ts";
import { Scontrol } from "./scontrol.ts";
import { SlurmTokens } from "./token.ts";

export { SlurmClient } from "./client.ts";
export { SlurmMirror } from "./mirror.ts";

export interface SlurmIntegration extends SchedulerIntegration {
  readonly client: SlurmClient;
  readonly mirror: SlurmMirror;
  readonly queue: SlurmQueue | undefined;
}

export interface SlurmOptions {
  env?: (name: string) => string | undefined;
  /** How often every node's mapping is swept (tests shorten it). */
  sweepIntervalMs?: number;
}

/** The tokens the config names: minted from jwt_key_file, or read from token_env. */
export function slurmTokens(
  config: Pick<SlurmConfig, "user" | "jwt_key_file" | "token_env" | "token_lifespan">,
  env: (name: string) => string | undefined = (n) => process.env[n],
): SlurmTokens {
  if (config.jwt_key_file !== undefined) {
    let key: Buffer;
    try {
      key = readFileSync(config.jwt_key_file);
    } catch (err) {
      throw new SchedulerError(
        "slurm",
        "invalid",
        `slurm.jwt_key_file: cannot read ${config.jwt_key_file}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (key.length < 16)
      throw new SchedulerError(
        "slurm",
        "invalid",
        `slurm.jwt_key_file: ${config.jwt_key_file} holds ${key.length} bytes; slurm.conf's jwt_key is at least 16 (32 random bytes is usual)`,
      );
    return new SlurmTokens({ kind: "key", key, user: config.user, lifespanMs: config.token_lifespan });
  }
  const name = config.token_env ?? "SLURM_JWT";
  const token = env(name);
  if (!token)
    throw new SchedulerError("slurm", "invalid", `slurm.token_env: $${name} is not set (it must hold a token for ${config.user}, e.g. from scontrol token)`);
  return new SlurmTokens({ kind: "static", token, user: config.user });
}

/** The longest wait between two tries to read the cluster while slurmrestd does not answer. */
const START_RETRY_MAX_MS = 10_000;

export async function slurmScheduler(config: SlurmConfig, host: SchedulerHost, opts: SlurmOptions = {}): Promise<SlurmIntegration> {
  const tokens = slurmTokens(config, opts.env);
  const scontrol = new Scontrol({
    binary: config.scontrol,
    ...(config.slurm_conf !== undefined ? { slurmConf: config.slurm_conf } : {}),
    token: () => tokens.token(),
  });
  const client = new SlurmClient({ restUrl: config.rest_url, tokens, scontrol });
  const cache = new SlurmCache(client);
  const mirror = new SlurmMirror({ client, cache, config, host, ...(opts.sweepIntervalMs !== undefined ? { sweepIntervalMs: opts.sweepIntervalMs } : {}) });
  const queue = config.queue_metrics.enabled ? new SlurmQueue(cache, config, (line) => host.log(line)) : undefined;
  let stopped = false;
  let retry: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;
  // A slurmrestd that is down at start must not keep Navarch from starting: keep trying, beside
  // the loop (what the loop asks of the mirror meanwhile is queued).
  const startMirror = async (): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const dialect = await client.connect();
        host.log(`slurm: ${client.describe(dialect)}; node mapping ${config.node_mapping}; drain on deadline: ${config.drain.on_deadline}`);
        await mirror.start();
        return;
      } catch (err) {
        if (stopped) return;
        if (attempt === 0)
          host.log(
            `slurm: cannot read the cluster yet (retrying every ${START_RETRY_MAX_MS / 1000} s at most): ${err instanceof Error ? err.message : String(err)}`,
          );
        await new Promise<void>((resolve) => {
          retry = { timer: setTimeout(resolve, Math.min(START_RETRY_MAX_MS, 1000 * 2 ** attempt)), resolve };
        });
      }
    }
  };
  let starting: Promise<void> | undefined;
  return {
    name: "slurm",
    client,
    mirror,
    queue,
    async start() {
      starting = startMirror();
    },
    async ready() {
      await starting;
    },
    async stop() {
      stopped = true;
      if (retry !== undefined) {
        clearTimeout(retry.timer);
        retry.resolve();
      }
      // Requests in flight are aborted: a stop never waits for slurmrestd.
      client.close();
      await starting;
      await mirror.stop();
    },
  };
}
