/**
 * Batch normalisation followed by leaky ReLU, the pair every pre-activation
 * ResNet unit applies, as one layer. In training it normalises with the batch
 * statistics and updates the moving ones; in inference it uses the moving
 * statistics. On the `native` and `webgpu` backends the forward pass and its
 * gradient are one kernel each (a few passes over the data instead of the dozen
 * small ops TF.js records for moments, batch norm and leaky ReLU); on the
 * others the same maths runs as ordinary TF.js ops.
 *
 * @module
 */
import { type Kwargs, type LayerArgs, oneInput } from "./_layers.ts";
import { tf, tfl } from "../core/tf.ts";
import { BN_ACT_GRAD, BN_ACT_INFER, BN_ACT_INFER_GRAD, BN_ACT_TRAIN } from "../backends/kernel_names.ts";

/** Kernel names registered by the native and webgpu backends (declared in lib/backends/kernel_names.ts). */
export { BN_ACT_GRAD, BN_ACT_INFER, BN_ACT_INFER_GRAD, BN_ACT_TRAIN };

function fusedKernels(): boolean {
  const b = tf.getBackend();
  return tf.getKernel(BN_ACT_TRAIN, b) !== undefined && tf.getKernel(BN_ACT_GRAD, b) !== undefined;
}

/**
 * Training mode: y = leakyRelu(γ·(x − μ)/√(σ² + ε) + β, α) with μ, σ² the batch
 * statistics over every axis but the last. Returns y and the batch mean and
 * (biased) variance, for the moving averages.
 */
export function batchNormActTrain(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
  alpha: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const { forward, backward } = fusedKernels() ? trainKernels(epsilon, alpha) : trainOps(x, epsilon, alpha);
  let stats: tf.Tensor[] = [];
  // customGrad's type takes the inputs as one rest parameter; ours are three tensors and the save function.
  const f = tf.customGrad(
    ((xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
      const { y, mean, variance, saved } = forward(xs, g, b);
      save(saved);
      stats = [tf.keep(mean), tf.keep(variance)];
      return { value: y, gradFunc: backward };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  const y = f(x, gamma, beta);
  return { y, mean: stats[0], variance: stats[1] };
}

/** The two passes of {@link batchNormActTrain}: y, the batch statistics and what the gradient needs; dx, dγ, dβ. */
interface TrainPasses {
  forward(
    x: tf.Tensor,
    gamma: tf.Tensor,
    beta: tf.Tensor,
  ): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor; saved: tf.Tensor[] };
  backward(dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[];
}

/** The backend's fused kernels (native, webgpu), one each way. */
function trainKernels(epsilon: number, alpha: number): TrainPasses {
  return {
    forward: (x, gamma, beta) => {
      const [y, mean, variance] = tf.engine().runKernel(BN_ACT_TRAIN, { x, gamma, beta }, {
        epsilon,
        alpha,
      }) as tf.Tensor[];
      return { y, mean, variance, saved: [x, gamma, beta, mean, variance] };
    },
    backward: (dy, [x, gamma, beta, mean, variance]) =>
      tf.engine().runKernel(BN_ACT_GRAD, { dy, x, gamma, beta, mean, variance }, { epsilon, alpha }) as tf.Tensor[],
  };
}

/**
 * TF.js ops on any other backend, with the gradient written out as broadcasts
 * and sums: TF.js's own batch-norm gradient tiles the statistics to the
 * input's shape, which was a third of a ResNet training step on wasm.
 */
function trainOps(x: tf.Tensor, epsilon: number, alpha: number): TrainPasses {
  const axes = x.shape.map((_, i) => i).slice(0, -1);
  const n = x.size / x.shape[x.rank - 1];
  return {
    forward: (xs, g, b) => {
      const { mean, variance } = tf.moments(xs, axes);
      const inv = tf.rsqrt(tf.add(variance, epsilon));
      const xhat = tf.mul(tf.sub(xs, mean), inv);
      const y = tf.leakyRelu(tf.add(tf.mul(xhat, g), b), alpha);
      return { y, mean, variance, saved: [xhat, g, inv, y] };
    },
    backward: (dy, [xhat, g, inv, y]) => {
      // d = ∂L/∂z through leaky ReLU (z > 0 exactly where y > 0); then the batch-norm gradient
      const d = tf.where(tf.greater(y, 0), dy, tf.mul(dy, alpha));
      const dbeta = tf.sum(d, axes);
      const dgamma = tf.sum(tf.mul(d, xhat), axes);
      const centred = tf.sub(tf.sub(d, tf.div(dbeta, n)), tf.mul(xhat, tf.div(dgamma, n)));
      return [tf.mul(centred, tf.mul(g, inv)), dgamma, dbeta];
    },
  };
}

/**
 * Inference mode: y = leakyRelu(γ·(x − μ)/√(σ² + ε) + β, α) with the given
 * (moving) statistics; differentiable in x, γ and β (attacks need ∂y/∂x).
 */
export function batchNormActInfer(
  x: tf.Tensor,
  mean: tf.Tensor,
  variance: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
  alpha: number,
): tf.Tensor {
  const b = tf.getBackend();
  if (tf.getKernel(BN_ACT_INFER, b) === undefined || tf.getKernel(BN_ACT_INFER_GRAD, b) === undefined) {
    // As one affine map per channel: its gradient is a broadcast product (TF.js's batch-norm gradient tiles).
    return tf.tidy(() => {
      const mul = tf.mul(gamma, tf.rsqrt(tf.add(variance, epsilon)));
      return tf.leakyRelu(tf.add(tf.mul(x, mul), tf.sub(beta, tf.mul(mean, mul))), alpha);
    });
  }
  const f = tf.customGrad(
    ((xs: tf.Tensor, g: tf.Tensor, bt: tf.Tensor, save: tf.GradSaveFunc) => {
      const y = tf.engine().runKernel(BN_ACT_INFER, { x: xs, mean, variance, gamma: g, beta: bt }, {
        epsilon,
        alpha,
      }) as tf.Tensor;
      save([xs, g, bt]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sg, sb] = saved;
          return tf.engine().runKernel(BN_ACT_INFER_GRAD, { dy, x: sx, mean, variance, gamma: sg, beta: sb }, {
            epsilon,
            alpha,
          }) as tf.Tensor[];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, gamma, beta);
}

/** Batch norm (moving statistics in inference, batch statistics in training) followed by leaky ReLU. */
export class BatchNormLeakyRelu extends tfl.layers.Layer {
  /** Name under which the class is registered for (de)serialisation. */
  static className = "BatchNormLeakyRelu";
  readonly momentum: number;
  readonly epsilon: number;
  readonly alpha: number;
  private gamma!: tfl.LayerVariable;
  private beta!: tfl.LayerVariable;
  private movingMean!: tfl.LayerVariable;
  private movingVariance!: tfl.LayerVariable;

  constructor(args: LayerArgs & { momentum?: number; epsilon?: number; alpha?: number } = {}) {
    super(args);
    this.momentum = args.momentum ?? 0.9;
    this.epsilon = args.epsilon ?? 1e-3;
    this.alpha = args.alpha ?? 0.1;
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    const c = [s[s.length - 1] as number];
    this.gamma = this.addWeight("gamma", c, "float32", tfl.initializers.ones());
    this.beta = this.addWeight("beta", c, "float32", tfl.initializers.zeros());
    this.movingMean = this.addWeight("moving_mean", c, "float32", tfl.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight("moving_variance", c, "float32", tfl.initializers.ones(), undefined, false);
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape | tfl.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = oneInput(inputs);
    if (!kwargs?.training) {
      return batchNormActInfer(
        x,
        this.movingMean.read(),
        this.movingVariance.read(),
        this.gamma.read(),
        this.beta.read(),
        this.epsilon,
        this.alpha,
      );
    }
    const { y, mean, variance } = batchNormActTrain(x, this.gamma.read(), this.beta.read(), this.epsilon, this.alpha);
    tf.tidy(() => {
      const m = this.momentum;
      this.movingMean.write(tf.add(tf.mul(this.movingMean.read(), m), tf.mul(mean, 1 - m)));
      this.movingVariance.write(tf.add(tf.mul(this.movingVariance.read(), m), tf.mul(variance, 1 - m)));
    });
    mean.dispose();
    variance.dispose();
    return y;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), momentum: this.momentum, epsilon: this.epsilon, alpha: this.alpha };
  }
}

tf.serialization.registerClass(BatchNormLeakyRelu);
