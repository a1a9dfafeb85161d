/**
 * The standard robustness evaluation of today (Croce & Hein 2020, as
 * RobustBench reports it), without FAB-T: APGD-CE, then APGD-T (9 targets),
 * then Square (5,000 queries), each run only on the examples still robust, so
 * that an example counts as robust only if no attack broke it (the pointwise
 * worst case). Beside the number it runs the checks AutoAttack runs itself:
 * the model outputs logits, not probabilities; no example has an all-zero
 * input gradient; two passes give identical outputs; and the black-box
 * Square does not break clearly more than the white-box attacks (a sign of
 * masked gradients).
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { crossEntropy, isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { apgd, type ApgdResult, apgdTargeted } from "./apgd.ts";
import { square } from "./square.ts";
import { validateAdversarial } from "./suite.ts";
import type { Check } from "./robustness.ts";

/** The name of the evaluation (AutoAttack's standard version less FAB-T). */
export const AUTOATTACK_NAME = "APGD-CE + APGD-T + Square";

/** The attacks of the standard run, in order. */
export const AUTOATTACK_ATTACKS = ["APGD-CE", "APGD-T", "Square"] as const;

/** Options of {@link autoAttack}: AutoAttack's standard settings by default. */
export interface AutoAttackOptions {
  /** ε, the L∞ radius in pixel units. */
  eps: number;
  /** Valid pixel range (default [0, 1]). */
  range?: [number, number];
  /** The run's seed (default 0): APGD-CE's starts use it, APGD-T's seed + 100 + rank, Square's seed + 200. */
  seed?: number;
  /** APGD iterations (default 100). */
  steps?: number;
  /** APGD-T target classes (default 9). */
  targets?: number;
  /** Square's query budget (default 5,000). */
  squareQueries?: number;
  /** Progress notes (the seed, each attack's robust count). */
  log?: (message: string) => void;
}

/** The numbers behind the checks, on one batch; {@link mergeSanity} adds batches up. */
export interface SanityCounts {
  /** Examples checked. */
  examples: number;
  /** Output rows that look like probabilities (every value in [0, 1], summing to 1 within 1e-4). */
  probabilityRows: number;
  /** Examples whose input gradient of the cross-entropy is zero everywhere. */
  zeroGradients: number;
  /** Examples whose outputs differ between two passes. */
  changedAcrossPasses: number;
  /** What the validator found wrong with the adversarial examples (ε-ball, pixel range, finite). */
  problems: string[];
  /** Examples whose adversarial example, scored again, disagrees with the reported flag. */
  mismatched: number;
}

/** One attack of the run. */
export interface AttackStage {
  name: typeof AUTOATTACK_ATTACKS[number];
  /** Per example, whether it is still robust after this attack (and every earlier one). */
  robust: boolean[];
  /** Examples the attack was run on (those robust before it). */
  ran: number;
  seconds: number;
}

/** What {@link autoAttack} returns. Only `adv` holds tensor memory; dispose it. */
export interface AutoAttackResult {
  name: string;
  seed: number;
  eps: number;
  /** Per example, whether the clean input is classified correctly. */
  clean: boolean[];
  /** The attacks in order, each with the flags after it. */
  stages: AttackStage[];
  /** Per example, robust to every attack: the final flags. */
  robust: boolean[];
  /** Per example, the point that broke it, else APGD-CE's highest-loss point (the clean input when misclassified). */
  adv: tf.Tensor4D;
  /** Per example, the queries Square spent (0 where it did not run). */
  squareQueries: number[];
  sanity: SanityCounts;
}

/**
 * The numbers of the model checks on `x`, and of the validation of `adv`
 * against `robust`: outputs that look like probabilities, all-zero input
 * gradients, outputs that change between two passes, adversarial examples
 * outside the ε-ball or the pixel range, re-scored flags that differ.
 */
export async function sanityCounts(
  model: tfl.LayersModel,
  x: tf.Tensor4D,
  y: tf.Tensor1D,
  adv: tf.Tensor4D,
  robust: boolean[],
  eps: number,
  range: [number, number],
): Promise<SanityCounts> {
  const n = x.shape[0];
  const [z1, z2, zeroT, againT] = tf.tidy(() => {
    const a = logits(model, x), b = logits(model, x);
    const g = tf.grad((v: tf.Tensor) => crossEntropy(logits(model, v), y).sum())(x);
    return [a, b, g.abs().max([1, 2, 3]).equal(0), isCorrect(logits(model, adv), y)];
  });
  const [a, b] = [await z1.data() as Float32Array, await z2.data() as Float32Array];
  const [zero, again] = [await zeroT.data(), await againT.data()];
  tf.dispose([z1, z2, zeroT, againT]);
  const k = a.length / Math.max(n, 1);
  let probabilityRows = 0, changedAcrossPasses = 0;
  for (let i = 0; i < n; i++) {
    const row = a.subarray(i * k, (i + 1) * k);
    const sum = row.reduce((s: number, v: number) => s + v, 0);
    if (row.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) <= 1e-4) probabilityRows++;
    if (row.some((v, j) => v !== b[i * k + j])) changedAcrossPasses++;
  }
  return {
    examples: n,
    probabilityRows,
    zeroGradients: Array.from(zero).filter((v) => v === 1).length,
    changedAcrossPasses,
    problems: validateAdversarial(await adv.data() as Float32Array, await x.data() as Float32Array, eps, range),
    mismatched: robust.filter((r, i) => r !== (again[i] === 1)).length,
  };
}

/** The counts of several batches as one. */
export function mergeSanity(parts: SanityCounts[]): SanityCounts {
  return {
    examples: parts.reduce((s, p) => s + p.examples, 0),
    probabilityRows: parts.reduce((s, p) => s + p.probabilityRows, 0),
    zeroGradients: parts.reduce((s, p) => s + p.zeroGradients, 0),
    changedAcrossPasses: parts.reduce((s, p) => s + p.changedAcrossPasses, 0),
    problems: parts.flatMap((p) => p.problems),
    mismatched: parts.reduce((s, p) => s + p.mismatched, 0),
  };
}

/** How far (a fraction of the examples) Square may go below the white-box attacks before it is a warning: 0.2 points. */
export const SQUARE_MARGIN = 0.002;

/**
 * AutoAttack's checks from the counts and the flags of the same examples
 * after the white-box attacks (APGD-CE and APGD-T) and after Square. Square
 * runs only on what the white-box attacks left, so its robust accuracy is
 * below theirs by what it alone broke: more than 0.2 points is a warning that
 * the gradients mislead the white-box attacks.
 */
export function autoAttackChecks(s: SanityCounts, whiteBox: boolean[], final: boolean[]): Check[] {
  const pct = (count: number) => `${(100 * count / Math.max(final.length, 1)).toFixed(2)}%`;
  const [wb, all] = [whiteBox.filter(Boolean).length, final.filter(Boolean).length];
  // In examples, so that 0.2 points of 1,000 examples is 2 examples exactly, not a rounding of fractions.
  const masked = wb - all > SQUARE_MARGIN * final.length;
  return [
    {
      name: "the model outputs logits, not probabilities",
      pass: s.examples === 0 || s.probabilityRows < s.examples,
      detail: `${s.probabilityRows} of ${s.examples} output rows lie in [0, 1] and sum to 1` +
        (s.examples && s.probabilityRows === s.examples ? ": attack the logits, before the softmax" : ""),
    },
    {
      name: "no example has an all-zero input gradient",
      pass: s.zeroGradients === 0,
      detail: `${s.zeroGradients} of ${s.examples} examples with ∇x cross-entropy = 0 everywhere`,
    },
    {
      name: "outputs are identical across two passes (no randomness)",
      pass: s.changedAcrossPasses === 0,
      detail: `${s.changedAcrossPasses} of ${s.examples} examples with outputs that differ between two passes`,
    },
    {
      name: "Square breaks at most 0.2 points beyond the white-box attacks",
      pass: !masked,
      detail: `robust accuracy ${pct(wb)} after APGD-CE and APGD-T, ${pct(all)} after Square, on the same ` +
        `${final.length} examples` + (masked ? ": the gradients may be masked" : ""),
    },
    {
      name: "the adversarial examples pass the validator and reproduce the flags",
      pass: !s.problems.length && s.mismatched === 0,
      detail: (s.problems.length ? s.problems.join("; ") + "; " : "") +
        `${s.mismatched} of ${s.examples} examples scored again disagree with their flag`,
    },
  ];
}

/** The indices where `flags` is true. */
function where(flags: boolean[]): number[] {
  return flags.flatMap((f, i) => f ? [i] : []);
}

/**
 * The standard run on x [n, h, w, c] with labels y: the clean accuracy, then
 * APGD-CE, APGD-T and Square in turn, each only on the examples still robust,
 * and the counts of the checks. The seed is logged.
 */
export async function autoAttack(
  model: tfl.LayersModel,
  x: tf.Tensor4D,
  y: tf.Tensor1D,
  options: AutoAttackOptions,
): Promise<AutoAttackResult> {
  const seed = options.seed ?? 0, range = options.range ?? [0, 1], eps = options.eps;
  const log = options.log ?? (() => {});
  log(`${AUTOATTACK_NAME}: ε ${eps}, seed ${seed}`);
  const n = x.shape[0], size = x.size / Math.max(n, 1);
  const okT = tf.tidy(() => isCorrect(logits(model, x), y));
  const clean = Array.from(await okT.data(), (v) => v === 1);
  okT.dispose();
  const robust = clean.slice();
  const out = (await x.data() as Float32Array).slice();
  const squareQueries = new Array<number>(n).fill(0);
  const stages: AttackStage[] = [];
  const runs: Record<AttackStage["name"], (xs: tf.Tensor4D, ys: tf.Tensor1D, ix: number[]) => Promise<ApgdResult>> = {
    "APGD-CE": (xs, ys) => apgd(model, xs, ys, { eps, range, seed, steps: options.steps, loss: "ce" }),
    "APGD-T": (xs, ys) =>
      apgdTargeted(model, xs, ys, { eps, range, seed: seed + 100, steps: options.steps, targets: options.targets }),
    Square: async (xs, ys, ix) => {
      const r = await square(model, xs, ys, { eps, range, seed: seed + 200, queries: options.squareQueries });
      ix.forEach((i, j) => squareQueries[i] = r.queries[j]);
      return { adv: r.adv, robust: r.robust, bestLoss: r.margin.map((m) => -m) };
    },
  };
  for (const name of AUTOATTACK_ATTACKS) {
    const start = performance.now();
    const ix = where(robust);
    if (ix.length) {
      const idx = tf.tensor1d(ix, "int32");
      const [xs, ys] = tf.tidy(() => [tf.gather(x, idx) as tf.Tensor4D, tf.gather(y, idx) as tf.Tensor1D]);
      const r = await runs[name](xs, ys, ix);
      const data = await r.adv.data();
      tf.dispose([idx, xs, ys, r.adv]);
      ix.forEach((i, j) => {
        // Broken examples keep the point that broke them; the robust ones APGD-CE's highest-loss point.
        if (!r.robust[j] || name === "APGD-CE") out.set(data.subarray(j * size, (j + 1) * size), i * size);
        if (!r.robust[j]) robust[i] = false;
      });
    }
    stages.push({ name, robust: robust.slice(), ran: ix.length, seconds: (performance.now() - start) / 1000 });
    log(`${name}: ran on ${ix.length}, robust ${robust.filter(Boolean).length} of ${n}`);
  }
  const adv = tf.tensor4d(out, x.shape);
  const sanity = await sanityCounts(model, x, y, adv, robust, eps, range);
  return { name: AUTOATTACK_NAME, seed, eps, clean, stages, robust, adv, squareQueries, sanity };
}
