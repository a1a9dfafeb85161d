/**
 * The paper's CIFAR-10 models: the pre-activation ResNet of MadryLab's
 * cifar10_challenge (`model.py`), as TF.js layers models that save and load in
 * the standard layers format (the two custom layers are registered classes).
 *
 * Input [N, 32, 32, 3] in [0, 255]; a per-image standardisation layer inside
 * the model; conv 3×3 (filters[0]); 3 stages of `units` residual units with
 * filters[1..3] and strides 1, 2, 2; BN → leaky ReLU 0.1 → global average pool
 * → dense 10 (logits, no softmax).
 *
 * ```ts
 * import { cifarResNet, RESNET_SIMPLE } from "./resnet.ts";
 * const model = cifarResNet(RESNET_SIMPLE, 0);
 * const logits = model.apply(x, { training: false }); // x: [N, 32, 32, 3] in [0, 255]
 * ```
 *
 * @module
 */
import { conv2d, dense, type Kwargs, type LayerArgs, oneInput } from "./_layers.ts";
import { tf, tfl } from "../core/tf.ts";
import { BatchNormLeakyRelu } from "./_fused.ts";
import { STANDARDIZE, STANDARDIZE_GRAD } from "../backends/kernel_names.ts";

/** Kernel names of the per-image standardisation and its gradient (declared in lib/backends/kernel_names.ts). */
export { STANDARDIZE, STANDARDIZE_GRAD };

/** Per-image standardisation as one kernel forward and one backward (instead of about a dozen broadcast ops). */
function standardizeKernel(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(
    ((xs: tf.Tensor, save: tf.GradSaveFunc) => {
      const [y, mean, rstd] = tf.engine().runKernel(STANDARDIZE, { x: xs }, {}) as tf.Tensor[];
      save([xs, mean, rstd]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, mean, rstd] = saved;
          return tf.engine().runKernel(STANDARDIZE_GRAD, { dy, x: sx, mean, rstd }, {}) as tf.Tensor;
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x);
}

/**
 * Per-image standardisation, as `tf.image.per_image_standardization`:
 * (x − mean) / max(std, 1/√(h·w·c)), mean and std over each image's pixels and
 * channels. A constant image maps to zeros (no NaN, also in the gradient).
 */
export class PerImageStandardization extends tfl.layers.Layer {
  /** Name under which the class is registered for (de)serialisation. */
  static className = "PerImageStandardization";

  constructor(args: LayerArgs = {}) {
    super(args);
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape | tfl.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    const x = oneInput(inputs);
    if (tf.getKernel(STANDARDIZE, tf.getBackend()) && tf.getKernel(STANDARDIZE_GRAD, tf.getBackend())) {
      return standardizeKernel(x);
    }
    return tf.tidy(() => {
      const axes = [1, 2, 3];
      const { mean, variance } = tf.moments(x, axes, true);
      const numel = x.shape.slice(1).reduce((a, b) => a! * b!, 1)!;
      // max(std, 1/√numel) taken before the square root, so its gradient stays finite at variance 0.
      const std = tf.sqrt(tf.maximum(variance, 1 / numel));
      return tf.div(tf.sub(x, mean), std);
    });
  }
}

/**
 * Zero padding of the channel axis (NHWC): `before` channels in front, `after`
 * behind. The shortcut of a residual unit that widens the channels.
 */
export class ChannelPad extends tfl.layers.Layer {
  /** Name under which the class is registered for (de)serialisation. */
  static className = "ChannelPad";
  readonly before: number;
  readonly after: number;

  constructor(args: LayerArgs & { before: number; after: number }) {
    super(args);
    this.before = args.before;
    this.after = args.after;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape | tfl.Shape[] {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    const c = s[s.length - 1];
    return [...s.slice(0, -1), c == null ? null : c + this.before + this.after];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = oneInput(inputs);
      return tf.pad(x, [[0, 0], [0, 0], [0, 0], [this.before, this.after]]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), before: this.before, after: this.after };
  }
}

tf.serialization.registerClass(PerImageStandardization);
tf.serialization.registerClass(ChannelPad);

/** Widths and depth of the CIFAR-10 ResNet. */
export interface ResNetShape {
  /** Filters of the first convolution, then of stages 1, 2 and 3. */
  filters: [number, number, number, number];
  /** Residual units per stage (5 in the paper). */
  units: number;
}

/** The paper's "simple" network: filters (16, 16, 32, 64), 5 units per stage (about 0.47 M parameters). */
export const RESNET_SIMPLE: ResNetShape = { filters: [16, 16, 32, 64], units: 5 };
/** The paper's 10× wide network (w28-10 widths): filters (16, 160, 320, 640), 5 units per stage (about 46 M parameters). */
export const RESNET_WIDE: ResNetShape = { filters: [16, 160, 320, 640], units: 5 };

const STRIDES = [1, 2, 2] as const;
/** Batch norm as tf.contrib.layers.batch_norm in cifar10_challenge: decay 0.9, epsilon 1e-3. */
const BN = { axis: -1, momentum: 0.9, epsilon: 1e-3 } as const;
const LEAK = 0.1;

/** Throws a RangeError unless `shape` is a valid {@link ResNetShape}. */
export function validateResNetShape(shape: ResNetShape): void {
  const f = shape?.filters;
  if (!Array.isArray(f) || f.length !== 4 || !f.every((v) => Number.isInteger(v) && v > 0)) {
    throw new RangeError(`ResNet filters must be 4 positive integers, got ${JSON.stringify(f)}`);
  }
  if (f[1] < f[0] || f[2] < f[1] || f[3] < f[2]) {
    throw new RangeError(`ResNet filters must not decrease (the shortcut pads channels), got ${JSON.stringify(f)}`);
  }
  if (!Number.isInteger(shape.units) || shape.units < 1) {
    throw new RangeError(`ResNet units per stage must be a positive integer, got ${shape.units}`);
  }
}

/**
 * The CIFAR-10 pre-activation ResNet of the paper. Input [N, 32, 32, 3] with
 * pixels in [0, 255]; output logits [N, 10]. Layout as MadryLab's model.py:
 * each unit is BN → leaky ReLU 0.1 → conv 3×3 (stride s) → BN → leaky ReLU 0.1
 * → conv 3×3, plus a shortcut; the first unit of stage 1 takes its shortcut
 * after the first activation, the others before it; where the shape changes
 * the shortcut is average-pooled (pool = stride, VALID) and zero-padded in
 * channels ((out − in)/2 on each side). Convolutions have no bias and
 * N(0, 2/(9·out)) weights; the dense layer has uniform unit-scaling weights
 * and zero bias; BN has momentum 0.9 and epsilon 1e-3 and uses batch statistics
 * only when called with `training: true`. Weights are drawn from `seed`.
 */
export function cifarResNet(shape: ResNetShape, seed = 0): tfl.LayersModel {
  validateResNetShape(shape);
  let k = 0;
  const convInit = (out: number) =>
    tfl.initializers.randomNormal({ mean: 0, stddev: Math.sqrt(2 / (9 * out)), seed: seed * 1024 + ++k });
  const conv = (x: tfl.SymbolicTensor, filters: number, stride: number, name: string) =>
    conv2d({
      name,
      filters,
      kernelSize: 3,
      strides: stride,
      padding: "same",
      useBias: false,
      kernelInitializer: convInit(filters),
    }).apply(x) as tfl.SymbolicTensor;
  // Batch norm and leaky ReLU as one layer (lib/nn/_fused.ts): one kernel each way on the native and webgpu backends.
  const bnRelu = (x: tfl.SymbolicTensor, name: string) =>
    new BatchNormLeakyRelu({ momentum: BN.momentum, epsilon: BN.epsilon, alpha: LEAK, name: `${name}_bn_relu` })
      .apply(x) as tfl.SymbolicTensor;
  const unit = (
    x: tfl.SymbolicTensor,
    inF: number,
    outF: number,
    stride: number,
    activateBeforeResidual: boolean,
    name: string,
  ) => {
    let shortcut: tfl.SymbolicTensor;
    if (activateBeforeResidual) {
      x = bnRelu(x, `${name}_init`);
      shortcut = x;
    } else {
      shortcut = x;
      x = bnRelu(x, `${name}_init`);
    }
    x = conv(x, outF, stride, `${name}_conv1`);
    x = bnRelu(x, `${name}_sub2`);
    x = conv(x, outF, 1, `${name}_conv2`);
    if (stride > 1) {
      shortcut = tfl.layers.averagePooling2d({
        name: `${name}_pool`,
        poolSize: stride,
        strides: stride,
        padding: "valid",
      }).apply(shortcut) as tfl.SymbolicTensor;
    }
    if (outF > inF) {
      const before = Math.floor((outF - inF) / 2);
      shortcut = new ChannelPad({ name: `${name}_pad`, before, after: outF - inF - before })
        .apply(shortcut) as tfl.SymbolicTensor;
    }
    return tfl.layers.add({ name: `${name}_add` }).apply([x, shortcut]) as tfl.SymbolicTensor;
  };

  const input = tfl.input({ shape: [32, 32, 3], name: "image" });
  let x = new PerImageStandardization({ name: "standardize" }).apply(input) as tfl.SymbolicTensor;
  x = conv(x, shape.filters[0], 1, "init_conv");
  for (let stage = 0; stage < 3; stage++) {
    const [inF, outF] = [shape.filters[stage], shape.filters[stage + 1]];
    x = unit(x, inF, outF, STRIDES[stage], stage === 0, `unit_${stage + 1}_0`);
    for (let i = 1; i < shape.units; i++) x = unit(x, outF, outF, 1, false, `unit_${stage + 1}_${i}`);
  }
  x = bnRelu(x, "unit_last");
  x = tfl.layers.globalAveragePooling2d({ name: "global_pool" }).apply(x) as tfl.SymbolicTensor;
  const logits = dense({
    name: "logit",
    units: 10,
    kernelInitializer: tfl.initializers.varianceScaling({
      scale: 1,
      mode: "fanIn",
      distribution: "uniform",
      seed: seed * 1024 + ++k,
    }),
    biasInitializer: "zeros",
  }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: logits, name: "cifar_resnet" });
}

/**
 * Which of `model.trainableWeights` get weight decay: the kernels of the
 * convolution and dense layers (true), not batch-norm gamma/beta nor biases
 * (false). Aligned with `model.trainableWeights`, as the decay mask of the
 * Momentum optimiser expects.
 */
export function decayedWeights(model: tfl.LayersModel): boolean[] {
  const kernels = new Set<tfl.LayerVariable>();
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    if (cls !== "Conv2D" && cls !== "Dense") continue;
    for (const w of layer.trainableWeights) if (/(^|\/)kernel$/.test(w.originalName)) kernels.add(w);
  }
  return model.trainableWeights.map((w) => kernels.has(w));
}
