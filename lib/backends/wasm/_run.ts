/**
 * Calling the wasm backend's own kernels on TensorInfos, and the types the kernels of this folder share.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";

/** A tensor as kernels see it (data id, shape, dtype). */
export type Info = tf.TensorInfo;
/** The backend a kernel runs on. */
export type Backend = tf.KernelBackend;
/** The part of the wasm backend's class used here (views on its heap). */
export interface WasmHeap {
  typedArrayFromHeap(x: Info): Float32Array;
  makeOutput(shape: number[], dtype: tf.DataType): Info;
}
/** Explicit padding of the four NHWC dimensions, [before, after] each. */
export type Pad4 = [
  [number, number],
  [number, number],
  [number, number],
  [number, number],
];

/** Name of the TF.js backend these kernels are for. */
export const BACKEND = "wasm";

/** The attributes the convolution kernels and their gradients share. */
export interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | Pad4;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** Runs the wasm backend's kernel `name` on TensorInfos; throws where it has none. */
export function run(
  name: string,
  backend: Backend,
  inputs: Record<string, Info>,
  attrs: object,
): Info {
  const config = tf.getKernel(name, BACKEND);
  if (!config) {
    throw new Error(`expected kernel ${name} on the wasm backend, found none`);
  }
  return config.kernelFunc({
    inputs,
    backend,
    attrs: attrs as tf.NamedAttrMap,
  }) as Info;
}

/** A view of `x` with another shape (same data, no copy, no reference count). */
export function view(x: Info, shape: number[]): Info {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/** `x` with its axes permuted (a new tensor). */
export function transpose(backend: Backend, x: Info, perm: number[]): Info {
  return run("Transpose", backend, { x }, { perm });
}

/** A stride-1 NHWC convolution with explicit padding and the given dilation (a new tensor). */
export function conv2d(
  backend: Backend,
  x: Info,
  filter: Info,
  pad: Pad4,
  dilation = 1,
): Info {
  return run("Conv2D", backend, { x, filter }, {
    strides: [1, 1],
    pad,
    dataFormat: "NHWC",
    dilations: [dilation, dilation],
  });
}

/** Frees the tensors' data on the backend. */
export function free(backend: Backend, ...xs: Info[]): void {
  for (const x of xs) backend.disposeData(x.dataId);
}

/** A number or a pair as a pair. */
export function pair(v: number | [number, number]): [number, number] {
  return typeof v === "number" ? [v, v] : v;
}
