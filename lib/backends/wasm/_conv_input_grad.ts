/**
 * Conv2DBackpropInput: a stride-1 convolution of the (zero-interleaved) output
 * gradient with the spatially flipped, in/out-swapped filter.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Backend, conv2d, type ConvGradAttrs, free, type Info, type Pad4, run, transpose, view } from "./_run.ts";
import { simdOf } from "./_simd.ts";

/** Conv2DBackpropInput as a stride-1 convolution, falling back to `stock` (if any) for NCHW or unusual padding. */
export function conv2dBackpropInputKernel(
  stock: tf.KernelFunc | undefined,
): tf.KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const backend = args.backend as Backend;
    const attrs = args.attrs as unknown as ConvGradAttrs & {
      inputShape: [number, number, number, number];
    };
    const [n, h, w, ci] = attrs.inputShape;
    const [kh, kw, , co] = filter.shape;
    const info = tf.backend_util.computeConv2DInfo(
      attrs.inputShape,
      filter.shape as [number, number, number, number],
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      "channelsLast",
    );
    const [sh, sw] = [info.strideHeight, info.strideWidth];
    const [ho, wo] = [info.outHeight, info.outWidth];
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    if (attrs.dataFormat === "NCHW" || top < 0 || left < 0) {
      if (!stock) {
        throw new Error(
          `wasm Conv2DBackpropInput: unsupported attrs ${JSON.stringify(attrs)}`,
        );
      }
      return stock(args);
    }
    // Zero-interleave dy for strides > 1: [n, ho*sh, wo*sw, co], dy at multiples of the stride.
    let d = dy;
    if (sh > 1 || sw > 1) {
      d = run("PadV2", backend, { x: view(dy, [n, ho, 1, wo, 1, co]) }, {
        paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]],
        constantValue: 0,
      });
      d = view(d, [n, ho * sh, wo * sw, co]);
    }
    // Padded length must be h + kh - 1; the interleaved dy spans ho*sh rows.
    const bottom = h + kh - 1 - top - ho * sh;
    const right = w + kw - 1 - left - wo * sw;
    const pad: Pad4 = [[0, 0], [top, Math.max(bottom, 0)], [
      left,
      Math.max(right, 0),
    ], [0, 0]];
    const flipped = run("Reverse", backend, { x: filter }, { dims: [0, 1] });
    let dx: Info;
    if (ci === 1 && !simdOf(backend)) {
      // One output channel starves XNNPACK's GEMM tiles: a depthwise
      // convolution and a channel sum are faster (about 1.6x on model A).
      // (Our Conv2D has a dot-product loop for it.)
      const perChannel = run("DepthwiseConv2dNative", backend, {
        x: d,
        filter: view(flipped, [kh, kw, co, 1]),
      }, { strides: [1, 1], pad, dataFormat: "NHWC", dilations: [1, 1] });
      dx = run("Sum", backend, { x: perChannel }, {
        axis: [3],
        keepDims: true,
      });
      free(backend, perChannel);
      free(backend, flipped);
    } else {
      // Flipped filter with in/out swapped: [kh, kw, co, ci].
      const swapped = transpose(backend, flipped, [0, 1, 3, 2]);
      free(backend, flipped);
      dx = conv2d(backend, d, swapped, pad);
      free(backend, swapped);
    }
    if (d !== dy) free(backend, d);
    if (bottom < 0 || right < 0) {
      const cut = run("Slice", backend, { x: dx }, {
        begin: [0, 0, 0, 0],
        size: [n, h, w, ci],
      });
      free(backend, dx);
      dx = cut;
    }
    return dx;
  };
}
