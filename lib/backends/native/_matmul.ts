/**
 * Matrix products (BatchMatMul, _FusedMatMul) on the BLAS's sgemm, with broadcast batch dimensions.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel, type NativeBackend } from "./_backend.ts";
import { allFloat, cpu, output, sizeOf, values } from "./_helpers.ts";
import { sgemm } from "./_libs.ts";
import { epilogue, epilogueSupported } from "./_epilogue.ts";

/** Batched a·b with optional transposes and broadcast batch dims; null when not float32. */
function matmul(
  backend: NativeBackend,
  a: Info,
  b: Info,
  transA: boolean,
  transB: boolean,
): { shape: number[]; y: Float32Array } {
  const ar = a.shape.length, br = b.shape.length;
  const M = transA ? a.shape[ar - 1] : a.shape[ar - 2];
  const K = transA ? a.shape[ar - 2] : a.shape[ar - 1];
  const Kb = transB ? b.shape[br - 1] : b.shape[br - 2];
  const N = transB ? b.shape[br - 2] : b.shape[br - 1];
  if (K !== Kb) {
    throw new Error(
      `BatchMatMul: inner dimensions must agree, got a ${a.shape} and b ${b.shape} ` +
        `with transposeA=${transA}, transposeB=${transB}`,
    );
  }
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  const batches = sizeOf(outer);
  const av = values(backend, a), bv = values(backend, b);
  const y = backend.alloc(batches * M * N);
  const lda = transA ? M : K, ldb = transB ? K : N;
  const shape = [...outer, M, N];
  if (sizeOf(outerB) === 1 && !transA) {
    // Shared right operand: one tall product.
    sgemm(false, transB, batches * M, N, K, 1, av, lda, bv, ldb, 0, y, N);
    return { shape, y };
  }
  const batchA = sizeOf(outerA), batchB = sizeOf(outerB);
  for (let i = 0; i < batches; i++) {
    const ia = batchA === batches ? i : broadcastIndex(outer, outerA, i);
    const ib = batchB === batches ? i : broadcastIndex(outer, outerB, i);
    sgemm(
      transA,
      transB,
      M,
      N,
      K,
      1,
      av.subarray(ia * M * K),
      lda,
      bv.subarray(ib * K * N),
      ldb,
      0,
      y.subarray(i * M * N),
      N,
    );
  }
  return { shape, y };
}

/** Flat index into a tensor of `inShape` broadcast to `outShape`, for flat output index `i`. */
function broadcastIndex(outShape: number[], inShape: number[], i: number): number {
  let idx = 0, stride = 1, rest = i;
  const off = outShape.length - inShape.length;
  for (let d = outShape.length - 1; d >= 0; d--) {
    const coord = rest % outShape[d];
    rest = Math.floor(rest / outShape[d]);
    const di = d - off;
    if (di >= 0) {
      const dim = inShape[di];
      if (dim !== 1) idx += coord * stride;
      stride *= dim;
    }
  }
  return idx;
}

/** BatchMatMul on float32 (cpu otherwise). */
export const batchMatMul: Kernel = (args) => {
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { attrs, backend } = args;
  if (!allFloat(a, b)) return cpu("BatchMatMul", args);
  const r = matmul(backend, a, b, !!attrs.transposeA, !!attrs.transposeB);
  return output(backend, r.shape, r.y);
};

/** _FusedMatMul: the product, then the bias and activation epilogue. */
export const fusedMatMul: Kernel = (args) => {
  const { a, b, bias, preluActivationWeights } = args.inputs;
  const { attrs, backend } = args;
  const ai = a as Info, bi = b as Info;
  const N = attrs.transposeB ? bi.shape[bi.shape.length - 2] : bi.shape[bi.shape.length - 1];
  if (
    !allFloat(ai, bi) ||
    !epilogueSupported(bias, preluActivationWeights, attrs.activation as string, N)
  ) {
    return cpu("_FusedMatMul", args);
  }
  const r = matmul(backend, ai, bi, !!attrs.transposeA, !!attrs.transposeB);
  const alpha = (attrs.leakyreluAlpha as number | undefined) ?? 0.2;
  epilogue(backend, r.y, N, bias, attrs.activation as string, alpha, preluActivationWeights);
  return output(backend, r.shape, r.y);
};
