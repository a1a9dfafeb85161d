/**
 * Optional compiled helpers for the native backend: `lib/backends/native/native_kernels.c` is
 * compiled with the system C compiler (`cc`) on first use into the cache
 * folder, keyed by a hash of the source, and loaded through FFI. Where there is
 * no compiler, or the permissions to run it or to write the cache are missing,
 * the native backend keeps its TypeScript loops; nothing else changes.
 *
 * Permissions: `--allow-ffi`, `--allow-run=cc` and write access to the cache
 * folder (set by {@link setCompiledCacheDir}, else `ADV_CACHE_DIR`, else `.cache`).
 *
 * Each library is checked before it is loaded: beside it lies a record of its
 * SHA-256 (`<library>.sha256`, written after the library is complete), and a
 * library that does not match its record, or has none, is rebuilt instead of
 * loaded, since loading a truncated one kills the process with SIGBUS. Builds
 * go to a temporary name that is renamed into place, so a reader never sees half
 * a library.
 *
 * @module
 */
import { createHash } from "node:crypto";

const SYMBOLS = {
  adv_im2col: { parameters: ["buffer", "buffer", "i32", "i32", "buffer"], result: "void" },
  adv_col2im: { parameters: ["buffer", "buffer", "i32", "i32", "buffer"], result: "void" },
  adv_pin: { parameters: ["buffer"], result: "i32" },
  adv_bn_act_infer: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i32", "f32"],
    result: "void",
  },
  adv_bn_act_infer_grad: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "f32",
    ],
    result: "void",
  },
  adv_standardize: { parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i64"], result: "void" },
  adv_standardize_grad: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "i32", "i64"],
    result: "void",
  },
  adv_pgd_update: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i64", "f32", "f32", "f32", "f32"],
    result: "void",
  },
  adv_avg_pool: { parameters: ["buffer", "buffer", "i32", "buffer", "i32"], result: "void" },
  adv_max_pool: { parameters: ["buffer", "buffer", "i32", "buffer"], result: "void" },
  adv_max_pool_grad: { parameters: ["buffer", "buffer", "buffer", "i32", "buffer"], result: "void" },
  adv_conv_input_grad_narrow: { parameters: ["buffer", "buffer", "buffer", "buffer"], result: "i32" },
  adv_sum_middle: { parameters: ["buffer", "buffer", "i64", "i64", "i64", "f64"], result: "void" },
  adv_relu_step: { parameters: ["buffer", "buffer", "i64", "i32", "f32"], result: "void" },
  adv_adam_update: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i64",
      "f64",
      "f64",
      "f64",
      "f64",
    ],
    result: "void",
  },
  adv_momentum_update: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "i64", "f64", "f64", "f64"],
    result: "void",
  },
  adv_binary: { parameters: ["i32", "buffer", "buffer", "i64", "i64", "buffer", "i32"], result: "void" },
  adv_bn_act_train: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer", "i32", "i32", "f32", "f32"],
    result: "void",
  },
  adv_bn_act_grad: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "f32",
      "f32",
    ],
    result: "void",
  },
} as const;

/** The compiled loops (see lib/backends/native/native_kernels.c for their contracts). */
export interface CompiledKernels {
  /** Shared library path. */
  path: string;
  im2col(x: Float32Array, col: Float32Array, b0: number, nb: number, params: Int32Array): void;
  col2im(col: Float32Array, dx: Float32Array, b0: number, nb: number, params: Int32Array): void;
  /** Batch norm (batch statistics) + leaky ReLU over n rows of C channels; writes y, mean, variance. */
  bnActTrain(
    x: Float32Array,
    y: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    n: number,
    c: number,
    eps: number,
    alpha: number,
  ): void;
  /** Its gradients: writes dx, dgamma, dbeta. */
  bnActGrad(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    n: number,
    c: number,
    eps: number,
    alpha: number,
  ): void;
  /** Inference batch norm (statistics folded into mul, add) + leaky ReLU over n rows of C channels. */
  bnActInfer(
    x: Float32Array,
    y: Float32Array,
    mul: Float32Array,
    add: Float32Array,
    n: number,
    c: number,
    alpha: number,
  ): void;
  /** Its gradients: writes dx, dgamma, dbeta; inv = 1/√(variance + ε). */
  bnActInferGrad(
    dy: Float32Array,
    x: Float32Array,
    mul: Float32Array,
    add: Float32Array,
    mean: Float32Array,
    inv: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    n: number,
    c: number,
    alpha: number,
  ): void;
  /** Per-image standardisation of n images of m values; writes y and each image's mean and 1/std. */
  standardize(x: Float32Array, y: Float32Array, mean: Float32Array, rstd: Float32Array, n: number, m: number): void;
  /** Its gradient with respect to x: writes dx. */
  standardizeGrad(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    n: number,
    m: number,
  ): void;
  /**
   * Average pooling of n NHWC images (params as im2col's; windows count the pixels inside the image only):
   * out = pool(in), or with `grad` out = dx from in = dy.
   */
  avgPool(input: Float32Array, out: Float32Array, n: number, params: Int32Array, grad: boolean): void;
  /**
   * dx of a convolution with few input channels from dy and the HWIO filter w (params as the oneDNN
   * bindings': im2col's, then N OC padBottom padRight); false, computing nothing, where OC is over 1,024 or a
   * kernel side over 64.
   */
  convInputGradNarrow(dy: Float32Array, w: Float32Array, dx: Float32Array, params: Int32Array): boolean;
  /**
   * y[o][j] = scale · Σ_k x[o][k][j] over x of shape [outer, r, inner], each sum in double in order of k
   * (as the TypeScript loop of native.ts's reduce, to the bit).
   */
  sumMiddle(x: Float32Array, y: Float32Array, outer: number, r: number, inner: number, scale: number): void;
  /** Max pooling of n NHWC images (params as im2col's), NaNs as the TypeScript twin in lib/backends/native/_pool.ts. */
  maxPool(x: Float32Array, y: Float32Array, n: number, params: Int32Array): void;
  /** The max-pooling gradient: dx (zeroed here) gets each window's dy at its first maximum in scan order. */
  maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, n: number, params: Int32Array): void;
  /** One Adam step over every value (threaded; in double, as the TypeScript twin): new w, m and v into w2, m2, v2. */
  adamUpdate(
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    w2: Float32Array,
    m2: Float32Array,
    v2: Float32Array,
    step: number,
    beta1: number,
    beta2: number,
    eps: number,
  ): void;
  /** One step of SGD with momentum and L2 decay (threaded; in double): new w and v into w2, v2. */
  momentumUpdate(
    w: Float32Array,
    v: Float32Array,
    g: Float32Array,
    w2: Float32Array,
    v2: Float32Array,
    lr: number,
    momentum: number,
    decay: number,
  ): void;
  /** y = relu(x), or with `step` its gradient step(x, alpha) (1 where x > 0, else alpha), NaN kept; threaded. */
  reluStep(x: Float32Array, y: Float32Array, step: boolean, alpha: number): void;
  /** One L∞ PGD update of n values: y = clip(min(max(x + step·sign(g), x0 − eps), x0 + eps), lo, hi). */
  pgdUpdate(
    x: Float32Array,
    g: Float32Array,
    x0: Float32Array,
    y: Float32Array,
    step: number,
    eps: number,
    lo: number,
    hi: number,
  ): void;
  /**
   * y = a op b where b repeats with period p (p = a.length: same shape); with
   * `swap`, y = b op a. op: 0 add, 1 subtract, 2 multiply, 3 divide.
   */
  binary(op: number, a: Float32Array, b: Float32Array, p: number, y: Float32Array, swap: boolean): void;
  /**
   * Keeps the shared library at `path` loaded until the process ends (true on
   * success): for a library whose threads must not lose their code at exit.
   */
  pin(path: string): boolean;
}

let cached: { ok: true; kernels: CompiledKernels } | { ok: false; reason: string } | undefined;

/** The cache folder given by {@link setCompiledCacheDir}, if any. */
let cacheDirOption: string | undefined;

/** What the loads did to the cache that a user should hear of (a library rebuilt, and why). */
const notes: string[] = [];

/**
 * Sets the cache folder the compiled libraries go to (`<dir>/native`); undefined
 * restores the default, `ADV_CACHE_DIR`, else `.cache`. Takes effect for the
 * libraries not loaded yet (each loads once per process).
 */
export function setCompiledCacheDir(dir: string | undefined): void {
  cacheDirOption = dir;
}

/** What loading the compiled libraries did to the cache so far, one sentence each (`rebuilt …: …`). */
export function compiledCacheNotes(): readonly string[] {
  return notes;
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Compiles (once per source version) and loads the helpers. Never throws;
 * returns why not where they are unavailable. Set `ADV_NO_CC=1` to skip them.
 */
export function loadCompiledKernels(): { ok: true; kernels: CompiledKernels } | { ok: false; reason: string } {
  if (cached) return cached;
  cached = load();
  return cached;
}

function load(): { ok: true; kernels: CompiledKernels } | { ok: false; reason: string } {
  passiveOpenMp();
  // -fno-trapping-math lets the compiler vectorise the loops' selects; OpenMP, where the compiler has it, spreads them over the cores.
  const omp = compile("native_kernels.c", "kernels-omp", ["-fno-trapping-math", "-fopenmp"], ["-ldl"]);
  const built = omp.ok ? omp : compile("native_kernels.c", "kernels", ["-fno-trapping-math"], ["-ldl"]);
  if (!built.ok) {
    const why = omp.ok || omp.reason === built.reason ? built.reason : `${omp.reason}; without OpenMP: ${built.reason}`;
    return { ok: false, reason: why };
  }
  const so = built.path;
  try {
    const lib = Deno.dlopen(so, SYMBOLS);
    return {
      ok: true,
      kernels: {
        path: so,
        im2col: (x, col, b0, nb, p) => lib.symbols.adv_im2col(x, col, b0, nb, p),
        col2im: (col, dx, b0, nb, p) => lib.symbols.adv_col2im(col, dx, b0, nb, p),
        bnActTrain: (...a) => lib.symbols.adv_bn_act_train(...a),
        bnActGrad: (...a) => lib.symbols.adv_bn_act_grad(...a),
        bnActInfer: (...a) => lib.symbols.adv_bn_act_infer(...a),
        bnActInferGrad: (...a) => lib.symbols.adv_bn_act_infer_grad(...a),
        standardize: (x, y, mean, rstd, n, m) => lib.symbols.adv_standardize(x, y, mean, rstd, n, BigInt(m)),
        standardizeGrad: (dy, x, mean, rstd, dx, n, m) =>
          lib.symbols.adv_standardize_grad(dy, x, mean, rstd, dx, n, BigInt(m)),
        avgPool: (input, out, n, params, grad) => lib.symbols.adv_avg_pool(input, out, n, params, grad ? 1 : 0),
        convInputGradNarrow: (dy, w, dx, p) => lib.symbols.adv_conv_input_grad_narrow(dy, w, dx, p) === 0,
        sumMiddle: (x, y, outer, r, inner, scale) =>
          lib.symbols.adv_sum_middle(x, y, BigInt(outer), BigInt(r), BigInt(inner), scale),
        maxPool: (x, y, n, params) => lib.symbols.adv_max_pool(x, y, n, params),
        maxPoolGrad: (x, dy, dx, n, params) => lib.symbols.adv_max_pool_grad(x, dy, dx, n, params),
        adamUpdate: (w, m, v, g, w2, m2, v2, step, beta1, beta2, eps) =>
          lib.symbols.adv_adam_update(w, m, v, g, w2, m2, v2, BigInt(w.length), step, beta1, beta2, eps),
        momentumUpdate: (w, v, g, w2, v2, lr, momentum, decay) =>
          lib.symbols.adv_momentum_update(w, v, g, w2, v2, BigInt(w.length), lr, momentum, decay),
        reluStep: (x, y, step, alpha) => lib.symbols.adv_relu_step(x, y, BigInt(x.length), step ? 1 : 0, alpha),
        pgdUpdate: (x, g, x0, y, step, eps, lo, hi) =>
          lib.symbols.adv_pgd_update(x, g, x0, y, BigInt(x.length), step, eps, lo, hi),
        binary: (op, a, b, p, y, swap) =>
          lib.symbols.adv_binary(op, a, b, BigInt(a.length), BigInt(p), y, swap ? 1 : 0),
        pin: (path) => lib.symbols.adv_pin(new TextEncoder().encode(`${path}\0`)) === 0,
      },
    };
  } catch (e) {
    return { ok: false, reason: `cannot load ${so}: ${(e as Error).message.split("\n")[0]}` };
  }
}

/** The oneDNN convolutions (see lib/backends/native/dnnl_conv.c). */
export interface DnnlConv {
  /** Shared library path. */
  path: string;
  /**
   * direction 0: out = conv(a = x, b = w); 1: out = dx from a = dy, b = w; 2: out = dw from a = x, b = dy.
   * params: H W C OH OW KH KW strideH strideW dilationH dilationW padTop padLeft (as im2col's), then N OC padBottom padRight.
   * Returns 0 on success, else a nonzero code (the caller then computes it another way).
   */
  conv(direction: 0 | 1 | 2, params: Int32Array, a: Float32Array, b: Float32Array, out: Float32Array): number;
}

let cachedDnnl: { ok: true; conv: DnnlConv } | { ok: false; reason: string } | undefined;

/**
 * Compiles (once per source version) and loads the oneDNN convolutions. Never
 * throws; returns why not where they are unavailable (no compiler, no oneDNN
 * headers or library: Debian `libdnnl-dev`). Set `ADV_NO_DNNL=1` to skip them.
 */
export function loadDnnlConv(): { ok: true; conv: DnnlConv } | { ok: false; reason: string } {
  if (cachedDnnl) return cachedDnnl;
  cachedDnnl = (() => {
    if (env("ADV_NO_DNNL")) return { ok: false, reason: "ADV_NO_DNNL is set" };
    passiveOpenMp();
    const built = compile("dnnl_conv.c", "dnnl", [], ["-ldnnl"]);
    if (!built.ok) return built;
    try {
      const lib = Deno.dlopen(
        built.path,
        {
          adv_dnnl_init: { parameters: [], result: "i32" },
          adv_dnnl_conv: { parameters: ["i32", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
        } as const,
      );
      const rc = lib.symbols.adv_dnnl_init();
      if (rc !== 0) return { ok: false, reason: `oneDNN has no CPU engine (code ${rc})` };
      return {
        ok: true,
        conv: { path: built.path, conv: (d, p, a, b, out) => lib.symbols.adv_dnnl_conv(d, p, a, b, out) },
      };
    } catch (e) {
      return { ok: false, reason: `cannot load ${built.path}: ${(e as Error).message.split("\n")[0]}` };
    }
  })();
  return cachedDnnl;
}

/**
 * Makes idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=passive)
 * unless the environment says otherwise; must run before the OpenMP runtime
 * loads. On cores shared with other work, spinning threads made the ResNet's
 * training step 2-3× slower here (PyTorch's too); on idle cores passive costs
 * little.
 */
function passiveOpenMp(): void {
  if (!granted({ name: "env", variable: "OMP_WAIT_POLICY" })) return;
  if (Deno.env.get("OMP_WAIT_POLICY") === undefined) Deno.env.set("OMP_WAIT_POLICY", "passive");
}

function env(name: string): string | undefined {
  return granted({ name: "env", variable: name }) ? Deno.env.get(name) : undefined;
}

const NO_CC = "no C compiler (cc) on the PATH";

/**
 * Compiles `lib/<file>` (with `flags`, linking `libs`) into `<cache>/native/<stem>-<hash>-<os>-<arch>.so` unless
 * that file exists and matches its checksum record; returns its path, or why it could not.
 */
function compile(
  file: string,
  stem: string,
  flags: string[],
  libs: string[] = [],
): { ok: true; path: string } | { ok: false; reason: string } {
  if (env("ADV_NO_CC")) return { ok: false, reason: "ADV_NO_CC is set" };
  if (!granted({ name: "ffi" })) return { ok: false, reason: "no --allow-ffi" };
  if (!granted({ name: "run", command: "cc" })) {
    // `--allow-run=cc` with no cc on the PATH reads as not granted too: say which it is.
    return { ok: false, reason: ccOnPath() === false ? NO_CC : "no --allow-run=cc" };
  }
  const source = new URL(`./${file}`, import.meta.url);
  let text: string;
  try {
    text = Deno.readTextFileSync(source);
  } catch (e) {
    return { ok: false, reason: `cannot read ${source.pathname}: ${(e as Error).message}` };
  }
  const dir = `${cacheDirOption ?? env("ADV_CACHE_DIR") ?? ".cache"}/native`;
  if (!granted({ name: "write", path: dir })) return { ok: false, reason: `no write permission for ${dir}` };
  // -z nodelete: the library (and the OpenMP runtime it pulls in) stays mapped until the process ends, so that
  // unloading it at exit cannot pull the code from under threads still parked in it (a crash at exit otherwise).
  const args = ["-O3", "-march=native", "-fPIC", "-shared", "-Wl,-z,nodelete", ...flags];
  const so = `${dir}/${stem}-${hash(text + args.join(" "))}-${Deno.build.os}-${Deno.build.arch}.so`;
  const stale = checkLibrary(so);
  if (stale === "") return { ok: true, path: so };
  const built = build(so, source.pathname, args, libs);
  if (stale === undefined) return built;
  if (!built.ok) return { ok: false, reason: `${so} ${stale} and cannot be rebuilt: ${built.reason}` };
  notes.push(`rebuilt ${so}: the cached copy ${stale}`);
  return built;
}

/**
 * Whether the library at `so` may be loaded: "" when it matches its checksum record, undefined when there is no
 * library, else what is wrong with it.
 */
function checkLibrary(so: string): string | undefined {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(so);
  } catch {
    return undefined; // not built yet (or unreadable: rebuilding replaces it)
  }
  let record: string;
  try {
    record = Deno.readTextFileSync(`${so}.sha256`).trim();
  } catch {
    return "has no checksum record";
  }
  return sha256(bytes) === record ? "" : `fails its checksum (${bytes.length} bytes)`;
}

/**
 * Compiles `source` into `so` through a temporary file renamed into place, then records the SHA-256 of the
 * result in `<so>.sha256` (also through a rename), so that neither is ever seen half-written.
 */
function build(
  so: string,
  source: string,
  args: string[],
  libs: string[],
): { ok: true; path: string } | { ok: false; reason: string } {
  const dir = so.slice(0, so.lastIndexOf("/"));
  const tmp = `${so}.${Deno.pid}.tmp`;
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (e) {
    return { ok: false, reason: `cannot create ${dir}: ${firstLine(e)}` };
  }
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command("cc", { args: [...args, "-o", tmp, source, ...libs], stdout: "piped", stderr: "piped" })
      .outputSync();
  } catch (e) {
    return { ok: false, reason: e instanceof Deno.errors.NotFound ? NO_CC : `cannot run cc: ${firstLine(e)}` };
  }
  if (!out.success) {
    removeQuietly(tmp);
    const first = new TextDecoder().decode(out.stderr).split("\n").find((l) => /error/.test(l));
    return { ok: false, reason: `cc ${source.slice(source.lastIndexOf("/") + 1)} failed: ${first ?? "unknown error"}` };
  }
  try {
    const sum = sha256(Deno.readFileSync(tmp));
    Deno.renameSync(tmp, so);
    const record = `${so}.sha256.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(record, `${sum}\n`);
    Deno.renameSync(record, `${so}.sha256`);
    return { ok: true, path: so };
  } catch (e) {
    removeQuietly(tmp);
    return { ok: false, reason: `cannot store ${so}: ${firstLine(e)}` };
  }
}

/**
 * Whether `cc` is in a folder of the PATH: undefined where that cannot be told without a permission prompt (no
 * `--allow-env=PATH`, or a folder this process may not read).
 */
function ccOnPath(): boolean | undefined {
  const path = env("PATH");
  if (path === undefined) return undefined;
  for (const folder of path.split(":")) {
    if (!folder) continue;
    const cc = `${folder}/cc`;
    if (!granted({ name: "read", path: cc })) return undefined;
    try {
      if (Deno.statSync(cc).isFile) return true;
    } catch {
      // not in this folder
    }
  }
  return false;
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // already gone
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** SHA-256 of `bytes`, in hex: the checksum record of a compiled library. */
function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** FNV-1a of the source, in hex: names the compiled file. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}
