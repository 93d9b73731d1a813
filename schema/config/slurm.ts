// The `slurm:` section (reconciler/schedulers/slurm): slurmrestd and scontrol, the user and
// credentials Navarch acts with, how a Navarch node finds its Slurm node, polling, what a
// drain does at its deadline, and the partition whose queue feeds each pool's autoscaler.
import * as v from "valibot";
import { oneOf, strict } from "../shapes.ts";
import { rules } from "./cross-field-rules.ts";
import { duration, type Millis } from "./duration.ts";
import { Bool, DnsLabel, EnvVarName, HttpUrl, Mapping, shaped, Text } from "./leaf-schemas.ts";

export const SLURM_NODE_MAPPING_RULES = ["node_name", "hostname", "feature"] as const;
export type SlurmNodeMappingRule = (typeof SLURM_NODE_MAPPING_RULES)[number];

/** The `slurm:` section (reconciler/schedulers/slurm). */
export interface SlurmConfig {
  /** slurmrestd: reads nodes, jobs and partitions; updates nodes where its API can (v0.0.39, Slurm 23.02+). */
  rest_url: string;
  /** The Slurm user Navarch acts as; drains, resumes and requeues need an operator or admin (SlurmUser). */
  user: string;
  /** slurm.conf's jwt_key: Navarch mints its own short-lived tokens with it, as `scontrol token` does. */
  jwt_key_file?: string;
  /** Or the environment variable holding a token (never the token); it expires, the key does not. */
  token_env?: string;
  /** How long a minted token lives. */
  token_lifespan: Millis;
  /** The scontrol binary: node updates where slurmrestd has none (Slurm 22.05's v0.0.38), and requeue. */
  scontrol: string;
  /** SLURM_CONF for scontrol (where the controller is); absent: scontrol's own default. */
  slurm_conf?: string;
  /**
   * How a Navarch node finds its Slurm node: node_name (NodeName = node id), hostname
   * (NodeHostname = the agent's hostname; it defaults to NodeName), feature (the node has
   * the feature `<node_feature_prefix><node id>`).
   */
  node_mapping: SlurmNodeMappingRule;
  node_feature_prefix: string;
  /** How often slurmrestd is read: a human's resume is seen within this. */
  poll_interval: Millis;
  /** At the pool's health.drain_timeout: requeue the node's jobs (requeue), or hold the node for a human (hold). */
  drain: { on_deadline: "requeue" | "hold" };
  /** The partition whose jobs feed each pool's queue autoscaler; a pool not named here: the partition named like it. */
  partitions: Record<string, string>;
  /** Pending and running jobs of a pool's partition feed queue autoscalers. */
  queue_metrics: { enabled: boolean };
}

const SlurmName = shaped(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/, "a Slurm name (letters, digits, '.', '_' and '-', at most 64)");
const SlurmUser = shaped(/^[a-z_][a-z0-9_.-]{0,31}$/, "a user name (lowercase letters, digits, '_', '.', '-', at most 32)");
// Feature names may not hold what Slurm's constraint expressions use: , & | [ ] ( ) * and spaces.
const FeaturePrefix = shaped(/^[A-Za-z0-9._:=/-]{1,64}$/, "a feature prefix (letters, digits, '.', '_', ':', '=', '/', '-', at most 64)");

export const Slurm: v.GenericSchema<unknown, SlurmConfig> = v.pipe(
  strict({
    rest_url: HttpUrl,
    user: v.optional(SlurmUser, "slurm"),
    jwt_key_file: v.optional(Text),
    token_env: v.optional(EnvVarName),
    token_lifespan: v.optional(duration("1m", "24h"), "30m"),
    scontrol: v.optional(Text, "scontrol"),
    slurm_conf: v.optional(Text),
    node_mapping: v.optional(oneOf(SLURM_NODE_MAPPING_RULES, "node mapping rule"), "hostname"),
    node_feature_prefix: v.optional(FeaturePrefix, "navarch-node="),
    poll_interval: v.optional(duration("200ms", "1m"), "1s"),
    drain: v.optional(strict({ on_deadline: v.optional(oneOf(["requeue", "hold"] as const, "deadline behaviour"), "requeue") }), {}),
    partitions: v.optional(v.pipe(Mapping, v.record(DnsLabel, SlurmName)), {}),
    queue_metrics: v.optional(strict({ enabled: v.optional(Bool, true) }), {}),
  }),
  rules((_f, report, raw) => {
    const [key, env] = [raw.jwt_key_file !== undefined, raw.token_env !== undefined];
    if (key && env) report("token_env", "set jwt_key_file or token_env, not both");
    if (!key && !env) report("jwt_key_file", "is required, or token_env: slurmrestd takes JWTs only");
  }),
);
