// The `providers:` section: settings per provider type (lambda, gcp, aws, coreweave, local),
// and the provider names a pool may use. `{}` through a provider's schema gives its defaults.
import * as v from "valibot";
import { accept, oneOf, strict } from "../shapes.ts";
import { rules } from "./cross-field-rules.ts";
import { DnsLabel, EnvVarName, HttpUrl, list, shaped, Text } from "./leaf-schemas.ts";

export const PROVIDER_TYPES = ["lambda", "gcp", "aws", "coreweave", "local"] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export interface LambdaProviderConfig {
  api_key_env: string;
  /**
   * The SSH key (a list of one name) registered with Lambda for pools that name none. Absent
   * too: the account's one key, else a key Navarch creates and keeps in the data directory.
   */
  ssh_key_names?: string[];
  /** Overrides the API endpoint (tests point it at a fake server). */
  base_url?: string;
}
export interface GcpProviderConfig {
  project?: string;
  credentials_env?: string;
  credentials_file?: string;
  base_url?: string;
}
export interface AwsProviderConfig {
  region?: string;
  access_key_id_env?: string;
  secret_access_key_env?: string;
  endpoint?: string;
}
export interface CoreWeaveProviderConfig {
  namespace?: string;
  kubeconfig?: string;
}
export interface LocalProviderConfig {
  agent_binary?: string;
  nvml_library?: string;
  nodes_dir?: string;
}
export interface ProvidersConfig {
  lambda?: LambdaProviderConfig;
  gcp?: GcpProviderConfig;
  aws?: AwsProviderConfig;
  coreweave?: CoreWeaveProviderConfig;
  local?: LocalProviderConfig;
}

/**
 * The name of an SSH key registered with Lambda (1 to 64 characters), as a list of one: Lambda's
 * launch call takes exactly one (`ssh_key_names`), so a second name would fail every launch.
 */
export const SshKeyNames = v.pipe(
  list(
    accept<string>((x) => typeof x === "string" && x.trim() !== "" && x.length <= 64, "an SSH key name as registered with the provider (1 to 64 characters)", {
      type: "string",
      minLength: 1,
      maxLength: 64,
    }),
    { nonEmpty: true, noun: "SSH key name" },
  ),
  v.check(
    (names) => names.length <= 1,
    (issue) => `Lambda's launch call takes exactly one SSH key name, got ${issue.input.length} (${issue.input.join(", ")}): keep one`,
  ),
);

/** One schema per provider type; `{}` through any of them gives that type's defaults. */
export const PROVIDER_SCHEMAS = {
  lambda: strict({
    api_key_env: v.optional(EnvVarName, "LAMBDA_API_KEY"),
    ssh_key_names: v.optional(SshKeyNames),
    base_url: v.optional(HttpUrl),
  }),
  gcp: v.pipe(
    strict({
      project: v.optional(shaped(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, "a GCP project id (6–30 lowercase letters, digits and '-')")),
      credentials_env: v.optional(EnvVarName),
      credentials_file: v.optional(Text),
      base_url: v.optional(HttpUrl),
    }),
    rules((_f, report, raw) => {
      if (raw.credentials_env !== undefined && raw.credentials_file !== undefined) {
        report("credentials_file", "set credentials_env or credentials_file, not both");
      }
    }),
  ),
  aws: v.pipe(
    strict({
      region: v.optional(Text),
      access_key_id_env: v.optional(EnvVarName),
      secret_access_key_env: v.optional(EnvVarName),
      endpoint: v.optional(HttpUrl),
    }),
    rules((_f, report, raw) => {
      // Half a key pair would silently fall back to the default credential chain for the other half.
      const [id, secret] = [raw.access_key_id_env !== undefined, raw.secret_access_key_env !== undefined];
      if (id && !secret) report("secret_access_key_env", "is required when access_key_id_env is set");
      if (secret && !id) report("access_key_id_env", "is required when secret_access_key_env is set");
    }),
  ),
  coreweave: strict({
    namespace: v.optional(DnsLabel),
    kubeconfig: v.optional(Text),
  }),
  local: strict({
    agent_binary: v.optional(Text),
    nvml_library: v.optional(Text),
    nodes_dir: v.optional(Text),
  }),
} satisfies Record<ProviderType, v.GenericSchema>;

export const Providers: v.GenericSchema<unknown, ProvidersConfig> = strict(
  {
    lambda: v.optional(PROVIDER_SCHEMAS.lambda),
    gcp: v.optional(PROVIDER_SCHEMAS.gcp),
    aws: v.optional(PROVIDER_SCHEMAS.aws),
    coreweave: v.optional(PROVIDER_SCHEMAS.coreweave),
    local: v.optional(PROVIDER_SCHEMAS.local),
  },
  { unknownNoun: "provider type" },
);

export const ProviderName = oneOf(PROVIDER_TYPES, "provider type");
