/**
 * The `wasm` backend (XNNPACK, SIMD) with fast gradients.
 *
 * Stock TF.js 4.22 wasm has fast forward kernels but slow or missing gradient
 * kernels: `Conv2DBackpropFilter` is not registered (training fails),
 * `Conv2DBackpropInput` is a naive loop, and `BatchMatMul` with a transposed
 * operand falls back to a naive loop. {@linkcode registerWasmBackend} replaces
 * those three kernels with compositions of fast ones: every gradient becomes a
 * convolution or product on transposed, flipped or zero-interleaved operands.
 * It also starts the threaded SIMD build on every core, and puts convolutions,
 * products, the 2×2 max-pool gradient, leading-axis sums and the optimisers'
 * updates on our own relaxed-SIMD kernels (lib/backends/wasm/simd/mod.ts) where they can run,
 * XNNPACK's and TF.js's where not. Registering does not change the current
 * backend.
 *
 * ```ts
 * import { tf } from "../../core/tf.ts";
 * import { registerWasmBackend } from "./mod.ts";
 * await registerWasmBackend();
 * await tf.setBackend("wasm");
 * ```
 *
 * Needs read permission on `node_modules/@tensorflow/tfjs-backend-wasm/dist/`
 * (the `.wasm` binaries).
 *
 * @module
 */
import { loadWorkerThreads } from "./simd/mod.ts";
import { tf } from "../../core/tf.ts";
import { wasmDistDir } from "./_dist.ts";
import { threaded } from "./_threads.ts";
import { installKernels } from "./_install.ts";

export { wasmThreads, wasmThreadsReason } from "./_threads.ts";
export { useWasmSimd, wasmBackendDetail, wasmSimdReason, wasmSimdStats, wasmSimdThreads } from "./_simd.ts";

let registering: Promise<void> | undefined;

/**
 * Registers the `wasm` backend with its binaries read from the installed npm
 * package, and installs fast `Conv2DBackpropInput`, `Conv2DBackpropFilter` and
 * transposed `BatchMatMul` kernels for it. Idempotent; call before
 * `tf.setBackend("wasm")`.
 */
export function registerWasmBackend(): Promise<void> {
  registering ??= (async () => {
    // Pin the current (or default) backend first: wasm outranks cpu, and would
    // otherwise become the (not yet initialised) default of a fresh engine.
    tf.backend();
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(wasmDistDir());
    threaded(wasm);
    await loadWorkerThreads();
    installKernels();
  })();
  return registering;
}
