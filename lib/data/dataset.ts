/**
 * The in-memory dataset type shared by every loader, batching helpers, and the
 * loaders' reading of data files (a file-system error is one {@link UserError}).
 *
 * @module
 */
import { tf } from "../core/tf.ts";
import { UserError } from "../core/errors.ts";

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

/** What a file-system error means for the path it was raised on, in words ("a folder", "no permission to read it ..."). */
function fsFinding(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "nothing at that path";
  if (error instanceof Deno.errors.PermissionDenied) return "no permission to read it (permission denied)";
  if (error instanceof Deno.errors.NotCapable) return "no read permission for this process (run with --allow-read)";
  if (error instanceof Deno.errors.IsADirectory) return "a folder";
  if (error instanceof Deno.errors.NotADirectory) return "a file where a folder is expected on the path";
  if (error instanceof Deno.errors.FilesystemLoop) return "a loop of symbolic links";
  return `an error: ${String((error as Error)?.message ?? error).split("\n")[0]}`;
}

/**
 * A file-system error raised on `path` as a one-line {@link UserError}:
 * `<path>: expected <expected>, found <what the error means>`.
 */
export function fsUserError(path: string, expected: string, error: unknown): UserError {
  return new UserError(`${path}: expected ${expected}, found ${fsFinding(error)}`);
}

/**
 * Reads the whole file at `path` (a path or a file URL). Any file-system error
 * (missing, unreadable, a folder, a file on the path) is a {@link UserError}
 * naming the path and `expected`, e.g. "a readable CIFAR-10 batch file".
 */
export async function readDataFile(path: string | URL, expected: string): Promise<Uint8Array<ArrayBuffer>> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw fsUserError(showPath(path), expected, e);
  }
}

/** A path or file URL as a path for messages. */
export function showPath(path: string | URL): string {
  return path instanceof URL ? decodeURIComponent(path.pathname) : path;
}
