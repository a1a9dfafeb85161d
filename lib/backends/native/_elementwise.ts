/**
 * Element-wise kernels: unary ones (ReLU and its step, Sqrt, Square, Neg, Sign, LeakyRelu), binary
 * arithmetic on same-shape and periodic broadcasts, and Select.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel } from "./_backend.ts";
import { allFloat, bits, cpu, output, reluBits, values } from "./_helpers.ts";
import { compiled } from "./_libs.ts";

type Unary = (x: Float32Array, y: Float32Array, attrs: Record<string, unknown>) => void;

/** A float32 unary kernel with its own loop (falls back to cpu for other dtypes). */
export function unary(name: string, loop: Unary): Kernel {
  return (args) => {
    const { x } = args.inputs as { x: Info };
    if (!allFloat(x)) return cpu(name, args);
    const xv = values(args.backend, x);
    const y = args.backend.alloc(xv.length);
    loop(xv, y, args.attrs);
    return output(args.backend, x.shape, y);
  };
}

/** The loops of the unary kernels, by TF.js kernel name. */
export const UNARY: Record<string, Unary> = {
  Relu: (x, y) => compiled ? compiled.reluStep(x, y, false, 0) : reluBits(bits(x), bits(y)),
  Step: (x, y, attrs) => {
    if (compiled) return compiled.reluStep(x, y, true, (attrs.alpha as number | undefined) ?? 0);
    // Bitwise select (no data-dependent branch): 1 where x > 0, alpha where
    // x <= 0, NaN stays NaN.
    const xi = bits(x), yi = bits(y);
    const one = bits(Float32Array.of(1))[0];
    const alpha = bits(Float32Array.of((attrs.alpha as number | undefined) ?? 0))[0];
    const diff = one ^ alpha;
    for (let i = 0; i < xi.length; i++) {
      const v = xi[i];
      const nan = (0x7f800000 - (v & 0x7fffffff)) >> 31;
      const notPositive = (v | ((v - 1) | 0)) >>> 31;
      const out = one ^ (diff & -notPositive);
      yi[i] = (out & ~nan) | (v & nan);
    }
  },
  Sqrt: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.sqrt(x[i]);
  },
  Square: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = x[i] * x[i];
  },
  Neg: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = -x[i];
  },
  Sign: (x, y) => { // as cpu's: NaN and ±0 give 0
    for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? 1 : x[i] < 0 ? -1 : 0;
  },
};

/**
 * How `b` broadcasts against `a`: "same" shape, or `b` repeats with period
 * `size(b)` along the flat `a` (b's shape, less leading 1s, is a's trailing
 * dims: scalars, biases), or the same with the roles swapped; null otherwise.
 */
export function periodic(a: number[], b: number[]): "same" | "b" | "a" | null {
  const strip = (s: number[]) => {
    let i = 0;
    while (i < s.length && s[i] === 1) i++;
    return s.slice(i);
  };
  if (a.length === b.length && a.every((d, i) => d === b[i])) return "same";
  const suffix = (big: number[], small: number[]) => {
    const t = strip(small);
    if (t.length > big.length || small.length > big.length) return false;
    const off = big.length - t.length;
    return t.every((d, i) => d === big[off + i]);
  };
  if (suffix(a, b)) return "b";
  if (suffix(b, a)) return "a";
  return null;
}

/**
 * y = a ⊙ b where `b` repeats with period `p` (p = a.length: same shape). One
 * loop per operation, so each stays monomorphic for the JIT.
 */
type Periodic = (a: Float32Array, b: Float32Array, p: number, y: Float32Array) => void;

/** The periodic loops of the binary arithmetic kernels, by TF.js kernel name. */
export const BINARY: Record<string, { ab: Periodic; ba: Periodic }> = {
  Add: {
    ab: (a, b, p, y) => {
      if (p === 1) { for (let i = 0, s = b[0]; i < a.length; i++) y[i] = a[i] + s; }
      else for (let i = 0; i < a.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[i + j] + b[j];
    },
    ba: (b, a, p, y) => {
      if (p === 1) { for (let i = 0, s = a[0]; i < b.length; i++) y[i] = s + b[i]; }
      else for (let i = 0; i < b.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[j] + b[i + j];
    },
  },
  Sub: {
    ab: (a, b, p, y) => {
      if (p === 1) { for (let i = 0, s = b[0]; i < a.length; i++) y[i] = a[i] - s; }
      else for (let i = 0; i < a.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[i + j] - b[j];
    },
    ba: (b, a, p, y) => {
      if (p === 1) { for (let i = 0, s = a[0]; i < b.length; i++) y[i] = s - b[i]; }
      else for (let i = 0; i < b.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[j] - b[i + j];
    },
  },
  Multiply: {
    ab: (a, b, p, y) => {
      if (p === 1) { for (let i = 0, s = b[0]; i < a.length; i++) y[i] = a[i] * s; }
      else for (let i = 0; i < a.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[i + j] * b[j];
    },
    ba: (b, a, p, y) => {
      if (p === 1) { for (let i = 0, s = a[0]; i < b.length; i++) y[i] = s * b[i]; }
      else for (let i = 0; i < b.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[j] * b[i + j];
    },
  },
  RealDiv: {
    ab: (a, b, p, y) => {
      if (p === 1) { for (let i = 0, s = b[0]; i < a.length; i++) y[i] = a[i] / s; }
      else for (let i = 0; i < a.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[i + j] / b[j];
    },
    ba: (b, a, p, y) => {
      if (p === 1) { for (let i = 0, s = a[0]; i < b.length; i++) y[i] = s / b[i]; }
      else for (let i = 0; i < b.length; i += p) for (let j = 0; j < p; j++) y[i + j] = a[j] / b[i + j];
    },
  },
};

/** Operation codes of the compiled binary loop (lib/backends/native/native_kernels.c). */
const BINARY_OP: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3 };

/** Outputs at least this long go through the compiled loop (threads pay off); shorter ones stay in JS. */
export const COMPILED_BINARY_MIN = 1 << 15;

/** A float32 binary kernel for same-shape and periodic broadcasts (cpu otherwise). */
export function binary(name: string, loops: { ab: Periodic; ba: Periodic }): Kernel {
  const op = BINARY_OP[name];
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!allFloat(a, b)) return cpu(name, args);
    const how = periodic(a.shape, b.shape);
    if (how === null) return cpu(name, args);
    const av = values(args.backend, a), bv = values(args.backend, b);
    if (how === "a") {
      const y = args.backend.alloc(bv.length);
      if (compiled && bv.length >= COMPILED_BINARY_MIN && av.length > 0) {
        compiled.binary(op, bv, av, av.length, y, true);
      } else if (av.length > 0) loops.ba(bv, av, av.length, y);
      return output(args.backend, b.shape, y);
    }
    const y = args.backend.alloc(av.length);
    if (compiled && av.length >= COMPILED_BINARY_MIN && bv.length > 0) compiled.binary(op, av, bv, bv.length, y, false);
    else if (bv.length > 0) loops.ab(av, bv, bv.length, y);
    return output(args.backend, a.shape, y);
  };
}

/** where(condition, a, b) with all three of one shape (cpu otherwise). */
export const select: Kernel = (args) => {
  const { condition, t, e } = args.inputs as { condition: Info; t: Info; e: Info };
  const same = tf.util.arraysEqual;
  if (!allFloat(t, e) || !same(condition.shape, t.shape) || !same(t.shape, e.shape)) return cpu("Select", args);
  const c = args.backend.data.get(condition.dataId).values as Uint8Array;
  const tv = values(args.backend, t), ev = values(args.backend, e);
  const y = args.backend.alloc(tv.length);
  for (let i = 0; i < y.length; i++) y[i] = c[i] ? tv[i] : ev[i];
  return output(args.backend, t.shape, y);
};

/** LeakyRelu: y = x for x ≥ 0, αx below (α defaults to 0.2). */
export const leakyRelu: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  if (!allFloat(x)) return cpu("LeakyRelu", args);
  const alpha = (args.attrs.alpha as number | undefined) ?? 0.2;
  const xv = values(args.backend, x);
  const y = args.backend.alloc(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i];
    y[i] = v < 0 ? v * alpha : v;
  }
  return output(args.backend, x.shape, y);
};
