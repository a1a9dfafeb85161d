/**
 * Conv2D and Dense layers whose gradients cost only what is asked for.
 *
 * TF.js's own Conv2D and Dense layers call the fused ops (`tf.fused.conv2d`,
 * `tf.fused.matMul`), whose gradient is one custom function that always computes
 * the gradients of the input, the weights and the bias together. An attack only
 * needs the gradient with respect to the input, so every PGD step paid for the
 * weight gradients too (a fifth of the CIFAR ResNet's PGD step, a third of the
 * dense layers' work on MNIST). These subclasses compute the same function
 * with the plain ops (`tf.conv2d` / `tf.matMul`, bias add, activation), whose
 * registered gradients TF.js evaluates per input, only for the inputs on the
 * path to what is differentiated.
 *
 * Outside any gradient tape (inference) they still call the fused ops, whose
 * one-kernel bias and ReLU epilogue is the faster forward pass.
 *
 * They keep the class names "Conv2D" and "Dense", the weights, their names and
 * the saved topology, so checkpoints read and write as before and stay loadable
 * by plain TF.js; registering them makes `tfl.loadLayersModel` build these.
 *
 * @module
 */
import { tf, tfl } from "../core/tf.ts";

/** Constructor arguments and call options of a TF.js layer (for the custom layers of lib/). */
export type LayerArgs = ConstructorParameters<typeof tfl.layers.Layer>[0];
export type Kwargs = Parameters<InstanceType<typeof tfl.layers.Layer>["call"]>[1];
type ConvArgs = Parameters<typeof tfl.layers.conv2d>[0];
type DenseArgs = Parameters<typeof tfl.layers.dense>[0];

/** The fields of TF.js's layers that the plain forward pass reads (protected in its typings). */
interface Fields {
  kernel: tfl.LayerVariable;
  bias: tfl.LayerVariable | null;
  activation: { apply(x: tf.Tensor): tf.Tensor; getClassName(): string } | null;
  strides: [number, number];
  padding: "valid" | "same";
  dilationRate: [number, number];
  dataFormat: string;
}

type LayerClass<A> = new (args: A) => tfl.layers.Layer;

// TF.js exports the factories, not the classes: take the classes from an instance.
const TfConv2D = Object.getPrototypeOf(tfl.layers.conv2d({ filters: 1, kernelSize: 1 }))
  .constructor as LayerClass<ConvArgs>;
const TfDense = Object.getPrototypeOf(tfl.layers.dense({ units: 1 })).constructor as LayerClass<DenseArgs>;

/** The single input of a one-input layer's `call` (TF.js may pass it alone or in a list). */
export function oneInput(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

/** The fused ops' name for the layer's activation where they have it and no tape records (inference), else null. */
function fusable(f: Fields): "linear" | "relu" | null {
  if ((tf.engine().state as unknown as { gradientDepth: number }).gradientDepth > 0) return null;
  const name = f.activation?.getClassName() ?? "Linear";
  return name === "Linear" ? "linear" : name === "Relu" ? "relu" : null;
}

function finish(f: Fields, y: tf.Tensor): tf.Tensor {
  if (f.bias) y = tf.add(y, f.bias.read());
  return f.activation ? f.activation.apply(y) : y;
}

/** Conv2D (channels last) through `tf.conv2d`: see the module comment. */
export class LeanConv2D extends TfConv2D {
  static className = "Conv2D";

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const f = this as unknown as Fields;
      if (f.dataFormat !== "channelsLast") throw new Error("LeanConv2D supports channelsLast only");
      const x = oneInput(inputs) as tf.Tensor4D, w = f.kernel.read() as tf.Tensor4D;
      const activation = fusable(f);
      if (activation) {
        const bias = f.bias?.read();
        return tf.fused.conv2d({
          x,
          filter: w,
          strides: f.strides,
          pad: f.padding,
          dilations: f.dilationRate,
          bias,
          activation,
        });
      }
      return finish(f, tf.conv2d(x, w, f.strides, f.padding, "NHWC", f.dilationRate));
    });
  }
}

/** Dense on rank-2 inputs through `tf.matMul`: see the module comment. */
export class LeanDense extends TfDense {
  static className = "Dense";

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const f = this as unknown as Fields;
      const x = oneInput(inputs);
      if (x.rank !== 2) throw new Error(`LeanDense expects rank-2 inputs, got rank ${x.rank}`);
      const w = f.kernel.read() as tf.Tensor2D;
      const activation = fusable(f);
      if (activation) return tf.fused.matMul({ a: x as tf.Tensor2D, b: w, bias: f.bias?.read(), activation });
      return finish(f, tf.matMul(x as tf.Tensor2D, w));
    });
  }
}

type Registrable = tf.serialization.SerializableConstructor<tf.serialization.Serializable>;
tf.serialization.registerClass(LeanConv2D as unknown as Registrable);
tf.serialization.registerClass(LeanDense as unknown as Registrable);

/** A Conv2D layer (same arguments as `tfl.layers.conv2d`) that computes only the gradients asked for. */
export function conv2d(args: ConvArgs): tfl.layers.Layer {
  return new LeanConv2D(args);
}

/** A Dense layer (same arguments as `tfl.layers.dense`) that computes only the gradients asked for. */
export function dense(args: DenseArgs): tfl.layers.Layer {
  return new LeanDense(args);
}
