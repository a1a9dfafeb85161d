/**
 * The class of the native backend: the `cpu` backend with a pool that recycles the large output arrays of
 * our kernels, and the shapes of the kernel functions written for it.
 *
 * @module
 */
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { tf } from "../../core/tf.ts";

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
export class NativeBackend extends MathBackendCPU {
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

/** A tensor as kernels see it (data id, shape, dtype). */
export type Info = tf.TensorInfo;
/** What TF.js passes a kernel function of this backend. */
export interface KernelArgs {
  inputs: Record<string, Info | undefined>;
  backend: NativeBackend;
  attrs: Record<string, unknown>;
}
/** A kernel function of this backend. */
export type Kernel = (args: KernelArgs) => Info | Info[];
