/**
 * The `webgpu` backend, where the runtime exposes an adapter.
 *
 * Deno exposes `navigator.gpu` without flags; on a machine with no GPU,
 * Debian's `mesa-vulkan-drivers` provides a software adapter (lavapipe) that
 * reports itself as a fallback adapter. On WebGPU read tensors asynchronously
 * (`await t.data()`, `await t.array()`): the synchronous reads need a canvas,
 * which Deno lacks.
 *
 * ```ts
 * import { tf } from "../core/tf.ts";
 * import { registerWebgpuBackend, webgpuAdapterInfo } from "./webgpu.ts";
 * if ((await webgpuAdapterInfo()).available) {
 *   await registerWebgpuBackend();
 *   await tf.setBackend("webgpu");
 * }
 * ```
 *
 * @module
 */
import { tf } from "../core/tf.ts";

/** What the runtime's WebGPU adapter is, if there is one. */
export interface WebgpuAdapterInfo {
  /** An adapter was granted. */
  available: boolean;
  /** The adapter is a software fallback (such as lavapipe), not a GPU. */
  fallback: boolean;
  /** Human-readable adapter name, or why none is available. */
  description: string;
}

interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/**
 * Asks `navigator.gpu` for an adapter and describes it. Never throws: where
 * WebGPU is missing or refuses, `available` is false and `description` says why.
 */
export async function webgpuAdapterInfo(): Promise<WebgpuAdapterInfo> {
  try {
    const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
    if (!gpu) {
      return {
        available: false,
        fallback: false,
        description: "navigator.gpu is not defined",
      };
    }
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      return {
        available: false,
        fallback: false,
        description: "navigator.gpu.requestAdapter() gave no adapter",
      };
    }
    const info = (adapter as unknown as { info?: AdapterInfoLike }).info ?? {};
    // Older runtimes put the flag on the adapter itself.
    const fallback = Boolean(
      info.isFallbackAdapter ??
        (adapter as unknown as { isFallbackAdapter?: boolean })
          .isFallbackAdapter,
    );
    const description = [info.description, info.vendor, info.architecture, info.device]
      .filter((s) => typeof s === "string" && s.length > 0)
      .join(" / ") || "unnamed adapter";
    return { available: true, fallback, description };
  } catch (error) {
    return {
      available: false,
      fallback: false,
      description: `WebGPU failed: ${error}`,
    };
  }
}

let registering: Promise<void> | undefined;

/**
 * Registers the `webgpu` backend (loaded on first call, so it costs nothing
 * when unused). Idempotent; call before `tf.setBackend("webgpu")`, and only
 * where {@linkcode webgpuAdapterInfo} reports an adapter. The current backend
 * stays current: webgpu has the highest priority, and would otherwise become
 * the (not yet initialised) default of an engine that has not picked one.
 */
export function registerWebgpuBackend(): Promise<void> {
  registering ??= (async () => {
    tf.backend(); // initialise (pin) the current or default backend first
    await import("@tensorflow/tfjs-backend-webgpu");
  })();
  return registering;
}
