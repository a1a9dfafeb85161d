/**
 * Auto-PGD in the L∞ ball (Croce & Hein 2020, "Reliable evaluation of
 * adversarial robustness with an ensemble of diverse parameter-free attacks"):
 * PGD without a step size to tune. Each example starts with a step of 2ε,
 * moves with momentum, and at checkpoints spaced ever closer halves its step
 * and restarts from its best point when its loss has stalled. APGD-CE
 * maximises the cross-entropy; APGD-T the targeted DLR loss, once for each of
 * the 9 classes the clean logits rank next after the top one.
 *
 * Attacks are pure functions of (model, x, y, options): the model is run in
 * inference mode and new tensors are returned.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { Rng } from "../core/rng.ts";
import { crossEntropy, dlrLoss, dlrTargetedLoss, isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { randomStart } from "./pgd.ts";

/** The objective APGD maximises: cross-entropy, the DLR loss, or the targeted DLR loss (with `target`). */
export type ApgdLoss = "ce" | "dlr" | "dlr-targeted";

/** Options of {@link apgd}. */
export interface ApgdOptions {
  /** ε, the L∞ radius in pixel units (0.3 for MNIST in [0,1], 8 for CIFAR-10 in [0,255]). */
  eps: number;
  /** Iterations per restart (default 100, as AutoAttack). */
  steps?: number;
  /** Random restarts, each run only on the examples still robust (default 1). */
  restarts?: number;
  /** Objective (default "ce"). */
  loss?: ApgdLoss;
  /** With loss "dlr-targeted": the target class of each example [n]. */
  target?: ArrayLike<number>;
  /** Valid pixel range (default [0, 1]). */
  range?: [number, number];
  /** Seed of the random starts (default 0). */
  seed?: number;
}

/** What {@link apgd} returns. Only `adv` holds tensor memory; dispose it. */
export interface ApgdResult {
  /** Per example, a point that the model misclassifies where one was found, else the point of highest loss. */
  adv: tf.Tensor4D;
  /** Per example, whether the model classified every point the attack visited correctly. */
  robust: boolean[];
  /** Per example, the highest loss reached (−Infinity for an example misclassified from the start). */
  bestLoss: Float32Array;
}

/** Momentum weight α of the new step (the rest, 1 − α, is the previous one). */
export const APGD_ALPHA = 0.75;
/** ρ: the step is halved at a checkpoint where the loss rose in at most this share of the steps since the last. */
export const APGD_RHO = 0.75;

/**
 * The checkpoints of APGD for `steps` iterations, as iteration counts:
 * w_j = ⌈p_j · steps⌉ with p_0 = 0, p_1 = 0.22 and
 * p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), every w_j ≤ steps.
 * For 100 iterations: 0, 22, 41, 57, 70, 80, 87, 93, 99. Computed in
 * hundredths, exactly (0.22 + 0.19 is not 0.41 in floating point). Where
 * two checkpoints fall on the same iteration (few iterations) it is one.
 */
export function apgdCheckpoints(steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be an integer ≥ 1, got ${steps}`);
  const marks = [0];
  let p = 22, gap = 22; // p_j and p_j − p_{j−1}, in hundredths
  while (Math.ceil(p * steps / 100) <= steps) {
    const w = Math.ceil(p * steps / 100);
    if (w > marks[marks.length - 1]) marks.push(w); // few iterations: two p_j may round to the same one
    gap = Math.max(gap - 3, 6);
    p += gap;
  }
  return marks;
}

/** The state of one checkpoint of {@link halveStepSize}, per example. */
export interface CheckpointState {
  /** Per example, its loss at every iterate from the previous checkpoint to this one (both included). */
  history: ArrayLike<number>[];
  /** Per example, whether its step was halved at the previous checkpoint. */
  halvedLast: boolean[];
  /** Per example, its best loss at the previous checkpoint. */
  bestAtLast: ArrayLike<number>;
  /** Per example, its best loss now. */
  best: ArrayLike<number>;
  /** ρ (default {@link APGD_RHO}). */
  rho?: number;
}

/**
 * APGD's step-size rule at a checkpoint, per example: halve the step (and
 * restart from the best point) when the loss rose in at most ρ of the steps
 * since the previous checkpoint, or when the step was not halved at the
 * previous checkpoint and the best loss has not improved since then. (The
 * paper writes "fewer than ρ"; AutoAttack's reference and this rule use "at
 * most".)
 */
export function halveStepSize(s: CheckpointState): boolean[] {
  const rho = s.rho ?? APGD_RHO;
  return s.history.map((h, i) => {
    let rose = 0;
    for (let t = 0; t + 1 < h.length; t++) if (h[t + 1] > h[t]) rose++;
    const oscillates = rose <= rho * (h.length - 1);
    const stalled = !s.halvedLast[i] && s.best[i] <= s.bestAtLast[i];
    return oscillates || stalled;
  });
}

/** Projection onto the L∞ ball of radius ε around `x`, then onto the pixel range. */
export function projectLinf(v: tf.Tensor, x: tf.Tensor, eps: number, [lo, hi]: [number, number]): tf.Tensor {
  return tf.tidy(() => tf.minimum(tf.maximum(v, x.sub(eps)), x.add(eps)).clipByValue(lo, hi));
}

/** A per-example number as a tensor that broadcasts over the example's pixels: shape [n, 1, 1, ...]. */
function perExample(values: ArrayLike<number>, like: tf.Tensor): tf.Tensor {
  return tf.tensor(Array.from(values), [like.shape[0], ...like.shape.slice(1).map(() => 1)]);
}

/**
 * One APGD update from the iterate `cur` (the previous one `prev`, the
 * gradient `grad` at `cur`), with step η per example:
 * z = P(cur + η·sign(grad)), next = P(cur + α(z − cur) + (1 − α)(cur − prev)),
 * P the projection onto the ε-ball around `x` and the pixel range. α = 1 is
 * the plain signed-gradient step (APGD's first).
 */
export function momentumStep(
  cur: tf.Tensor,
  prev: tf.Tensor,
  grad: tf.Tensor,
  x: tf.Tensor,
  eta: ArrayLike<number>,
  alpha: number,
  eps: number,
  range: [number, number],
): tf.Tensor {
  return tf.tidy(() => {
    const z = projectLinf(cur.add(grad.sign().mul(perExample(eta, cur))), x, eps, range);
    const moved = cur.add(z.sub(cur).mul(alpha)).add(cur.sub(prev).mul(1 - alpha));
    return projectLinf(moved, x, eps, range);
  });
}

/** Checks APGD's options; throws a RangeError that names the bad value. */
export function validateApgdOptions(o: ApgdOptions, n: number): void {
  const [lo, hi] = o.range ?? [0, 1];
  if (!(hi > lo)) throw new RangeError(`pixel range must have hi > lo, got [${lo}, ${hi}]`);
  if (!(o.eps > 0) || !(o.eps <= hi - lo)) {
    throw new RangeError(`eps must be in (0, ${hi - lo}] for pixels in [${lo}, ${hi}], got ${o.eps}`);
  }
  const steps = o.steps ?? 100, restarts = o.restarts ?? 1;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be an integer ≥ 1, got ${steps}`);
  if (!Number.isInteger(restarts) || restarts < 1) {
    throw new RangeError(`restarts must be an integer ≥ 1, got ${restarts}`);
  }
  const loss = o.loss ?? "ce";
  if (!["ce", "dlr", "dlr-targeted"].includes(loss)) {
    throw new RangeError(`loss must be ce, dlr or dlr-targeted, got ${JSON.stringify(loss)}`);
  }
  if ((loss === "dlr-targeted") !== (o.target !== undefined)) {
    const given = o.target ? "given" : "none";
    throw new RangeError(`a target goes with loss dlr-targeted and only with it; got loss ${loss}, target ${given}`);
  }
  if (o.target && o.target.length !== n) {
    throw new RangeError(`target must have one class per example (${n}), got ${o.target.length}`);
  }
}

/** The per-example objective. */
function objective(loss: ApgdLoss, z: tf.Tensor2D, y: tf.Tensor1D, t?: tf.Tensor1D): tf.Tensor1D {
  if (loss === "dlr-targeted") return dlrTargetedLoss(z, y, t!);
  return loss === "dlr" ? dlrLoss(z, y) : crossEntropy(z, y);
}

/** The loss, its input gradient and the correctness of each example at `v`. */
function lossAndGrad(
  model: tfl.LayersModel,
  loss: ApgdLoss,
  v: tf.Tensor,
  y: tf.Tensor1D,
  t?: tf.Tensor1D,
): { loss: tf.Tensor1D; grad: tf.Tensor; ok: tf.Tensor1D } {
  let l: tf.Tensor1D | undefined, ok: tf.Tensor1D | undefined;
  const grad = tf.tidy(() =>
    tf.grad((u: tf.Tensor) => {
      const z = logits(model, u);
      const per = objective(loss, z, y, t);
      l = tf.keep(per);
      ok = tf.keep(isCorrect(z, y));
      return per.sum();
    })(v)
  );
  return { loss: l!, grad, ok: ok! };
}

/** `where(mask, a, b)` per example, disposing `b` (the tensor it replaces). */
function replaceWhere(mask: boolean[], a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!mask.some(Boolean)) return b;
  const out = tf.tidy(() => tf.where(perExample(mask.map(Number), a).cast("bool").broadcastTo(a.shape), a, b));
  b.dispose();
  return out;
}

/**
 * One run of APGD from a random start on every example of `x`: the point
 * returned per example, whether any iterate broke it, its best loss.
 */
async function apgdRun(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  t: tf.Tensor1D | undefined,
  o: Required<Omit<ApgdOptions, "target" | "restarts">>,
  rng: Rng,
): Promise<{ adv: tf.Tensor; broken: boolean[]; best: Float32Array }> {
  const n = x.shape[0];
  const marks = new Set(apgdCheckpoints(o.steps).slice(1));
  const eta = new Float32Array(n).fill(2 * o.eps);
  let cur = randomStart(x, o.eps, o.range, rng);
  let prev = cur.clone();
  let { loss, grad, ok } = lossAndGrad(model, o.loss, cur, y, t);
  const read = async () => {
    const [l, c] = [await loss.data() as Float32Array, await ok.data()];
    tf.dispose([loss, ok]);
    return { l, c };
  };
  let { l, c } = await read();
  const best = l.slice();
  let xBest = cur.clone(), gBest = grad.clone(), found = cur.clone();
  const broken = Array.from(c, (v) => v !== 1);
  let bestAtLast = best.slice();
  let halvedLast = new Array<boolean>(n).fill(false);
  let history: Float32Array[] = [l];
  for (let k = 0; k < o.steps && !broken.every(Boolean); k++) {
    const next = momentumStep(cur, prev, grad, x, eta, k === 0 ? 1 : APGD_ALPHA, o.eps, o.range);
    tf.dispose([prev, grad]);
    prev = cur;
    cur = next;
    ({ loss, grad, ok } = lossAndGrad(model, o.loss, cur, y, t));
    ({ l, c } = await read());
    const improved = Array.from(l, (v, i) => v > best[i]);
    const breaks = Array.from(c, (v, i) => v !== 1 && !broken[i]);
    for (let i = 0; i < n; i++) {
      if (improved[i]) best[i] = l[i];
      if (breaks[i]) broken[i] = true;
    }
    xBest = replaceWhere(improved, cur, xBest);
    gBest = replaceWhere(improved, grad, gBest);
    found = replaceWhere(breaks, cur, found);
    history.push(l);
    if (!marks.has(k + 1)) continue;
    const halve = halveStepSize({
      history: Array.from({ length: n }, (_, i) => history.map((h) => h[i])),
      halvedLast,
      bestAtLast,
      best,
    });
    for (let i = 0; i < n; i++) if (halve[i]) eta[i] /= 2;
    // Restart the halved examples from their best point, with no momentum carried over.
    cur = replaceWhere(halve, xBest, cur);
    prev = replaceWhere(halve, xBest, prev);
    grad = replaceWhere(halve, gBest, grad);
    history = [l.map((v, i) => halve[i] ? best[i] : v)];
    halvedLast = halve;
    bestAtLast = best.slice();
  }
  const adv = replaceWhere(broken, found, xBest);
  tf.dispose([cur, prev, grad, gBest, found]);
  return { adv, broken, best };
}

/**
 * APGD (L∞) with restarts: each restart runs only on the examples no earlier
 * one broke. An example misclassified from the start is not attacked (its
 * `adv` is the clean input). Per example, the result keeps a misclassified
 * point where one was found, else the point of highest loss.
 */
export async function apgd(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  options: ApgdOptions,
): Promise<ApgdResult> {
  const n = x.shape[0];
  validateApgdOptions(options, n);
  const o = {
    eps: options.eps,
    steps: options.steps ?? 100,
    loss: options.loss ?? "ce",
    range: options.range ?? [0, 1] as [number, number],
    seed: options.seed ?? 0,
  };
  const rng = new Rng(o.seed);
  const size = x.size / n;
  const okT = tf.tidy(() => isCorrect(logits(model, x), y));
  const robust = Array.from(await okT.data(), (v) => v === 1);
  okT.dispose();
  const out = (await x.data() as Float32Array).slice(); // a copy: the backend's own array may come back
  const bestLoss = new Float32Array(n).fill(-Infinity);
  const target = options.target ? Int32Array.from(options.target) : undefined;
  for (let r = 0; r < (options.restarts ?? 1); r++) {
    const active = robust.flatMap((ok, i) => ok ? [i] : []);
    if (!active.length) break;
    const idx = tf.tensor1d(active, "int32");
    const [xs, ys] = tf.tidy(() => [tf.gather(x, idx), tf.gather(y, idx) as tf.Tensor1D]);
    const ts = target ? tf.tensor1d(active.map((i) => target[i]), "int32") : undefined;
    const run = await apgdRun(model, xs, ys, ts, o, rng);
    const data = await run.adv.data();
    tf.dispose([idx, xs, ys, run.adv, ...(ts ? [ts] : [])]);
    active.forEach((i, k) => {
      if (run.broken[k] || run.best[k] > bestLoss[i]) out.set(data.subarray(k * size, (k + 1) * size), i * size);
      bestLoss[i] = Math.max(bestLoss[i], run.best[k]);
      if (run.broken[k]) robust[i] = false;
    });
  }
  return { adv: tf.tensor4d(out, x.shape as [number, number, number, number]), robust, bestLoss };
}

/** Options of {@link apgdTargeted}: those of {@link apgd} but the loss and target, and the number of targets. */
export interface ApgdTargetedOptions extends Omit<ApgdOptions, "loss" | "target"> {
  /** Target classes tried, the 2nd to (targets+1)-th highest clean logits (default 9, or classes − 1 if fewer). */
  targets?: number;
}

/**
 * APGD-T: APGD on the targeted DLR loss, once for each of the `targets`
 * classes with the next-highest clean logits (the 2nd highest first), each
 * run only on the examples still robust. Seeds: `seed` + the target's rank.
 */
export async function apgdTargeted(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  options: ApgdTargetedOptions,
): Promise<ApgdResult> {
  const n = x.shape[0];
  const zT = tf.tidy(() => logits(model, x));
  const [k, z] = [zT.shape[1], await zT.data()];
  zT.dispose();
  const targets = options.targets ?? Math.min(9, k - 1);
  if (!Number.isInteger(targets) || targets < 1 || targets > k - 1) {
    throw new RangeError(`targets must be an integer in [1, ${k - 1}], got ${targets}`);
  }
  const order = Array.from({ length: n }, (_, i) => {
    const row = Array.from(z.subarray(i * k, (i + 1) * k));
    return row.map((_, j) => j).sort((a, b) => row[b] - row[a] || a - b);
  });
  const size = x.size / n;
  const out = (await x.data() as Float32Array).slice();
  let robust: boolean[] | undefined;
  const bestLoss = new Float32Array(n).fill(-Infinity);
  for (let rank = 1; rank <= targets; rank++) {
    const active = robust ? robust.flatMap((ok, i) => ok ? [i] : []) : order.map((_, i) => i);
    if (!active.length) break;
    const idx = tf.tensor1d(active, "int32");
    const [xs, ys] = tf.tidy(() => [tf.gather(x, idx), tf.gather(y, idx) as tf.Tensor1D]);
    const r = await apgd(model, xs, ys, {
      ...options,
      seed: (options.seed ?? 0) + rank,
      loss: "dlr-targeted",
      target: active.map((i) => order[i][rank]),
    });
    const data = await r.adv.data();
    tf.dispose([idx, xs, ys, r.adv]);
    robust ??= new Array<boolean>(n).fill(true);
    active.forEach((i, j) => {
      if (!r.robust[j] || r.bestLoss[j] > bestLoss[i]) out.set(data.subarray(j * size, (j + 1) * size), i * size);
      bestLoss[i] = Math.max(bestLoss[i], r.bestLoss[j]);
      if (!r.robust[j]) robust![i] = false;
    });
  }
  return {
    adv: tf.tensor4d(out, x.shape as [number, number, number, number]),
    robust: robust ?? new Array<boolean>(n).fill(true),
    bestLoss,
  };
}
