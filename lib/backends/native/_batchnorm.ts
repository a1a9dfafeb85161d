/**
 * Batch normalisation: TF.js's FusedBatchNorm (inference form), and batch norm fused with leaky ReLU in
 * training and inference with their gradients (the kernels of lib/nn/_fused.ts).
 *
 * @module
 */
import { type Info, type Kernel, type KernelArgs, type NativeBackend } from "./_backend.ts";
import { allFloat, cpu, output, sizeOf, values } from "./_helpers.ts";
import { compiled } from "./_libs.ts";

/** Batch norm in inference form: (x − mean)·scale/sqrt(var + ε) + offset, per channel (last axis). */
export const fusedBatchNorm: Kernel = (args) => {
  const { x, mean, variance, offset, scale } = args.inputs as Record<string, Info | undefined>;
  const C = x!.shape[x!.shape.length - 1];
  const ok = [mean, variance, offset, scale].every((t) => t === undefined || sizeOf(t.shape) === C);
  if (!allFloat(x, mean, variance, offset, scale) || !ok) return cpu("FusedBatchNorm", args);
  const eps = (args.attrs.varianceEpsilon as number | undefined) ?? 0.001;
  const b = args.backend;
  const mv = values(b, mean!), vv = values(b, variance!);
  const ov = offset ? values(b, offset) : undefined, sv = scale ? values(b, scale) : undefined;
  const mul = new Float32Array(C), add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    mul[c] = (sv ? sv[c] : 1) / Math.sqrt(vv[c] + eps);
    add[c] = (ov ? ov[c] : 0) - mv[c] * mul[c];
  }
  const xv = values(b, x!);
  const y = b.alloc(xv.length);
  for (let i = 0; i < xv.length; i += C) for (let c = 0; c < C; c++) y[i + c] = xv[i + c] * mul[c] + add[c];
  return output(b, x!.shape, y);
};

/** Channels-last view: C channels, the rest flattened. */
function channels(x: Info): number {
  return x.shape[x.shape.length - 1];
}

/** y = leaky(γ·x̂ + β), x̂ = (x − μ)/√(σ² + ε) with batch statistics; outputs y, μ, σ². */
export const bnActTrain: Kernel = (args) => {
  const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
  const { epsilon, alpha } = args.attrs as { epsilon: number; alpha: number };
  const b = args.backend;
  const C = channels(x), xv = values(b, x), gv = values(b, gamma), bv = values(b, beta);
  const n = xv.length / C;
  if (compiled) {
    const y = b.alloc(xv.length), mean = new Float32Array(C), variance = new Float32Array(C);
    compiled.bnActTrain(xv, y, gv, bv, mean, variance, n, C, epsilon, alpha);
    return [output(b, x.shape, y), output(b, [C], mean), output(b, [C], variance)];
  }
  const sum = new Float64Array(C), sq = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const v = xv[i + c];
      sum[c] += v;
      sq[c] += v * v;
    }
  }
  const mean = new Float32Array(C),
    variance = new Float32Array(C),
    mul = new Float32Array(C),
    add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const m = sum[c] / n;
    mean[c] = m;
    variance[c] = Math.max(sq[c] / n - m * m, 0);
    mul[c] = gv[c] / Math.sqrt(variance[c] + epsilon);
    add[c] = bv[c] - m * mul[c];
  }
  const y = b.alloc(xv.length);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      y[i + c] = z < 0 ? z * alpha : z;
    }
  }
  return [output(b, x.shape, y), output(b, [C], mean), output(b, [C], variance)];
};

/** Gradients of {@link bnActTrain} with respect to x, γ and β. */
export const bnActGrad: Kernel = (args) => {
  const { dy, x, gamma, beta, mean, variance } = args.inputs as Record<string, Info>;
  const { epsilon, alpha } = args.attrs as { epsilon: number; alpha: number };
  const b = args.backend;
  const C = channels(x), xv = values(b, x), dyv = values(b, dy);
  const gv = values(b, gamma), bv = values(b, beta), mv = values(b, mean), vv = values(b, variance);
  const n = xv.length / C;
  if (compiled) {
    const dx = b.alloc(xv.length), dgamma = new Float32Array(C), dbeta = new Float32Array(C);
    compiled.bnActGrad(dyv, xv, gv, bv, mv, vv, dx, dgamma, dbeta, n, C, epsilon, alpha);
    return [output(b, x.shape, dx), output(b, [C], dgamma), output(b, [C], dbeta)];
  }
  const inv = new Float32Array(C);
  for (let c = 0; c < C; c++) inv[c] = 1 / Math.sqrt(vv[c] + epsilon);
  // dz = dy·leaky'(z); sums of dz and dz·x̂ per channel.
  const dz = b.alloc(xv.length);
  const sdz = new Float64Array(C), sdzx = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const xh = (xv[i + c] - mv[c]) * inv[c];
      const z = gv[c] * xh + bv[c];
      const d = z < 0 ? dyv[i + c] * alpha : dyv[i + c];
      dz[i + c] = d;
      sdz[c] += d;
      sdzx[c] += d * xh;
    }
  }
  const dgamma = new Float32Array(C), dbeta = new Float32Array(C), k = new Float32Array(C);
  const m1 = new Float32Array(C), m2 = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    dgamma[c] = sdzx[c];
    dbeta[c] = sdz[c];
    k[c] = gv[c] * inv[c];
    m1[c] = sdz[c] / n;
    m2[c] = sdzx[c] / n;
  }
  // dx = γ/σ · (dz − mean(dz) − x̂ · mean(dz·x̂)), written over dz.
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const xh = (xv[i + c] - mv[c]) * inv[c];
      dz[i + c] = k[c] * (dz[i + c] - m1[c] - xh * m2[c]);
    }
  }
  return [output(b, x.shape, dz), output(b, [C], dgamma), output(b, [C], dbeta)];
};

/** Per-channel affine map of batch norm with given statistics: z = x·mul + add. */
function bnAffine(b: NativeBackend, args: KernelArgs, C: number): { mul: Float32Array; add: Float32Array } {
  const { mean, variance, gamma, beta } = args.inputs as Record<string, Info>;
  const { epsilon } = args.attrs as { epsilon: number };
  const mv = values(b, mean), vv = values(b, variance), gv = values(b, gamma), bv = values(b, beta);
  const mul = new Float32Array(C), add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    mul[c] = gv[c] / Math.sqrt(vv[c] + epsilon);
    add[c] = bv[c] - mv[c] * mul[c];
  }
  return { mul, add };
}

/** y = leaky(x·mul + add) with moving statistics (inference). */
export const bnActInfer: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const b = args.backend, alpha = args.attrs.alpha as number;
  const C = channels(x), xv = values(b, x);
  const { mul, add } = bnAffine(b, args, C);
  const y = b.alloc(xv.length);
  if (compiled) {
    compiled.bnActInfer(xv, y, mul, add, xv.length / C, C, alpha);
    return output(b, x.shape, y);
  }
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      y[i + c] = z < 0 ? z * alpha : z;
    }
  }
  return output(b, x.shape, y);
};

/** Gradients of {@link bnActInfer} with respect to x, γ and β (the statistics are constants). */
export const bnActInferGrad: Kernel = (args) => {
  const { dy, x, mean, variance } = args.inputs as Record<string, Info>;
  const b = args.backend, alpha = args.attrs.alpha as number, epsilon = args.attrs.epsilon as number;
  const C = channels(x), xv = values(b, x), dyv = values(b, dy);
  const mv = values(b, mean), vv = values(b, variance);
  const { mul, add } = bnAffine(b, args, C);
  const inv = new Float32Array(C);
  for (let c = 0; c < C; c++) inv[c] = 1 / Math.sqrt(vv[c] + epsilon);
  const dx = b.alloc(xv.length);
  if (compiled) {
    const dg = new Float32Array(C), db = new Float32Array(C);
    compiled.bnActInferGrad(dyv, xv, mul, add, mv, inv, dx, dg, db, xv.length / C, C, alpha);
    return [output(b, x.shape, dx), output(b, [C], dg), output(b, [C], db)];
  }
  const dgamma = new Float64Array(C), dbeta = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      const d = z < 0 ? dyv[i + c] * alpha : dyv[i + c];
      dx[i + c] = d * mul[c];
      dgamma[c] += d * (xv[i + c] - mv[c]) * inv[c];
      dbeta[c] += d;
    }
  }
  return [output(b, x.shape, dx), output(b, [C], Float32Array.from(dgamma)), output(b, [C], Float32Array.from(dbeta))];
};
