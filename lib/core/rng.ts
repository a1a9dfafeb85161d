/**
 * A small seeded random number generator (mulberry32). Everything random in the
 * library (data order, random starts, example choice) is drawn from it on the
 * JS side, so a run is reproducible from its seed on every backend and its state
 * can be saved in a checkpoint.
 *
 * @module
 */

/** Seeded generator of uniform numbers in [0, 1). */
export class Rng {
  #state: number;

  /** A generator for `seed` (any finite number; it is hashed to 32 bits). */
  constructor(seed: number) {
    this.#state = hashSeed(seed);
  }

  /** The generator's state, to store in a checkpoint. */
  get state(): number {
    return this.#state;
  }

  set state(value: number) {
    this.#state = value >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** `n` uniform numbers in [lo, hi). */
  uniform(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    const span = hi - lo;
    for (let i = 0; i < n; i++) out[i] = lo + span * this.next();
    return out;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** `k` distinct indices drawn uniformly from 0..n-1. */
  sample(n: number, k: number): number[] {
    if (k > n) throw new RangeError(`cannot sample ${k} distinct indices from ${n}`);
    return Array.from(this.permutation(n).subarray(0, k));
  }
}

function hashSeed(seed: number): number {
  let h = 0x9e3779b9 ^ Math.floor(seed);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
