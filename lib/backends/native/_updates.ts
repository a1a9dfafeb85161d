/**
 * One-pass update steps: Adam, SGD with momentum (lib/train/optim.ts) and the L∞ PGD step
 * (lib/attacks/pgd.ts).
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel } from "./_backend.ts";
import { output, values } from "./_helpers.ts";
import { compiled } from "./_libs.ts";
import { PGD_UPDATE } from "../kernel_names.ts";

/**
 * One Adam update in a single pass: returns the new variable, first and second
 * moments. `step` is the bias-corrected step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ).
 */
export const adamUpdate: Kernel = (args) => {
  const { variable, m, v, grad } = args.inputs as Record<string, Info>;
  const { step, beta1, beta2, epsilon } = args.attrs as Record<string, number>;
  const b = args.backend;
  const wv = values(b, variable), mv = values(b, m), vv = values(b, v), gv = values(b, grad);
  const n = wv.length;
  const w2 = b.alloc(n), m2 = b.alloc(n), v2 = b.alloc(n);
  if (compiled) {
    compiled.adamUpdate(wv, mv, vv, gv, w2, m2, v2, step, beta1, beta2, epsilon);
  } else {
    const c1 = 1 - beta1, c2 = 1 - beta2;
    for (let i = 0; i < n; i++) {
      const g = gv[i];
      const mi = beta1 * mv[i] + c1 * g;
      const vi = beta2 * vv[i] + c2 * g * g;
      m2[i] = mi;
      v2[i] = vi;
      w2[i] = wv[i] - step * mi / (Math.sqrt(vi) + epsilon);
    }
  }
  return [output(b, variable.shape, w2), output(b, m.shape, m2), output(b, v.shape, v2)];
};

/** SGD with momentum in one pass: v ← μv + g + λw, w ← w − lr·v (λ = 0 where no decay applies). */
export const momentumUpdate: Kernel = (args) => {
  const { variable, v, grad } = args.inputs as Record<string, Info>;
  const { lr, momentum, decay } = args.attrs as Record<string, number>;
  const b = args.backend;
  const wv = values(b, variable), vv = values(b, v), gv = values(b, grad);
  const n = wv.length;
  const w2 = b.alloc(n), v2 = b.alloc(n);
  if (compiled) {
    compiled.momentumUpdate(wv, vv, gv, w2, v2, lr, momentum, decay);
  } else {
    for (let i = 0; i < n; i++) {
      const vi = momentum * vv[i] + gv[i] + decay * wv[i];
      v2[i] = vi;
      w2[i] = wv[i] - lr * vi;
    }
  }
  return [output(b, variable.shape, w2), output(b, v.shape, v2)];
};

/** One L∞ PGD update (lib/attacks/pgd.ts signStep): clip(min(max(x + α·sign(g), x0 − ε), x0 + ε), lo, hi), in float32. */
export const pgdUpdate: Kernel = (args) => {
  const { x, grad, x0 } = args.inputs as Record<string, Info>;
  const { stepSize, eps, lo, hi } = args.attrs as Record<string, number>;
  const b = args.backend;
  const same = tf.util.arraysEqual;
  if (!same(x.shape, grad.shape) || !same(x.shape, x0.shape)) {
    throw new Error(`${PGD_UPDATE}: x, grad and x0 must have one shape, got ${x.shape}, ${grad.shape}, ${x0.shape}`);
  }
  const xv = values(b, x), gv = values(b, grad), ov = values(b, x0);
  const y = b.alloc(xv.length);
  if (compiled) compiled.pgdUpdate(xv, gv, ov, y, stepSize, eps, lo, hi);
  else {
    const f = Math.fround, step = f(stepSize), e = f(eps);
    for (let i = 0; i < y.length; i++) {
      const g = gv[i];
      let v = f(xv[i] + (g > 0 ? step : g < 0 ? -step : 0 * g));
      const a = f(ov[i] - e), c = f(ov[i] + e);
      v = v > a ? v : a;
      v = v < c ? v : c;
      v = v > lo ? v : lo;
      y[i] = v < hi ? v : hi;
    }
  }
  return output(b, x.shape, y);
};
