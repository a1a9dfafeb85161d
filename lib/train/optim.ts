/**
 * Optimisers written out in full (Adam; SGD with momentum and weight decay), so
 * that their state is a plain list of tensors in the order of the model's
 * weights and can be saved in a checkpoint and restored exactly.
 *
 * @module
 */
import { tf } from "../core/tf.ts";
// The fused Adam and momentum kernels some backends register (native, wasm and webgpu).
import { ADAM_UPDATE, MOMENTUM_UPDATE } from "../backends/kernel_names.ts";

/** Runs a fused update kernel and assigns its outputs, in order, to `targets` (the variable, then its state). */
function fusedUpdate(
  kernel: string,
  inputs: tf.NamedTensorMap,
  attrs: tf.NamedAttrMap,
  targets: tf.Variable[],
): void {
  const outs = tf.engine().runKernel(kernel, inputs, attrs) as tf.Tensor[];
  outs.forEach((t, i) => targets[i].assign(t));
  tf.dispose(outs);
}

/** An optimiser over a fixed, ordered list of variables. */
export interface Optimizer {
  /** "adam" or "sgd". */
  readonly name: string;
  /** Updates were applied this many times. */
  iterations: number;
  /** Applies one update from `grads` (same order as the variables). Disposes nothing of the caller's. */
  apply(grads: tf.Tensor[]): void;
  /** The state tensors, in a fixed order (not copies: do not dispose). */
  state(): tf.Variable[];
  /** Frees the state. */
  dispose(): void;
}

/** Adam (Kingma & Ba) with bias correction; `lr` may change between steps. */
export class Adam implements Optimizer {
  readonly name = "adam";
  iterations = 0;
  #m: tf.Variable[];
  #v: tf.Variable[];

  constructor(
    private readonly vars: tf.Variable[],
    public lr = 1e-3,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly epsilon = 1e-8,
  ) {
    this.#m = vars.map((v) => tf.variable(tf.zerosLike(v), false));
    this.#v = vars.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  apply(grads: tf.Tensor[]): void {
    this.iterations++;
    const t = this.iterations;
    const a = this.lr * Math.sqrt(1 - this.beta2 ** t) / (1 - this.beta1 ** t);
    if (tf.getKernel(ADAM_UPDATE, tf.getBackend())) {
      // One pass per variable where the backend has the fused kernel (native, wasm, webgpu).
      const attrs = { step: a, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon };
      grads.forEach((g, i) => {
        const inputs = { variable: this.vars[i], m: this.#m[i], v: this.#v[i], grad: g };
        fusedUpdate(ADAM_UPDATE, inputs, attrs, [this.vars[i], this.#m[i], this.#v[i]]);
      });
      return;
    }
    tf.tidy(() => {
      grads.forEach((g, i) => {
        const m = this.#m[i], v = this.#v[i];
        m.assign(m.mul(this.beta1).add(g.mul(1 - this.beta1)));
        v.assign(v.mul(this.beta2).add(g.square().mul(1 - this.beta2)));
        this.vars[i].assign(this.vars[i].sub(m.mul(a).div(v.sqrt().add(this.epsilon))));
      });
    });
  }

  state(): tf.Variable[] {
    return [...this.#m, ...this.#v];
  }

  dispose(): void {
    for (const s of this.state()) s.dispose();
  }
}

/**
 * SGD with momentum (TensorFlow's form: v ← μv + g, w ← w − lr·v) and L2 weight
 * decay added to the gradient of the variables where `decay[i]` is true.
 */
export class Momentum implements Optimizer {
  readonly name = "sgd";
  iterations = 0;
  #v: tf.Variable[];

  constructor(
    private readonly vars: tf.Variable[],
    public lr = 0.1,
    private readonly momentum = 0.9,
    private readonly weightDecay = 0,
    private readonly decay: boolean[] = vars.map(() => true),
  ) {
    this.#v = vars.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  apply(grads: tf.Tensor[]): void {
    this.iterations++;
    if (tf.getKernel(MOMENTUM_UPDATE, tf.getBackend())) {
      // One pass per variable where the backend has the fused kernel (native, wasm, webgpu).
      grads.forEach((g, i) => {
        const decay = this.weightDecay > 0 && this.decay[i] ? this.weightDecay : 0;
        const attrs = { lr: this.lr, momentum: this.momentum, decay };
        fusedUpdate(MOMENTUM_UPDATE, { variable: this.vars[i], v: this.#v[i], grad: g }, attrs, [
          this.vars[i],
          this.#v[i],
        ]);
      });
      return;
    }
    tf.tidy(() => {
      grads.forEach((g, i) => {
        const w = this.vars[i];
        const grad = this.weightDecay > 0 && this.decay[i] ? g.add(w.mul(this.weightDecay)) : g;
        const v = this.#v[i];
        v.assign(v.mul(this.momentum).add(grad));
        w.assign(w.sub(v.mul(this.lr)));
      });
    });
  }

  state(): tf.Variable[] {
    return this.#v;
  }

  dispose(): void {
    for (const s of this.#v) s.dispose();
  }
}
