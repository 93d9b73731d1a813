// Seeded randomness for the simulator: no Math.random, no wall clock. Every consumer
// (chaos, workload, cloud errors, target picks, node ids) draws from its own stream,
// derived from the run's seed and the stream's name, so adding draws to one stream
// never changes what another one sees.

/** A stream of uniform numbers in [0, 1) with helpers; deterministic for a seed and a name. */
export class Random {
  private state: number;

  constructor(seed: number, stream = "") {
    this.state = mix(hashString(stream) ^ Math.imul(seed >>> 0, 0x9e3779b1)) || 0x6d2b79f5;
  }

  /** mulberry32: small, fast, good enough for simulation. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element, or undefined for an empty list. */
  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.int(items.length)];
  }

  /** `k` distinct elements in a random order (all of them when k ≥ length). */
  sample<T>(items: readonly T[], k: number): T[] {
    const copy = [...items];
    const n = Math.min(k, copy.length);
    for (let i = 0; i < n; i++) {
      const j = i + this.int(copy.length - i);
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, n);
  }

  /** Exponentially distributed with the given mean (time between Poisson arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  /** A key chosen with probability proportional to its weight; undefined when all weights are 0. */
  weighted<K>(entries: readonly (readonly [K, number])[]): K | undefined {
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    if (!(total > 0)) return undefined;
    let r = this.next() * total;
    for (const [key, w] of entries) {
      r -= w;
      if (r < 0) return key;
    }
    return entries.at(-1)?.[0];
  }

  /** `bytes` random bytes as lowercase hex (deterministic node ids). */
  hex(bytes: number): string {
    let out = "";
    for (let i = 0; i < bytes; i++) out += this.int(256).toString(16).padStart(2, "0");
    return out;
  }
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function mix(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
