// GPUs per instance type, as each provider lists them (instanceTypes()): what a machine is
// recorded with at launch, so that one whose agent never registered still counts its
// GPU-hours. Read in the background (the loop asks for its pools' types each pass), once per
// provider and again at most every RETRY_MS while a type is missing: a launch never waits
// for it (its agent's registration fills in what was not known yet).
import type { Provider } from "./provider.ts";

const RETRY_MS = 10 * 60_000;

export class InstanceTypeGpus {
  private readonly known = new Map<string, ReadonlyMap<string, number>>();
  private readonly askedAt = new Map<string, number>();

  constructor(
    private readonly providers: ReadonlyMap<string, Provider>,
    private readonly now: () => number,
  ) {}

  /** The GPUs of `instanceType` at `provider`, when known. */
  gpus(provider: string, instanceType: string): number | undefined {
    const count = this.known.get(provider)?.get(instanceType);
    if (count === undefined) this.refresh(provider);
    return count;
  }

  private refresh(name: string): void {
    const provider = this.providers.get(name);
    const last = this.askedAt.get(name);
    if (provider === undefined || (last !== undefined && this.now() - last < RETRY_MS)) return;
    this.askedAt.set(name, this.now());
    provider.instanceTypes().then(
      (types) => this.known.set(name, new Map(types.filter((t) => Number.isInteger(t.gpus) && t.gpus > 0).map((t) => [t.name, t.gpus]))),
      () => undefined, // unknown for now: asked again later
    );
  }
}
