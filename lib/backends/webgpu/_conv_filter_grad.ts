/**
 * `Conv2DBackpropFilter` on WebGPU as an implicit GEMM with a split reduction.
 *
 * The filter gradient is dW[kh, kw, ci, co] = Σ_{b, oh, ow} x[b, oh·sh + kh − top, ow·sw + kw − left, ci] ·
 * dy[b, oh, ow, co]: a product of an M × K matrix (M = kh·kw·ci rows of image patches, never written out) and a
 * K × N one (dy, N = co), with a long reduction (K = batch · output pixels, 131,072 for the ResNet's first
 * stage at batch 128) and a small result (2,304 weights there). TF.js's kernel runs one invocation per weight,
 * each looping over all of K: a few thousand invocations on a GPU that holds a hundred thousand, each doing one
 * multiply-add per two loads and an index computation.
 *
 * Here each invocation computes a 4 × 8 block of the result (4 input channels of one filter tap × 8 output
 * channels: 32 multiply-adds per three 4-wide loads) over one slice of K, walking the slice's pixels with
 * counters instead of divisions. Where the input channels are few and not a multiple of 4 (an image's 3), an
 * invocation takes a whole filter row instead (all kW·inC weights of one kh × 16 output channels), so that no lane
 * is wasted and each element of x read serves 16 multiply-adds. The slices are cut so that the dispatch holds
 * about 2¹⁶ invocations; a second pass adds the slices' partial sums in a fixed order. No atomics: the result is
 * the same on every run.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type GpuBackend, i, program } from "./_program.ts";
import { type ConvShape, convShape } from "./_conv.ts";

/** Invocations the first pass aims at (tens of thousands: a GPU's worth of warps; slices at least {@link MIN_SLICE} long). */
const TARGET_THREADS = 1 << 16;
/** The shortest slice of the reduction one invocation takes. */
const MIN_SLICE = 64;

/**
 * Whether an invocation takes a whole filter row (all kW·inC weights of one kh) instead of 4 channels of one
 * tap: for channel counts that are not multiples of 4 and short rows (an image's 3 channels), where 4-channel
 * blocks would waste lanes and read x one masked element at a time.
 */
function wholeRows(s: ConvShape): boolean {
  return s.inC % 4 !== 0 && s.kW * s.inC <= 16;
}

/** How the reduction is cut: `slices` slices of `sliceLength` (the last one shorter). */
export function filterGradPlan(s: ConvShape): { tiles: number; slices: number; sliceLength: number } {
  const rowBlocks = wholeRows(s) ? s.kH : s.kH * s.kW * Math.ceil(s.inC / 4);
  const tiles = rowBlocks * Math.ceil(s.outC / (4 * colVecs(s)));
  const k = s.batch * s.outH * s.outW;
  const wanted = Math.max(1, Math.min(Math.ceil(TARGET_THREADS / tiles), Math.ceil(k / MIN_SLICE)));
  const sliceLength = Math.ceil(k / wanted);
  return { tiles, slices: Math.ceil(k / sliceLength), sliceLength };
}

/**
 * Output channels per invocation, in 4-wide groups: two (two 4-wide loads of dy per 4-wide load of x), or four
 * with {@link wholeRows}, whose loads of x are single elements.
 */
function colVecs(s: ConvShape): number {
  return wholeRows(s) && s.outC > 8 ? 4 : s.outC > 4 ? 2 : 1;
}

/** WGSL: the output pixel (b, oh, ow) of the slice's first step `k0` of the reduction. */
function start(s: ConvShape): string {
  return `var ow = k0 % ${s.outW};
  var oh = (k0 / ${s.outW}) % ${s.outH};
  var b = k0 / ${s.outW * s.outH};`;
}

/** WGSL: the next output pixel, by counters (no division in the loop). */
function advance(s: ConvShape): string {
  return `ow = ow + 1;
    if (ow == ${s.outW}) {
      ow = 0;
      oh = oh + 1;
      if (oh == ${s.outH}) { oh = 0; b = b + 1; }
    }`;
}

/** The WGSL of the first pass: partial sums [slices, kH·kW·inC, outC]. */
function partialCode(s: ConvShape, slices: number, sliceLength: number, vec4: boolean): string {
  const cv = colVecs(s);
  const cib = Math.ceil(s.inC / 4), cob = Math.ceil(s.outC / (4 * cv));
  const n = s.outC, m = s.kH * s.kW * s.inC, k = s.batch * s.outH * s.outW;
  const rows = [0, 1, 2, 3], cols = Array.from({ length: cv }, (_, c) => c);
  // 4 consecutive channels of one pixel of x (at element e) and of dy (at element d + 4c).
  const loadX = vec4 ? "x[e / 4]" : rows.map((j) => `select(0.0, x[e + ${j}], ci0 + ${j} < ${s.inC})`).join(", ");
  const loadDy = (c: number) =>
    vec4 && c === 0
      ? "dy[d / 4]"
      : vec4
      ? `select(vec4<f32>(0.0), dy[d / 4 + ${c}], co0 + ${4 * c} < ${n})`
      : rows.map((j) => `select(0.0, dy[d + ${4 * c + j}], co0 + ${4 * c + j} < ${n})`).join(", ");
  const store = rows.map((r) =>
    `if (ci0 + ${r} < ${s.inC}) { let row = base + ${r * n};
      ${
      cols.flatMap((c) =>
        rows.map((j) =>
          `if (co0 + ${4 * c + j} < ${n}) { result[row + co0 + ${4 * c + j}] = acc${r}_${c}.${"xyzw"[j]}; }`
        )
      ).join(" ")
    }
    }`
  ).join("\n");
  return `
fn main(index : i32) {
  if (index >= ${i(slices * cob * cib * s.kH * s.kW)}) { return; }
  let co0 = (index % ${cob}) * ${4 * cv};
  var t = index / ${cob};
  let ci0 = (t % ${cib}) * 4;
  t = t / ${cib};
  let kw = t % ${s.kW};
  t = t / ${s.kW};
  let kh = t % ${s.kH};
  let slice = t / ${s.kH};
  let k0 = slice * ${sliceLength};
  let k1 = min(k0 + ${sliceLength}, ${k});
  ${start(s)}
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}_${c} = vec4<f32>(0.0);`)).join("\n  ")}
  for (var kk = k0; kk < k1; kk = kk + 1) {
    let ih = oh * ${s.strideH} + kh - ${s.padTop};
    let iw = ow * ${s.strideW} + kw - ${s.padLeft};
    if (ih >= 0 && ih < ${s.inH} && iw >= 0 && iw < ${s.inW}) {
      let e = ((b * ${s.inH} + ih) * ${s.inW} + iw) * ${s.inC} + ci0;
      let d = kk * ${n} + co0;
      let a = vec4<f32>(${loadX});
      ${cols.map((c) => `let g${c} = vec4<f32>(${loadDy(c)});`).join("\n      ")}
      ${
    rows.flatMap((r) => cols.map((c) => `acc${r}_${c} = fma(vec4<f32>(a.${"xyzw"[r]}), g${c}, acc${r}_${c});`))
      .join("\n      ")
  }
    }
    ${advance(s)}
  }
  let base = slice * ${i(m * n)} + ((kh * ${s.kW} + kw) * ${s.inC} + ci0) * ${n};
  ${store}
}`;
}

/** The WGSL of the first pass for {@link wholeRows}: each invocation one kh × all kW·inC × 4·cv output channels. */
function partialRowsCode(s: ConvShape, slices: number, sliceLength: number, dyVec4: boolean): string {
  const cv = colVecs(s);
  const cob = Math.ceil(s.outC / (4 * cv));
  const n = s.outC, m = s.kH * s.kW * s.inC, k = s.batch * s.outH * s.outW, row = s.kW * s.inC;
  const js = Array.from({ length: row }, (_, j) => j), cols = Array.from({ length: cv }, (_, c) => c);
  const loadDy = (c: number) =>
    dyVec4
      ? `select(vec4<f32>(0.0), dy[d / 4 + ${c}], co0 + ${4 * c} < ${n})`
      : [0, 1, 2, 3].map((j) => `select(0.0, dy[d + ${4 * c + j}], co0 + ${4 * c + j} < ${n})`).join(", ");
  return `
fn main(index : i32) {
  if (index >= ${i(slices * cob * s.kH)}) { return; }
  let co0 = (index % ${cob}) * ${4 * cv};
  let t = index / ${cob};
  let kh = t % ${s.kH};
  let slice = t / ${s.kH};
  let k0 = slice * ${sliceLength};
  let k1 = min(k0 + ${sliceLength}, ${k});
  ${start(s)}
  ${js.flatMap((j) => cols.map((c) => `var acc${j}_${c} = vec4<f32>(0.0);`)).join("\n  ")}
  for (var kk = k0; kk < k1; kk = kk + 1) {
    let ih = oh * ${s.strideH} + kh - ${s.padTop};
    if (ih >= 0 && ih < ${s.inH}) {
      let iw0 = ow * ${s.strideW} - ${s.padLeft};
      let e = ((b * ${s.inH} + ih) * ${s.inW} + iw0) * ${s.inC};
      let d = kk * ${n} + co0;
      ${cols.map((c) => `let g${c} = vec4<f32>(${loadDy(c)});`).join("\n      ")}
      ${
    Array.from({ length: s.kW }, (_, kw) =>
      `if (iw0 + ${kw} >= 0 && iw0 + ${kw} < ${s.inW}) {
        ${
        Array.from({ length: s.inC }, (_, ci) => kw * s.inC + ci).map((j) =>
          `let a${j} = vec4<f32>(x[e + ${j}]);
        ${cols.map((c) => `acc${j}_${c} = fma(a${j}, g${c}, acc${j}_${c});`).join(" ")}`
        ).join("\n        ")
      }
      }`).join("\n      ")
  }
    }
    ${advance(s)}
  }
  let base = slice * ${i(m * n)} + kh * ${row * n};
  ${
    js.map((j) =>
      cols.flatMap((c) =>
        [0, 1, 2, 3].map((q) =>
          `if (co0 + ${4 * c + q} < ${n}) { result[base + ${j * n} + co0 + ${4 * c + q}] = acc${j}_${c}.${"xyzw"[q]}; }`
        )
      ).join(" ")
    ).join("\n  ")
  }
}`;
}

/** The WGSL of the second pass: the sum of the slices' partial sums, in slice order. */
function sumCode(size: number, slices: number): string {
  return `
fn main(index : i32) {
  if (index >= ${i(size)}) { return; }
  var acc = 0.0;
  for (var s = 0; s < ${slices}; s = s + 1) { acc = acc + partial[s * ${i(size)} + index]; }
  result[index] = acc;
}`;
}

/** The filter gradient of a convolution over NHWC `x` with output gradient `dy`: [kH, kW, inC, outC]. */
export function filterGrad(
  backend: GpuBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  s: ConvShape,
): tf.TensorInfo {
  const { tiles, slices, sliceLength } = filterGradPlan(s);
  const filterShape = [s.kH, s.kW, s.inC, s.outC];
  const size = s.kH * s.kW * s.inC * s.outC;
  const vec4 = s.inC % 4 === 0 && s.outC % 4 === 0;
  const rows = wholeRows(s);
  const key = `filter_grad_${Object.values(s).join("_")}_${slices}_${sliceLength}_${vec4}_${rows}`;
  const first = program(
    key,
    ["x", "dy"],
    slices === 1 ? filterShape : [slices, size],
    slices * tiles,
    rows ? partialRowsCode(s, slices, sliceLength, s.outC % 4 === 0) : partialCode(s, slices, sliceLength, vec4),
    rows ? [false, s.outC % 4 === 0] : vec4,
  );
  const partial = backend.runWebGPUProgram(first, [x, dy], "float32");
  if (slices === 1) return partial;
  const second = program(`filter_grad_sum_${size}_${slices}`, ["partial"], filterShape, size, sumCode(size, slices));
  const out = backend.runWebGPUProgram(second, [partial], "float32");
  backend.disposeData(partial.dataId);
  return out;
}

/** The `Conv2DBackpropFilter` kernel (NHWC, no dilation, float32; anything else goes to `stock`). */
export function conv2dBackpropFilterKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    const s = convShape(x.shape, a.filterShape, a, a.dimRoundingMode);
    if (!s || x.dtype !== "float32" || dy.dtype !== "float32") return stock(args);
    return filterGrad(args.backend as unknown as GpuBackend, x, dy, s);
  };
}
