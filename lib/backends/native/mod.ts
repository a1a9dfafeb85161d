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
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { loadBlas, type Sgemm } from "./_blas.ts";
import { type CompiledKernels, type DnnlConv, loadCompiledKernels, loadDnnlConv } from "./_cc.ts";
import { tf } from "../../core/tf.ts";

/** Name the backend is registered under. */
export const NATIVE_BACKEND = "native";

/** Arrays below this many bytes are left to the JS heap. */
const POOL_MIN_BYTES = 1 << 16;
/**
 * At most this many bytes of freed outputs are kept for reuse. A CIFAR ResNet training step at batch 128
 * frees more than 256 MB: with that cap, allocating fresh arrays took 4% of its time in a CPU profile and
 * GC 2% (under 1% with this one), for a resident size that stays near 1.1 GB either way.
 */
const POOL_MAX_BYTES = 1024 << 20;

/**
 * The `cpu` backend, with the one-time "install tfjs-node" notice silenced and
 * a pool that recycles the large output arrays of our own kernels. Fresh
 * multi-megabyte arrays cost page faults and GC pressure on every op (Adam's
 * update alone allocates ~100 MB a step); a freed array is reused only when
 * no live tensor views its buffer and it never escaped through
 * `dataSync()`/`data()` (whose caller may still hold it).
 */
class NativeBackend extends MathBackendCPU {
  private readonly pool = new Map<number, Float32Array[]>();
  private pooledBytes = 0;
  /** Buffers allocated by {@link alloc} that have not escaped to a reader. */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  /** Live tensor-data entries per (large) buffer, views included. */
  private readonly users = new Map<ArrayBufferLike, number>();

  constructor() {
    super();
    Reflect.set(this, "firstUse", false);
  }

  /** A float32 array of `n` elements for a kernel output; NOT zeroed when recycled. */
  alloc(n: number): Float32Array {
    const free = this.pool.get(n);
    const reused = free?.pop();
    if (reused) {
      this.pooledBytes -= reused.byteLength;
      return reused;
    }
    const fresh = new Float32Array(n);
    if (fresh.byteLength >= POOL_MIN_BYTES) this.ours.add(fresh.buffer);
    return fresh;
  }

  private track(values: unknown): void {
    if (!ArrayBuffer.isView(values) || values.byteLength < POOL_MIN_BYTES) return;
    this.users.set(values.buffer, (this.users.get(values.buffer) ?? 0) + 1);
  }

  private release(values: unknown): void {
    if (!ArrayBuffer.isView(values) || values.byteLength < POOL_MIN_BYTES) return;
    const buf = values.buffer;
    const left = (this.users.get(buf) ?? 1) - 1;
    if (left > 0) {
      this.users.set(buf, left);
      return;
    }
    this.users.delete(buf);
    if (
      !this.ours.has(buf) || !(values instanceof Float32Array) || values.byteOffset !== 0 ||
      values.byteLength !== buf.byteLength || this.pooledBytes + buf.byteLength > POOL_MAX_BYTES
    ) {
      return;
    }
    const free = this.pool.get(values.length);
    if (free) free.push(values);
    else this.pool.set(values.length, [values]);
    this.pooledBytes += values.byteLength;
  }

  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType) {
    const id = super.write(values, shape, dtype);
    this.track(values);
    return id;
  }

  override move(
    dataId: tf.DataId,
    values: tf.backend_util.BackendValues,
    shape: number[],
    dtype: tf.DataType,
    refCount: number,
  ): void {
    if (this.data.has(dataId)) this.release(this.data.get(dataId).values);
    super.move(dataId, values, shape, dtype, refCount);
    this.track(values);
  }

  override disposeData(dataId: tf.DataId, force?: boolean): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const done = super.disposeData(dataId, force);
    if (values !== undefined && !this.data.has(dataId)) this.release(values);
    return done;
  }

  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    // The caller may keep the array after disposing the tensor: never recycle it.
    const values = this.data.get(dataId)?.values;
    if (ArrayBuffer.isView(values)) this.ours.delete(values.buffer);
    return super.readSync(dataId);
  }

  override dispose(): void {
    this.pool.clear();
    this.pooledBytes = 0;
    super.dispose();
  }
}

type Info = tf.TensorInfo;
interface KernelArgs {
  inputs: Record<string, Info | undefined>;
  backend: NativeBackend;
  attrs: Record<string, unknown>;
}
type Kernel = (args: KernelArgs) => Info | Info[];

let sgemm: Sgemm;

// ---------------------------------------------------------------- helpers

function values(backend: NativeBackend, t: Info): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

function output(backend: NativeBackend, shape: number[], vals: Float32Array): Info {
  return backend.makeTensorInfo(shape, "float32", vals);
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function allFloat(...ts: (Info | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

/** The IEEE-754 bits of a float32 array (same memory). */
function bits(x: Float32Array): Int32Array {
  return new Int32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * y = max(x, 0) on the bits: clears every value whose sign bit is set, except
 * NaNs. Branch-free, so ~4x faster than a compare on data of random sign.
 * `x` and `y` may be the same array.
 */
function reluBits(x: Int32Array, y: Int32Array): void {
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
function orderKey(v: number): number {
  return v ^ ((v >> 31) & 0x7fffffff);
}

/** orderKey(−∞): the starting point of a max. NaNs with the sign bit set order below it. */
const KEY_NEG_INF = orderKey(0xff800000 | 0);

const cpuKernels = new Map<string, Kernel>();

/** Runs the `cpu` kernel `name` on our backend (it is a MathBackendCPU). */
function cpu(name: string, args: KernelArgs): Info | Info[] {
  const k = cpuKernels.get(name);
  if (!k) throw new Error(`native backend: no cpu kernel ${name} to fall back on`);
  return k(args);
}

/** A scratch buffer reused across calls (kernels run one at a time). */
let scratch = new Float32Array(0);
function scratchOf(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(Math.max(n, scratch.length * 1.5) | 0);
  return scratch;
}

/** Floats of im2col rows processed per sgemm call: big enough for BLAS, small enough for cache. */
const COL_CHUNK = 1 << 21;

// ------------------------------------------------------- epilogue: bias + act

type Activation = "linear" | "relu" | "relu6" | "leakyrelu" | "elu" | "sigmoid" | "prelu";

/** Whether `bias` (or prelu weights) can be applied per last-axis channel or as a scalar. */
function perChannel(t: Info | undefined, channels: number): boolean {
  if (t === undefined) return true;
  const n = sizeOf(t.shape);
  if (n === 1) return true;
  if (n !== channels || t.shape.length === 0) return false;
  return t.shape[t.shape.length - 1] === channels;
}

function epilogueSupported(
  bias: Info | undefined,
  prelu: Info | undefined,
  activation: string | undefined,
  channels: number,
): boolean {
  if (!allFloat(bias, prelu)) return false;
  if (!perChannel(bias, channels)) return false;
  switch (activation ?? "linear") {
    case "linear":
    case "relu":
    case "relu6":
    case "leakyrelu":
    case "elu":
    case "sigmoid":
      return true;
    case "prelu":
      return prelu !== undefined && perChannel(prelu, channels);
    default:
      return false;
  }
}

/** y += bias (per channel or scalar), then the activation, in place. */
function epilogue(
  backend: NativeBackend,
  y: Float32Array,
  channels: number,
  bias: Info | undefined,
  activation: string | undefined,
  leakyAlpha: number,
  prelu: Info | undefined,
): void {
  const n = y.length;
  if (bias) {
    const b = values(backend, bias);
    if (b.length === 1) {
      const v = b[0];
      for (let i = 0; i < n; i++) y[i] += v;
    } else {
      for (let i = 0; i < n; i += channels) {
        for (let c = 0; c < channels; c++) y[i + c] += b[c];
      }
    }
  }
  switch ((activation ?? "linear") as Activation) {
    case "linear":
      return;
    case "relu":
      reluBits(bits(y), bits(y));
      return;
    case "relu6":
      for (let i = 0; i < n; i++) y[i] = y[i] < 0 ? 0 : y[i] > 6 ? 6 : y[i];
      return;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (y[i] < 0) y[i] *= leakyAlpha;
      return;
    case "elu":
      for (let i = 0; i < n; i++) if (y[i] < 0) y[i] = Math.exp(y[i]) - 1;
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-y[i]));
      return;
    case "prelu": {
      const a = values(backend, prelu as Info);
      if (a.length === 1) {
        const v = a[0];
        for (let i = 0; i < n; i++) if (y[i] < 0) y[i] *= v;
      } else {
        for (let i = 0; i < n; i += channels) {
          for (let c = 0; c < channels; c++) if (y[i + c] < 0) y[i + c] *= a[c];
        }
      }
      return;
    }
  }
}

// ------------------------------------------------------------ convolutions

type ConvInfo = tf.backend_util.Conv2DInfo;

/** Runs at least this long are copied with TypedArray.set (memcpy) rather than a loop. */
const MEMCPY_MIN = 32;

/** Writes the im2col rows of images [b0, b0+nb) of NHWC `x` into `col` ([nb·OH·OW, KH·KW·C]). */
function im2col(x: Float32Array, ci: ConvInfo, b0: number, nb: number, col: Float32Array): void {
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const KH = ci.filterHeight, KW = ci.filterWidth;
  const sh = ci.strideHeight, sw = ci.strideWidth;
  const dh = ci.dilationHeight, dw = ci.dilationWidth;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const rowLen = KW * C;
  let p = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - pt;
      for (let ow = 0; ow < OW; ow++) {
        const iw0 = ow * sw - pl;
        const inside = dw === 1 && iw0 >= 0 && iw0 + KW <= W;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ih0 + kh * dh;
          if (ih < 0 || ih >= H) {
            col.fill(0, p, p + rowLen);
            p += rowLen;
            continue;
          }
          const xr = xb + ih * W * C;
          if (inside) {
            let s = xr + iw0 * C;
            if (rowLen >= MEMCPY_MIN) {
              col.set(x.subarray(s, s + rowLen), p);
              p += rowLen;
            } else {
              const end = p + rowLen;
              while (p < end) col[p++] = x[s++];
            }
            continue;
          }
          for (let kw = 0; kw < KW; kw++) {
            const iw = iw0 + kw * dw;
            if (iw < 0 || iw >= W) {
              for (let c = 0; c < C; c++) col[p++] = 0;
            } else if (C >= MEMCPY_MIN) {
              const s = xr + iw * C;
              col.set(x.subarray(s, s + C), p);
              p += C;
            } else {
              let s = xr + iw * C;
              for (let c = 0; c < C; c++) col[p++] = x[s++];
            }
          }
        }
      }
    }
  }
}

/** Adds the im2col rows in `col` back into images [b0, b0+nb) of NHWC `dx` (the adjoint of im2col). */
function col2im(col: Float32Array, ci: ConvInfo, b0: number, nb: number, dx: Float32Array): void {
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const KH = ci.filterHeight, KW = ci.filterWidth;
  const sh = ci.strideHeight, sw = ci.strideWidth;
  const dh = ci.dilationHeight, dw = ci.dilationWidth;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const rowLen = KW * C;
  let p = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - pt;
      for (let ow = 0; ow < OW; ow++) {
        const iw0 = ow * sw - pl;
        const inside = dw === 1 && iw0 >= 0 && iw0 + KW <= W;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ih0 + kh * dh;
          if (ih < 0 || ih >= H) {
            p += rowLen;
            continue;
          }
          const xr = xb + ih * W * C;
          if (inside) {
            let s = xr + iw0 * C;
            const end = p + rowLen;
            while (p < end) dx[s++] += col[p++];
            continue;
          }
          for (let kw = 0; kw < KW; kw++) {
            const iw = iw0 + kw * dw;
            if (iw < 0 || iw >= W) {
              p += C;
            } else {
              let s = xr + iw * C;
              for (let c = 0; c < C; c++) dx[s++] += col[p++];
            }
          }
        }
      }
    }
  }
}

/** The compiled loops of lib/backends/native/native_kernels.c, when a C compiler was found (see lib/backends/native/_cc.ts). */
let compiled: CompiledKernels | undefined;

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

let dnnl: DnnlConv | undefined;

/** Why the oneDNN convolutions are not in use ("" when they are). */
export let dnnlReason = "not loaded";

/**
 * Computes convolutions with oneDNN (true) where it loads, or with im2col and
 * the BLAS (false); returns the previous setting.
 */
export function useDnnl(on: boolean): boolean {
  const before = dnnl !== undefined;
  if (on) {
    const r = loadDnnlConv();
    dnnl = r.ok ? r.conv : undefined;
    dnnlReason = r.ok ? "" : r.reason;
  } else dnnl = undefined;
  return before;
}

/** How many convolutions oneDNN computed, and how many it declined (those then go through im2col and the BLAS). */
export const dnnlCounts = { done: 0, declined: 0 };

/** Runs a convolution direction through oneDNN; false where it is off or declines (then use the BLAS). */
function viaDnnl(direction: 0 | 1 | 2, ci: ConvInfo, a: Float32Array, b: Float32Array, out: Float32Array): boolean {
  if (!dnnl || ci.batchSize === 0) return false;
  const ok = dnnl.conv(direction, fullConvParams(ci), a, b, out) === 0;
  if (ok) dnnlCounts.done++;
  else dnnlCounts.declined++;
  return ok;
}

/** im2col's params, then N OC padBottom padRight: what oneDNN's bindings and the narrow loop read. */
function fullConvParams(ci: ConvInfo): Int32Array {
  return Int32Array.of(...convParams(ci), ci.batchSize, ci.outChannels, ci.padInfo.bottom, ci.padInfo.right);
}

function convParams(ci: ConvInfo): Int32Array {
  return Int32Array.of(
    ci.inHeight,
    ci.inWidth,
    ci.inChannels,
    ci.outHeight,
    ci.outWidth,
    ci.filterHeight,
    ci.filterWidth,
    ci.strideHeight,
    ci.strideWidth,
    ci.dilationHeight,
    ci.dilationWidth,
    ci.padInfo.top,
    ci.padInfo.left,
  );
}

function toCols(x: Float32Array, ci: ConvInfo, b0: number, nb: number, col: Float32Array): void {
  if (compiled) compiled.im2col(x, col, b0, nb, convParams(ci));
  else im2col(x, ci, b0, nb, col);
}

function fromCols(col: Float32Array, ci: ConvInfo, b0: number, nb: number, dx: Float32Array): void {
  if (compiled) compiled.col2im(col, dx, b0, nb, convParams(ci));
  else col2im(col, ci, b0, nb, dx);
}

/** A 1×1 stride-1 unpadded convolution is a plain matrix product on NHWC. */
function isPointwise(ci: ConvInfo): boolean {
  return ci.filterHeight === 1 && ci.filterWidth === 1 && ci.strideHeight === 1 &&
    ci.strideWidth === 1 && ci.padInfo.top === 0 && ci.padInfo.left === 0 &&
    ci.outHeight === ci.inHeight && ci.outWidth === ci.inWidth;
}

/**
 * A first layer's input gradient (MNIST's 1 input channel, CIFAR-10's 3) goes to a compiled loop vectorised
 * over the output channels: oneDNN took 8 ms of a 55 ms model A PGD step on it, the loop 3.4.
 */
const NARROW_CHANNELS = 4;

/** How many input gradients the narrow loop computed. */
export const narrowCounts = { done: 0 };

function imagesPerChunk(ci: ConvInfo): number {
  const perImage = ci.outHeight * ci.outWidth * ci.filterHeight * ci.filterWidth * ci.inChannels;
  return Math.max(1, Math.min(ci.batchSize, Math.floor(COL_CHUNK / Math.max(1, perImage))));
}

/** y[N·OH·OW, Cout] = im2col(x) · w[KH·KW·Cin, Cout]. */
function convForward(backend: NativeBackend, x: Float32Array, w: Float32Array, ci: ConvInfo): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const y = backend.alloc(ci.batchSize * rows * Co);
  if (viaDnnl(0, ci, x, w, y)) return y;
  if (isPointwise(ci)) {
    sgemm(false, false, ci.batchSize * rows, Co, K, 1, x, K, w, Co, 0, y, Co);
    return y;
  }
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    toCols(x, ci, b0, nb, col);
    sgemm(false, false, nb * rows, Co, K, 1, col, K, w, Co, 0, y.subarray(b0 * rows * Co), Co);
  }
  return y;
}

/** dx = col2im(dy · wᵀ). */
function convBackpropInput(
  backend: NativeBackend,
  dy: Float32Array,
  w: Float32Array,
  ci: ConvInfo,
): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const dx = backend.alloc(ci.batchSize * ci.inHeight * ci.inWidth * ci.inChannels);
  if (
    compiled && ci.inChannels <= NARROW_CHANNELS &&
    compiled.convInputGradNarrow(dy, w, dx, fullConvParams(ci))
  ) {
    narrowCounts.done++;
    return dx;
  }
  if (viaDnnl(1, ci, dy, w, dx)) return dx;
  if (isPointwise(ci)) {
    sgemm(false, true, ci.batchSize * rows, K, Co, 1, dy, Co, w, Co, 0, dx, K);
    return dx;
  }
  dx.fill(0);
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    sgemm(false, true, nb * rows, K, Co, 1, dy.subarray(b0 * rows * Co), Co, w, Co, 0, col, K);
    fromCols(col, ci, b0, nb, dx);
  }
  return dx;
}

/** dw[KH·KW·Cin, Cout] = im2col(x)ᵀ · dy. */
function convBackpropFilter(
  backend: NativeBackend,
  x: Float32Array,
  dy: Float32Array,
  ci: ConvInfo,
): Float32Array {
  const rows = ci.outHeight * ci.outWidth;
  const K = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const Co = ci.outChannels;
  const dw = backend.alloc(K * Co);
  if (ci.batchSize * rows === 0) return dw.fill(0);
  if (viaDnnl(2, ci, x, dy, dw)) return dw;
  if (isPointwise(ci)) {
    sgemm(true, false, K, Co, ci.batchSize * rows, 1, x, K, dy, Co, 0, dw, Co);
    return dw;
  }
  const chunk = imagesPerChunk(ci);
  const col = scratchOf(chunk * rows * K);
  for (let b0 = 0; b0 < ci.batchSize; b0 += chunk) {
    const nb = Math.min(chunk, ci.batchSize - b0);
    toCols(x, ci, b0, nb, col);
    const beta = b0 === 0 ? 0 : 1;
    sgemm(true, false, K, Co, nb * rows, 1, col, K, dy.subarray(b0 * rows * Co), Co, beta, dw, Co);
  }
  return dw;
}

type Pad = "same" | "valid" | number | tf.backend_util.ExplicitPadding;
type Rounding = "floor" | "round" | "ceil" | undefined;
type Shape4 = [number, number, number, number];

function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: Record<string, unknown>,
  dilations: number | [number, number],
): ConvInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as Shape4,
    filterShape as Shape4,
    attrs.strides as number | [number, number],
    dilations,
    attrs.pad as Pad,
    attrs.dimRoundingMode as Rounding,
    false,
    "channelsLast",
  );
}

const conv2D: Kernel = (args) => {
  const { x, filter } = args.inputs as { x: Info; filter: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(x, filter)) return cpu("Conv2D", args);
  const ci = convInfoOf(x.shape, filter.shape, attrs, attrs.dilations as number | [number, number]);
  const y = convForward(backend, values(backend, x), values(backend, filter), ci);
  return output(backend, ci.outShape, y);
};

const fusedConv2D: Kernel = (args) => {
  const { x, filter, bias, preluActivationWeights } = args.inputs;
  const { attrs, backend } = args;
  const channels = (filter as Info).shape[3];
  if (
    attrs.dataFormat === "NCHW" || !allFloat(x, filter) ||
    !epilogueSupported(bias, preluActivationWeights, attrs.activation as string, channels)
  ) {
    return cpu("FusedConv2D", args);
  }
  const xi = x as Info, fi = filter as Info;
  const ci = convInfoOf(xi.shape, fi.shape, attrs, attrs.dilations as number | [number, number]);
  const y = convForward(backend, values(backend, xi), values(backend, fi), ci);
  const alpha = (attrs.leakyreluAlpha as number | undefined) ?? 0.2;
  epilogue(backend, y, channels, bias, attrs.activation as string, alpha, preluActivationWeights);
  return output(backend, ci.outShape, y);
};

const conv2DBackpropInput: Kernel = (args) => {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(dy, filter)) {
    return cpu("Conv2DBackpropInput", args);
  }
  const inShape = attrs.inputShape as number[];
  const ci = convInfoOf(inShape, filter.shape, attrs, 1);
  const dx = convBackpropInput(backend, values(backend, dy), values(backend, filter), ci);
  return output(backend, ci.inShape, dx);
};

const conv2DBackpropFilter: Kernel = (args) => {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const { attrs, backend } = args;
  if (attrs.dataFormat === "NCHW" || !allFloat(x, dy)) {
    return cpu("Conv2DBackpropFilter", args);
  }
  const filterShape = attrs.filterShape as number[];
  const ci = convInfoOf(x.shape, filterShape, attrs, 1);
  const dw = convBackpropFilter(backend, values(backend, x), values(backend, dy), ci);
  return output(backend, filterShape, dw);
};

// ---------------------------------------------------------- matrix products

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

const batchMatMul: Kernel = (args) => {
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { attrs, backend } = args;
  if (!allFloat(a, b)) return cpu("BatchMatMul", args);
  const r = matmul(backend, a, b, !!attrs.transposeA, !!attrs.transposeB);
  return output(backend, r.shape, r.y);
};

const fusedMatMul: Kernel = (args) => {
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

// ------------------------------------------------------------------ pooling

function poolInfo(x: Info, attrs: Record<string, unknown>): ConvInfo {
  return tf.backend_util.computePool2DInfo(
    x.shape as Shape4,
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as Rounding,
  );
}

/**
 * Max pooling on order keys (see {@link orderKey}): branch-free. Ignores NaNs
 * with the sign bit set, as the cpu kernel ignores all NaNs; a NaN with the
 * sign bit clear wins the window instead (it propagates).
 */
const maxPool: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const { attrs, backend } = args;
  if (!allFloat(x) || x.shape.length !== 4) return cpu("MaxPool", args);
  const ci = poolInfo(x, attrs);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const y = backend.alloc(ci.batchSize * OH * OW * C);
  if (compiled) {
    compiled.maxPool(values(backend, x), y, ci.batchSize, convParams(ci));
    return output(backend, ci.outShape, y);
  }
  const xi = bits(values(backend, x));
  const yi = bits(y).fill(KEY_NEG_INF);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              yi[o + c] = Math.max(yi[o + c], v ^ ((v >> 31) & 0x7fffffff));
            }
          }
        }
        for (let c = 0; c < C; c++) yi[o + c] = orderKey(yi[o + c]);
      }
    }
  }
  return output(backend, ci.outShape, y);
};

/**
 * dx: each window's dy routed to the first maximum in scan order, as the cpu
 * kernel does (ties, e.g. windows of ReLU zeros, go to the top-left one). The
 * maximum is recomputed from `input`; both passes are branch-free.
 */
const maxPoolGrad: Kernel = (args) => {
  const { dy, input } = args.inputs as { dy: Info; input: Info };
  const { attrs, backend } = args;
  if (!allFloat(dy, input) || input.shape.length !== 4) return cpu("MaxPoolGrad", args);
  const ci = poolInfo(input, attrs);
  if (compiled) {
    const dx = backend.alloc(sizeOf(input.shape));
    compiled.maxPoolGrad(values(backend, input), values(backend, dy), dx, ci.batchSize, convParams(ci));
    return output(backend, input.shape, dx);
  }
  const xi = bits(values(backend, input)), dyv = values(backend, dy);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  const dx = backend.alloc(xi.length).fill(0);
  const best = new Int32Array(C);
  const at = new Int32Array(C);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        best.fill(KEY_NEG_INF);
        at.fill(-1);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              best[c] = Math.max(best[c], v ^ ((v >> 31) & 0x7fffffff));
            }
          }
        }
        // Scan backwards so that the first position holding the maximum wins.
        for (let ih = r1 - 1; ih >= r0; ih--) {
          for (let iw = c1 - 1; iw >= c0; iw--) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xi[s + c];
              const d = (v ^ ((v >> 31) & 0x7fffffff)) ^ best[c];
              const equal = ~((d | -d) >> 31);
              at[c] ^= (at[c] ^ (s + c)) & equal;
            }
          }
        }
        for (let c = 0; c < C; c++) if (at[c] >= 0) dx[at[c]] += dyv[o + c];
      }
    }
  }
  return output(backend, input.shape, dx);
};

const avgPool: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const { attrs, backend } = args;
  if (!allFloat(x) || x.shape.length !== 4) return cpu("AvgPool", args);
  const ci = poolInfo(x, attrs);
  const xv = values(backend, x);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  if (compiled) {
    const y = backend.alloc(ci.batchSize * OH * OW * C);
    compiled.avgPool(xv, y, ci.batchSize, convParams(ci), false);
    return output(backend, ci.outShape, y);
  }
  const y = backend.alloc(ci.batchSize * OH * OW * C).fill(0);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) y[o + c] += xv[s + c];
          }
        }
        const inv = 1 / ((r1 - r0) * (c1 - c0));
        for (let c = 0; c < C; c++) y[o + c] *= inv;
      }
    }
  }
  return output(backend, ci.outShape, y);
};

/**
 * The adjoint of {@link avgPool}: each window's dy spread over the pixels it
 * averaged (padding excluded, as in the forward pass and in TensorFlow). The
 * stock cpu kernel divides by the full window size instead, which differs from
 * its own forward pass where a SAME window overhangs the border.
 */
const avgPoolGrad: Kernel = (args) => {
  const { dy, input } = args.inputs as { dy: Info; input: Info };
  const { attrs, backend } = args;
  if (!allFloat(dy, input) || input.shape.length !== 4) return cpu("AvgPoolGrad", args);
  const ci = poolInfo(input, attrs);
  const dyv = values(backend, dy);
  const H = ci.inHeight, W = ci.inWidth, C = ci.inChannels;
  const OH = ci.outHeight, OW = ci.outWidth;
  if (compiled) {
    const dx = backend.alloc(sizeOf(input.shape));
    compiled.avgPool(dyv, dx, ci.batchSize, convParams(ci), true);
    return output(backend, input.shape, dx);
  }
  const dx = backend.alloc(sizeOf(input.shape)).fill(0);
  let o = 0;
  for (let b = 0; b < ci.batchSize; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * ci.strideHeight - ci.padInfo.top;
      const r0 = Math.max(0, ih0), r1 = Math.min(H, ih0 + ci.filterHeight);
      for (let ow = 0; ow < OW; ow++, o += C) {
        const iw0 = ow * ci.strideWidth - ci.padInfo.left;
        const c0 = Math.max(0, iw0), c1 = Math.min(W, iw0 + ci.filterWidth);
        const inv = 1 / ((r1 - r0) * (c1 - c0));
        for (let ih = r0; ih < r1; ih++) {
          for (let iw = c0; iw < c1; iw++) {
            const s = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) dx[s + c] += dyv[o + c] * inv;
          }
        }
      }
    }
  }
  return output(backend, input.shape, dx);
};

// ------------------------------------------------------------- element-wise

type Unary = (x: Float32Array, y: Float32Array, attrs: Record<string, unknown>) => void;

/** A float32 unary kernel with its own loop (falls back to cpu for other dtypes). */
function unary(name: string, loop: Unary): Kernel {
  return (args) => {
    const { x } = args.inputs as { x: Info };
    if (!allFloat(x)) return cpu(name, args);
    const xv = values(args.backend, x);
    const y = args.backend.alloc(xv.length);
    loop(xv, y, args.attrs);
    return output(args.backend, x.shape, y);
  };
}

const UNARY: Record<string, Unary> = {
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
function periodic(a: number[], b: number[]): "same" | "b" | "a" | null {
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

const BINARY: Record<string, { ab: Periodic; ba: Periodic }> = {
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
const COMPILED_BINARY_MIN = 1 << 15;

/** A float32 binary kernel for same-shape and periodic broadcasts (cpu otherwise). */
function binary(name: string, loops: { ab: Periodic; ba: Periodic }): Kernel {
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

// ----------------------------------------------------- general broadcasting

/**
 * Broadcasts `a` and `b` (NumPy rules) to their common shape and merges
 * adjacent dimensions that broadcast the same way, so that most cases become
 * one or two loops: returns the merged output dims and each operand's strides
 * (0 along broadcast dims).
 */
function broadcastPlan(a: number[], b: number[]): { dims: number[]; sa: number[]; sb: number[]; shape: number[] } {
  const rank = Math.max(a.length, b.length);
  const pa = [...Array(rank - a.length).fill(1), ...a], pb = [...Array(rank - b.length).fill(1), ...b];
  const shape = pa.map((d, i) => Math.max(d, pb[i]));
  const dims: number[] = [], ka: boolean[] = [], kb: boolean[] = [];
  for (let i = 0; i < rank; i++) {
    if (shape[i] === 1) continue;
    const ua = pa[i] !== 1, ub = pb[i] !== 1;
    const n = dims.length;
    if (n > 0 && ka[n - 1] === ua && kb[n - 1] === ub) dims[n - 1] *= shape[i];
    else {
      dims.push(shape[i]);
      ka.push(ua);
      kb.push(ub);
    }
  }
  const strides = (k: boolean[]) => {
    const st = new Array(dims.length).fill(0);
    let acc = 1;
    for (let i = dims.length - 1; i >= 0; i--) {
      if (k[i]) {
        st[i] = acc;
        acc *= dims[i];
      }
    }
    return st;
  };
  return { dims, sa: strides(ka), sb: strides(kb), shape };
}

/**
 * One row of a broadcast: y[p + j] = f(av[pa + j·ia], bv[pb + j·ib]) for j < n. The arithmetic ones are
 * written out one per operation so that each stays monomorphic for the JIT (a shared loop calling `f` ran
 * the gradient of the ResNet's global average pooling, [128,1,1,64] × [128,8,8,64], at 25 ns a value).
 */
type Row = (
  av: ArrayLike<number>,
  bv: ArrayLike<number>,
  pa: number,
  ia: number,
  pb: number,
  ib: number,
  y: Float32Array | Uint8Array,
  p: number,
  n: number,
) => void;

/** Applies `row` to every innermost row of a broadcast plan. */
function broadcastApply(
  av: ArrayLike<number>,
  bv: ArrayLike<number>,
  plan: { dims: number[]; sa: number[]; sb: number[] },
  y: Float32Array | Uint8Array,
  row: Row,
): void {
  const { dims, sa, sb } = plan;
  const r = dims.length;
  if (r === 0) {
    row(av, bv, 0, 0, 0, 0, y, 0, 1);
    return;
  }
  const inner = dims[r - 1], ia = sa[r - 1], ib = sb[r - 1];
  const outer = y.length / inner;
  const idx = new Array(r - 1).fill(0);
  let oa = 0, ob = 0;
  for (let o = 0; o < outer; o++) {
    row(av, bv, oa, ia, ob, ib, y, o * inner, inner);
    for (let d = r - 2; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < dims[d]) break;
      oa -= sa[d] * dims[d];
      ob -= sb[d] * dims[d];
      idx[d] = 0;
    }
  }
}

const ARITH: Record<string, Row> = {
  Add: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = av[pa] + bv[pb];
  },
  Sub: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = av[pa] - bv[pb];
  },
  Multiply: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = av[pa] * bv[pb];
  },
  RealDiv: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = av[pa] / bv[pb];
  },
  Maximum: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) {
      const x = av[pa], z = bv[pb];
      y[p + j] = x > z || Number.isNaN(x) ? x : z;
    }
  },
  Minimum: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) {
      const x = av[pa], z = bv[pb];
      y[p + j] = x < z || Number.isNaN(x) ? x : z;
    }
  },
  SquaredDifference: (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = (av[pa] - bv[pb]) * (av[pa] - bv[pb]);
  },
};

/** A row that calls `f` on each pair (the comparisons: rarer, and their output is bool). */
function rowOf(f: (x: number, z: number) => number): Row {
  return (av, bv, pa, ia, pb, ib, y, p, n) => {
    for (let j = 0; j < n; j++, pa += ia, pb += ib) y[p + j] = f(av[pa], bv[pb]);
  };
}

const COMPARE: Record<string, Row> = {
  Greater: rowOf((x, z) => (x > z ? 1 : 0)),
  GreaterEqual: rowOf((x, z) => (x >= z ? 1 : 0)),
  Less: rowOf((x, z) => (x < z ? 1 : 0)),
  LessEqual: rowOf((x, z) => (x <= z ? 1 : 0)),
  Equal: rowOf((x, z) => (x === z ? 1 : 0)),
};

/** A float32 binary kernel under any broadcast: the periodic fast loops where they apply, else a broadcast plan. */
function broadcastBinary(name: string, f: Row, fast?: Kernel): Kernel {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!allFloat(a, b)) return cpu(name, args);
    if (fast && periodic(a.shape, b.shape) !== null) return fast(args);
    const plan = broadcastPlan(a.shape, b.shape);
    const y = args.backend.alloc(sizeOf(plan.shape));
    broadcastApply(values(args.backend, a), values(args.backend, b), plan, y, f);
    return output(args.backend, plan.shape, y);
  };
}

/** A comparison with a bool output under any broadcast. */
function compare(name: string, f: Row): Kernel {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!allFloat(a, b)) return cpu(name, args);
    const plan = broadcastPlan(a.shape, b.shape);
    const y = new Uint8Array(sizeOf(plan.shape));
    broadcastApply(values(args.backend, a), values(args.backend, b), plan, y, f);
    return args.backend.makeTensorInfo(plan.shape, "bool", y);
  };
}

/** where(condition, a, b) with all three of one shape (cpu otherwise). */
const select: Kernel = (args) => {
  const { condition, t, e } = args.inputs as { condition: Info; t: Info; e: Info };
  const same = tf.util.arraysEqual;
  if (!allFloat(t, e) || !same(condition.shape, t.shape) || !same(t.shape, e.shape)) return cpu("Select", args);
  const c = args.backend.data.get(condition.dataId).values as Uint8Array;
  const tv = values(args.backend, t), ev = values(args.backend, e);
  const y = args.backend.alloc(tv.length);
  for (let i = 0; i < y.length; i++) y[i] = c[i] ? tv[i] : ev[i];
  return output(args.backend, t.shape, y);
};

const leakyRelu: Kernel = (args) => {
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

/** Sum or mean over a contiguous block of axes ([outer, reduced, inner]); cpu otherwise. */
function reduce(name: "Sum" | "Mean"): Kernel {
  return (args) => {
    const { x } = args.inputs as { x: Info };
    const { attrs, backend } = args;
    if (!allFloat(x)) return cpu(name, args);
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((p, q) => p - q);
    if (axes.length === 0 || axes.some((ax, i) => i > 0 && ax !== axes[i - 1] + 1)) return cpu(name, args);
    const first = axes[0], last = axes[axes.length - 1];
    const outer = sizeOf(x.shape.slice(0, first));
    const r = sizeOf(x.shape.slice(first, last + 1));
    const inner = sizeOf(x.shape.slice(last + 1));
    const keep = !!attrs.keepDims;
    const shape = keep
      ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !axes.includes(i));
    const xv = values(backend, x);
    const y = backend.alloc(outer * inner);
    const scale = name === "Mean" ? 1 / r : 1;
    if (compiled && xv.length >= COMPILED_BINARY_MIN) {
      compiled.sumMiddle(xv, y, outer, r, inner, scale); // bias gradients: 2.6 of a 57 ms model A training step
      return output(backend, shape, y);
    }
    const acc = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      acc.fill(0);
      const base = o * r * inner;
      if (inner === 1) {
        let s = 0;
        for (let k = base, end = base + r; k < end; k++) s += xv[k];
        acc[0] = s;
      } else {
        for (let k = 0; k < r; k++) {
          const row = base + k * inner;
          for (let j = 0; j < inner; j++) acc[j] += xv[row + j];
        }
      }
      for (let j = 0; j < inner; j++) y[o * inner + j] = acc[j] * scale;
    }
    return output(backend, shape, y);
  };
}

/** Copies rows of the last dimension: y[out index] = x[source index], for Slice, Tile and PadV2. */
function rowCopy(
  x: Float32Array,
  xShape: number[],
  yShape: number[],
  y: Float32Array,
  source: (outIdx: number[], d: number) => number, // source coordinate of output coordinate along dim d, or -1
  lastStart: number,
  lastCount: number,
  lastOut: number,
): void {
  const r = yShape.length;
  const xStrides = new Array(r).fill(1);
  for (let d = r - 2; d >= 0; d--) xStrides[d] = xStrides[d + 1] * xShape[d + 1];
  const rows = sizeOf(yShape.slice(0, r - 1));
  const idx = new Array(r - 1).fill(0);
  for (let row = 0; row < rows; row++) {
    let off = 0, inside = true;
    for (let d = 0; d < r - 1; d++) {
      const s = source(idx, d);
      if (s < 0) {
        inside = false;
        break;
      }
      off += s * xStrides[d];
    }
    if (inside && lastCount > 0) {
      const from = off + lastStart, to = row * yShape[r - 1] + lastOut;
      // short rows (a few channels) by hand: a subarray view per row costs more than the copy
      if (lastCount < 64) { for (let k = 0; k < lastCount; k++) y[to + k] = x[from + k]; }
      else y.set(x.subarray(from, from + lastCount), to);
    }
    for (let d = r - 2; d >= 0; d--) {
      if (++idx[d] < yShape[d]) break;
      idx[d] = 0;
    }
  }
}

const slice: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  if (!allFloat(x) || x.shape.length === 0) return cpu("Slice", args);
  const [begin, size] = tf.slice_util.parseSliceParams(
    x as unknown as tf.Tensor,
    args.attrs.begin as number[],
    args.attrs.size as number[],
  );
  const r = x.shape.length;
  const y = args.backend.alloc(sizeOf(size));
  rowCopy(values(args.backend, x), x.shape, size, y, (i, d) => i[d] + begin[d], begin[r - 1], size[r - 1], 0);
  return output(args.backend, size, y);
};

const padV2: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const paddings = args.attrs.paddings as [number, number][];
  if (!allFloat(x) || x.shape.length === 0) return cpu("PadV2", args);
  const r = x.shape.length;
  const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
  const y = args.backend.alloc(sizeOf(shape));
  y.fill((args.attrs.constantValue as number | undefined) ?? 0);
  rowCopy(
    values(args.backend, x),
    x.shape,
    shape,
    y,
    (i, d) => {
      const s = i[d] - paddings[d][0];
      return s >= 0 && s < x.shape[d] ? s : -1;
    },
    0,
    x.shape[r - 1],
    paddings[r - 1][0],
  );
  return output(args.backend, shape, y);
};

const tile: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const reps = args.attrs.reps as number[];
  if (!allFloat(x) || x.shape.length === 0) return cpu("Tile", args);
  const r = x.shape.length;
  const shape = x.shape.map((d, i) => d * reps[i]);
  const y = args.backend.alloc(sizeOf(shape));
  const last = x.shape[r - 1];
  // Rows of the input's last dim, placed once per repetition along the last dim.
  for (let k = 0; k < reps[r - 1]; k++) {
    rowCopy(values(args.backend, x), x.shape, shape, y, (i, d) => i[d] % x.shape[d], 0, last, k * last);
  }
  return output(args.backend, shape, y);
};

/** Batch norm in inference form: (x − mean)·scale/sqrt(var + ε) + offset, per channel (last axis). */
const fusedBatchNorm: Kernel = (args) => {
  const { x, mean, variance, offset, scale } = args.inputs as Record<string, Info | undefined>;
  const C = x!.shape[x!.shape.length - 1];
  const ok = [mean, variance, offset, scale].every((t) => t === undefined || sizeOf(t.shape) === C);
  if (!allFloat(x, mean, variance, offset, scale) || !ok) return cpu("FusedBatchNorm", args);
  const eps = (args.attrs.varianceEpsilon as number | undefined) ?? 0.001;
  const b = args.backend;
  const mv = values(b, mean!), vv = values(b, variance!);
  const ov = offset ? values(b, offset) : undefined, sv = scale ? values(b, scale) : undefined;
  const mul = new Float32Array(C), add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    mul[c] = (sv ? sv[c] : 1) / Math.sqrt(vv[c] + eps);
    add[c] = (ov ? ov[c] : 0) - mv[c] * mul[c];
  }
  const xv = values(b, x!);
  const y = b.alloc(xv.length);
  for (let i = 0; i < xv.length; i += C) for (let c = 0; c < C; c++) y[i + c] = xv[i + c] * mul[c] + add[c];
  return output(b, x!.shape, y);
};

// ----------------------------------------- fused batch norm + leaky ReLU

/** Channels-last view: C channels, the rest flattened. */
function channels(x: Info): number {
  return x.shape[x.shape.length - 1];
}

/** y = leaky(γ·x̂ + β), x̂ = (x − μ)/√(σ² + ε) with batch statistics; outputs y, μ, σ². */
const bnActTrain: Kernel = (args) => {
  const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
  const { epsilon, alpha } = args.attrs as { epsilon: number; alpha: number };
  const b = args.backend;
  const C = channels(x), xv = values(b, x), gv = values(b, gamma), bv = values(b, beta);
  const n = xv.length / C;
  if (compiled) {
    const y = b.alloc(xv.length), mean = new Float32Array(C), variance = new Float32Array(C);
    compiled.bnActTrain(xv, y, gv, bv, mean, variance, n, C, epsilon, alpha);
    return [output(b, x.shape, y), output(b, [C], mean), output(b, [C], variance)];
  }
  const sum = new Float64Array(C), sq = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const v = xv[i + c];
      sum[c] += v;
      sq[c] += v * v;
    }
  }
  const mean = new Float32Array(C),
    variance = new Float32Array(C),
    mul = new Float32Array(C),
    add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const m = sum[c] / n;
    mean[c] = m;
    variance[c] = Math.max(sq[c] / n - m * m, 0);
    mul[c] = gv[c] / Math.sqrt(variance[c] + epsilon);
    add[c] = bv[c] - m * mul[c];
  }
  const y = b.alloc(xv.length);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      y[i + c] = z < 0 ? z * alpha : z;
    }
  }
  return [output(b, x.shape, y), output(b, [C], mean), output(b, [C], variance)];
};

/** Gradients of {@link bnActTrain} with respect to x, γ and β. */
const bnActGrad: Kernel = (args) => {
  const { dy, x, gamma, beta, mean, variance } = args.inputs as Record<string, Info>;
  const { epsilon, alpha } = args.attrs as { epsilon: number; alpha: number };
  const b = args.backend;
  const C = channels(x), xv = values(b, x), dyv = values(b, dy);
  const gv = values(b, gamma), bv = values(b, beta), mv = values(b, mean), vv = values(b, variance);
  const n = xv.length / C;
  if (compiled) {
    const dx = b.alloc(xv.length), dgamma = new Float32Array(C), dbeta = new Float32Array(C);
    compiled.bnActGrad(dyv, xv, gv, bv, mv, vv, dx, dgamma, dbeta, n, C, epsilon, alpha);
    return [output(b, x.shape, dx), output(b, [C], dgamma), output(b, [C], dbeta)];
  }
  const inv = new Float32Array(C);
  for (let c = 0; c < C; c++) inv[c] = 1 / Math.sqrt(vv[c] + epsilon);
  // dz = dy·leaky'(z); sums of dz and dz·x̂ per channel.
  const dz = b.alloc(xv.length);
  const sdz = new Float64Array(C), sdzx = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const xh = (xv[i + c] - mv[c]) * inv[c];
      const z = gv[c] * xh + bv[c];
      const d = z < 0 ? dyv[i + c] * alpha : dyv[i + c];
      dz[i + c] = d;
      sdz[c] += d;
      sdzx[c] += d * xh;
    }
  }
  const dgamma = new Float32Array(C), dbeta = new Float32Array(C), k = new Float32Array(C);
  const m1 = new Float32Array(C), m2 = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    dgamma[c] = sdzx[c];
    dbeta[c] = sdz[c];
    k[c] = gv[c] * inv[c];
    m1[c] = sdz[c] / n;
    m2[c] = sdzx[c] / n;
  }
  // dx = γ/σ · (dz − mean(dz) − x̂ · mean(dz·x̂)), written over dz.
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const xh = (xv[i + c] - mv[c]) * inv[c];
      dz[i + c] = k[c] * (dz[i + c] - m1[c] - xh * m2[c]);
    }
  }
  return [output(b, x.shape, dz), output(b, [C], dgamma), output(b, [C], dbeta)];
};

/** Per-channel affine map of batch norm with given statistics: z = x·mul + add. */
function bnAffine(b: NativeBackend, args: KernelArgs, C: number): { mul: Float32Array; add: Float32Array } {
  const { mean, variance, gamma, beta } = args.inputs as Record<string, Info>;
  const { epsilon } = args.attrs as { epsilon: number };
  const mv = values(b, mean), vv = values(b, variance), gv = values(b, gamma), bv = values(b, beta);
  const mul = new Float32Array(C), add = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    mul[c] = gv[c] / Math.sqrt(vv[c] + epsilon);
    add[c] = bv[c] - mv[c] * mul[c];
  }
  return { mul, add };
}

/** y = leaky(x·mul + add) with moving statistics (inference). */
const bnActInfer: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const b = args.backend, alpha = args.attrs.alpha as number;
  const C = channels(x), xv = values(b, x);
  const { mul, add } = bnAffine(b, args, C);
  const y = b.alloc(xv.length);
  if (compiled) {
    compiled.bnActInfer(xv, y, mul, add, xv.length / C, C, alpha);
    return output(b, x.shape, y);
  }
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      y[i + c] = z < 0 ? z * alpha : z;
    }
  }
  return output(b, x.shape, y);
};

/** Gradients of {@link bnActInfer} with respect to x, γ and β (the statistics are constants). */
const bnActInferGrad: Kernel = (args) => {
  const { dy, x, mean, variance } = args.inputs as Record<string, Info>;
  const b = args.backend, alpha = args.attrs.alpha as number, epsilon = args.attrs.epsilon as number;
  const C = channels(x), xv = values(b, x), dyv = values(b, dy);
  const mv = values(b, mean), vv = values(b, variance);
  const { mul, add } = bnAffine(b, args, C);
  const inv = new Float32Array(C);
  for (let c = 0; c < C; c++) inv[c] = 1 / Math.sqrt(vv[c] + epsilon);
  const dx = b.alloc(xv.length);
  if (compiled) {
    const dg = new Float32Array(C), db = new Float32Array(C);
    compiled.bnActInferGrad(dyv, xv, mul, add, mv, inv, dx, dg, db, xv.length / C, C, alpha);
    return [output(b, x.shape, dx), output(b, [C], dg), output(b, [C], db)];
  }
  const dgamma = new Float64Array(C), dbeta = new Float64Array(C);
  for (let i = 0; i < xv.length; i += C) {
    for (let c = 0; c < C; c++) {
      const z = xv[i + c] * mul[c] + add[c];
      const d = z < 0 ? dyv[i + c] * alpha : dyv[i + c];
      dx[i + c] = d * mul[c];
      dgamma[c] += d * (xv[i + c] - mv[c]) * inv[c];
      dbeta[c] += d;
    }
  }
  return [output(b, x.shape, dx), output(b, [C], Float32Array.from(dgamma)), output(b, [C], Float32Array.from(dbeta))];
};

/**
 * One Adam update in a single pass: returns the new variable, first and second
 * moments. `step` is the bias-corrected step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ).
 */
const adamUpdate: Kernel = (args) => {
  const { variable, m, v, grad } = args.inputs as Record<string, Info>;
  const { step, beta1, beta2, epsilon } = args.attrs as Record<string, number>;
  const b = args.backend;
  const wv = values(b, variable), mv = values(b, m), vv = values(b, v), gv = values(b, grad);
  const n = wv.length;
  const w2 = b.alloc(n), m2 = b.alloc(n), v2 = b.alloc(n);
  if (compiled) {
    compiled.adamUpdate(wv, mv, vv, gv, w2, m2, v2, step, beta1, beta2, epsilon);
  } else {
    const c1 = 1 - beta1, c2 = 1 - beta2;
    for (let i = 0; i < n; i++) {
      const g = gv[i];
      const mi = beta1 * mv[i] + c1 * g;
      const vi = beta2 * vv[i] + c2 * g * g;
      m2[i] = mi;
      v2[i] = vi;
      w2[i] = wv[i] - step * mi / (Math.sqrt(vi) + epsilon);
    }
  }
  return [output(b, variable.shape, w2), output(b, m.shape, m2), output(b, v.shape, v2)];
};

/** SGD with momentum in one pass: v ← μv + g + λw, w ← w − lr·v (λ = 0 where no decay applies). */
const momentumUpdate: Kernel = (args) => {
  const { variable, v, grad } = args.inputs as Record<string, Info>;
  const { lr, momentum, decay } = args.attrs as Record<string, number>;
  const b = args.backend;
  const wv = values(b, variable), vv = values(b, v), gv = values(b, grad);
  const n = wv.length;
  const w2 = b.alloc(n), v2 = b.alloc(n);
  if (compiled) {
    compiled.momentumUpdate(wv, vv, gv, w2, v2, lr, momentum, decay);
  } else {
    for (let i = 0; i < n; i++) {
      const vi = momentum * vv[i] + gv[i] + decay * wv[i];
      v2[i] = vi;
      w2[i] = wv[i] - lr * vi;
    }
  }
  return [output(b, variable.shape, w2), output(b, v.shape, v2)];
};

/** Mean and the mean squared deviation of x[o .. o + m), as two passes (the C loop's order). */
function meanVar(x: Float32Array, o: number, m: number): [number, number] {
  let s = 0, q = 0;
  for (let j = 0; j < m; j++) s += x[o + j];
  const mu = s / m;
  for (let j = 0; j < m; j++) q += (x[o + j] - mu) ** 2;
  return [mu, q / m];
}

/** Per-image standardisation: y = (x − μ)·r, r = 1/√max(σ², 1/m) per image of m values; returns y, μ, r. */
const standardize: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const b = args.backend, xv = values(b, x);
  const n = x.shape[0], m = xv.length / Math.max(n, 1);
  const y = b.alloc(xv.length), mean = new Float32Array(n), rstd = new Float32Array(n);
  if (compiled) compiled.standardize(xv, y, mean, rstd, n, m);
  else {
    for (let i = 0; i < n; i++) {
      const [mu, v] = meanVar(xv, i * m, m);
      const r = 1 / Math.sqrt(Math.max(v, 1 / m));
      for (let j = i * m; j < (i + 1) * m; j++) y[j] = (xv[j] - mu) * r;
      mean[i] = mu;
      rstd[i] = r;
    }
  }
  return [output(b, x.shape, y), output(b, [n], mean), output(b, [n], rstd)];
};

/** Gradient of {@link standardize}: dx = r·(dy − mean(dy) − y·mean(dy·y)), the last term only where σ² ≥ 1/m. */
const standardizeGrad: Kernel = (args) => {
  const { dy, x, mean, rstd } = args.inputs as Record<string, Info>;
  const b = args.backend, xv = values(b, x), gv = values(b, dy), mv = values(b, mean), rv = values(b, rstd);
  const n = x.shape[0], m = xv.length / Math.max(n, 1);
  const dx = b.alloc(xv.length);
  if (compiled) compiled.standardizeGrad(gv, xv, mv, rv, dx, n, m);
  else {
    for (let i = 0; i < n; i++) {
      const [, v] = meanVar(xv, i * m, m);
      const mu = mv[i], r = rv[i];
      let sg = 0, sgy = 0;
      for (let j = i * m; j < (i + 1) * m; j++) {
        sg += gv[j];
        sgy += gv[j] * (xv[j] - mu) * r;
      }
      const mg = sg / m, mgy = v < 1 / m ? 0 : sgy / m;
      for (let j = i * m; j < (i + 1) * m; j++) dx[j] = r * (gv[j] - mg - (xv[j] - mu) * r * mgy);
    }
  }
  return output(b, x.shape, dx);
};

/** One L∞ PGD update (lib/attacks/pgd.ts signStep): clip(min(max(x + α·sign(g), x0 − ε), x0 + ε), lo, hi), in float32. */
const pgdUpdate: Kernel = (args) => {
  const { x, grad, x0 } = args.inputs as Record<string, Info>;
  const { stepSize, eps, lo, hi } = args.attrs as Record<string, number>;
  const b = args.backend;
  const same = tf.util.arraysEqual;
  if (!same(x.shape, grad.shape) || !same(x.shape, x0.shape)) {
    throw new Error(`AdvPgdUpdate: x, grad and x0 must have one shape, got ${x.shape}, ${grad.shape}, ${x0.shape}`);
  }
  const xv = values(b, x), gv = values(b, grad), ov = values(b, x0);
  const y = b.alloc(xv.length);
  if (compiled) compiled.pgdUpdate(xv, gv, ov, y, stepSize, eps, lo, hi);
  else {
    const f = Math.fround, step = f(stepSize), e = f(eps);
    for (let i = 0; i < y.length; i++) {
      const g = gv[i];
      let v = f(xv[i] + (g > 0 ? step : g < 0 ? -step : 0 * g));
      const a = f(ov[i] - e), c = f(ov[i] + e);
      v = v > a ? v : a;
      v = v < c ? v : c;
      v = v > lo ? v : lo;
      y[i] = v < hi ? v : hi;
    }
  }
  return output(b, x.shape, y);
};

/** Kernels that only the native backend has (the layers of lib/nn/fused.ts and lib/nn/resnet.ts use them when present). */
const EXTRA: Record<string, Kernel> = {
  AdvBatchNormActTrain: bnActTrain,
  AdvBatchNormActGrad: bnActGrad,
  AdvBatchNormActInfer: bnActInfer,
  AdvBatchNormActInferGrad: bnActInferGrad,
  AdvAdamUpdate: adamUpdate,
  AdvMomentumUpdate: momentumUpdate,
  AdvStandardize: standardize,
  AdvStandardizeGrad: standardizeGrad,
  AdvPgdUpdate: pgdUpdate,
};

// ---------------------------------------------------------------- registry

/** The kernels this backend replaces, by TF.js kernel name. */
const OVERRIDES: Record<string, Kernel> = {
  Conv2D: conv2D,
  FusedConv2D: fusedConv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
  MaxPool: maxPool,
  MaxPoolGrad: maxPoolGrad,
  AvgPool: avgPool,
  AvgPoolGrad: avgPoolGrad,
  Sum: reduce("Sum"),
  Mean: reduce("Mean"),
  Select: select,
  LeakyRelu: leakyRelu,
  Slice: slice,
  PadV2: padV2,
  Tile: tile,
  FusedBatchNorm: fusedBatchNorm,
  ...Object.fromEntries(Object.entries(UNARY).map(([name, loop]) => [name, unary(name, loop)])),
  ...Object.fromEntries(
    Object.entries(ARITH).map(([name, f]) => [
      name,
      broadcastBinary(name, f, name in BINARY ? binary(name, BINARY[name]) : undefined),
    ]),
  ),
  ...Object.fromEntries(Object.entries(COMPARE).map(([name, f]) => [name, compare(name, f)])),
};

/** Names of the kernels the native backend implements itself (the rest are the cpu ones). */
export const NATIVE_KERNELS: readonly string[] = Object.keys(OVERRIDES);

/** Result of {@link registerNativeBackend}. */
export type NativeResult = { ok: true; path: string } | { ok: false; reason: string };

let registered: NativeResult | undefined;

/**
 * Registers the TF.js backend "native" (priority 0, so it never becomes the
 * default by itself: select it with `await tf.setBackend("native")`). Loads the
 * system BLAS first; returns `{ ok: false, reason }` when it cannot (no
 * `--allow-ffi`, no library), registering nothing. Calling it again returns the
 * first successful result and registers nothing twice.
 */
export function registerNativeBackend(): Promise<NativeResult> {
  if (registered) return Promise.resolve(registered);
  const blas = loadBlas();
  if (!blas.ok) return Promise.resolve(blas);
  sgemm = blas.sgemm;
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
  registered = { ok: true, path: blas.path };
  return Promise.resolve(registered);
}
