/**
 * The optimiser updates and the PGD update on WebGPU (to be written).
 *
 * @module
 */
import type { tf } from "../../core/tf.ts";

/** Kernels this module adds to the webgpu backend, by name. */
export const UPDATE_KERNELS: [string, tf.KernelFunc][] = [];
