/**
 * Model B of Tramèr et al. 2017 ("Ensemble adversarial training"), the MNIST
 * source model of the paper's transfer attacks (Table 1): dropout 0.2 on the
 * input; conv 64 8×8 stride 2 SAME, ReLU; conv 128 6×6 stride 2 VALID, ReLU;
 * conv 128 5×5 stride 1 VALID, ReLU; dropout 0.5; dense 10.
 *
 * @module
 */
import { conv2d, dense, type Kwargs, type LayerArgs, oneInput } from "./_layers.ts";
import { tf, tfl } from "../core/tf.ts";

/** The shape of model B: it has no free widths, only its name. */
export interface ModelBShape {
  /** Always "tramer-b". */
  net: "tramer-b";
}

/** Model B's shape. */
export const MODEL_B: ModelBShape = { net: "tramer-b" };

/** True for model B's shape. */
export function isModelB(shape: object): shape is ModelBShape {
  return (shape as Partial<ModelBShape>).net === "tramer-b";
}

/**
 * Dropout whose mask differs at every training call and is still reproducible
 * from the seed: call k draws its mask from seed·1000003 + k. (TF.js's own
 * dropout with a seed draws the same mask at every call, and without one is
 * not reproducible.) Off in inference mode, so attacks and evaluation see the
 * whole network.
 */
export class SeededDropout extends tfl.layers.Layer {
  /** Serialised class name. */
  static className = "SeededDropout";
  readonly rate: number;
  readonly seed: number;
  private calls = 0;

  constructor(args: LayerArgs & { rate: number; seed?: number }) {
    super(args);
    if (!(args.rate >= 0 && args.rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${args.rate}`);
    this.rate = args.rate;
    this.seed = args.seed ?? 0;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = oneInput(inputs);
    if (!kwargs.training || this.rate === 0) return x;
    const seed = this.seed * 1000003 + this.calls++;
    return tf.tidy(() => {
      const keep = tf.randomUniform(x.shape, 0, 1, "float32", seed).greaterEqual(this.rate);
      return x.mul(keep.cast("float32")).div(1 - this.rate);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate, seed: this.seed };
  }
}
tf.serialization.registerClass(SeededDropout);

/** Model B: input [N, 28, 28, 1] in [0, 1], logits [N, 10]; weights and dropout masks drawn from `seed`. */
export function modelB(seed = 0): tfl.LayersModel {
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed * 16 + k });
  return tfl.sequential({
    layers: [
      new SeededDropout({ inputShape: [28, 28, 1], rate: 0.2, seed: seed * 16 + 5 }),
      conv2d({
        filters: 64,
        kernelSize: 8,
        strides: 2,
        padding: "same",
        activation: "relu",
        kernelInitializer: init(1),
      }),
      conv2d({
        filters: 128,
        kernelSize: 6,
        strides: 2,
        padding: "valid",
        activation: "relu",
        kernelInitializer: init(2),
      }),
      conv2d({
        filters: 128,
        kernelSize: 5,
        strides: 1,
        padding: "valid",
        activation: "relu",
        kernelInitializer: init(3),
      }),
      new SeededDropout({ rate: 0.5, seed: seed * 16 + 6 }),
      tfl.layers.flatten(),
      dense({ units: 10, kernelInitializer: init(4) }),
    ],
  });
}
