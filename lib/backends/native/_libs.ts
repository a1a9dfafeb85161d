/**
 * The native code the kernels call: the BLAS's `sgemm` (bound at registration) and the compiled loops of
 * native_kernels.c (with the TypeScript ones as the fallback), switchable at run time.
 *
 * @module
 */
import { type Sgemm } from "./_blas.ts";
import { type CompiledKernels, loadCompiledKernels } from "./_cc.ts";

/** The system BLAS's sgemm, bound by {@link setSgemm} when the backend registers. */
export let sgemm: Sgemm;

/** Binds {@link sgemm} to the loaded BLAS. */
export function setSgemm(f: Sgemm): void {
  sgemm = f;
}

/** The compiled loops of lib/backends/native/native_kernels.c, when a C compiler was found (see lib/backends/native/_cc.ts). */
export let compiled: CompiledKernels | undefined;

/** Why the compiled loops are not in use ("" when they are). */
export let compiledReason = "not loaded";

/** Uses the compiled loops (true) or the TypeScript ones (false); returns the previous setting. */
export function useCompiledLoops(on: boolean): boolean {
  const before = compiled !== undefined;
  if (on) {
    const r = loadCompiledKernels();
    compiled = r.ok ? r.kernels : undefined;
    compiledReason = r.ok ? "" : r.reason;
  } else compiled = undefined;
  return before;
}
