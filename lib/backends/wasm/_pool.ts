/**
 * MaxPoolGrad: the stock kernel rescans every window for every input pixel.
 * One pass over the windows suffices: each window sends its dy to its first
 * maximum (row-major, as the cpu backend does), and overlapping windows add up.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Backend, type Info, type WasmHeap } from "./_run.ts";
import { offsetOf, simdOf } from "./_simd.ts";

/** MaxPoolGrad in one pass over the windows (each window's dy to its first maximum). */
export function maxPoolGrad(args: {
  inputs: { dy: Info; input: Info };
  backend: Backend;
  attrs: {
    filterSize: [number, number] | number;
    strides: [number, number] | number;
    pad: "valid" | "same" | number;
    dimRoundingMode?: "floor" | "round" | "ceil";
  };
}): Info {
  const { inputs: { dy, input }, attrs } = args;
  const backend = args.backend as unknown as WasmHeap;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const {
    batchSize,
    inHeight: h,
    inWidth: w,
    inChannels: c,
    outHeight: ho,
    outWidth: wo,
  } = info;
  const {
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: fh,
    filterWidth: fw,
  } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const out = backend.makeOutput(input.shape, "float32");
  const twoByTwo = fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && 2 * ho <= h &&
    2 * wo <= w;
  const kernels = simdOf(args.backend);
  if (twoByTwo && kernels && input.dtype === "float32" && dy.dtype === "float32" && batchSize * ho * wo * c > 0) {
    const at = (t: Info) => offsetOf(args.backend, t);
    kernels.maxPoolGrad2x2(at(input), at(dy), at(out), batchSize, h, w, c, ho, wo);
    return out;
  }
  // Views only after makeOutput: allocating may grow (and detach) the heap.
  const dx = backend.typedArrayFromHeap(out);
  const x = backend.typedArrayFromHeap(input);
  const g = backend.typedArrayFromHeap(dy);
  dx.fill(0);
  if (twoByTwo) {
    maxPoolGrad2x2(x, g, dx, batchSize, h, w, c, ho, wo);
    return out;
  }
  // Running maximum and its heap index per channel, so the inner loops read
  // contiguous channels.
  const best = new Float32Array(c);
  const at = new Int32Array(c);
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < ho; oy++) {
      const y0 = Math.max(0, oy * sh - top);
      const y1 = Math.min(h, oy * sh - top + fh);
      for (let ox = 0; ox < wo; ox++) {
        const x0 = Math.max(0, ox * sw - left);
        const x1 = Math.min(w, ox * sw - left + fw);
        best.fill(-Infinity);
        at.fill(-1);
        for (let y = y0; y < y1; y++) {
          for (let xx = x0; xx < x1; xx++) {
            const base = ((b * h + y) * w + xx) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[base + ch];
              if (v > best[ch]) {
                best[ch] = v;
                at[ch] = base + ch;
              }
            }
          }
        }
        const gBase = ((b * ho + oy) * wo + ox) * c;
        for (let ch = 0; ch < c; ch++) {
          if (at[ch] >= 0) dx[at[ch]] += g[gBase + ch];
        }
      }
    }
  }
  return out;
}

/**
 * maxPoolGrad's loop for 2×2 windows at stride 2 that lie inside the image (model A's pooling): the same
 * scan order and tie rule (the first maximum; NaNs never win), without the per-window buffers. The
 * general loop took 27 of a 250 ms model A PGD step on wasm.
 */
function maxPoolGrad2x2(
  x: Float32Array,
  g: Float32Array,
  dx: Float32Array,
  batchSize: number,
  h: number,
  w: number,
  c: number,
  ho: number,
  wo: number,
): void {
  const row = w * c;
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        const p00 = ((b * h + 2 * oy) * w + 2 * ox) * c, p01 = p00 + c, p10 = p00 + row, p11 = p10 + c;
        const gBase = ((b * ho + oy) * wo + ox) * c;
        for (let ch = 0; ch < c; ch++) {
          let best = -Infinity, at = -1, v = x[p00 + ch];
          if (v > best) best = v, at = p00 + ch;
          v = x[p01 + ch];
          if (v > best) best = v, at = p01 + ch;
          v = x[p10 + ch];
          if (v > best) best = v, at = p10 + ch;
          v = x[p11 + ch];
          if (v > best) at = p11 + ch;
          if (at >= 0) dx[at] += g[gBase + ch];
        }
      }
    }
  }
}
