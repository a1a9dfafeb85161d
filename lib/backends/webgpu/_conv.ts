/**
 * `Conv2D` and `Conv2DBackpropInput` on WebGPU as direct implicit GEMMs with register blocks.
 *
 * Forward: out[b, oh, ow, co] = Σ_{kh, kw, ci} x[b, oh·sh + kh − top, ow·sw + kw − left, ci] · w[kh, kw, ci, co].
 * Each invocation computes 4 neighbouring output pixels of one row × 8 output channels, walking the filter
 * taps and 4 input channels at a time: 4 loads of x (4 channels each) and 8 of w (one row of 4 output
 * channels each, contiguous) feed 128 multiply-adds.
 *
 * Input gradient: dx[b, ih, iw, ci] = Σ_{kh, kw, co} dy[b, oh, ow, co] · w[kh, kw, ci, co] over the (oh, ow)
 * with oh·sh + kh − top = ih (and the same for columns). Each invocation computes 4 input pixels of one row,
 * a stride apart (so that a tap reaches all four or none), × 8 input channels, walking the taps and 4 output
 * channels at a time: 4 loads of dy and 8 rows of w feed 128 multiply-adds as dot products.
 *
 * TF.js's kernels are tiled matrix products over im2col indices, each element read through a chain of integer
 * divisions. Both kernels here are deterministic (each output is one invocation's sum in a fixed order) and
 * take any channel count (loads past a channel count read zeros). Dilated and NCHW convolutions go to TF.js.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type GpuBackend, i, program } from "./_program.ts";

/** The sizes a convolution's shaders are specialised for. */
export interface ConvShape {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
}

/**
 * The sizes in a shader's key, all but the batch: the shaders read the batch from TF.js's `outShape` uniform,
 * so that an attack whose batch shrinks as examples break (Square, AutoAttack's stages) compiles nothing new.
 */
function batchless(s: ConvShape): string {
  return Object.values({ ...s, batch: "n" }).join("_");
}

/** Neighbouring pixels (along a row) per invocation. */
const PIXELS = 4;

/** `n` 4-wide loads of `buf` at element `at`, channels `c0 + j` of `count` (zeros past it); `vec4`: aligned. */
function load4(buf: string, at: string, c0: string, count: number, vec4: boolean): string {
  if (vec4) return `${buf}[(${at}) / 4]`;
  return `vec4<f32>(${
    [0, 1, 2, 3].map((j) => `select(0.0, ${buf}[${at} + ${j}], ${c0} + ${j} < ${count})`).join(", ")
  })`;
}

const px = Array.from({ length: PIXELS }, (_, p) => p);
const four = [0, 1, 2, 3];
const XYZW = "xyzw";

/** What the forward convolution does to its sums before writing them (FusedConv2D): a bias, then an activation. */
export interface Epilogue {
  bias: boolean;
  activation: "linear" | "relu";
}

/** 4-wide groups of output channels per invocation of the forward convolution. */
function outputGroups(s: ConvShape): number {
  return s.outC > 4 ? 2 : 1;
}

/** WGSL of the forward convolution: [batch, outH, outW, outC]. */
function forwardCode(s: ConvShape, vec4: boolean, epi: Epilogue): string {
  const out = (v: string, co: string) => {
    const biased = epi.bias ? `${v} + bias[${co}]` : v;
    // As TF.js's ReLU: NaN stays NaN (WGSL's max may return either operand).
    return epi.activation === "relu" ? `select(${biased}, 0.0, ${biased} < 0.0)` : biased;
  };
  const cv = outputGroups(s);
  const cob = Math.ceil(s.outC / (4 * cv)), pw = Math.ceil(s.outW / PIXELS);
  const cols = Array.from({ length: cv }, (_, c) => c);
  const perImage = s.outH * pw * cob;
  const wRow = (r: number, c: number) =>
    vec4 && c === 0
      ? load4("W", `wb + ${r * s.outC}`, "co0", s.outC, true)
      : vec4
      ? `select(vec4<f32>(0.0), W[(wb + ${r * s.outC}) / 4 + ${c}], co0 + ${4 * c} < ${s.outC})`
      : load4("W", `wb + ${r * s.outC + 4 * c}`, `co0 + ${4 * c}`, s.outC, false);
  return `
fn main(index : i32) {
  if (index >= uniforms.outShape.x * ${i(perImage)}) { return; }
  let co0 = (index % ${cob}) * ${4 * cv};
  var t = index / ${cob};
  let ow0 = (t % ${pw}) * ${PIXELS};
  t = t / ${pw};
  let oh = t % ${s.outH};
  let b = t / ${s.outH};
  ${px.flatMap((p) => cols.map((c) => `var acc${p}_${c} = vec4<f32>(0.0);`)).join("\n  ")}
  for (var kh = 0; kh < ${s.kH}; kh = kh + 1) {
    let ih = oh * ${s.strideH} + kh - ${s.padTop};
    if (ih < 0 || ih >= ${s.inH}) { continue; }
    for (var kw = 0; kw < ${s.kW}; kw = kw + 1) {
      ${
    px.map((p) =>
      `let iw${p} = (ow0 + ${p}) * ${s.strideW} + kw - ${s.padLeft};
      let ok${p} = iw${p} >= 0 && iw${p} < ${s.inW} && ow0 + ${p} < ${s.outW};
      let xb${p} = ((b * ${s.inH} + ih) * ${s.inW} + iw${p}) * ${s.inC};`
    ).join("\n      ")
  }
      for (var ci0 = 0; ci0 < ${s.inC}; ci0 = ci0 + 4) {
        let wb = ((kh * ${s.kW} + kw) * ${s.inC} + ci0) * ${s.outC} + co0;
        ${
    four.map((r) =>
      cols.map((c) => `let w${r}_${c} = select(vec4<f32>(0.0), ${wRow(r, c)}, ci0 + ${r} < ${s.inC});`).join(
        "\n        ",
      )
    ).join("\n        ")
  }
        ${
    px.map((p) =>
      `if (ok${p}) {
          let a = ${load4("x", `xb${p} + ci0`, "ci0", s.inC, vec4)};
          ${
        cols.map((c) =>
          `acc${p}_${c} = fma(vec4<f32>(a.x), w0_${c}, fma(vec4<f32>(a.y), w1_${c}, fma(vec4<f32>(a.z), w2_${c}, fma(vec4<f32>(a.w), w3_${c}, acc${p}_${c}))));`
        ).join("\n          ")
      }
        }`
    ).join("\n        ")
  }
      }
    }
  }
  ${
    px.map((p) =>
      `if (ow0 + ${p} < ${s.outW}) {
    let o = ((b * ${s.outH} + oh) * ${s.outW} + ow0 + ${p}) * ${s.outC} + co0;
    ${
        cols.flatMap((c) =>
          four.map((j) =>
            `if (co0 + ${4 * c + j} < ${s.outC}) { result[o + ${4 * c + j}] = ${
              out(`acc${p}_${c}.${XYZW[j]}`, `co0 + ${4 * c + j}`)
            }; }`
          )
        ).join("\n    ")
      }
  }`
    ).join("\n  ")
  }
}`;
}

/** 4-wide groups of input channels per invocation of the input gradient. */
function inputGroups(s: ConvShape): number {
  return s.inC > 4 ? 2 : 1;
}

/** Invocations of the input gradient: per image row, `strideW` per block of 4·strideW columns. */
function inputGradThreads(s: ConvShape): number {
  const blocks = Math.ceil(s.inW / (PIXELS * s.strideW));
  return s.batch * s.inH * blocks * s.strideW * Math.ceil(s.inC / (4 * inputGroups(s)));
}

/**
 * WGSL of the input gradient: [batch, inH, inW, inC]. An invocation's 4 pixels are `strideW` columns apart, so
 * that a filter tap reaches all of them or none (with stride 2, neighbouring columns take alternate taps).
 */
function inputGradCode(s: ConvShape, vec4: boolean): string {
  const cg = inputGroups(s), groups = Array.from({ length: cg }, (_, q) => q);
  const cib = Math.ceil(s.inC / (4 * cg)), sw = s.strideW;
  const lanes = Math.ceil(s.inW / (PIXELS * sw)) * sw;
  const rows = groups.flatMap((q) => four.map((r) => 4 * q + r));
  return `
fn main(index : i32) {
  if (index >= uniforms.outShape.x * ${i(inputGradThreads({ ...s, batch: 1 }))}) { return; }
  let ci0 = (index % ${cib}) * ${4 * cg};
  var t = index / ${cib};
  let lane = t % ${lanes};
  let iw0 = (lane / ${sw}) * ${PIXELS * sw} + lane % ${sw};
  t = t / ${lanes};
  let ih = t % ${s.inH};
  let b = t / ${s.inH};
  ${px.flatMap((p) => groups.map((q) => `var acc${p}_${q} = vec4<f32>(0.0);`)).join("\n  ")}
  for (var kh = 0; kh < ${s.kH}; kh = kh + 1) {
    let ohs = ih + ${s.padTop} - kh;
    let oh = ohs / ${s.strideH};
    if (ohs < 0 || oh * ${s.strideH} != ohs || oh >= ${s.outH}) { continue; }
    for (var kw = 0; kw < ${s.kW}; kw = kw + 1) {
      let ows0 = iw0 + ${s.padLeft} - kw;
      if (ows0 + ${3 * sw} < 0) { continue; }
      if ((ows0 % ${sw} + ${sw}) % ${sw} != 0) { continue; }
      ${
    px.map((p) =>
      `let ow${p} = (ows0 + ${p * sw}) / ${sw};
      let ok${p} = ows0 + ${p * sw} >= 0 && ow${p} < ${s.outW} && iw0 + ${p * sw} < ${s.inW};
      let db${p} = ((b * ${s.outH} + oh) * ${s.outW} + ow${p}) * ${s.outC};`
    ).join("\n      ")
  }
      for (var co0 = 0; co0 < ${s.outC}; co0 = co0 + 4) {
        let wb = ((kh * ${s.kW} + kw) * ${s.inC} + ci0) * ${s.outC} + co0;
        ${
    rows.map((r) =>
      `let w${r} = select(vec4<f32>(0.0), ${
        load4("W", `wb + ${r * s.outC}`, "co0", s.outC, vec4)
      }, ci0 + ${r} < ${s.inC});`
    ).join("\n        ")
  }
        ${
    px.map((p) =>
      `if (ok${p}) {
          let g = ${load4("dy", `db${p} + co0`, "co0", s.outC, vec4)};
          ${
        groups.map((q) =>
          `acc${p}_${q} = acc${p}_${q} + vec4<f32>(${four.map((r) => `dot(g, w${4 * q + r})`).join(", ")});`
        ).join("\n          ")
      }
        }`
    ).join("\n        ")
  }
      }
    }
  }
  ${
    px.map((p) =>
      `if (iw0 + ${p * sw} < ${s.inW}) {
    let o = ((b * ${s.inH} + ih) * ${s.inW} + iw0 + ${p * sw}) * ${s.inC} + ci0;
    ${
        rows.map((j) => `if (ci0 + ${j} < ${s.inC}) { result[o + ${j}] = acc${p}_${j >> 2}.${XYZW[j & 3]}; }`)
          .join("\n    ")
      }
  }`
    ).join("\n  ")
  }
}`;
}

/**
 * The forward convolution of NHWC `x` with `w` [kH, kW, inC, outC]; with `bias` ([outC]) and an activation
 * where `epi` says so.
 */
export function convForward(
  backend: GpuBackend,
  x: tf.TensorInfo,
  w: tf.TensorInfo,
  s: ConvShape,
  epi: Epilogue = { bias: false, activation: "linear" },
  bias?: tf.TensorInfo,
): tf.TensorInfo {
  if (epi.bias !== (bias !== undefined)) throw new Error("convForward: a bias needs epi.bias, and epi.bias a bias");
  const vec4 = s.inC % 4 === 0 && s.outC % 4 === 0;
  const cob = Math.ceil(s.outC / (4 * outputGroups(s)));
  const threads = s.batch * s.outH * Math.ceil(s.outW / PIXELS) * cob;
  const key = `conv_${batchless(s)}_${vec4}_${epi.bias}_${epi.activation}`;
  const names = bias ? ["x", "W", "bias"] : ["x", "W"];
  const code = forwardCode(s, vec4, epi);
  const p = program(key, names, [s.batch, s.outH, s.outW, s.outC], threads, code, [vec4, vec4, false]);
  return backend.runWebGPUProgram(p, bias ? [x, w, bias] : [x, w], "float32");
}

/** The input gradient of a convolution with `w` [kH, kW, inC, outC], given the output gradient `dy`. */
export function convInputGrad(backend: GpuBackend, dy: tf.TensorInfo, w: tf.TensorInfo, s: ConvShape): tf.TensorInfo {
  const vec4 = s.inC % 4 === 0 && s.outC % 4 === 0;
  const threads = inputGradThreads(s);
  const key = `conv_dx_${batchless(s)}_${vec4}`;
  const p = program(key, ["dy", "W"], [s.batch, s.inH, s.inW, s.inC], threads, inputGradCode(s, vec4), vec4);
  return backend.runWebGPUProgram(p, [dy, w], "float32");
}

/** The sizes of a TF.js convolution, or undefined where ours do not apply (dilation, NCHW, not float32). */
export function convShape(
  xShape: number[],
  filterShape: number[],
  a: { strides: number | [number, number]; pad: unknown; dataFormat?: string; dilations?: number | number[] },
  dimRoundingMode?: "floor" | "round" | "ceil",
): ConvShape | undefined {
  const format = tf.backend_util.convertConv2DDataFormat((a.dataFormat ?? "NHWC") as "NHWC" | "NCHW");
  const dilations = a.dilations ?? 1;
  if (format !== "channelsLast" || [dilations].flat().some((d) => d !== 1)) return undefined;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    1,
    a.pad as "same" | "valid" | number,
    dimRoundingMode,
    false,
    format,
  );
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** The `Conv2D` kernel (NHWC, no dilation, float32; anything else goes to `stock`). */
export function conv2dKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const a = args.attrs as unknown as tf.Conv2DAttrs;
    const s = convShape(x.shape, filter.shape, a, a.dimRoundingMode);
    if (!s || x.dtype !== "float32" || filter.dtype !== "float32") return stock(args);
    return convForward(args.backend as unknown as GpuBackend, x, filter, s);
  };
}

/**
 * The `FusedConv2D` kernel (inference: TF.js's layers call it outside a gradient tape) where the activation is
 * linear or ReLU and any bias is one per output channel; anything else goes to `stock`.
 */
export function fusedConv2dKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const a = args.attrs as unknown as tf.FusedConv2DAttrs;
    const activation = a.activation ?? "linear";
    const s = convShape(x!.shape, filter!.shape, a, a.dimRoundingMode);
    const plainBias = !bias || (bias.dtype === "float32" && tf.util.sizeFromShape(bias.shape) === s?.outC &&
      bias.shape[bias.shape.length - 1] === s?.outC);
    if (
      !s || x!.dtype !== "float32" || filter!.dtype !== "float32" || preluActivationWeights || !plainBias ||
      (activation !== "linear" && activation !== "relu")
    ) return stock(args);
    return convForward(args.backend as unknown as GpuBackend, x!, filter!, s, { bias: !!bias, activation }, bias);
  };
}

/** The `Conv2DBackpropInput` kernel (NHWC, float32; anything else goes to `stock`). */
export function conv2dBackpropInputKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const a = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
    const s = convShape(a.inputShape, filter.shape, a, a.dimRoundingMode);
    if (!s || dy.dtype !== "float32" || filter.dtype !== "float32") return stock(args);
    return convInputGrad(args.backend as unknown as GpuBackend, dy, filter, s);
  };
}
