// Helpers the provider tests share: a launch request as the reconciler would build
// one, and an assertion on the ProviderError a call rejects with.
import { expect } from "bun:test";
import { ProviderError, TAG_MANAGED_BY, TAG_OPERATION, TAG_POOL, type LaunchRequest } from "../../reconciler/providers/provider.ts";

export const TEST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForNavarchProviderTestsOnly0000000 navarch@test";

let counter = 0;

/** A launch request for `pool` with a fresh operation key (or the one given). */
export function launchRequest(overrides: Partial<LaunchRequest> & { pool?: string } = {}): LaunchRequest {
  counter += 1;
  const pool = overrides.pool ?? "training";
  const key = overrides.idempotencyKey ?? `op-${pool}-${Date.now().toString(36)}-${counter}`;
  const suffix = createSuffix(key);
  return {
    name: `nv-${pool}-${suffix}`,
    idempotencyKey: key,
    pool,
    instanceType: "gpu_8x_h100_sxm5",
    region: "us-west-2",
    sshPublicKey: TEST_PUBLIC_KEY,
    ...overrides,
    tags: { [TAG_MANAGED_BY]: "navarch", [TAG_POOL]: pool, [TAG_OPERATION]: key, ...overrides.tags },
  };
}

function createSuffix(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex").slice(0, 8);
}

/** Awaits `promise`, expecting a ProviderError of `kind`; returns it for further checks. */
export async function expectProviderError(promise: Promise<unknown>, kind: ProviderError["kind"]): Promise<ProviderError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof ProviderError)) {
    throw new Error(`expected a ProviderError of kind ${kind}, got ${caught === undefined ? "success" : String(caught)}`);
  }
  expect(caught.kind).toBe(kind);
  return caught;
}

/** An environment lookup over a fixed map. */
export function fakeEnv(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}
