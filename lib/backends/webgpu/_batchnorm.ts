/**
 * The fused batch norm + leaky ReLU kernels and the per-image standardisation on WebGPU (to be written).
 *
 * @module
 */
import type { tf } from "../../core/tf.ts";

/** Kernels this module adds to the webgpu backend, by name. */
export const BATCHNORM_KERNELS: [string, tf.KernelFunc][] = [];
