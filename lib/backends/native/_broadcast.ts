/**
 * Binary arithmetic and comparisons under any NumPy broadcast, on a plan that merges the dimensions that
 * broadcast alike.
 *
 * @module
 */
import { type Info, type Kernel } from "./_backend.ts";
import { allFloat, cpu, output, sizeOf, values } from "./_helpers.ts";
import { periodic } from "./_elementwise.ts";

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

/** The broadcast rows of the arithmetic kernels, by TF.js kernel name. */
export const ARITH: Record<string, Row> = {
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

/** The broadcast rows of the comparisons (bool outputs), by TF.js kernel name. */
export const COMPARE: Record<string, Row> = {
  Greater: rowOf((x, z) => (x > z ? 1 : 0)),
  GreaterEqual: rowOf((x, z) => (x >= z ? 1 : 0)),
  Less: rowOf((x, z) => (x < z ? 1 : 0)),
  LessEqual: rowOf((x, z) => (x <= z ? 1 : 0)),
  Equal: rowOf((x, z) => (x === z ? 1 : 0)),
};

/** A float32 binary kernel under any broadcast: the periodic fast loops where they apply, else a broadcast plan. */
export function broadcastBinary(name: string, f: Row, fast?: Kernel): Kernel {
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
export function compare(name: string, f: Row): Kernel {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!allFloat(a, b)) return cpu(name, args);
    const plan = broadcastPlan(a.shape, b.shape);
    const y = new Uint8Array(sizeOf(plan.shape));
    broadcastApply(values(args.backend, a), values(args.backend, b), plan, y, f);
    return args.backend.makeTensorInfo(plan.shape, "bool", y);
  };
}
