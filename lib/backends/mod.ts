/**
 * Backends: choosing the one that runs the ops (webgpu, native, wasm, cpu) and what it is.
 *
 * @module
 */
export {
  type BackendInfo,
  type BackendName,
  BACKENDS,
  currentBackend,
  useBackend,
  type UseBackendOptions,
  versions,
} from "./select.ts";
