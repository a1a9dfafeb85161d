/**
 * Max and average pooling and their gradients (MaxPool, MaxPoolGrad, AvgPool, AvgPoolGrad) on NHWC images.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel } from "./_backend.ts";
import { allFloat, bits, cpu, KEY_NEG_INF, orderKey, output, sizeOf, values } from "./_helpers.ts";
import { compiled } from "./_libs.ts";
import { type ConvInfo, convParams } from "./_im2col.ts";
import { type Pad, type Rounding, type Shape4 } from "./_conv.ts";

function poolInfo(x: Info, attrs: Record<string, unknown>): ConvInfo {
  return tf.backend_util.computePool2DInfo(
    x.shape as Shape4,
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as Rounding,
  );
}

/**
 * Max pooling on order keys (see {@link orderKey}): branch-free. Ignores NaNs
 * with the sign bit set, as the cpu kernel ignores all NaNs; a NaN with the
 * sign bit clear wins the window instead (it propagates).
 */
export const maxPool: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const { attrs, backend } = args;
  if (!allFloat(x) || x.shape.length !== 4) return cpu("MaxPool", args);
  const ci = poolInfo(x, attrs);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const y = backend.alloc(ci.batchSize * OH * OW * C);
  if (compiled) {
    compiled.maxPool(values(backend, x), y, ci.batchSize, convParams(ci));
    return output(backend, ci.outShape, y);
  }
  const xi = bits(values(backend, x));
  const yi = bits(y).fill(KEY_NEG_INF);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              yi[o + c] = Math.max(yi[o + c], v ^ ((v >> 31) & 0x7fffffff));
            }
          }
        }
        for (let c = 0; c < C; c++) yi[o + c] = orderKey(yi[o + c]);
      }
    }
  }
  return output(backend, ci.outShape, y);
};

/**
 * dx: each window's dy routed to the first maximum in scan order, as the cpu
 * kernel does (ties, e.g. windows of ReLU zeros, go to the top-left one). The
 * maximum is recomputed from `input`; both passes are branch-free.
 */
export const maxPoolGrad: Kernel = (args) => {
  const { dy, input } = args.inputs as { dy: Info; input: Info };
  const { attrs, backend } = args;
  if (!allFloat(dy, input) || input.shape.length !== 4) return cpu("MaxPoolGrad", args);
  const ci = poolInfo(input, attrs);
  if (compiled) {
    const dx = backend.alloc(sizeOf(input.shape));
    compiled.maxPoolGrad(values(backend, input), values(backend, dy), dx, ci.batchSize, convParams(ci));
    return output(backend, input.shape, dx);
  }
  const xi = bits(values(backend, input)), dyv = values(backend, dy);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const dx = backend.alloc(xi.length).fill(0);
  const best = new Int32Array(C);
  const at = new Int32Array(C);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        best.fill(KEY_NEG_INF);
        at.fill(-1);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              best[c] = Math.max(best[c], v ^ ((v >> 31) & 0x7fffffff));
            }
          }
        }
        // Scan backwards so that the first position holding the maximum wins.
        for (let ih = r1 - 1; ih >= r0; ih--) {
          for (let iw = c1 - 1; iw >= c0; iw--) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              const d = (v ^ ((v >> 31) & 0x7fffffff)) ^ best[c];
              const equal = ~((d | -d) >> 31);
              at[c] ^= (at[c] ^ (s + c)) & equal;
            }
          }
        }
        for (let c = 0; c < C; c++) if (at[c] >= 0) dx[at[c]] += dyv[o + c];
      }
    }
  }
  return output(backend, input.shape, dx);
};

/** AvgPool: each window averaged over the pixels inside the image (padding excluded). */
export const avgPool: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const { attrs, backend } = args;
  if (!allFloat(x) || x.shape.length !== 4) return cpu("AvgPool", args);
  const ci = poolInfo(x, attrs);
  const xv = values(backend, x);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  if (compiled) {
    const y = backend.alloc(ci.batchSize * OH * OW * C);
    compiled.avgPool(xv, y, ci.batchSize, convParams(ci), false);
    return output(backend, ci.outShape, y);
  }
  const y = backend.alloc(ci.batchSize * OH * OW * C).fill(0);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) y[o + c] += xv[s + c];
          }
        }
        const inv = 1 / ((r1 - r0) * (c1 - c0));
        for (let c = 0; c < C; c++) y[o + c] *= inv;
      }
    }
  }
  return output(backend, ci.outShape, y);
};

/**
 * The adjoint of {@link avgPool}: each window's dy spread over the pixels it
 * averaged (padding excluded, as in the forward pass and in TensorFlow). The
 * stock cpu kernel divides by the full window size instead, which differs from
 * its own forward pass where a SAME window overhangs the border.
 */
export const avgPoolGrad: Kernel = (args) => {
  const { dy, input } = args.inputs as { dy: Info; input: Info };
  const { attrs, backend } = args;
  if (!allFloat(dy, input) || input.shape.length !== 4) return cpu("AvgPoolGrad", args);
  const ci = poolInfo(input, attrs);
  const dyv = values(backend, dy);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  if (compiled) {
    const dx = backend.alloc(sizeOf(input.shape));
    compiled.avgPool(dyv, dx, ci.batchSize, convParams(ci), true);
    return output(backend, input.shape, dx);
  }
  const dx = backend.alloc(sizeOf(input.shape)).fill(0);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        const inv = 1 / ((r1 - r0) * (c1 - c0));
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) dx[s + c] += dyv[o + c] * inv;
          }
        }
      }
    }
  }
  return output(backend, input.shape, dx);
};
