// Retry delays for an unreachable reconciler: doubling from `minMs`, never above `maxMs`, each
// drawn at random from the upper half so that a fleet of agents does not retry in step. The
// ceiling is what bounds how late spooled events arrive after the reconciler returns.

export interface BackoffOptions {
  minMs?: number;
  maxMs?: number;
  random?: () => number;
}

/** The defaults: events reach a returning reconciler within the ceiling (4 s) plus one request. */
export const RETRY_MIN_MS = 250;
export const RETRY_MAX_MS = 4000;

export class Backoff {
  private failures = 0;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.minMs = options.minMs ?? RETRY_MIN_MS;
    this.maxMs = Math.max(this.minMs, options.maxMs ?? RETRY_MAX_MS);
    this.random = options.random ?? Math.random;
  }

  /** Failures since the last success. */
  get count(): number {
    return this.failures;
  }

  /** Records a failure; returns how long to wait before the next attempt. */
  fail(): number {
    this.failures++;
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.failures - 1, 30));
    return ceiling / 2 + this.random() * (ceiling / 2);
  }

  succeed(): void {
    this.failures = 0;
  }
}
