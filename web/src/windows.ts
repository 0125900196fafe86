/** Small time windows over the stream: rates, latency percentiles, the charts' histories. */

/** Counters sampled over time; rates over the last `spanMs`. */
export class CounterWindow<K extends string> {
  readonly #spanMs: number;
  #samples: { t: number; values: Record<K, number> }[] = [];

  constructor(spanMs: number) {
    this.#spanMs = spanMs;
  }

  add(t: number, values: Record<K, number>): void {
    this.#samples.push({ t, values });
    // Keep one sample at or before the window's start as the baseline.
    while (this.#samples.length > 2 && this.#samples[1]!.t <= t - this.#spanMs) this.#samples.shift();
  }

  clear(): void {
    this.#samples = [];
  }

  /** Increase of each counter over the window and the window's length in seconds. */
  change(): { seconds: number; delta: Record<K, number> } | undefined {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.t <= first.t) return undefined;
    const delta = {} as Record<K, number>;
    for (const key of Object.keys(last.values) as K[]) delta[key] = last.values[key] - first.values[key];
    return { seconds: (last.t - first.t) / 1000, delta };
  }
}

/** Values with arrival times; percentiles over the last `spanMs`. */
export class ValueWindow {
  readonly #spanMs: number;
  #t: number[] = [];
  #v: number[] = [];

  constructor(spanMs: number) {
    this.#spanMs = spanMs;
  }

  add(t: number, value: number): void {
    this.#t.push(t);
    this.#v.push(value);
    if (this.#t.length > 4096 && this.#t[0]! < t - this.#spanMs) this.#trim(t);
  }

  clear(): void {
    this.#t = [];
    this.#v = [];
  }

  /** Percentiles (0..1) of the values that arrived within the window before `now`. */
  percentiles(now: number, ps: readonly number[]): { count: number; values: number[] } {
    this.#trim(now);
    const sorted = Float64Array.from(this.#v).sort();
    if (sorted.length === 0) return { count: 0, values: ps.map(() => NaN) };
    return {
      count: sorted.length,
      values: ps.map((p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!),
    };
  }

  #trim(now: number): void {
    let drop = 0;
    while (drop < this.#t.length && this.#t[drop]! < now - this.#spanMs) drop++;
    if (drop > 0) {
      this.#t.splice(0, drop);
      this.#v.splice(0, drop);
    }
  }
}

/**
 * A ring of (time, value) points, at most `capacity`, read back for the last `spanMs`.
 * Each point may carry a range `lo..hi` around its value (an envelope: the least and
 * greatest value over the states the point stands for); without one it is the value.
 */
export class History {
  readonly #t: Float64Array;
  readonly #v: Float64Array;
  readonly #lo: Float64Array;
  readonly #hi: Float64Array;
  #start = 0;
  #length = 0;

  constructor(capacity: number) {
    this.#t = new Float64Array(capacity);
    this.#v = new Float64Array(capacity);
    this.#lo = new Float64Array(capacity);
    this.#hi = new Float64Array(capacity);
  }

  get length(): number {
    return this.#length;
  }

  add(t: number, value: number, lo = value, hi = value): void {
    const cap = this.#t.length;
    const at = (this.#start + this.#length) % cap;
    this.#t[at] = t;
    this.#v[at] = value;
    this.#lo[at] = Math.min(lo, value);
    this.#hi[at] = Math.max(hi, value);
    if (this.#length < cap) this.#length++;
    else this.#start = (this.#start + 1) % cap;
  }

  clear(): void {
    this.#start = 0;
    this.#length = 0;
  }

  /** Calls `f` on every point newer than `since`, oldest first. */
  forEach(since: number, f: (t: number, v: number, lo: number, hi: number) => void): void {
    const cap = this.#t.length;
    for (let k = 0; k < this.#length; k++) {
      const i = (this.#start + k) % cap;
      const t = this.#t[i]!;
      if (t >= since) f(t, this.#v[i]!, this.#lo[i]!, this.#hi[i]!);
    }
  }
}
