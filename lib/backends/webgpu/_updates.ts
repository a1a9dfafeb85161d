/**
 * The optimisers' fused updates (Adam, SGD with momentum: lib/train/optim.ts) and the L∞ PGD update
 * (lib/attacks/pgd.ts signStep) on WebGPU, with the float32 operations of the plain-ops path in its order.
 *
 * A TF.js program writes one buffer, so an update with several outputs runs one element-wise program per
 * output: Adam the new first moment, the new second moment, then the variable from those two (3 dispatches and
 * 10 loads and stores per element, against 12 kernels and 28 for the composed ops); momentum the velocity, then
 * the variable (2 dispatches and 6 or 7, against 4 or 6 kernels and 10 or 15).
 * Each program sees its tensors as flat [n] (4-wide where n is a multiple of 4) and reads its element count
 * from TF.js's `size` uniform, so one pipeline serves every variable. The constants of an optimiser (β₁, β₂,
 * ε, μ, the weight decay) are in the source and the key; what changes from step to step (Adam's step size,
 * the learning rate) and the PGD step's parameters are uniforms, so no step compiles a new pipeline.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { f, type GpuBackend, type Program, program } from "./_program.ts";
import { ADAM_UPDATE, MOMENTUM_UPDATE, PGD_UPDATE } from "../kernel_names.ts";

/** A scalar uniform after TF.js's own (the program's `uniforms` declares it, as f32). */
interface Uniform {
  type: "float32";
  data: number[];
}

/** The fields of TF.js's `WebGPUProgram` for uniforms and the output's element type, beyond {@link Program}. */
interface UniformProgram extends Program {
  outputComponent: number;
  size: boolean;
  uniforms?: string;
}

/** {@link GpuBackend}'s `runWebGPUProgram` with its uniforms argument. */
interface UniformBackend extends GpuBackend {
  runWebGPUProgram(program: Program, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniform[]): tf.TensorInfo;
}

/** `t` seen as a flat [n] (the same data). */
function flat(t: tf.TensorInfo): tf.TensorInfo {
  return { dataId: t.dataId, shape: [tf.util.sizeFromShape(t.shape)], dtype: t.dtype };
}

/** The result `out` of a program seen with `shape`. */
function shaped(out: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return { dataId: out.dataId, shape, dtype: out.dtype };
}

/** The inputs' element count; throws unless they are all float32 with one count. */
function check(kernel: string, inputs: Record<string, tf.TensorInfo>): number {
  const n = tf.util.sizeFromShape(Object.values(inputs)[0].shape);
  for (const [name, t] of Object.entries(inputs)) {
    if (t.dtype !== "float32" || tf.util.sizeFromShape(t.shape) !== n) {
      const all = Object.entries(inputs).map(([k, u]) => `${k} ${u.dtype}[${u.shape}]`).join(", ");
      throw new Error(`${kernel}: inputs must be float32 of one size, got ${all} (at ${name})`);
    }
  }
  return n;
}

/**
 * Runs an element-wise program over flat [n] inputs: `body` is WGSL that sets `result[index]` from the
 * inputs' elements (`${name}[index]`, of type `T`: f32, or vec4<f32> where n is a multiple of 4) and
 * `uniforms.${name}` (f32 scalars, to splat with `T(…)`); `key` must name the constants in `body`.
 */
function elementwise(
  backend: GpuBackend,
  key: string,
  inputs: Record<string, tf.TensorInfo>,
  n: number,
  body: (T: string) => string,
  uniforms: Record<string, number> = {},
): tf.TensorInfo {
  const vec4 = n % 4 === 0;
  const T = vec4 ? "vec4<f32>" : "f32";
  const names = Object.keys(inputs);
  const code = `
fn main(index : i32) {
  if (index >= uniforms.size) { return; }
  ${body(T)}
}`;
  const base = program(`${key}_${vec4 ? "v4" : "s"}`, names, [n], vec4 ? n / 4 : n, code, vec4);
  const uniformNames = Object.keys(uniforms);
  const p: UniformProgram = {
    ...base,
    outputComponent: vec4 ? 4 : 1,
    size: true,
    uniforms: uniformNames.length ? uniformNames.map((u) => `${u} : f32,`).join(" ") : undefined,
  };
  const values = uniformNames.map((u): Uniform => ({ type: "float32", data: [uniforms[u]] }));
  return (backend as UniformBackend).runWebGPUProgram(p, Object.values(inputs).map(flat), "float32", values);
}

/**
 * One Adam update: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − step·m / (√v + ε), `step` being the
 * bias-corrected step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ) (a uniform). Outputs the variable, then both moments.
 */
export const adamUpdate: tf.KernelFunc = (args) => {
  const { variable, m, v, grad } = args.inputs as Record<string, tf.TensorInfo>;
  const { step, beta1, beta2, epsilon } = args.attrs as Record<string, number>;
  const backend = args.backend as unknown as GpuBackend;
  const n = check(ADAM_UPDATE, { variable, m, v, grad });
  // 1 − β as TF.js makes the scalar of `g.mul(1 - β)`: in double, then rounded to float32.
  const [b1, c1, b2, c2, eps] = [beta1, 1 - beta1, beta2, 1 - beta2, epsilon].map(f);
  const m2 = elementwise(
    backend,
    `adam_m_${b1}_${c1}`,
    { m, g: grad },
    n,
    () => `result[index] = m[index] * ${b1} + g[index] * ${c1};`,
  );
  const v2 = elementwise(
    backend,
    `adam_v_${b2}_${c2}`,
    { v, g: grad },
    n,
    () => `result[index] = v[index] * ${b2} + (g[index] * g[index]) * ${c2};`,
  );
  const w2 = elementwise(
    backend,
    `adam_w_${eps}`,
    { w: variable, m2, v2 },
    n,
    (T) => `result[index] = w[index] - (m2[index] * ${T}(uniforms.step)) / (sqrt(v2[index]) + ${eps});`,
    { step },
  );
  return [shaped(w2, variable.shape), shaped(m2, m.shape), shaped(v2, v.shape)];
};

/**
 * SGD with momentum: v ← μv + (g + λw), w ← w − lr·v, where λ = 0 (no decay: w is not read) for the
 * variables without weight decay, as lib/train/optim.ts passes it; `lr` is a uniform. Outputs the variable,
 * then its velocity.
 */
export const momentumUpdate: tf.KernelFunc = (args) => {
  const { variable, v, grad } = args.inputs as Record<string, tf.TensorInfo>;
  const { lr, momentum, decay } = args.attrs as Record<string, number>;
  const backend = args.backend as unknown as GpuBackend;
  const n = check(MOMENTUM_UPDATE, { variable, v, grad });
  const mu = f(momentum);
  const v2 = decay !== 0
    ? elementwise(
      backend,
      `momentum_v_${mu}_${f(decay)}`,
      { v, g: grad, w: variable },
      n,
      () => `result[index] = v[index] * ${mu} + (g[index] + w[index] * ${f(decay)});`,
    )
    : elementwise(backend, `momentum_v_${mu}`, { v, g: grad }, n, () => `result[index] = v[index] * ${mu} + g[index];`);
  const w2 = elementwise(
    backend,
    "momentum_w",
    { w: variable, v2 },
    n,
    (T) => `result[index] = w[index] - v2[index] * ${T}(uniforms.lr);`,
    { lr },
  );
  return [shaped(w2, variable.shape), shaped(v2, v.shape)];
};

/**
 * One L∞ PGD update, clip(min(max(x + α·sign(g), x0 − ε), x0 + ε), lo, hi) in float32, a zero gradient
 * leaving x where it is; α, ε, lo and hi are uniforms. The comparisons are the native kernel's (`v > a ? v :
 * a`), so a NaN iterate lands on the ball's edge, as there.
 */
export const pgdUpdate: tf.KernelFunc = (args) => {
  const { x, grad, x0 } = args.inputs as Record<string, tf.TensorInfo>;
  const { stepSize, eps, lo, hi } = args.attrs as Record<string, number>;
  if (!tf.util.arraysEqual(x.shape, grad.shape) || !tf.util.arraysEqual(x.shape, x0.shape)) {
    throw new Error(`${PGD_UPDATE}: x, grad and x0 must have one shape, got ${x.shape}, ${grad.shape}, ${x0.shape}`);
  }
  const n = check(PGD_UPDATE, { x, grad, x0 });
  const y = elementwise(
    args.backend as unknown as GpuBackend,
    "pgd_update",
    { x, g: grad, x0 },
    n,
    (T) => {
      const u = (name: string) => `${T}(uniforms.${name})`;
      // The step (0·g where g is ±0 or NaN, as the native kernel), then each bound in turn, each select
      // keeping the iterate only where it is strictly inside.
      return `
  let gi = g[index];
  var y = x[index] + select(select(0.0 * gi, -${u("step")}, gi < ${T}(0.0)), ${u("step")}, gi > ${T}(0.0));
  let a = x0[index] - ${u("eps")};
  let c = x0[index] + ${u("eps")};
  y = select(a, y, y > a);
  y = select(c, y, y < c);
  y = select(${u("lo")}, y, y > ${u("lo")});
  result[index] = select(${u("hi")}, y, y < ${u("hi")});`;
    },
    { step: stepSize, eps, lo, hi },
  );
  return shaped(y, x.shape);
};

/** Kernels this module adds to the webgpu backend, by name. */
export const UPDATE_KERNELS: [string, tf.KernelFunc][] = [
  [ADAM_UPDATE, adamUpdate],
  [MOMENTUM_UPDATE, momentumUpdate],
  [PGD_UPDATE, pgdUpdate],
];
