/**
 * Finds and loads a system BLAS (OpenBLAS first) through Deno FFI and exposes
 * single-precision matrix multiplication (`cblas_sgemm`, row-major).
 *
 * Search order: the `BLAS_LIBRARY` environment variable (a path, read only when
 * `--allow-env` grants it), then the usual install paths of OpenBLAS on Debian,
 * Fedora and Homebrew, then the dynamic loader's own search (`libopenblas.so.0`),
 * then reference BLAS and Apple's Accelerate. Needs `--allow-ffi` (Deno 2.x needs
 * no `--unstable-ffi` for `Deno.dlopen`).
 *
 * ```ts
 * import { loadBlas } from "./_blas.ts";
 * const blas = loadBlas();
 * if (blas.ok) {
 *   const a = new Float32Array([1, 2, 3, 4]), b = new Float32Array([1, 0, 0, 1]);
 *   const c = new Float32Array(4);
 *   blas.sgemm(false, false, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2); // c = a · b
 * }
 * ```
 *
 * @module
 */

/**
 * Row-major C = alpha · op(A) · op(B) + beta · C, where op(A) is M×K (A stored
 * K×M when `transA`), op(B) is K×N (B stored N×K when `transB`) and C is M×N.
 * `lda`, `ldb`, `ldc` are the row strides (in elements) of A, B and C as stored.
 * Views (`subarray`) address sub-matrices: their byte offset is honoured.
 */
export type Sgemm = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/**
 * Result of {@link loadBlas}: the loaded `sgemm` and the library path, or why not. `envError` is set where
 * `BLAS_LIBRARY` named a library that could not be loaded and another one was loaded instead:
 * `BLAS_LIBRARY=<path> could not be loaded: <why>`.
 */
export type BlasResult =
  | { ok: true; sgemm: Sgemm; path: string; envError?: string }
  | { ok: false; reason: string };

/** Places searched after `BLAS_LIBRARY`, in order. */
export const BLAS_CANDIDATES: readonly string[] = [
  "/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
  "/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib64/libopenblasp.so.0",
  "/usr/lib/libopenblas.so.0",
  "/usr/local/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "libopenblas.so.0",
  "libopenblas.so",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "buffer", // A
      "i32", // lda
      "buffer", // B
      "i32", // ldb
      "f32", // beta
      "buffer", // C
      "i32", // ldc
    ],
    result: "void",
  },
} as const;

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

let cached: BlasResult | undefined;

function permitted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * OpenBLAS's worker threads spin after each product for about 2^28 cycles (a
 * tenth of a second) before they sleep, so on a machine with few cores they take
 * one from the OpenMP threads of the convolutions and loops that run next:
 * oneDNN's convolutions of a model A PGD step took 16-18 ms instead of 10.
 * `OPENBLAS_THREAD_TIMEOUT=4` (2^4, OpenBLAS's least) makes them sleep at once;
 * set here, before the library loads, unless the environment already says.
 */
function quietOpenBlasThreads(): void {
  if (!permitted({ name: "env", variable: "OPENBLAS_THREAD_TIMEOUT" })) return;
  if (Deno.env.get("OPENBLAS_THREAD_TIMEOUT") === undefined) Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
}

function envPath(): string | undefined {
  // Query first: a bare Deno.env.get would prompt on a terminal without --allow-env.
  if (!permitted({ name: "env", variable: "BLAS_LIBRARY" })) return undefined;
  const value = Deno.env.get("BLAS_LIBRARY");
  return value ? value : undefined;
}

/**
 * Loads the first BLAS found (see the module doc for the order) and returns its
 * `sgemm`. Never throws: without `--allow-ffi`, or with no library found, it
 * returns `{ ok: false, reason }` saying what was tried. The result is cached.
 */
export function loadBlas(): BlasResult {
  if (cached) return cached;
  if (!permitted({ name: "ffi" })) {
    // Not cached: the permission may be granted later (Deno.permissions.request).
    return {
      ok: false,
      reason: "no FFI permission: run deno with --allow-ffi to load a system BLAS",
    };
  }
  quietOpenBlasThreads();
  const fromEnv = envPath();
  const candidates = fromEnv ? [fromEnv, ...BLAS_CANDIDATES] : [...BLAS_CANDIDATES];
  const failures: string[] = [];
  let envError: string | undefined;
  for (const [i, path] of candidates.entries()) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (err) {
      // Deno repeats its "Could not open library: " prefix; the loader's own message follows it.
      const message = (err instanceof Error ? err.message : String(err)).split("\n")[0]
        .replace(/^(Could not open library: )+/, "");
      // An explicit choice that fails is worth saying even if a fallback loads.
      if (fromEnv && i === 0) envError = `BLAS_LIBRARY=${path} could not be loaded: ${message}`;
      else failures.push(`${path}: ${message}`);
      continue;
    }
    const f = lib.symbols.cblas_sgemm;
    const sgemm: Sgemm = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
      if (m === 0 || n === 0) return;
      if (k === 0) {
        // C = beta · C; BLAS rejects lda = 0, so do it here.
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) c[i * ldc + j] = beta === 0 ? 0 : beta * c[i * ldc + j];
        }
        return;
      }
      f(
        ROW_MAJOR,
        transA ? TRANS : NO_TRANS,
        transB ? TRANS : NO_TRANS,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    };
    cached = envError ? { ok: true, sgemm, path, envError } : { ok: true, sgemm, path };
    return cached;
  }
  const none = `no BLAS with cblas_sgemm found (set BLAS_LIBRARY to its path, or install libopenblas0-pthread); ` +
    `tried ${failures.join("; ")}`;
  cached = { ok: false, reason: envError ? `${envError}, and ${none}` : none };
  return cached;
}
