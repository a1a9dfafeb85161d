/**
 * Model builders. Every model maps pixels to logits (no softmax) and is a
 * TF.js layers model, so it saves and loads in the standard layers format.
 *
 * @module
 */
import { conv2d, dense } from "./_layers.ts";
import { tf, tfl } from "../core/tf.ts";

/** Widths of the MNIST convolutional network (Madry et al., model A shape). */
export interface MnistNetShape {
  /** Filters of the first 5×5 convolution. */
  conv1: number;
  /** Filters of the second 5×5 convolution. */
  conv2: number;
  /** Units of the hidden fully connected layer. */
  fc: number;
}

/** MNIST model A of the paper: conv 32, conv 64, FC 1024. */
export const MODEL_A: MnistNetShape = { conv1: 32, conv2: 64, fc: 1024 };

/** Capacity scales studied in Figure 3 of the paper. */
export const CAPACITY_SCALES = [1, 2, 4, 8, 16] as const;

/**
 * Shape of the capacity family of Figure 3: scale s has 2s and 4s filters and an
 * FC layer of `fcBase`·s units. `fcBase` is 8 in the arXiv version of the paper
 * (the default) and 64 in the conference version, where scale 16 is model A.
 */
export function capacityShape(scale: number, fcBase = 8): MnistNetShape {
  if (!Number.isInteger(scale) || scale < 1) {
    throw new RangeError(`capacity scale must be a positive integer, got ${scale}`);
  }
  return { conv1: 2 * scale, conv2: 4 * scale, fc: fcBase * scale };
}

/**
 * The MNIST network: conv 5×5 SAME + ReLU, maxpool 2, conv 5×5 SAME + ReLU,
 * maxpool 2, FC + ReLU, FC 10. Input [N, 28, 28, 1] in [0, 1]; output logits
 * [N, 10]. Weights are drawn from `seed`, so a seed gives the same network.
 */
export function mnistNet(shape: MnistNetShape, seed = 0): tfl.LayersModel {
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed * 16 + k });
  const model = tfl.sequential({
    layers: [
      conv2d({
        inputShape: [28, 28, 1],
        filters: shape.conv1,
        kernelSize: 5,
        padding: "same",
        activation: "relu",
        kernelInitializer: init(1),
      }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      conv2d({
        filters: shape.conv2,
        kernelSize: 5,
        padding: "same",
        activation: "relu",
        kernelInitializer: init(2),
      }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tfl.layers.flatten(),
      dense({ units: shape.fc, activation: "relu", kernelInitializer: init(3) }),
      dense({ units: 10, kernelInitializer: init(4) }),
    ],
  });
  return model;
}

/** Logits of `model` for `x` in inference mode (dropout off, batch norm on running statistics). */
export function logits(model: tfl.LayersModel, x: tf.Tensor): tf.Tensor2D {
  return model.apply(x, { training: false }) as tf.Tensor2D;
}
