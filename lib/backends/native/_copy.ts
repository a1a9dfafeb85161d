/**
 * Slice, PadV2 and Tile as copies of rows of the last dimension.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Info, type Kernel } from "./_backend.ts";
import { allFloat, cpu, output, sizeOf, values } from "./_helpers.ts";

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

/** Slice of a float32 tensor (cpu otherwise). */
export const slice: Kernel = (args) => {
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

/** PadV2 (constant padding) of a float32 tensor (cpu otherwise). */
export const padV2: Kernel = (args) => {
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

/** Tile of a float32 tensor (cpu otherwise). */
export const tile: Kernel = (args) => {
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
