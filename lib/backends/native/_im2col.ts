/**
 * im2col and its adjoint col2im on NHWC images, the layout change that turns a convolution into a matrix
 * product (compiled loops where loaded, TypeScript ones otherwise).
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { compiled } from "./_libs.ts";

/** The geometry of a convolution or pooling, as TF.js computes it. */
export type ConvInfo = tf.backend_util.Conv2DInfo;

/** Runs at least this long are copied with TypedArray.set (memcpy) rather than a loop. */
const MEMCPY_MIN = 32;

/** Writes the im2col rows of images [b0, b0+nb) of NHWC `x` into `col` ([nb·OH·OW, KH·KW·C]). */
function im2col(x: Float32Array, ci: ConvInfo, b0: number, nb: number, col: Float32Array): void {
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const KH = ci.filterHeight, KW = ci.filterWidth;
  const sh = ci.strideHeight, sw = ci.strideWidth;
  const dh = ci.dilationHeight, dw = ci.dilationWidth;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const rowLen = KW * C;
  let p = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - pt;
      for (let ow = 0; ow < OW; ow++) {
        const iw0 = ow * sw - pl;
        const inside = dw === 1 && iw0 >= 0 && iw0 + KW <= W;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ih0 + kh * dh;
          if (ih < 0 || ih >= H) {
            col.fill(0, p, p + rowLen);
            p += rowLen;
            continue;
          }
          const xr = xb + ih * W * C;
          if (inside) {
            let s = xr + iw0 * C;
            if (rowLen >= MEMCPY_MIN) {
              col.set(x.subarray(s, s + rowLen), p);
              p += rowLen;
            } else {
              const end = p + rowLen;
              while (p < end) col[p++] = x[s++];
            }
            continue;
          }
          for (let kw = 0; kw < KW; kw++) {
            const iw = iw0 + kw * dw;
            if (iw < 0 || iw >= W) {
              for (let c = 0; c < C; c++) col[p++] = 0;
            } else if (C >= MEMCPY_MIN) {
              const s = xr + iw * C;
              col.set(x.subarray(s, s + C), p);
              p += C;
            } else {
              let s = xr + iw * C;
              for (let c = 0; c < C; c++) col[p++] = x[s++];
            }
          }
        }
      }
    }
  }
}

/** Adds the im2col rows in `col` back into images [b0, b0+nb) of NHWC `dx` (the adjoint of im2col). */
function col2im(col: Float32Array, ci: ConvInfo, b0: number, nb: number, dx: Float32Array): void {
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const KH = ci.filterHeight, KW = ci.filterWidth;
  const sh = ci.strideHeight, sw = ci.strideWidth;
  const dh = ci.dilationHeight, dw = ci.dilationWidth;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const rowLen = KW * C;
  let p = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - pt;
      for (let ow = 0; ow < OW; ow++) {
        const iw0 = ow * sw - pl;
        const inside = dw === 1 && iw0 >= 0 && iw0 + KW <= W;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ih0 + kh * dh;
          if (ih < 0 || ih >= H) {
            p += rowLen;
            continue;
          }
          const xr = xb + ih * W * C;
          if (inside) {
            let s = xr + iw0 * C;
            const end = p + rowLen;
            while (p < end) dx[s++] += col[p++];
            continue;
          }
          for (let kw = 0; kw < KW; kw++) {
            const iw = iw0 + kw * dw;
            if (iw < 0 || iw >= W) {
              p += C;
            } else {
              let s = xr + iw * C;
              for (let c = 0; c < C; c++) dx[s++] += col[p++];
            }
          }
        }
      }
    }
  }
}

/** The geometry as the compiled im2col, col2im and pooling loops read it. */
export function convParams(ci: ConvInfo): Int32Array {
  return Int32Array.of(
    ci.inHeight,
    ci.inWidth,
    ci.inChannels,
    ci.outHeight,
    ci.outWidth,
    ci.filterHeight,
    ci.filterWidth,
    ci.strideHeight,
    ci.strideWidth,
    ci.dilationHeight,
    ci.dilationWidth,
    ci.padInfo.top,
    ci.padInfo.left,
  );
}

/** {@link im2col}, on the compiled loop where loaded. */
export function toCols(x: Float32Array, ci: ConvInfo, b0: number, nb: number, col: Float32Array): void {
  if (compiled) compiled.im2col(x, col, b0, nb, convParams(ci));
  else im2col(x, ci, b0, nb, col);
}

/** {@link col2im}, on the compiled loop where loaded. */
export function fromCols(col: Float32Array, ci: ConvInfo, b0: number, nb: number, dx: Float32Array): void {
  if (compiled) compiled.col2im(col, dx, b0, nb, convParams(ci));
  else col2im(col, ci, b0, nb, dx);
}
