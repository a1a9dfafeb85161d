/**
 * Optional compiled helpers for the native backend: `lib/native_kernels.c` is
 * compiled with the system C compiler (`cc`) on first use into the cache
 * folder, keyed by a hash of the source, and loaded through FFI. Where there is
 * no compiler, or the permissions to run it or to write the cache are missing,
 * the native backend keeps its TypeScript loops; nothing else changes.
 *
 * Permissions: `--allow-ffi`, `--allow-run=cc` and write access to the cache
 * folder (default `.cache`, or `ADV_CACHE_DIR`).
 *
 * @module
 */

const SYMBOLS = {
  adv_im2col: { parameters: ["buffer", "buffer", "i32", "i32", "buffer"], result: "void" },
  adv_col2im: { parameters: ["buffer", "buffer", "i32", "i32", "buffer"], result: "void" },
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

/** The compiled loops (see lib/native_kernels.c for their contracts). */
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
}

let cached: { ok: true; kernels: CompiledKernels } | { ok: false; reason: string } | undefined;

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
  const env = (name: string) => granted({ name: "env", variable: name }) ? Deno.env.get(name) : undefined;
  if (env("ADV_NO_CC")) return { ok: false, reason: "ADV_NO_CC is set" };
  if (!granted({ name: "ffi" })) return { ok: false, reason: "no --allow-ffi" };
  if (!granted({ name: "run", command: "cc" })) return { ok: false, reason: "no --allow-run=cc" };
  const source = new URL("./native_kernels.c", import.meta.url);
  let text: string;
  try {
    text = Deno.readTextFileSync(source);
  } catch (e) {
    return { ok: false, reason: `cannot read ${source.pathname}: ${(e as Error).message}` };
  }
  const dir = `${env("ADV_CACHE_DIR") ?? ".cache"}/native`;
  if (!granted({ name: "write", path: dir })) return { ok: false, reason: `no write permission for ${dir}` };
  const so = `${dir}/kernels-${hash(text)}-${Deno.build.os}-${Deno.build.arch}.so`;
  try {
    Deno.statSync(so);
  } catch {
    try {
      Deno.mkdirSync(dir, { recursive: true });
      const tmp = `${so}.${Deno.pid}.tmp`;
      const out = new Deno.Command("cc", {
        args: ["-O3", "-march=native", "-fPIC", "-shared", "-o", tmp, source.pathname],
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      if (!out.success) {
        return { ok: false, reason: `cc failed: ${new TextDecoder().decode(out.stderr).split("\n")[0]}` };
      }
      Deno.renameSync(tmp, so);
    } catch (e) {
      return { ok: false, reason: `no C compiler (cc): ${(e as Error).message.split("\n")[0]}` };
    }
  }
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
      },
    };
  } catch (e) {
    return { ok: false, reason: `cannot load ${so}: ${(e as Error).message.split("\n")[0]}` };
  }
}

/** FNV-1a of the source, in hex: names the compiled file. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}
