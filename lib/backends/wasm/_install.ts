/**
 * Installs this folder's kernels on the wasm backend in place of the stock ones (idempotently), and the
 * Identity kernel that shares its input's buffer.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { ADAM_UPDATE, MOMENTUM_UPDATE } from "../kernel_names.ts";
import { BACKEND, type Backend, type Info } from "./_run.ts";
import { simdConv2dKernel, simdMatMulKernel, simdSumKernel } from "./_simd.ts";
import { conv2dBackpropInputKernel } from "./_conv_input_grad.ts";
import { conv2dBackpropFilter } from "./_conv_filter_grad.ts";
import { batchMatMulKernel } from "./_matmul.ts";
import { maxPoolGrad } from "./_pool.ts";
import { adamUpdate, momentumUpdate } from "./_updates.ts";

/** Kernel functions installed by this module, to make registration idempotent. */
const ours = new WeakSet<tf.KernelFunc>();

/** Installs the kernels of this folder on the registered wasm backend (stock ones kept as fallbacks). */
export function installKernels(): void {
  const replace = (name: string, kernelFunc: tf.KernelFunc) => {
    const old = tf.getKernel(name, BACKEND);
    if (old && ours.has(old.kernelFunc)) return;
    if (old) tf.unregisterKernel(name, BACKEND);
    ours.add(kernelFunc);
    // Keep the stock setupFunc: the stock kernelFunc we fall back to needs it.
    tf.registerKernel({
      kernelName: name,
      backendName: BACKEND,
      kernelFunc,
      setupFunc: old?.setupFunc,
    });
  };
  const stockMatMul = tf.getKernel("BatchMatMul", BACKEND);
  if (stockMatMul && !ours.has(stockMatMul.kernelFunc)) {
    replace("BatchMatMul", simdMatMulKernel(batchMatMulKernel(stockMatMul.kernelFunc)));
  }
  const stockSum = tf.getKernel("Sum", BACKEND);
  if (stockSum && !ours.has(stockSum.kernelFunc)) {
    replace("Sum", simdSumKernel(stockSum.kernelFunc));
  }
  const stockConv = tf.getKernel("Conv2D", BACKEND);
  if (stockConv && !ours.has(stockConv.kernelFunc)) {
    replace("Conv2D", simdConv2dKernel(stockConv.kernelFunc));
  }
  const stockInput = tf.getKernel("Conv2DBackpropInput", BACKEND);
  if (!stockInput || !ours.has(stockInput.kernelFunc)) {
    replace(
      "Conv2DBackpropInput",
      conv2dBackpropInputKernel(stockInput?.kernelFunc),
    );
  }
  replace(
    "Conv2DBackpropFilter",
    conv2dBackpropFilter as unknown as tf.KernelFunc,
  );
  const stockPool = tf.getKernel("MaxPoolGrad", BACKEND);
  if (stockPool && !ours.has(stockPool.kernelFunc)) {
    replace("MaxPoolGrad", maxPoolGrad as unknown as tf.KernelFunc);
  }
  replace(ADAM_UPDATE, adamUpdate as unknown as tf.KernelFunc);
  replace(MOMENTUM_UPDATE, momentumUpdate as unknown as tf.KernelFunc);
  const stockIdentity = tf.getKernel("Identity", BACKEND);
  if (stockIdentity && !ours.has(stockIdentity.kernelFunc)) {
    replace("Identity", identityKernel(stockIdentity.kernelFunc));
  }
}

/**
 * Identity shares its input's buffer (one more reference), as the cpu backend and the wasm backend's own
 * Reshape do, instead of copying it: gradients and layers call it on every activation, about 9 ms of a
 * model A PGD step. Strings keep the stock kernel.
 */
function identityKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    if (x.dtype === "string") return stock(args);
    (args.backend as Backend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}
