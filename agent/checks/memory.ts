// What one check remembers about one GPU between evaluations: counter readings (for rates, never
// absolute values) and windows of yes/no samples (for "in most samples"). Time comes in as an
// argument, so checks stay pure functions of their inputs.

interface CounterSample {
  at: number;
  value: number;
}

/** Yes/no samples over a sliding time window, with a running count (no scan per sample). */
export class SampleWindow {
  private times: number[] = [];
  private flags: boolean[] = [];
  private head = 0;
  private yes = 0;

  constructor(private readonly windowMs: number) {}

  push(at: number, flag: boolean): void {
    this.times.push(at);
    this.flags.push(flag);
    if (flag) this.yes++;
    while (this.head < this.times.length && this.times[this.head]! < at - this.windowMs) {
      if (this.flags[this.head]) this.yes--;
      this.head++;
    }
    // Compact now and then so the arrays do not grow for ever.
    if (this.head > 256 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.flags = this.flags.slice(this.head);
      this.head = 0;
    }
  }

  get size(): number {
    return this.times.length - this.head;
  }

  /** Share of samples that were yes (0 when empty). */
  get share(): number {
    return this.size === 0 ? 0 : this.yes / this.size;
  }
}

export class CheckMemory {
  private readonly counters = new Map<string, CounterSample>();
  private readonly windows = new Map<string, SampleWindow>();
  private readonly numbers = new Map<string, number>();

  /** A number to look at again next time (e.g. the last rate, for reads that leave its counter out). */
  keep(key: string, value: number | undefined): void {
    if (value === undefined) this.numbers.delete(key);
    else this.numbers.set(key, value);
  }

  kept(key: string): number | undefined {
    return this.numbers.get(key);
  }

  /** Rate per `perMs` since the previous reading of this counter; undefined on the first. */
  rate(key: string, value: number, at: number, perMs: number): number | undefined {
    const prev = this.counters.get(key);
    this.counters.set(key, { at, value });
    if (prev === undefined || at <= prev.at) return undefined;
    // A counter that went down was reset (GPU reset, driver reload): start over.
    if (value < prev.value) return undefined;
    return ((value - prev.value) * perMs) / (at - prev.at);
  }

  /** Increase since the previous reading of this counter (0 on the first, or after a reset). */
  delta(key: string, value: number, at: number): number {
    const prev = this.counters.get(key);
    this.counters.set(key, { at, value });
    return prev === undefined || value < prev.value ? 0 : value - prev.value;
  }

  window(key: string, windowMs: number): SampleWindow {
    let w = this.windows.get(key);
    if (w === undefined) {
      w = new SampleWindow(windowMs);
      this.windows.set(key, w);
    }
    return w;
  }
}
