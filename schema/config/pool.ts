// One entry of `pools:`: a pool's name, providers in failover order, instance type, region and
// zones, labels and taints, SSH bootstrap and setup commands, and its scaling and health
// (pool-scaling.ts, pool-health.ts). `PoolSchema` checks a pool on its own, as the GpuPool
// custom resource (deploy/crds/gpupool.yaml) is generated from and checked with.
import * as v from "valibot";
import { TEMPLATE_VARIABLES, parseTemplate } from "../template.ts";
import { closestMatch, oneOf, strict } from "../shapes.ts";
import { WellFormedStrings } from "../text.ts";
import { rules } from "./cross-field-rules.ts";
import { LabelKey, LabelValue, Labels } from "./kubernetes-labels.ts";
import { DnsLabel, list, shaped, Str, Text } from "./leaf-schemas.ts";
import { Health, type HealthConfig } from "./pool-health.ts";
import { Scaling, type ScalingConfig } from "./pool-scaling.ts";
import { ProviderName, SshKeyNames, type ProviderType } from "./providers.ts";

export interface PoolConfig {
  /** DNS-1123 label; unique in the file. */
  name: string;
  /** Providers in failover order (YAML `provider: x` becomes `[x]`). Never empty. */
  providers: ProviderType[];
  instance_type: string;
  region: string;
  zones: string[];
  scaling: ScalingConfig;
  health: HealthConfig;
  /** Tags on the pool's instances where the provider has them, and labels on its Kubernetes Nodes. */
  labels: Record<string, string>;
  /** Taints on the pool's Kubernetes Nodes (the kubernetes: section). */
  taints: PoolTaint[];
  ssh_user: string;
  /** The bootstrap key; absent with setup_commands only in a pool that launches on Lambda alone (Navarch's own key). */
  ssh_private_key_path?: string;
  /** The SSH key registered with Lambda to install, a list of one name; else providers.lambda's, else the account's. */
  ssh_key_names?: string[];
  /** Go-template strings, already checked by `parseTemplate`. */
  setup_commands: string[];
}

export const TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"] as const;

/** A Kubernetes taint, as `kubectl taint` writes it: key=value:effect. */
export interface PoolTaint {
  key: string;
  value?: string;
  effect: (typeof TAINT_EFFECTS)[number];
}

/** Go templates over TEMPLATE_VARIABLES; one issue per template error. */
const SetupCommand = v.pipe(
  Str,
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const parsed = parseTemplate(dataset.value);
    if (parsed.ok) return;
    for (const error of parsed.errors) {
      let message = error.message;
      if (error.variable !== undefined) {
        const guess = closestMatch(error.variable, TEMPLATE_VARIABLES);
        const allowed = TEMPLATE_VARIABLES.map((n) => `{{.${n}}}`).join(", ");
        message += guess === undefined ? ` (allowed: ${allowed})` : ` (did you mean {{.${guess}}}?)`;
      }
      addIssue({ message });
    }
  }),
);

const Taint: v.GenericSchema<unknown, PoolTaint> = strict({
  key: LabelKey,
  value: v.optional(LabelValue),
  effect: oneOf(TAINT_EFFECTS, "taint effect"),
});

export const Pool: v.GenericSchema<unknown, PoolConfig> = v.pipe(
  strict({
    name: DnsLabel,
    provider: v.optional(ProviderName),
    providers: v.optional(
      v.pipe(
        list(ProviderName, { nonEmpty: true, noun: "provider" }),
        v.check((p) => new Set(p).size === p.length, "must not name a provider twice"),
      ),
    ),
    instance_type: Text,
    region: Text,
    zones: v.optional(list(Text), []),
    // The seed's SSH bootstrap pool has none: a fixed pool of zero, grown only on request.
    scaling: v.optional(Scaling, {}),
    health: v.optional(Health, {}),
    labels: v.optional(Labels, {}),
    taints: v.optional(list(Taint), []),
    // The login user of the stock GPU images on Lambda, GCP and AWS; only used for setup_commands.
    ssh_user: v.optional(shaped(/^[a-z_][a-z0-9_-]{0,31}$/, "a user name like ubuntu"), "ubuntu"),
    ssh_private_key_path: v.optional(Text),
    ssh_key_names: v.optional(SshKeyNames),
    setup_commands: v.optional(list(SetupCommand), []),
  }),
  rules((_f, report, raw) => {
    const [one, many] = [raw.provider !== undefined, raw.providers !== undefined];
    if (one && many) report("providers", "set provider or providers (a failover list), not both");
    if (!one && !many) report("provider", "is required (or providers: a list in failover order)");
    const commands = raw.setup_commands;
    // On Lambda alone, Navarch logs in with the key it keeps for the account (providers/lambda.ts).
    const lambdaOnly = one ? raw.provider === "lambda" : Array.isArray(raw.providers) && raw.providers.every((p) => p === "lambda");
    if (Array.isArray(commands) && commands.length > 0 && raw.ssh_private_key_path === undefined && !lambdaOnly) {
      report("ssh_private_key_path", "is required when setup_commands is not empty (they run over SSH), unless the pool launches on Lambda alone");
    }
  }),
  v.transform(({ name, provider, providers, ...rest }) => ({ name, providers: providers ?? (provider ? [provider] : []), ...rest })),
);

/**
 * Validates one pool on its own (e.g. a pool that comes from a Kubernetes custom resource),
 * whose every string must be text the store can hold, as a config file's (reconciler/config/yaml-source.ts).
 */
export const PoolSchema = v.pipe(WellFormedStrings, Pool);
