/**
 * Data augmentation for CIFAR-10 training, as in the paper's training code:
 * pad each image with 4 zero pixels on every side, take a random crop of the
 * original size, and flip it horizontally with probability 1/2.
 *
 * @module
 */
import type { Rng } from "../core/rng.ts";

/**
 * Augments `n` images NHWC (`shape` = [h, w, c]) drawn from `rng`: per image a
 * crop offset (dy, dx) uniform in 0..2·pad and a horizontal flip with
 * probability 1/2. Pixels taken from the zero border are 0; every other pixel
 * is a copy, so shape and pixel range are kept. Returns a new array; the same
 * generator state gives the same result.
 */
export function augmentBatch(
  images: Float32Array,
  n: number,
  shape: [number, number, number],
  rng: Rng,
  pad = 4,
): Float32Array {
  const [h, w, c] = shape;
  const size = h * w * c;
  if (images.length < n * size) {
    throw new RangeError(`augmentBatch: ${n} images of ${h}x${w}x${c} need ${n * size} floats, got ${images.length}`);
  }
  const out = new Float32Array(n * size);
  for (let i = 0; i < n; i++) {
    const dy = rng.int(2 * pad + 1) - pad;
    const dx = rng.int(2 * pad + 1) - pad;
    const flip = rng.next() < 0.5;
    const base = i * size;
    for (let y = 0; y < h; y++) {
      const sy = y + dy;
      if (sy < 0 || sy >= h) continue; // zero border row
      for (let x = 0; x < w; x++) {
        const sx = (flip ? w - 1 - x : x) + dx;
        if (sx < 0 || sx >= w) continue;
        const from = base + (sy * w + sx) * c;
        const to = base + (y * w + x) * c;
        for (let k = 0; k < c; k++) out[to + k] = images[from + k];
      }
    }
  }
  return out;
}
