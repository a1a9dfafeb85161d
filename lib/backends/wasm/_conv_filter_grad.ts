/**
 * Conv2DBackpropFilter: dW[i,j,ci,co] = Σ_{n,y,x} x[n, y·s+i-pt, x·s+j-pl, ci] dy[n,y,x,co]
 * is a convolution of x^T [ci, h, w, n] with dy^T [ho, wo, n, co] dilated by the
 * stride; its output [ci, kh, kw, co] is transposed to [kh, kw, ci, co].
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Backend, conv2d, type ConvGradAttrs, free, type Info, pair, run, transpose } from "./_run.ts";

/** Conv2DBackpropFilter (NHWC, equal strides) as a convolution of the transposed input and output gradient. */
export function conv2dBackpropFilter(args: {
  inputs: { x: Info; dy: Info };
  backend: Backend;
  attrs: ConvGradAttrs & { filterShape: [number, number, number, number] };
}): Info {
  const { inputs: { x, dy }, backend, attrs } = args;
  if (attrs.dataFormat === "NCHW") {
    throw new Error(
      `wasm Conv2DBackpropFilter expects dataFormat NHWC, got NCHW`,
    );
  }
  const [kh, kw, ci, co] = attrs.filterShape;
  const [, h, w] = x.shape;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [sh, sw] = pair(attrs.strides);
  if (sh !== sw) {
    throw new Error(
      `wasm Conv2DBackpropFilter expects equal strides, got [${sh}, ${sw}]`,
    );
  }
  const [ho, wo] = [info.outHeight, info.outWidth];
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const bottom = kh + (ho - 1) * sh - h - top;
  const right = kw + (wo - 1) * sw - w - left;
  const xt = transpose(backend, x, [3, 1, 2, 0]);
  const dyt = transpose(backend, dy, [1, 2, 0, 3]);
  let out = conv2d(backend, xt, dyt, [[0, 0], [top, Math.max(bottom, 0)], [
    left,
    Math.max(right, 0),
  ], [0, 0]], sh);
  free(backend, xt, dyt);
  if (bottom < 0 || right < 0) {
    const cut = run("Slice", backend, { x: out }, {
      begin: [0, 0, 0, 0],
      size: [ci, kh, kw, co],
    });
    free(backend, out);
    out = cut;
  }
  const dw = transpose(backend, out, [1, 2, 0, 3]);
  free(backend, out);
  return dw;
}
