/**
 * The Square Attack in the L∞ ball (Andriushchenko et al. 2020, "Square
 * Attack: a query-efficient black-box adversarial attack via random search"):
 * a score-based attack that reads only the model's logits, never a gradient.
 * It starts from vertical stripes of ±ε and then, query by query, sets a
 * random square of each channel to +ε or −ε around the clean image, keeping
 * the change when the margin of the true class shrinks. The squares shrink on
 * a fixed schedule of the query budget. Robustness that falls under it but
 * not under white-box attacks points to masked gradients.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { Rng } from "../core/rng.ts";
import { logits } from "../nn/mnist_net.ts";

/** What Square queries: a layers model (in inference mode) or any function from images [n, h, w, c] to logits [n, k]. */
export type Scorer = tfl.LayersModel | ((x: tf.Tensor4D) => tf.Tensor2D);

/** Options of {@link square}. */
export interface SquareOptions {
  /** ε, the L∞ radius in pixel units. */
  eps: number;
  /** Query budget per example, the initial point included (default 5,000, as AutoAttack). */
  queries?: number;
  /** Share of the image the first squares cover (default 0.8, the paper's L∞ value). */
  pInit?: number;
  /** Valid pixel range (default [0, 1]). */
  range?: [number, number];
  /** Seed of the stripes, squares and signs (default 0). */
  seed?: number;
}

/** What {@link square} returns. Only `adv` holds tensor memory; dispose it. */
export interface SquareResult {
  /** Per example, the misclassified point found, else the point of lowest margin. */
  adv: tf.Tensor4D;
  /** Per example, whether every queried point was classified correctly. */
  robust: boolean[];
  /** Per example, the perturbed points scored (0 for an example misclassified from the start). */
  queries: Int32Array;
  /** Per example, the lowest margin z_y − max_{j≠y} z_j reached (the clean one where not attacked). */
  margin: Float32Array;
}

/** Iterations of the 10,000-query schedule after which the square's share of the image is halved. */
export const SQUARE_HALVINGS = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000];

/**
 * The share p of the image a square covers at `iteration` (from 0) of a
 * budget of `queries`: `pInit` halved after each of {@link SQUARE_HALVINGS},
 * the iteration first rescaled to the 10,000-query schedule.
 */
export function squareFraction(iteration: number, queries: number, pInit = 0.8): number {
  const it = Math.floor(iteration / queries * 10000);
  return pInit / 2 ** SQUARE_HALVINGS.filter((t) => it > t).length;
}

/** The side of the square covering a share `p` of an h×w image: round(√(p·h·w)), at least 1, below the image side. */
export function squareSide(p: number, h: number, w: number): number {
  return Math.min(Math.max(Math.round(Math.sqrt(p * h * w)), 1), Math.min(h, w) - 1);
}

/** Logits of a scorer, as numbers: [n·k] (read asynchronously: WebGPU has no synchronous read in Deno). */
async function score(f: Scorer, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const z = tf.tidy(() => {
    const v = tf.tensor4d(x, shape as [number, number, number, number]);
    return typeof f === "function" ? f(v) : logits(f, v);
  });
  try {
    return await z.data() as Float32Array;
  } finally {
    z.dispose();
  }
}

/** Margin z_y − max_{j≠y} z_j and correctness (the first largest logit is y) of row i of logits [n·k]. */
function marginOf(z: Float32Array, i: number, k: number, label: number): { margin: number; correct: boolean } {
  let other = -Infinity, top = 0;
  for (let j = 0; j < k; j++) {
    const v = z[i * k + j];
    if (j !== label && v > other) other = v;
    if (v > z[i * k + top]) top = j;
  }
  return { margin: z[i * k + label] - other, correct: top === label };
}

/** Checks Square's options; throws a RangeError that names the bad value. */
export function validateSquareOptions(o: SquareOptions): void {
  const [lo, hi] = o.range ?? [0, 1];
  if (!(hi > lo)) throw new RangeError(`pixel range must have hi > lo, got [${lo}, ${hi}]`);
  if (!(o.eps > 0) || !(o.eps <= hi - lo)) {
    throw new RangeError(`eps must be in (0, ${hi - lo}] for pixels in [${lo}, ${hi}], got ${o.eps}`);
  }
  const q = o.queries ?? 5000;
  if (!Number.isInteger(q) || q < 1) throw new RangeError(`queries must be an integer ≥ 1, got ${q}`);
  const p = o.pInit ?? 0.8;
  if (!(p > 0 && p <= 1)) throw new RangeError(`pInit must be in (0, 1], got ${p}`);
}

/**
 * Square Attack (L∞, untargeted, margin loss) on images x [n, h, w, c] with
 * labels y: forward passes only. Each example stops as soon as a queried
 * point is misclassified; an example misclassified from the start is not
 * attacked. Every point stays within ε of x and inside the pixel range.
 */
export async function square(f: Scorer, x: tf.Tensor4D, y: tf.Tensor1D, options: SquareOptions): Promise<SquareResult> {
  validateSquareOptions(options);
  const { eps } = options;
  const budget = options.queries ?? 5000, pInit = options.pInit ?? 0.8;
  const [lo, hi] = options.range ?? [0, 1];
  const [n, h, w, c] = x.shape;
  const size = h * w * c;
  const rng = new Rng(options.seed ?? 0);
  const clean = await x.data() as Float32Array;
  const labels = Int32Array.from(await y.data());
  const clip = (v: number) => Math.min(hi, Math.max(lo, v));

  const z0 = await score(f, clean, x.shape);
  const k = z0.length / n;
  const robust = new Array<boolean>(n), margin = new Float32Array(n);
  for (let i = 0; i < n; i++) ({ margin: margin[i], correct: robust[i] } = marginOf(z0, i, k, labels[i]));
  const queries = new Int32Array(n);
  const best = clean.slice();

  // The start: vertical stripes, one sign per column and channel.
  let active = robust.flatMap((ok, i) => ok ? [i] : []);
  const candidate = (ix: number[], fill: (i: number, out: Float32Array) => void) => {
    const batch = new Float32Array(ix.length * size);
    ix.forEach((i, b) => fill(i, batch.subarray(b * size, (b + 1) * size)));
    return batch;
  };
  // Scores the candidates of examples `ix`; keeps each that lowers the margin or breaks the example (any, with `take`).
  const evaluate = async (ix: number[], batch: Float32Array, take = false) => {
    const z = await score(f, batch, [ix.length, h, w, c]);
    ix.forEach((i, b) => {
      queries[i]++;
      const m = marginOf(z, b, k, labels[i]);
      if (take || m.margin < margin[i] || !m.correct) {
        margin[i] = m.margin;
        best.set(batch.subarray(b * size, (b + 1) * size), i * size);
      }
      if (!m.correct) robust[i] = false;
    });
  };
  if (active.length) {
    const start = candidate(active, (i, out) => {
      const signs = Float32Array.from({ length: w * c }, () => rng.next() < 0.5 ? -eps : eps);
      for (let p = 0; p < size; p++) out[p] = clip(clean[i * size + p] + signs[p % (w * c)]);
    });
    await evaluate(active, start, true); // the stripes are the first point, whatever their margin
  }

  for (let it = 0; it < budget - 1; it++) {
    active = active.filter((i) => robust[i]);
    if (!active.length) break;
    const s = squareSide(squareFraction(it, budget, pInit), h, w);
    const batch = candidate(active, (i, out) => {
      out.set(best.subarray(i * size, (i + 1) * size));
      const r0 = rng.int(h - s + 1), c0 = rng.int(w - s + 1);
      // New signs per channel, drawn again (a few times) while they would leave the square as it is.
      for (let tries = 0; tries < 100; tries++) {
        const signs = Array.from({ length: c }, () => rng.next() < 0.5 ? -eps : eps);
        let changed = false;
        for (let r = r0; r < r0 + s; r++) {
          for (let col = c0; col < c0 + s; col++) {
            for (let ch = 0; ch < c; ch++) {
              const p = (r * w + col) * c + ch;
              out[p] = clip(clean[i * size + p] + signs[ch]);
              if (Math.abs(out[p] - best[i * size + p]) >= 1e-7) changed = true;
            }
          }
        }
        if (changed) break;
      }
    });
    await evaluate(active, batch);
  }
  return { adv: tf.tensor4d(best, x.shape), robust, queries, margin };
}
