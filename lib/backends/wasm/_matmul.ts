/**
 * BatchMatMul: XNNPACK runs only untransposed single-batch products, so
 * transposes are made explicit (on whichever operand is cheaper to move).
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Backend, free, type Info, transpose, view } from "./_run.ts";

/** BatchMatMul with a transposed single-batch operand as an untransposed product on `stock`; else `stock` itself. */
export function batchMatMulKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as {
      transposeA: boolean;
      transposeB: boolean;
    };
    const backend = args.backend as Backend;
    const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const outer = (s: number[]) => size(s.slice(0, -2));
    if (
      (!transposeA && !transposeB) || outer(a.shape) !== 1 ||
      outer(b.shape) !== 1
    ) {
      return stock(args);
    }
    const a2 = view(a, a.shape.slice(-2));
    const b2 = view(b, b.shape.slice(-2));
    const [m, k] = transposeA ? [a2.shape[1], a2.shape[0]] : a2.shape;
    const nn = transposeB ? b2.shape[0] : b2.shape[1];
    const outShape = [
      ...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2),
      m,
      nn,
    ];
    const mm = (x: Info, y: Info): Info =>
      stock({
        inputs: { a: view(x, [1, ...x.shape]), b: view(y, [1, ...y.shape]) },
        backend,
        attrs: { transposeA: false, transposeB: false },
      }) as Info;
    let out: Info;
    if (transposeA && !transposeB) {
      // (a^T) b: move a.
      const at = transpose(backend, a2, [1, 0]);
      out = mm(at, b2);
      free(backend, at);
    } else if (!transposeA && transposeB) {
      if (2 * k * nn <= 2 * m * k + m * nn) {
        // a (b^T): move b.
        const bt = transpose(backend, b2, [1, 0]);
        out = mm(a2, bt);
        free(backend, bt);
      } else {
        // (b a^T)^T: move a and the (small) result, keep the big b in place.
        const at = transpose(backend, a2, [1, 0]);
        const o = mm(b2, at);
        free(backend, at);
        out = transpose(backend, view(o, [nn, m]), [1, 0]);
        free(backend, o);
      }
    } else {
      // a^T b^T = (b a)^T.
      const o = mm(b2, a2);
      out = transpose(backend, view(o, [nn, m]), [1, 0]);
      free(backend, o);
    }
    out.shape = outShape;
    return out;
  };
}
