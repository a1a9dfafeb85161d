/**
 * Conv2D, BatchMatMul and leading-axis sums on our own relaxed-SIMD kernels (lib/backends/wasm/simd/mod.ts), on every
 * core. The gradient compositions (_conv_input_grad.ts, _conv_filter_grad.ts) call Conv2D, so they run on them too. Where the kernels cannot start (an engine
 * without relaxed SIMD, a single-threaded heap, ADV_NO_SIMD=1), XNNPACK's kernels run instead.
 *
 * @module
 */
import { type SimdHeap, SimdKernels } from "./simd/mod.ts";
import { tf } from "../../core/tf.ts";
import { type Backend, type ConvGradAttrs, free, type Info, transpose, type WasmHeap } from "./_run.ts";
import { wasmThreads, wasmThreadsReason } from "./_threads.ts";

let simd: { backend: Backend; kernels: SimdKernels | undefined } | undefined;

/** Why our SIMD kernels do not run ("" when they run, or before the backend's first product). */
export let wasmSimdReason = "";

/** Threads of our SIMD kernels (undefined when they do not run, or before the backend's first product). */
export function wasmSimdThreads(): number | undefined {
  return simd?.kernels?.threads;
}

/**
 * Starts our SIMD kernels on the current (wasm) backend now rather than at its first product, and says
 * in a few words what runs the ops on how many threads: for the backend line.
 */
export function wasmBackendDetail(): string {
  const kernels = simdOf(tf.backend());
  const ours = kernels
    ? `our relaxed-SIMD products and convolutions on ${kernels.threads} threads`
    : `XNNPACK products and convolutions (our SIMD kernels off: ${wasmSimdReason})`;
  const xnnpack = wasmThreadsReason ? `1 thread: ${wasmThreadsReason}` : `${wasmThreads()} threads`;
  return `${ours}, XNNPACK for the rest (${xnnpack})`;
}

/** How many of our kernels' workers have loaded, and in how many calls one took part (for tests). */
export function wasmSimdStats(): { readyWorkers: number; sharedCalls: number } | undefined {
  const k = simd?.kernels;
  return k && { readyWorkers: k.readyWorkers(), sharedCalls: k.sharedCalls };
}

/** Workers of our kernels beside the calling thread: one per further core, up to 7. */
const SIMD_WORKERS = Math.max(0, Math.min(7, (navigator.hardwareConcurrency ?? 1) - 1));

/**
 * Turns our SIMD kernels off (XNNPACK's run instead) or back on, for comparisons in one process; on by
 * default where they can start.
 */
export function useWasmSimd(on: boolean): void {
  simdOff = !on;
}

let simdOff = false;

/** Our SIMD kernels for `backend`, started at its first call; undefined where they cannot run or are off. */
export function simdOf(backend: Backend): SimdKernels | undefined {
  if (simdOff) return undefined;
  if (simd?.backend === backend) return simd.kernels;
  simd?.kernels?.close();
  let off = false;
  try {
    off = Deno.env.get("ADV_NO_SIMD") === "1";
  } catch {
    // No --allow-env: the variable cannot be set either.
  }
  const heap = (backend as unknown as { wasm?: SimdHeap }).wasm;
  const started = off ? "ADV_NO_SIMD=1 is set" : heap ? SimdKernels.start(heap, SIMD_WORKERS) : "no wasm heap";
  const kernels = typeof started === "string" ? undefined : started;
  wasmSimdReason = typeof started === "string" ? started : "";
  simd = { backend, kernels };
  return kernels;
}

/** Where a tensor's data starts in the wasm heap (bytes). */
export function offsetOf(backend: Backend, x: Info): number {
  return (backend as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } } })
    .dataIdMap.get(x.dataId).memoryOffset;
}

/** Conv2D on our SIMD kernels (NHWC float32); else `stock`. */
export function simdConv2dKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter } = args.inputs as { x: Info; filter: Info };
    const backend = args.backend as Backend;
    const attrs = args.attrs as unknown as ConvGradAttrs & { dilations: [number, number] | number };
    const kernels = simdOf(backend);
    const empty = x.shape.includes(0) || filter.shape.includes(0);
    const floats = x.dtype === "float32" && filter.dtype === "float32";
    if (!kernels || attrs.dataFormat === "NCHW" || !floats || empty) return stock(args);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      attrs.strides,
      attrs.dilations,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      "channelsLast",
    );
    const out = (backend as unknown as WasmHeap).makeOutput(info.outShape, "float32");
    kernels.conv2d(
      offsetOf(backend, x),
      offsetOf(backend, filter),
      {
        batch: info.batchSize,
        height: info.inHeight,
        width: info.inWidth,
        inChannels: info.inChannels,
        filterHeight: info.filterHeight,
        filterWidth: info.filterWidth,
        strideHeight: info.strideHeight,
        strideWidth: info.strideWidth,
        dilationHeight: info.dilationHeight,
        dilationWidth: info.dilationWidth,
        padTop: info.padInfo.top,
        padLeft: info.padInfo.left,
        outHeight: info.outHeight,
        outWidth: info.outWidth,
        outChannels: info.outChannels,
      },
      offsetOf(backend, out),
      filter.dataId,
    );
    return out;
  };
}

/**
 * Sum over every axis but the last (bias gradients) on our kernels, in blocks of 64 rows (XNNPACK's Sum
 * transposes first and runs on one thread: 4 ms of model A's training step); other sums as before.
 */
export function simdSumKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: Info };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const backend = args.backend as Backend;
    const kernels = simdOf(backend);
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
    const leading = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
    if (!kernels || x.dtype !== "float32" || !leading || tf.util.sizeFromShape(x.shape) === 0) return stock(args);
    const cols = x.shape[rank - 1];
    const shape = keepDims ? [...x.shape.slice(0, -1).map(() => 1), cols] : [cols];
    const out = (backend as unknown as WasmHeap).makeOutput(shape, "float32");
    kernels.sumRows(offsetOf(backend, x), tf.util.sizeFromShape(x.shape) / cols, cols, offsetOf(backend, out));
    return out;
  };
}

/** BatchMatMul on our kernels (transposes are strides), one product per batch; else `fallback`. */
export function simdMatMulKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as Backend;
    const kernels = simdOf(backend);
    const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const [outerA, outerB] = [a.shape.slice(0, -2), b.shape.slice(0, -2)];
    const [batchA, batchB] = [size(outerA), size(outerB)];
    const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
    const [ra, ca] = a.shape.slice(-2), [rb, cb] = b.shape.slice(-2);
    const [m, k] = transposeA ? [ca, ra] : [ra, ca];
    const n = transposeB ? rb : cb;
    if (
      !kernels || a.dtype !== "float32" || b.dtype !== "float32" || size(a.shape) === 0 || size(b.shape) === 0 ||
      (!sameOuter && batchA !== 1 && batchB !== 1) || k !== (transposeB ? cb : rb)
    ) {
      return fallback(args); // (which also says what is wrong with mismatched shapes)
    }
    // The batch dimensions broadcast, as the stock kernel's do: [2, 3] x [1, 3, 4] is [1, 2, 4].
    const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
    const heap = backend as unknown as WasmHeap;
    const aStrides = { offset: offsetOf(backend, a), rows: transposeA ? 1 : k, cols: transposeA ? m : 1 };
    const bStrides = { offset: offsetOf(backend, b), rows: transposeB ? 1 : n, cols: transposeB ? k : 1 };
    if (
      transposeB && !transposeA && batchA === 1 && batchB === 1 && n >= 4 * m &&
      !kernels.reuses(bStrides, k, n, b.dataId)
    ) {
      // a b^T with b large and seen once (a training step's input gradient through a dense layer):
      // (b a^T)^T reads b's rows in place, where a b^T would pack all of b first.
      const outT = heap.makeOutput([n, m], "float32");
      kernels.matmul(
        { offset: bStrides.offset, rows: k, cols: 1 },
        { offset: aStrides.offset, rows: 1, cols: k },
        n,
        k,
        m,
        offsetOf(backend, outT),
      );
      const out = transpose(backend, outT, [1, 0]);
      free(backend, outT);
      out.shape = [...outer, m, n];
      return out;
    }
    const out = heap.makeOutput([...outer, m, n], "float32");
    const offOut = offsetOf(backend, out);
    for (let i = 0; i < Math.max(batchA, batchB); i++) {
      kernels.matmul(
        { ...aStrides, offset: aStrides.offset + (batchA === 1 ? 0 : i * m * k * 4) },
        { ...bStrides, offset: bStrides.offset + (batchB === 1 ? 0 : i * k * n * 4) },
        m,
        k,
        n,
        offOut + i * m * n * 4,
        batchB === 1 ? b.dataId : undefined,
      );
    }
    return out;
  };
}
