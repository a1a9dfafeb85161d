/**
 * The "native" TF.js backend: the reference `cpu` backend with its heavy
 * kernels (convolutions and their gradients, matrix products) replaced by
 * im2col + `sgemm` from a system BLAS loaded through Deno FFI (OpenBLAS uses
 * all cores), and the light kernels that dominate a PGD or training step of the
 * MNIST nets (pooling and its gradients, ReLU, bias adds, same-shape
 * arithmetic, leading-axis sums) replaced by tight typed-array loops.
 *
 * Run with `--allow-ffi` (and `--allow-env=BLAS_LIBRARY` to honour that
 * variable); Deno 2.x needs no `--unstable-ffi`.
 *
 * ```ts
 * import { tf } from "../../core/tf.ts";
 * import { registerNativeBackend } from "./mod.ts";
 * const native = await registerNativeBackend();
 * await tf.setBackend(native.ok ? "native" : "cpu");
 * ```
 *
 * Every kernel falls back to the `cpu` one for what it does not cover
 * (NCHW, non-float32 dtypes, unusual broadcasts), so results never depend on
 * coverage, only speed does.
 *
 * @module
 */
import { loadBlas } from "./_blas.ts";
import { tf } from "../../core/tf.ts";
import { type Kernel, NativeBackend } from "./_backend.ts";
import { cpuKernels } from "./_helpers.ts";
import { compiled, setSgemm, useCompiledLoops } from "./_libs.ts";
import { compiledCacheNotes, setCompiledCacheDir } from "./_cc.ts";
import { useDnnl } from "./_dnnl.ts";
import { EXTRA, OVERRIDES } from "./_kernels.ts";

export { compiledReason, useCompiledLoops } from "./_libs.ts";
export { dnnlCounts, dnnlReason, useDnnl } from "./_dnnl.ts";
export { narrowCounts } from "./_conv.ts";

/** Name the backend is registered under. */
export const NATIVE_BACKEND = "native";

/** Names of the kernels the native backend implements itself (the rest are the cpu ones). */
export const NATIVE_KERNELS: readonly string[] = Object.keys(OVERRIDES);

/**
 * Result of {@link registerNativeBackend}: the BLAS library in use, or why the backend could not register.
 * `blasLibraryError` says why a `BLAS_LIBRARY` that was set could not be loaded (another BLAS is then in
 * use); `notes`, what loading the compiled libraries did to the cache (a library rebuilt, and why).
 */
export type NativeResult =
  | { ok: true; path: string; blasLibraryError?: string; notes: readonly string[] }
  | { ok: false; reason: string };

/** Options of {@link registerNativeBackend}. */
export interface NativeOptions {
  /**
   * Cache folder: the compiled libraries go to `<cacheDir>/native` (default `ADV_CACHE_DIR`, else `.cache`).
   * Read by the first registration only.
   */
  cacheDir?: string;
}

let registered: NativeResult | undefined;

/**
 * Registers the TF.js backend "native" (priority 0, so it never becomes the
 * default by itself: select it with `await tf.setBackend("native")`). Loads the
 * system BLAS first; returns `{ ok: false, reason }` when it cannot (no
 * `--allow-ffi`, no library), registering nothing. Calling it again returns the
 * first successful result and registers nothing twice.
 */
export function registerNativeBackend(options: NativeOptions = {}): Promise<NativeResult> {
  if (registered) return Promise.resolve(registered);
  const blas = loadBlas();
  if (!blas.ok) return Promise.resolve(blas);
  if (options.cacheDir !== undefined) setCompiledCacheDir(options.cacheDir);
  setSgemm(blas.sgemm);
  useCompiledLoops(true);
  compiled?.pin(blas.path); // OpenBLAS's threads stay parked in it until exit
  useDnnl(true);
  for (const config of tf.getKernelsForBackend("cpu")) {
    cpuKernels.set(config.kernelName, config.kernelFunc as unknown as Kernel);
  }
  const existing = new Set(tf.getKernelsForBackend(NATIVE_BACKEND).map((k) => k.kernelName));
  for (const config of tf.getKernelsForBackend("cpu")) {
    const name = config.kernelName;
    if (existing.has(name)) continue;
    const own = OVERRIDES[name];
    tf.registerKernel({
      ...config,
      backendName: NATIVE_BACKEND,
      kernelFunc: own ? (own as unknown as tf.KernelFunc) : config.kernelFunc,
    });
  }
  for (const [kernelName, kernelFunc] of Object.entries(EXTRA)) {
    if (!existing.has(kernelName)) {
      tf.registerKernel({
        kernelName,
        backendName: NATIVE_BACKEND,
        kernelFunc: kernelFunc as unknown as tf.KernelFunc,
      });
    }
  }
  if (!tf.findBackendFactory(NATIVE_BACKEND)) {
    tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 0);
  }
  registered = { ok: true, path: blas.path, blasLibraryError: blas.envError, notes: [...compiledCacheNotes()] };
  return Promise.resolve(registered);
}
