/**
 * Installs this folder's kernels on the registered webgpu backend in place of TF.js's (idempotently), keeping
 * the stock ones for the cases ours do not take and for the per-kernel benchmark.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { BACKEND } from "./_program.ts";
import { conv2dBackpropFilterKernel } from "./_conv_filter_grad.ts";
import { conv2dBackpropInputKernel, conv2dKernel, fusedConv2dKernel } from "./_conv.ts";
import { BATCHNORM_KERNELS } from "./_batchnorm.ts";
import { UPDATE_KERNELS } from "./_updates.ts";

/** Kernel functions installed by this module, to make installation idempotent. */
const ours = new WeakSet<tf.KernelFunc>();
/** The stock kernel each of ours replaced, by kernel name. */
const stock = new Map<string, tf.KernelConfig>();

/** TF.js kernels ours replace (the stock ones are kept). */
const REPLACED: [string, (stock: tf.KernelFunc) => tf.KernelFunc][] = [
  ["Conv2D", conv2dKernel],
  ["FusedConv2D", fusedConv2dKernel],
  ["Conv2DBackpropInput", conv2dBackpropInputKernel],
  ["Conv2DBackpropFilter", conv2dBackpropFilterKernel],
];
/** Kernels only this library has (lib/backends/kernel_names.ts). */
const ADDED: [string, tf.KernelFunc][] = [...BATCHNORM_KERNELS, ...UPDATE_KERNELS];

/** Names of the kernels ours replace or add, for the backend line. */
export const WEBGPU_KERNELS: readonly string[] = [...REPLACED, ...ADDED].map(([name]) => name);

/** Installs the kernels of this folder on the registered webgpu backend. */
export function installKernels(): void {
  const replace = (name: string, make: (stock: tf.KernelFunc) => tf.KernelFunc) => {
    const old = tf.getKernel(name, BACKEND);
    if (old && ours.has(old.kernelFunc)) return;
    if (!old) throw new Error(`TF.js's webgpu backend has no ${name} kernel to replace`);
    stock.set(name, old);
    const kernelFunc = make(old.kernelFunc);
    ours.add(kernelFunc);
    tf.unregisterKernel(name, BACKEND);
    tf.registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc, setupFunc: old.setupFunc });
  };
  for (const [name, make] of REPLACED) replace(name, make);
  for (const [name, kernelFunc] of ADDED) {
    const old = tf.getKernel(name, BACKEND);
    if (old && ours.has(old.kernelFunc)) continue;
    if (old) tf.unregisterKernel(name, BACKEND);
    ours.add(kernelFunc);
    tf.registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc });
  }
}

/**
 * Runs `f` with TF.js's own kernels in place of ours under `names` (for A/B timing and tests): a replaced kernel
 * is the stock one again, an added one is absent (its callers fall back to ordinary TF.js ops); ours again after.
 */
export async function withStockKernels<T>(names: readonly string[], f: () => Promise<T>): Promise<T> {
  const saved = names.map((name) => {
    const current = tf.getKernel(name, BACKEND);
    if (!current || !ours.has(current.kernelFunc)) throw new Error(`our ${name} kernel is not installed on webgpu`);
    return current;
  });
  for (const name of names) {
    tf.unregisterKernel(name, BACKEND);
    const old = stock.get(name);
    if (old) tf.registerKernel(old);
  }
  try {
    return await f();
  } finally {
    for (const config of saved) {
      if (tf.getKernel(config.kernelName, BACKEND)) tf.unregisterKernel(config.kernelName, BACKEND);
      tf.registerKernel(config);
    }
  }
}

/** {@linkcode withStockKernels} for one kernel. */
export function withStockKernel<T>(name: string, f: () => Promise<T>): Promise<T> {
  return withStockKernels([name], f);
}
