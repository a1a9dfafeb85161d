/**
 * The fused batch norm + leaky ReLU kernels (lib/nn/_fused.ts) and the per-image standardisation
 * (lib/nn/resnet.ts) on WebGPU, with the maths of lib/backends/native/_batchnorm.ts and _standardize.ts.
 *
 * Every kernel with a reduction (per channel for batch norm, NHWC with the channels last; per image for the
 * standardisation) runs it as a split reduction. In a first pass each invocation reduces one slice of one
 * group: every S-th value from the slice's index on, so that neighbouring invocations read neighbouring
 * addresses; the slices are cut so that the pass has about 2¹⁶ invocations (16 channels of N·H·W = 131,072
 * values: 4,096 slices of 32). Then passes that each combine up to {@link FAN_IN} consecutive partial results,
 * in order, until one per group is left. No atomics: the result is the same on every run. Means and variances
 * are kept as (mean, sum of squared deviations) pairs, updated by Welford's rule within a slice and Chan et al.'s
 * pairwise rule across slices, so a large mean does not cancel the variance out as Σx² − n·μ² would.
 *
 * A TF.js program writes one buffer, so each per-group result (the mean, the variance, dγ, dβ) is one small
 * program over the last partial results; an element-wise pass (y, or dx) then reads them. The element-wise
 * passes recompute what they need from x (x̂, the leaky ReLU's side) instead of reading saved tensors: per
 * kernel the large tensors are read once by the reduction and once by the element-wise pass.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { f, type GpuBackend, i, program } from "./_program.ts";
import {
  BN_ACT_GRAD,
  BN_ACT_INFER,
  BN_ACT_INFER_GRAD,
  BN_ACT_TRAIN,
  STANDARDIZE,
  STANDARDIZE_GRAD,
} from "../kernel_names.ts";

/** Invocations the first pass of a reduction aims at (tens of thousands: a GPU's worth of warps). */
const TARGET_THREADS = 1 << 16;
/** The fewest values one invocation of the first pass reduces. */
const MIN_SLICE = 16;
/** The most partial results one invocation of a combining pass adds up. */
const FAN_IN = 64;

/** `groups` reductions of `length` values each, over the elements of the inputs. */
interface Reduction {
  /** Names the reduction in the shader keys, with every constant in `setup` and `value`. */
  key: string;
  inputs: Record<string, tf.TensorInfo>;
  groups: number;
  length: number;
  /** Value j of group g is element j·groups + g (channels last) if true, else g·length + j (one image after another). */
  interleaved: boolean;
  /** Sums: how many (1 to 4; `value` is an f32 or a vec<terms><f32>). Moments: 1. */
  terms: number;
  /** The mean and the sum of squared deviations of the one value instead of sums. */
  moments: boolean;
  /** WGSL run once per invocation before its loop, knowing the group `g`. */
  setup: string;
  /** WGSL that defines `v`, the value(s) at flat element index `e` of group `g`. */
  value: string;
}

/**
 * How a reduction of `groups` × `length` values is cut: the number of slices per group of the first pass, then
 * the number of partial results per group after each combining pass (the last one at most {@link FAN_IN}).
 */
export function reductionPlan(groups: number, length: number): number[] {
  const slices = Math.max(1, Math.min(Math.ceil(length / MIN_SLICE), Math.ceil(TARGET_THREADS / groups)));
  const counts = [slices];
  while (counts[counts.length - 1] > FAN_IN) counts.push(Math.ceil(counts[counts.length - 1] / FAN_IN));
  return counts;
}

/** The WGSL type of `n` f32 terms. */
function vecType(n: number): string {
  return n === 1 ? "f32" : `vec${n}<f32>`;
}

/** The `n` components of the WGSL value `name` (itself where n = 1). */
function parts(name: string, n: number): string[] {
  return n === 1 ? [name] : [..."xyzw"].slice(0, n).map((c) => `${name}.${c}`);
}

/** The WGSL of the first pass: partial results [slices, groups, width], each over every slices-th value. */
function firstPassCode(r: Reduction, slices: number): string {
  const { groups: g, length: l } = r;
  const width = r.moments ? 2 : r.terms;
  const out = r.moments ? ["mu", "m2"] : parts("acc", r.terms);
  return `
fn main(index : i32) {
  if (index >= ${i(slices * g)}) { return; }
  let g = ${r.interleaved ? `index % ${g}` : `index / ${slices}`};
  let s = ${r.interleaved ? `index / ${g}` : `index % ${slices}`};
  ${r.setup}
  ${r.moments ? "var cnt = 0.0;\n  var mu = 0.0;\n  var m2 = 0.0;" : `var acc = ${vecType(r.terms)}(0.0);`}
  for (var j = s; j < ${i(l)}; j = j + ${slices}) {
    let e = ${r.interleaved ? `j * ${g} + g` : `g * ${l} + j`};
    ${r.value}
    ${
    r.moments
      ? "cnt = cnt + 1.0;\n    let delta = v - mu;\n    mu = mu + delta / cnt;\n    m2 = m2 + delta * (v - mu);"
      : "acc = acc + v;"
  }
  }
  let o = (s * ${g} + g) * ${width};
  ${out.map((x, k) => `result[o + ${k}] = ${x};`).join("\n  ")}
}`;
}

/**
 * The WGSL of a combining pass over `before` partial results per group (each covering `span` slices of the
 * first pass's `slices`) into `after`: each invocation adds up to {@link FAN_IN} of them in order, then writes
 * either the combined partial result or, where `outputs` is given, those expressions of it (of `acc`, or of
 * `cnt`, `mu` and `m2`) as [groups, outputs.length].
 */
function combineCode(
  r: Reduction,
  slices: number,
  span: number,
  before: number,
  after: number,
  outputs?: string[],
): string {
  const g = r.groups, width = r.moments ? 2 : r.terms, T = vecType(r.terms);
  const store = outputs
    ? outputs.map((x, k) => `result[g * ${outputs.length} + ${k}] = ${x};`)
    : (r.moments ? ["mu", "m2"] : parts("acc", r.terms)).map((x, k) =>
      `result[(q * ${g} + g) * ${width} + ${k}] = ${x};`
    );
  const q = Math.floor(r.length / slices), rem = r.length % slices;
  // The number of values partial result p covers: `span` slices from p·span on, the first `rem` slices one longer.
  const rows = `
fn advRows(p : i32) -> f32 {
  let a = p * ${i(span)};
  let b = min(a + ${i(span)}, ${i(slices)});
  return f32((b - a) * ${i(q)} + clamp(${i(rem)} - a, 0, b - a));
}`;
  const add = r.moments
    ? `let nb = advRows(p);
    let tot = cnt + nb;
    let delta = partial[o] - mu;
    mu = mu + delta * (nb / tot);
    m2 = m2 + partial[o + 1] + delta * delta * (cnt * nb / tot);
    cnt = tot;`
    : `acc = acc + ${T}(${Array.from({ length: width }, (_, k) => `partial[o + ${k}]`).join(", ")});`;
  return `${r.moments ? rows : ""}
fn main(index : i32) {
  if (index >= ${i(after * g)}) { return; }
  let g = index % ${g};
  let q = index / ${g};
  ${r.moments ? "var cnt = 0.0;\n  var mu = 0.0;\n  var m2 = 0.0;" : `var acc = ${T}(0.0);`}
  for (var p = q * ${FAN_IN}; p < min(q * ${FAN_IN} + ${FAN_IN}, ${i(before)}); p = p + 1) {
    let o = (p * ${g} + g) * ${width};
    ${add}
  }
  ${store.join("\n  ")}
}`;
}

/**
 * Runs reduction `r` and returns, per entry of `outputs` ([name, WGSL expressions of the combined result]),
 * a tensor [groups] (one expression) or [groups, k] (k expressions); `name` goes into the key.
 */
function reduce(backend: GpuBackend, r: Reduction, outputs: [string, string[]][]): tf.TensorInfo[] {
  const plan = reductionPlan(r.groups, r.length);
  const slices = plan[0], width = r.moments ? 2 : r.terms;
  const key = `${r.key}_${r.groups}_${r.length}_${r.interleaved}_${r.terms}_${r.moments}_${slices}`;
  const names = Object.keys(r.inputs);
  const first = program(
    `${key}_first`,
    names,
    [slices, r.groups, width],
    slices * r.groups,
    firstPassCode(r, slices),
  );
  let partial = backend.runWebGPUProgram(first, Object.values(r.inputs), "float32");
  let span = 1;
  for (let k = 1; k < plan.length; k++) {
    const [before, after] = [plan[k - 1], plan[k]];
    const next = program(
      `${key}_combine_${before}_${after}`,
      ["partial"],
      [after, r.groups, width],
      after * r.groups,
      combineCode(r, slices, span, before, after),
    );
    const combined = backend.runWebGPUProgram(next, [partial], "float32");
    backend.disposeData(partial.dataId);
    partial = combined;
    span *= FAN_IN;
  }
  const before = plan[plan.length - 1];
  const results = outputs.map(([name, exprs]) => {
    const last = program(
      `${key}_out_${name}_${before}`,
      ["partial"],
      exprs.length === 1 ? [r.groups] : [r.groups, exprs.length],
      r.groups,
      combineCode(r, slices, span, before, 1, exprs),
    );
    return backend.runWebGPUProgram(last, [partial], "float32");
  });
  backend.disposeData(partial.dataId);
  return results;
}

/** An element-wise pass with `shape`'s output: `body` sets `result[index]`; `key` must name its constants. */
function elementwise(
  backend: GpuBackend,
  key: string,
  inputs: Record<string, tf.TensorInfo>,
  shape: number[],
  body: string,
): tf.TensorInfo {
  const n = tf.util.sizeFromShape(shape);
  const code = `
fn main(index : i32) {
  if (index >= uniforms.size) { return; }
  ${body}
}`;
  // The count is a uniform, not a constant: one pipeline serves every batch (an attack's shrinks as it goes).
  return backend.runWebGPUProgram(
    { ...program(key, Object.keys(inputs), shape, n, code), size: true },
    Object.values(inputs),
    "float32",
  );
}

/** Channels (the last axis) and values per channel of `x`. */
function channels(x: tf.TensorInfo): { C: number; n: number } {
  const C = x.shape[x.shape.length - 1];
  return { C, n: tf.util.sizeFromShape(x.shape) / C };
}

/** The attributes of the batch-norm kernels, as WGSL literals. */
function bnAttrs(attrs: tf.NamedAttrMap | undefined): { eps: string; alpha: string } {
  const { epsilon, alpha } = attrs as unknown as { epsilon: number; alpha: number };
  return { eps: f(epsilon), alpha: f(alpha) };
}

/** y = leaky(x·mul + add), mul = γ/√(σ² + ε), add = β − μ·mul, per channel (training and inference alike). */
function bnActPass(backend: GpuBackend, x: tf.TensorInfo, stats: Record<string, tf.TensorInfo>, attrs: {
  eps: string;
  alpha: string;
}): tf.TensorInfo {
  const { C } = channels(x);
  return elementwise(
    backend,
    `bn_act_${C}_${attrs.eps}_${attrs.alpha}`,
    { x, ...stats },
    x.shape,
    `let c = index % ${C};
  let mul = gamma[c] / sqrt(variance[c] + ${attrs.eps});
  let add = beta[c] - mean[c] * mul;
  let z = x[index] * mul + add;
  result[index] = select(z, z * ${attrs.alpha}, z < 0.0);`,
  );
}

/** {@link BN_ACT_TRAIN}: the batch moments per channel (one pass and the combining ones), then y; outputs y, μ, σ². */
const bnActTrain: tf.KernelFunc = (args) => {
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = args.backend as unknown as GpuBackend;
  const { C, n } = channels(x);
  const [mean, variance] = reduce(backend, {
    key: "bn_moments",
    inputs: { x },
    groups: C,
    length: n,
    interleaved: true,
    terms: 1,
    moments: true,
    setup: "",
    value: "let v = x[e];",
  }, [["mean", ["mu"]], ["variance", ["max(m2 / cnt, 0.0)"]]]);
  const y = bnActPass(backend, x, { mean, variance, gamma, beta }, bnAttrs(args.attrs));
  return [y, mean, variance];
};

/**
 * {@link BN_ACT_GRAD}: one pass for Σdz and Σdz·x̂ per channel (dz = dy·leaky′(z)), which are dβ and dγ, then
 * dx = γ/σ·(dz − mean(dz) − x̂·mean(dz·x̂)); outputs dx, dγ, dβ.
 */
const bnActGrad: tf.KernelFunc = (args) => {
  const { dy, x, gamma, beta, mean, variance } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = args.backend as unknown as GpuBackend;
  const { eps, alpha } = bnAttrs(args.attrs);
  const { C, n } = channels(x);
  const [dgamma, dbeta, means] = reduce(backend, {
    key: `bn_grad_${eps}_${alpha}`,
    inputs: { dy, x, gamma, beta, mean, variance },
    groups: C,
    length: n,
    interleaved: true,
    terms: 2,
    moments: false,
    setup: `let inv = 1.0 / sqrt(variance[g] + ${eps});
  let mg = mean[g];
  let ga = gamma[g];
  let be = beta[g];`,
    value: `let xh = (x[e] - mg) * inv;
    let z = ga * xh + be;
    let dz = select(dy[e], dy[e] * ${alpha}, z < 0.0);
    let v = vec2<f32>(dz, dz * xh);`,
  }, [["dgamma", ["acc.y"]], ["dbeta", ["acc.x"]], ["means", [`acc.x / ${f(n)}`, `acc.y / ${f(n)}`]]]);
  const dx = elementwise(
    backend,
    `bn_grad_dx_${C}_${eps}_${alpha}`,
    { dy, x, gamma, beta, mean, variance, means },
    x.shape,
    `let c = index % ${C};
  let inv = 1.0 / sqrt(variance[c] + ${eps});
  let xh = (x[index] - mean[c]) * inv;
  let z = gamma[c] * xh + beta[c];
  let dz = select(dy[index], dy[index] * ${alpha}, z < 0.0);
  result[index] = (gamma[c] * inv) * (dz - means[2 * c] - xh * means[2 * c + 1]);`,
  );
  backend.disposeData(means.dataId);
  return [dx, dgamma, dbeta];
};

/** {@link BN_ACT_INFER}: y = leaky(x·mul + add) with the given (moving) statistics, one pass. */
const bnActInfer: tf.KernelFunc = (args) => {
  const { x, mean, variance, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  return bnActPass(args.backend as unknown as GpuBackend, x, { mean, variance, gamma, beta }, bnAttrs(args.attrs));
};

/**
 * {@link BN_ACT_INFER_GRAD}: one pass for dβ = Σdz and dγ = Σdz·x̂ per channel, one for dx = dz·mul (the
 * statistics are constants); outputs dx, dγ, dβ.
 */
const bnActInferGrad: tf.KernelFunc = (args) => {
  const { dy, x, mean, variance, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = args.backend as unknown as GpuBackend;
  const { eps, alpha } = bnAttrs(args.attrs);
  const { C, n } = channels(x);
  const inputs = { dy, x, mean, variance, gamma, beta };
  const [dgamma, dbeta] = reduce(backend, {
    key: `bn_infer_grad_${eps}_${alpha}`,
    inputs,
    groups: C,
    length: n,
    interleaved: true,
    terms: 2,
    moments: false,
    setup: `let inv = 1.0 / sqrt(variance[g] + ${eps});
  let mul = gamma[g] / sqrt(variance[g] + ${eps});
  let add = beta[g] - mean[g] * mul;
  let mg = mean[g];`,
    value: `let z = x[e] * mul + add;
    let dz = select(dy[e], dy[e] * ${alpha}, z < 0.0);
    let v = vec2<f32>(dz, dz * (x[e] - mg) * inv);`,
  }, [["dgamma", ["acc.y"]], ["dbeta", ["acc.x"]]]);
  const dx = elementwise(
    backend,
    `bn_infer_dx_${C}_${eps}_${alpha}`,
    inputs,
    x.shape,
    `let c = index % ${C};
  let mul = gamma[c] / sqrt(variance[c] + ${eps});
  let add = beta[c] - mean[c] * mul;
  let z = x[index] * mul + add;
  result[index] = select(dy[index], dy[index] * ${alpha}, z < 0.0) * mul;`,
  );
  return [dx, dgamma, dbeta];
};

/** Images (the first axis) and values per image of `x`. */
function images(x: tf.TensorInfo): { N: number; m: number } {
  const N = x.shape[0];
  return { N, m: tf.util.sizeFromShape(x.shape) / Math.max(N, 1) };
}

/**
 * {@link STANDARDIZE}: the mean and variance of each image (one pass and the combining ones), then
 * y = (x − μ)·r with r = 1/√max(σ², 1/m); outputs y, μ, r.
 */
const standardize: tf.KernelFunc = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const backend = args.backend as unknown as GpuBackend;
  const { N, m } = images(x);
  const [mean, rstd] = reduce(backend, {
    key: "std_moments",
    inputs: { x },
    groups: N,
    length: m,
    interleaved: false,
    terms: 1,
    moments: true,
    setup: "",
    value: "let v = x[e];",
  }, [["mean", ["mu"]], ["rstd", [`1.0 / sqrt(max(m2 / cnt, ${f(1 / m)}))`]]]);
  const y = elementwise(
    backend,
    `std_y_${m}`,
    { x, mean, rstd },
    x.shape,
    `let b = index / ${i(m)};
  result[index] = (x[index] - mean[b]) * rstd[b];`,
  );
  return [y, mean, rstd];
};

/**
 * {@link STANDARDIZE_GRAD}: one pass for Σdy, Σdy·y and Σ(x − μ)² per image, one for
 * dx = r·(dy − mean(dy) − y·mean(dy·y)), the last term only where σ² ≥ 1/m.
 */
const standardizeGrad: tf.KernelFunc = (args) => {
  const { dy, x, mean, rstd } = args.inputs as Record<string, tf.TensorInfo>;
  const backend = args.backend as unknown as GpuBackend;
  const { N, m } = images(x);
  const [mf, floor] = [f(m), f(1 / m)];
  const [means] = reduce(backend, {
    key: "std_grad",
    inputs: { dy, x, mean, rstd },
    groups: N,
    length: m,
    interleaved: false,
    terms: 3,
    moments: false,
    setup: `let mu = mean[g];
  let r = rstd[g];`,
    value: `let xc = x[e] - mu;
    let v = vec3<f32>(dy[e], dy[e] * xc * r, xc * xc);`,
  }, [["means", [`acc.x / ${mf}`, `select(acc.y / ${mf}, 0.0, acc.z / ${mf} < ${floor})`]]]);
  const dx = elementwise(
    backend,
    `std_dx_${m}`,
    { dy, x, mean, rstd, means },
    x.shape,
    `let b = index / ${i(m)};
  let r = rstd[b];
  result[index] = r * (dy[index] - means[2 * b] - (x[index] - mean[b]) * r * means[2 * b + 1]);`,
  );
  backend.disposeData(means.dataId);
  return dx;
};

/** Kernels this module adds to the webgpu backend, by name. */
export const BATCHNORM_KERNELS: [string, tf.KernelFunc][] = [
  [BN_ACT_TRAIN, bnActTrain],
  [BN_ACT_GRAD, bnActGrad],
  [BN_ACT_INFER, bnActInfer],
  [BN_ACT_INFER_GRAD, bnActInferGrad],
  [STANDARDIZE, standardize],
  [STANDARDIZE_GRAD, standardizeGrad],
];
