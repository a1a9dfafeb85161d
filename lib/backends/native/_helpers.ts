/**
 * Small helpers every native kernel uses: typed-array views of tensors, the fall-back to the `cpu` kernels,
 * branch-free float bit tricks and a reusable scratch buffer.
 *
 * @module
 */
import { type Info, type Kernel, type KernelArgs, type NativeBackend } from "./_backend.ts";

/**
 * The float32 data of a tensor of this backend: no copy when it is stored as a Float32Array, else a float32
 * copy. A float32 tensor is not always stored as one: the cpu backend's Cast to float32 from bool or int32 keeps
 * the input's data (a Uint8Array, an Int32Array) and only relabels its dtype, so `x.mul(mask.cast("float32"))`
 * (dropout) hands a kernel one byte per value. The JS loops read such arrays right, but the compiled loops, the
 * BLAS and oneDNN read their bytes as floats: garbage, and, for a Uint8Array, reads past its end.
 */
export function values(backend: NativeBackend, t: Info): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

/** A float32 tensor of this backend over `vals` (no copy). */
export function output(backend: NativeBackend, shape: number[], vals: Float32Array): Info {
  return backend.makeTensorInfo(shape, "float32", vals);
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Whether every given tensor is float32 (undefined ones count as float32). */
export function allFloat(...ts: (Info | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

/** The IEEE-754 bits of a float32 array (same memory). */
export function bits(x: Float32Array): Int32Array {
  return new Int32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * y = max(x, 0) on the bits: clears every value whose sign bit is set, except
 * NaNs. Branch-free, so ~4x faster than a compare on data of random sign.
 * `x` and `y` may be the same array.
 */
export function reluBits(x: Int32Array, y: Int32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const nan = (0x7f800000 - (v & 0x7fffffff)) >> 31;
    y[i] = v & ~((v >> 31) & ~nan);
  }
}

/**
 * A float's bits as an int32 that orders like the float (for non-NaN values),
 * so that Math.max on int32, which compiles to a branch-free cmov, can pool.
 * The map is its own inverse.
 */
export function orderKey(v: number): number {
  return v ^ ((v >> 31) & 0x7fffffff);
}

/** orderKey(−∞): the starting point of a max. NaNs with the sign bit set order below it. */
export const KEY_NEG_INF = orderKey(0xff800000 | 0);

/** The `cpu` backend's kernel functions by name, filled when the backend registers. */
export const cpuKernels = new Map<string, Kernel>();

/** Runs the `cpu` kernel `name` on our backend (it is a MathBackendCPU). */
export function cpu(name: string, args: KernelArgs): Info | Info[] {
  const k = cpuKernels.get(name);
  if (!k) throw new Error(`native backend: no cpu kernel ${name} to fall back on`);
  return k(args);
}

/** A scratch buffer reused across calls (kernels run one at a time). */
let scratch = new Float32Array(0);
/** The scratch buffer, grown to at least `n` floats. */
export function scratchOf(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(Math.max(n, scratch.length * 1.5) | 0);
  return scratch;
}

/** Floats of im2col rows processed per sgemm call: big enough for BLAS, small enough for cache. */
export const COL_CHUNK = 1 << 21;
