/**
 * Convolutions and their two gradients (Conv2D, FusedConv2D, Conv2DBackpropInput, Conv2DBackpropFilter):
 * oneDNN where it runs, else im2col and the BLAS.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel, type NativeBackend } from "./_backend.ts";
import { allFloat, COL_CHUNK, cpu, output, scratchOf, values } from "./_helpers.ts";
import { compiled, sgemm } from "./_libs.ts";
import { epilogue, epilogueSupported } from "./_epilogue.ts";
import { type ConvInfo, fromCols, toCols } from "./_im2col.ts";
import { fullConvParams, viaDnnl } from "./_dnnl.ts";

/** A 1×1 stride-1 unpadded convolution is a plain matrix product on NHWC. */
function isPointwise(ci: ConvInfo): boolean {
  return ci.filterHeight === 1 && ci.filterWidth === 1 && ci.strideHeight === 1 &&
    ci.strideWidth === 1 && ci.padInfo.top === 0 && ci.padInfo.left === 0 &&
    ci.outHeight === ci.inHeight && ci.outWidth === ci.inWidth;
}

/**
 * A first layer's input gradient (MNIST's 1 input channel, CIFAR-10's 3) goes to a compiled loop vectorised
 * over the output channels: oneDNN took 8 ms of a 55 ms model A PGD step on it, the loop 3.4.
 */
const NARROW_CHANNELS = 4;

/** How many input gradients the narrow loop computed. */
export const narrowCounts = { done: 0 };

function imagesPerChunk(ci: ConvInfo): number {
  const perImage = ci.outHeight * ci.outWidth * ci.filterHeight * ci.filterWidth * ci.inChannels;
  return Math.max(1, Math.min(ci.batchSize, Math.floor(COL_CHUNK / Math.max(1, perImage))));
}

/** y[N·OH·OW, Cout] = im2col(x) · w[KH·KW·Cin, Cout]. */
function convForward(backend: NativeBackend, x: Float32Array, w: Float32Array, ci: ConvInfo): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const y = backend.alloc(ci.batchSize * rows * Co);
  if (viaDnnl(0, ci, x, w, y)) return y;
  if (isPointwise(ci)) {
    sgemm(false, false, ci.batchSize * rows, Co, K, 1, x, K, w, Co, 0, y, Co);
    return y;
  }
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    toCols(x, ci, b0, nb, col);
    sgemm(false, false, nb * rows, Co, K, 1, col, K, w, Co, 0, y.subarray(b0 * rows * Co), Co);
  }
  return y;
}

/** dx = col2im(dy · wᵀ). */
function convBackpropInput(
  backend: NativeBackend,
  dy: Float32Array,
  w: Float32Array,
  ci: ConvInfo,
): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const dx = backend.alloc(ci.batchSize * ci.inHeight * ci.inWidth * ci.inChannels);
  if (
    compiled && ci.inChannels <= NARROW_CHANNELS &&
    compiled.convInputGradNarrow(dy, w, dx, fullConvParams(ci))
  ) {
    narrowCounts.done++;
    return dx;
  }
  if (viaDnnl(1, ci, dy, w, dx)) return dx;
  if (isPointwise(ci)) {
    sgemm(false, true, ci.batchSize * rows, K, Co, 1, dy, Co, w, Co, 0, dx, K);
    return dx;
  }
  dx.fill(0);
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    sgemm(false, true, nb * rows, K, Co, 1, dy.subarray(b0 * rows * Co), Co, w, Co, 0, col, K);
    fromCols(col, ci, b0, nb, dx);
  }
  return dx;
}

/** dw[KH·KW·Cin, Cout] = im2col(x)ᵀ · dy. */
function convBackpropFilter(
  backend: NativeBackend,
  x: Float32Array,
  dy: Float32Array,
  ci: ConvInfo,
): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const dw = backend.alloc(K * Co);
  if (ci.batchSize * rows === 0) return dw.fill(0);
  if (viaDnnl(2, ci, x, dy, dw)) return dw;
  if (isPointwise(ci)) {
    sgemm(true, false, K, Co, ci.batchSize * rows, 1, x, K, dy, Co, 0, dw, Co);
    return dw;
  }
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    toCols(x, ci, b0, nb, col);
    const beta = b0 === 0 ? 0 : 1;
    sgemm(true, false, K, Co, nb * rows, 1, col, K, dy.subarray(b0 * rows * Co), Co, beta, dw, Co);
  }
  return dw;
}

/** A convolution or pooling `pad` attribute. */
export type Pad = "same" | "valid" | number | tf.backend_util.ExplicitPadding;
/** A convolution or pooling `dimRoundingMode` attribute. */
export type Rounding = "floor" | "round" | "ceil" | undefined;
/** A rank-4 shape (NHWC images, HWIO filters). */
export type Shape4 = [number, number, number, number];

function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: Record<string, unknown>,
  dilations: number | [number, number],
): ConvInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as Shape4,
    filterShape as Shape4,
    attrs.strides as number | [number, number],
    dilations,
    attrs.pad as Pad,
    attrs.dimRoundingMode as Rounding,
    false,
    "channelsLast",
  );
}

/** Conv2D on NHWC float32 (cpu otherwise). */
export const conv2D: Kernel = (args) => {
  const { x, filter } = args.inputs as { x: Info; filter: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(x, filter)) return cpu("Conv2D", args);
  const ci = convInfoOf(x.shape, filter.shape, attrs, attrs.dilations as number | [number, number]);
  const y = convForward(backend, values(backend, x), values(backend, filter), ci);
  return output(backend, ci.outShape, y);
};

/** FusedConv2D: the convolution, then the bias and activation epilogue. */
export const fusedConv2D: Kernel = (args) => {
  const { x, filter, bias, preluActivationWeights } = args.inputs;
  const { attrs, backend } = args;
  const channels = (filter as Info).shape[3];
  if (
    attrs.dataFormat === "NCHW" || !allFloat(x, filter) ||
    !epilogueSupported(bias, preluActivationWeights, attrs.activation as string, channels)
  ) {
    return cpu("FusedConv2D", args);
  }
  const xi = x as Info, fi = filter as Info;
  const ci = convInfoOf(xi.shape, fi.shape, attrs, attrs.dilations as number | [number, number]);
  const y = convForward(backend, values(backend, xi), values(backend, fi), ci);
  const alpha = (attrs.leakyreluAlpha as number | undefined) ?? 0.2;
  epilogue(backend, y, channels, bias, attrs.activation as string, alpha, preluActivationWeights);
  return output(backend, ci.outShape, y);
};

/** Conv2DBackpropInput: the gradient of a convolution with respect to its input. */
export const conv2DBackpropInput: Kernel = (args) => {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(dy, filter)) {
    return cpu("Conv2DBackpropInput", args);
  }
  const inShape = attrs.inputShape as number[];
  const ci = convInfoOf(inShape, filter.shape, attrs, 1);
  const dx = convBackpropInput(backend, values(backend, dy), values(backend, filter), ci);
  return output(backend, ci.inShape, dx);
};

/** Conv2DBackpropFilter: the gradient of a convolution with respect to its filter. */
export const conv2DBackpropFilter: Kernel = (args) => {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(x, dy)) {
    return cpu("Conv2DBackpropFilter", args);
  }
  const filterShape = attrs.filterShape as number[];
  const ci = convInfoOf(x.shape, filterShape, attrs, 1);
  const dw = convBackpropFilter(backend, values(backend, x), values(backend, dy), ci);
  return output(backend, filterShape, dw);
};
