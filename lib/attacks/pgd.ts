/**
 * Projected gradient descent in the L∞ ball (Madry et al., Sec. 2.1), with
 * random restarts scored per example, and its one-step special case FGSM.
 *
 * Attacks are pure functions of (model, x, y, options): the model is run in
 * inference mode with no parameter gradients, and new tensors are returned.
 * Adversarial training may ask for the model's training-mode forward pass
 * instead (`bnMode: "train"`); the model is left unchanged either way.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { crossEntropy, cwLoss, isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { Rng } from "../core/rng.ts";
import { PGD_UPDATE } from "../backends/kernel_names.ts";

/** Options of {@link pgd} and {@link perturb}. */
export interface PgdOptions {
  /** ε, the L∞ radius in pixel units (0.3 for MNIST in [0,1], 8 for CIFAR-10 in [0,255]). */
  eps: number;
  /** Number of PGD iterations (≥ 1). */
  steps: number;
  /** α, the size of each signed gradient step in pixel units. */
  stepSize: number;
  /** Start from x + U(−ε, ε), clipped to the pixel range (default true). */
  randomStart?: boolean;
  /** Random restarts; an example is broken if any restart breaks it (default 1). */
  restarts?: number;
  /** Objective: cross-entropy ("xent", default) or the CW margin loss ("cw"). */
  loss?: "xent" | "cw";
  /** κ of the CW loss (0: CW, 50: CW+ in the paper). */
  kappa?: number;
  /** Targeted attack: labels [n] to move toward (minimises their cross-entropy). */
  target?: tf.Tensor1D;
  /** Valid pixel range (default [0, 1]). */
  range?: [number, number];
  /** Seed of the random starts (default 0); ignored when `rng` is given. */
  seed?: number;
  /** Generator of the random starts, shared with the caller (training uses one). */
  rng?: Rng;
  /** Also return the loss of every restart at every iterate (steps + 1 values). */
  recordLosses?: boolean;
  /**
   * The model's mode in every forward pass of the attack. "inference" (default):
   * batch norm on its running statistics, dropout off. "train": the training-mode
   * forward pass, batch norm on the statistics of the batch attacked (as
   * MadryLab's CIFAR-10 training adversary; dropout, where a model has it, on).
   * Either way no weight or running statistic changes: those that a
   * training-mode pass updates are put back after it, bit for bit.
   */
  bnMode?: "train" | "inference";
}

/** What {@link pgd} returns. Only `adv` holds tensor memory; dispose it. */
export interface PgdResult {
  /** Per example, the perturbed input of the first restart that broke it, else of its highest-loss restart. */
  adv: tf.Tensor4D;
  /** Per example, whether the model still classifies it correctly after every restart. */
  robust: boolean[];
  /** Per restart, the loss of each example at the final iterate: [restarts][n]. */
  finalLosses: Float32Array[];
  /** Per restart, whether each example was still classified correctly: [restarts][n]. */
  correct: boolean[][];
  /** With `recordLosses`: per restart, per iterate 0..steps, the loss of each example: [restarts][steps+1][n]. */
  lossCurves?: Float32Array[][];
}

/** Checks attack options; throws a RangeError that names the bad value. */
export function validatePgdOptions(o: PgdOptions): void {
  const [lo, hi] = o.range ?? [0, 1];
  if (!(hi > lo)) throw new RangeError(`pixel range must have hi > lo, got [${lo}, ${hi}]`);
  if (!(o.eps > 0) || !Number.isFinite(o.eps)) throw new RangeError(`eps must be > 0, got ${o.eps}`);
  if (!(o.eps <= hi - lo)) {
    throw new RangeError(`eps must be at most the pixel range ${hi - lo}, got ${o.eps}`);
  }
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`steps must be an integer ≥ 1, got ${o.steps}`);
  if (!(o.stepSize > 0) || !Number.isFinite(o.stepSize)) {
    throw new RangeError(`step size must be > 0, got ${o.stepSize}`);
  }
  const r = o.restarts ?? 1;
  if (!Number.isInteger(r) || r < 1) throw new RangeError(`restarts must be an integer ≥ 1, got ${r}`);
  if (o.kappa !== undefined && !(o.kappa >= 0)) throw new RangeError(`kappa must be ≥ 0, got ${o.kappa}`);
  if (o.target && o.loss === "cw") throw new RangeError("a targeted attack uses the cross-entropy loss, not cw");
  if (o.bnMode !== undefined && o.bnMode !== "train" && o.bnMode !== "inference") {
    throw new RangeError(`bnMode must be "train" or "inference", got ${JSON.stringify(o.bnMode)}`);
  }
}

/** Logits of the attacked model in the attack's mode (see {@link PgdOptions.bnMode}). */
function attackLogits(model: tfl.LayersModel, v: tf.Tensor, o: PgdOptions): tf.Tensor2D {
  return o.bnMode === "train" ? model.apply(v, { training: true }) as tf.Tensor2D : logits(model, v);
}

/**
 * Runs `f`, a forward pass in the attack's mode, and leaves the model as it
 * was: in training mode batch norm updates its moving statistics (the
 * model's non-trainable weights), so they are saved before and written back
 * after. Inference mode changes nothing and saves nothing.
 */
function unchanged<T>(model: tfl.LayersModel, o: PgdOptions, f: () => T): T {
  if (o.bnMode !== "train") return f();
  const vars = model.nonTrainableWeights;
  // A clone shares the variable's data; the update assigns new data to the variable, so this keeps the old.
  const saved = vars.map((w) => tf.clone(w.read()));
  try {
    return f();
  } finally {
    vars.forEach((w, i) => w.write(saved[i]));
    tf.dispose(saved);
  }
}

/** The per-example objective the attack maximises. */
function objective(o: PgdOptions, z: tf.Tensor2D, y: tf.Tensor1D): tf.Tensor1D {
  if (o.target) return crossEntropy(z, o.target).neg();
  return o.loss === "cw" ? cwLoss(z, y, o.kappa ?? 0) : crossEntropy(z, y);
}

/** x + U(−ε, ε) clipped to the pixel range, drawn from `rng`. */
export function randomStart(x: tf.Tensor, eps: number, range: [number, number], rng: Rng): tf.Tensor {
  return tf.tidy(() => {
    const noise = tf.tensor(rng.uniform(x.size, -eps, eps), x.shape);
    return x.add(noise).clipByValue(range[0], range[1]);
  });
}

/**
 * One PGD step from `xAdv`: ascend the sign of the input gradient, project to the
 * ε-ball around `x`, then to the pixel range. Returns the next iterate and the
 * per-example objective at `xAdv` (both kept; the caller disposes them).
 */
export function pgdStep(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  xAdv: tf.Tensor,
  o: PgdOptions,
): { next: tf.Tensor; loss: tf.Tensor1D } {
  const [lo, hi] = o.range ?? [0, 1];
  let loss: tf.Tensor1D | undefined;
  const next = tf.tidy(() => {
    const grad = unchanged(model, o, () =>
      tf.grad((v: tf.Tensor) => {
        const l = objective(o, attackLogits(model, v, o), y);
        loss = tf.keep(l);
        return l.sum();
      })(xAdv));
    return signStep(xAdv, grad, x, o.stepSize, o.eps, [lo, hi]);
  });
  return { next, loss: loss! };
}

/** Kernel name of {@link signStep} as one pass, registered by the native and webgpu backends (lib/backends/kernel_names.ts). */
export { PGD_UPDATE };

/**
 * The update of an L∞ PGD step: xAdv + α·sign(g), projected onto the ε-ball
 * around x and clipped to the pixel range. One kernel where the backend has it
 * (native, webgpu), else the same arithmetic as TF.js ops.
 */
export function signStep(
  xAdv: tf.Tensor,
  grad: tf.Tensor,
  x: tf.Tensor,
  stepSize: number,
  eps: number,
  [lo, hi]: [number, number],
): tf.Tensor {
  if (tf.getKernel(PGD_UPDATE, tf.getBackend())) {
    return tf.engine().runKernel(PGD_UPDATE, { x: xAdv, grad, x0: x }, { stepSize, eps, lo, hi }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const stepped = xAdv.add(grad.sign().mul(stepSize));
    return tf.minimum(tf.maximum(stepped, x.sub(eps)), x.add(eps)).clipByValue(lo, hi);
  });
}

/**
 * One restart of PGD without bookkeeping: returns the final iterate. Used by
 * adversarial training, where nothing is read back to the CPU.
 */
export function perturb(model: tfl.LayersModel, x: tf.Tensor, y: tf.Tensor1D, o: PgdOptions): tf.Tensor {
  validatePgdOptions(o);
  const rng = o.rng ?? new Rng(o.seed ?? 0);
  const range = o.range ?? [0, 1];
  let xAdv = o.randomStart === false ? x.clone() : randomStart(x, o.eps, range, rng);
  for (let t = 0; t < o.steps; t++) {
    const { next, loss } = pgdStep(model, x, y, xAdv, o);
    loss.dispose();
    xAdv.dispose();
    xAdv = next;
  }
  return xAdv;
}

/**
 * Fast gradient sign method: x + ε·sign(∇x loss), clipped to the pixel range.
 * Equal to one PGD step of size ε without random start.
 */
export function fgsm(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  o: Pick<PgdOptions, "eps" | "range" | "loss" | "kappa" | "target">,
): tf.Tensor {
  return perturb(model, x, y, { ...o, steps: 1, stepSize: o.eps, randomStart: false });
}

/**
 * Per-example scoring of restarts: an example is robust only if it was
 * classified correctly after every restart (`correct[restart][example]`).
 */
export function robustAcrossRestarts(correct: boolean[][]): boolean[] {
  if (!correct.length) return [];
  return correct[0].map((_, i) => correct.every((c) => c[i]));
}

/**
 * PGD with restarts, scored per example: an example counts as broken if any
 * restart makes the model misclassify it (per-example worst case, never the
 * best batch average). Returns the per-restart final losses and, with
 * `recordLosses`, the loss at every iterate.
 */
export async function pgd(
  model: tfl.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor1D,
  o: PgdOptions,
): Promise<PgdResult> {
  validatePgdOptions(o);
  const rng = o.rng ?? new Rng(o.seed ?? 0);
  const range = o.range ?? [0, 1];
  const n = x.shape[0];
  const size = x.size / n;
  const restarts = o.restarts ?? 1;
  const finalLosses: Float32Array[] = [];
  const correct: boolean[][] = [];
  const lossCurves: Float32Array[][] = [];
  const robust = new Array<boolean>(n).fill(true); // updated per restart as in robustAcrossRestarts
  const bestLoss = new Float32Array(n).fill(-Infinity);
  const worst = new Float32Array(x.size);

  for (let r = 0; r < restarts; r++) {
    let xAdv = o.randomStart === false ? x.clone() : randomStart(x, o.eps, range, rng);
    const curve: Float32Array[] = [];
    for (let t = 0; t < o.steps; t++) {
      const { next, loss } = pgdStep(model, x, y, xAdv, o);
      if (o.recordLosses) curve.push(await loss.data() as Float32Array);
      loss.dispose();
      xAdv.dispose();
      xAdv = next;
    }
    const [lossT, okT] = unchanged(model, o, () =>
      tf.tidy(() => {
        const z = attackLogits(model, xAdv, o);
        return [objective(o, z, y), isCorrect(z, y)];
      }));
    const loss = await lossT.data() as Float32Array;
    const hit = await okT.data();
    lossT.dispose();
    okT.dispose();
    if (o.recordLosses) {
      curve.push(loss);
      lossCurves.push(curve);
    }
    const ok = Array.from(hit, (v) => v === 1);
    finalLosses.push(loss);
    correct.push(ok);
    const advData = await xAdv.data();
    xAdv.dispose();
    for (let i = 0; i < n; i++) {
      const breaksNow = !ok[i];
      const take = robust[i] ? (breaksNow || loss[i] > bestLoss[i]) : false;
      if (take) {
        worst.set(advData.subarray(i * size, (i + 1) * size), i * size);
        bestLoss[i] = loss[i];
      }
      if (breaksNow) robust[i] = false;
    }
  }
  const result: PgdResult = {
    adv: tf.tensor4d(worst, x.shape as [number, number, number, number]),
    robust,
    finalLosses,
    correct,
  };
  if (o.recordLosses) result.lossCurves = lossCurves;
  return result;
}
