/**
 * What our WebGPU kernels need from TF.js's WebGPU backend: a program object it compiles (once per shader key)
 * and records into its command stream, so that ours interleave with the stock kernels without a sync.
 *
 * TF.js wraps `getUserCode()` in a preamble: the output buffer `result` (binding 0), one read-only buffer per
 * name in `variableNames` (element type f32, or vec4<f32> where `variableComponents` says 4), the uniforms
 * (the inputs' and the output's shapes and strides; with `size`, the output's element count; then a program's
 * own), and an entry point that calls `main(index)`, `index` being the flat invocation index of a one-dimensional
 * dispatch (TF.js folds dispatches wider than the device allows into two or three dimensions; `index` stays
 * flat, so every shader checks it against its own count).
 *
 * @module
 */
import { tf } from "../../core/tf.ts";

/** The backend's name in TF.js's registry. */
export const BACKEND = "webgpu";

/** A compute program, as TF.js's WebGPU backend runs it (the fields of its `WebGPUProgram` we set). */
export interface Program {
  variableNames: string[];
  variableComponents?: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** TF.js then adds `uniforms.size`, the output's element count (÷ its components), for a shader's bound. */
  size?: boolean;
  getUserCode(): string;
}

/** The part of TF.js's `WebGPUBackend` our kernels use. */
export interface GpuBackend {
  runWebGPUProgram(program: Program, inputs: tf.TensorInfo[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: unknown): boolean;
}

/** Threads per workgroup of every program here (a multiple of every GPU's SIMD width, small enough for lavapipe). */
export const WORKGROUP = 64;

/**
 * A program over `threads` invocations of `main(index)` in workgroups of {@link WORKGROUP}; `key` must name
 * everything the code depends on (TF.js caches the compiled pipeline under it, with the inputs' ranks and types).
 */
export function program(
  key: string,
  inputs: string[],
  outputShape: number[],
  threads: number,
  code: string,
  vec4Inputs: boolean | boolean[] = false,
): Program {
  const header = "fn main(index : i32) {";
  if (!code.includes(header)) throw new Error(`${key}: the shader has no "${header}"`);
  return {
    variableNames: inputs,
    variableComponents: [vec4Inputs].flat().some((v) => v)
      ? inputs.map((_, k) => (Array.isArray(vec4Inputs) ? vec4Inputs[k] : vec4Inputs) ? 4 : 1)
      : undefined,
    outputShape,
    shaderKey: `adv_${key}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(threads / WORKGROUP), 1, 1],
    workgroupSize: [WORKGROUP, 1, 1],
    // The pipeline's bind group layout is derived from what the entry point uses, and TF.js always binds the
    // uniforms: a shader that does not mention them fails validation, and its dispatch is silently dropped.
    // A folded dispatch's index is computed as a u32: past 2³¹ it would turn negative.
    getUserCode: () => code.replace(header, `${header}\n  _ = uniforms.NAN;\n  if (index < 0) { return; }`),
  };
}

/** A WGSL integer literal (sizes are baked into the source). */
export function i(n: number): string {
  if (!Number.isInteger(n) || Math.abs(n) >= 2 ** 31) throw new Error(`not a 32-bit integer: ${n}`);
  return `${n}`;
}

/** A WGSL f32 literal that round-trips `x` (as f32). */
export function f(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`not a finite number: ${x}`);
  const s = `${Math.fround(x)}`;
  return /[.e]/.test(s) ? s : `${s}.0`;
}
