/**
 * The optimisers' fused updates (lib/train/optim.ts runs them where a backend registers them): one pass
 * over each variable on our SIMD kernels instead of about ten kernels, with the float32 operations of
 * the composed update in its order, so the results are the same floats. Where our kernels do not run,
 * the composed update itself, on the backend's own kernels.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { type Backend, free, type Info, run, type WasmHeap } from "./_run.ts";
import { offsetOf, simdOf } from "./_simd.ts";

/** The fused Adam update: new variable, first and second moments. */
export function adamUpdate(args: {
  inputs: { variable: Info; m: Info; v: Info; grad: Info };
  backend: Backend;
  attrs: { step: number; beta1: number; beta2: number; epsilon: number };
}): Info[] {
  const { inputs: { variable, m, v, grad }, backend, attrs: { step, beta1, beta2, epsilon } } = args;
  const heap = backend as unknown as WasmHeap;
  const n = tf.util.sizeFromShape(variable.shape);
  const kernels = simdOf(backend);
  if (kernels && n > 0) {
    const [w2, m2, v2] = [variable, m, v].map((t) => heap.makeOutput(t.shape, "float32"));
    const at = (t: Info) => offsetOf(backend, t);
    const offsets = { w: at(variable), m: at(m), v: at(v), g: at(grad), w2: at(w2), m2: at(m2), v2: at(v2) };
    kernels.adam(offsets, n, step, beta1, beta2, epsilon);
    return [w2, m2, v2];
  }
  // m2 = m·β1 + g·(1−β1), v2 = v·β2 + g²·(1−β2), w2 = w − m2·step / (√v2 + ε), as lib/train/optim.ts composes it.
  const ops = composer(backend);
  const m2 = ops.add(ops.mul(m, beta1), ops.mul(grad, 1 - beta1));
  const v2 = ops.add(ops.mul(v, beta2), ops.mul(ops.square(grad), 1 - beta2));
  const w2 = ops.sub(variable, ops.div(ops.mul(m2, step), ops.add(ops.sqrt(v2), epsilon)));
  ops.freeTemporaries([w2, m2, v2]);
  return [w2, m2, v2];
}

/** The fused SGD-with-momentum update: new variable and velocity. */
export function momentumUpdate(args: {
  inputs: { variable: Info; v: Info; grad: Info };
  backend: Backend;
  attrs: { lr: number; momentum: number; decay: number };
}): Info[] {
  const { inputs: { variable, v, grad }, backend, attrs: { lr, momentum, decay } } = args;
  const heap = backend as unknown as WasmHeap;
  const n = tf.util.sizeFromShape(variable.shape);
  const kernels = simdOf(backend);
  if (kernels && n > 0) {
    const [w2, v2] = [variable, v].map((t) => heap.makeOutput(t.shape, "float32"));
    const at = (t: Info) => offsetOf(backend, t);
    kernels.momentum({ w: at(variable), v: at(v), g: at(grad), w2: at(w2), v2: at(v2) }, n, lr, momentum, decay);
    return [w2, v2];
  }
  // g' = g + w·decay (where decay ≠ 0), v2 = v·μ + g', w2 = w − v2·lr, as lib/train/optim.ts composes it.
  const ops = composer(backend);
  const g = decay !== 0 ? ops.add(grad, ops.mul(variable, decay)) : grad;
  const v2 = ops.add(ops.mul(v, momentum), g);
  const w2 = ops.sub(variable, ops.mul(v2, lr));
  ops.freeTemporaries([w2, v2]);
  return [w2, v2];
}

/**
 * Element-wise float32 operations on the backend's own kernels, a number standing for a scalar tensor
 * (as TF.js makes one: the float32 nearest to it). Remembers every tensor it makes, so that all but the
 * results can be freed.
 */
function composer(backend: Backend) {
  const made: Info[] = [];
  const keep = (t: Info) => (made.push(t), t);
  const tensor = (x: Info | number): Info => {
    if (typeof x !== "number") return x;
    const t = keep((backend as unknown as WasmHeap).makeOutput([], "float32"));
    (backend as unknown as WasmHeap).typedArrayFromHeap(t)[0] = x;
    return t;
  };
  const binary = (name: string) => (a: Info | number, b: Info | number) =>
    keep(run(name, backend, { a: tensor(a), b: tensor(b) }, {}));
  const unary = (name: string) => (x: Info) => keep(run(name, backend, { x }, {}));
  return {
    add: binary("Add"),
    sub: binary("Sub"),
    mul: binary("Multiply"),
    div: binary("RealDiv"),
    square: unary("Square"),
    sqrt: unary("Sqrt"),
    freeTemporaries(results: Info[]) {
      for (const t of made) if (!results.includes(t)) free(backend, t);
    },
  };
}
