// Builds the providers the config's pools use. Credentials are read from the
// environment variables the config names, when a call needs them (never logged).
import type { NavarchConfig, ProviderType } from "../../schema/config.ts";
import { AwsProvider } from "./aws.ts";
import { CoreWeaveProvider } from "./coreweave.ts";
import { GcpProvider } from "./gcp/provider.ts";
import { LambdaProvider } from "./lambda.ts";
import { LocalProvider, localProviderOptions } from "./local/provider.ts";
import type { Provider } from "./provider.ts";

export interface ProviderContext {
  dataDir: string;
  /** Where local agents reach this reconciler. */
  serverUrl: string;
  authToken: string;
  log: (line: string) => void;
  env?: (name: string) => string | undefined;
}

export function createProviders(config: NavarchConfig, ctx: ProviderContext): Map<string, Provider> {
  const env = ctx.env ?? ((name: string) => process.env[name]);
  const used = new Set<ProviderType>(config.pools.flatMap((p) => p.providers));
  const out = new Map<string, Provider>();
  for (const type of used) {
    switch (type) {
      case "lambda": {
        // Each pool's own ssh_key_names, and its key path for messages.
        const pools = new Map(
          config.pools.map((pool, i) => [pool.name, { path: `pools[${i}]`, ...(pool.ssh_key_names ? { sshKeyNames: pool.ssh_key_names } : {}) }]),
        );
        out.set(type, new LambdaProvider(config.providers.lambda ?? { api_key_env: "LAMBDA_API_KEY" }, env, { pools, dataDir: ctx.dataDir, log: ctx.log }));
        break;
      }
      case "gcp":
        out.set(type, new GcpProvider(config.providers.gcp ?? {}, env));
        break;
      case "aws":
        out.set(type, new AwsProvider(config.providers.aws ?? {}, env));
        break;
      case "local":
        out.set(type, new LocalProvider(localProviderOptions(config.providers.local, ctx)));
        break;
      case "coreweave":
        // Node Pool custom resources in the CKS cluster the kubeconfig names (connects on first use).
        out.set(type, new CoreWeaveProvider({ config: config.providers.coreweave ?? {}, log: ctx.log }));
        break;
    }
  }
  return out;
}
