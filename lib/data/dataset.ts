/**
 * The in-memory dataset type shared by every loader, and batching helpers.
 *
 * @module
 */
import { tf } from "../core/tf.ts";

/** Images and labels held in memory, pixels as float32 in the dataset's pixel range. */
export interface Dataset {
  /** Dataset name, e.g. "mnist". */
  name: string;
  /** Pixels, row-major [n, height, width, channels]. */
  images: Float32Array;
  /** Class labels 0..9, one per image. */
  labels: Int32Array;
  /** Number of examples. */
  n: number;
  /** [height, width, channels] of one image. */
  shape: [number, number, number];
  /** Valid pixel range [lo, hi], e.g. [0, 1] for MNIST, [0, 255] for CIFAR-10. */
  range: [number, number];
}

/** Size of one image in floats. */
export function imageSize(data: Dataset): number {
  return data.shape[0] * data.shape[1] * data.shape[2];
}

/** The first `n` examples of `data` (a view, no copy). */
export function take(data: Dataset, n: number): Dataset {
  const k = Math.min(n, data.n);
  const size = imageSize(data);
  return {
    ...data,
    images: data.images.subarray(0, k * size),
    labels: data.labels.subarray(0, k),
    n: k,
  };
}

/** Examples at `indices` as tensors: x [k, h, w, c] and y [k] (int32). */
export function gather(data: Dataset, indices: ArrayLike<number>): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const size = imageSize(data);
  const k = indices.length;
  const xs = new Float32Array(k * size);
  const ys = new Int32Array(k);
  for (let i = 0; i < k; i++) {
    const j = indices[i];
    xs.set(data.images.subarray(j * size, (j + 1) * size), i * size);
    ys[i] = data.labels[j];
  }
  return { x: tf.tensor4d(xs, [k, ...data.shape]), y: tf.tensor1d(ys, "int32") };
}

/** Examples [start, start + count) as tensors (clamped to the dataset's end). */
export function slice(data: Dataset, start: number, count: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const end = Math.min(start + count, data.n);
  const size = imageSize(data);
  const k = end - start;
  return {
    x: tf.tensor4d(data.images.slice(start * size, end * size), [k, ...data.shape]),
    y: tf.tensor1d(data.labels.slice(start, end), "int32"),
  };
}
