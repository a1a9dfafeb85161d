/**
 * Backend selection. `auto` picks WebGPU when a hardware adapter exists (not a
 * software fallback), else `native` (system BLAS through FFI) when it loads,
 * else the embedded `wasm` backend. The choice is printed once and recorded in
 * every results file.
 *
 * @module
 */
import { tf, tfl } from "../core/tf.ts";
import { UserError } from "../core/errors.ts";

/** Backends a user may ask for. */
export const BACKENDS = ["auto", "webgpu", "native", "wasm", "cpu"] as const;
/** A backend name accepted by {@link useBackend}. */
export type BackendName = typeof BACKENDS[number];

/** The backend in use and why it was chosen. */
export interface BackendInfo {
  /** The TF.js backend running the ops. */
  name: Exclude<BackendName, "auto">;
  /** What was asked for. */
  requested: BackendName;
  /** Why this one: the adapter, the BLAS library path, or why a faster one was skipped. */
  detail: string;
}

let current: BackendInfo | undefined;

/** The backend chosen by the last {@link useBackend} call, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/** Options of {@link useBackend}. */
export interface UseBackendOptions {
  /** Print nothing (by default the choice is printed to stderr as one `backend: …` line). */
  quiet?: boolean;
  /**
   * Cache folder (an experiment's `--cache-dir`): the native backend's compiled libraries go to
   * `<cacheDir>/native`. Default: `ADV_CACHE_DIR`, else `.cache`.
   */
  cacheDir?: string;
}

/**
 * Makes `requested` the active backend. An explicit backend that cannot start
 * is a {@link UserError}; `auto` falls back and says why.
 */
export async function useBackend(
  requested: BackendName = "auto",
  options: UseBackendOptions = {},
): Promise<BackendInfo> {
  if (!(BACKENDS as readonly string[]).includes(requested)) {
    throw new UserError(`unknown backend "${requested}", expected one of ${BACKENDS.join(", ")}`);
  }
  const skipped: string[] = [];
  let info: BackendInfo | undefined;
  if (requested === "auto" || requested === "webgpu") {
    const { webgpuAdapterInfo, registerWebgpuBackend, WEBGPU_KERNELS } = await import("./webgpu/mod.ts");
    const adapter = await webgpuAdapterInfo();
    const usable = adapter.available && (requested === "webgpu" || !adapter.fallback);
    if (usable) {
      await registerWebgpuBackend();
      if (await tf.setBackend("webgpu")) {
        const kind = adapter.fallback ? " (software fallback adapter)" : "";
        info = {
          name: "webgpu",
          requested,
          detail: `${adapter.description}${kind}; our kernels: ${WEBGPU_KERNELS.join(", ")}`,
        };
      }
    }
    if (!info) {
      const why = adapter.available ? `only a fallback adapter (${adapter.description})` : "no WebGPU adapter";
      if (requested === "webgpu") throw new UserError(`--backend webgpu: ${why}`);
      skipped.push(`webgpu: ${why}`);
    }
  }
  if (!info && (requested === "auto" || requested === "native")) {
    const native = await import("./native/mod.ts");
    const r = await native.registerNativeBackend({ cacheDir: options.cacheDir });
    if (r.ok && r.blasLibraryError && requested === "native") {
      throw new UserError(`--backend native: ${r.blasLibraryError}`);
    }
    if (r.ok && await tf.setBackend("native")) {
      const why = native.compiledReason;
      const loops = why ? `TypeScript loops (no compiled ones: ${why})` : "compiled C loops";
      const conv = native.dnnlReason
        ? `im2col + BLAS convolutions (no oneDNN: ${native.dnnlReason})`
        : "oneDNN convolutions";
      const blas = r.blasLibraryError ? `${r.path} (${r.blasLibraryError}; used ${r.path} instead)` : r.path;
      const notes = r.notes.length ? ` (${r.notes.join("; ")})` : "";
      info = { name: "native", requested, detail: `BLAS ${blas}, ${conv}, ${loops}${notes}` };
    } else {
      const why = r.ok ? "backend failed to start" : r.reason;
      if (requested === "native") throw new UserError(`--backend native cannot load: ${why}`);
      skipped.push(`native: ${why}`);
    }
  }
  if (!info && (requested === "auto" || requested === "wasm")) {
    const { registerWasmBackend, wasmBackendDetail } = await import("./wasm/mod.ts");
    await registerWasmBackend();
    if (!await tf.setBackend("wasm")) throw new UserError("the wasm backend failed to start");
    info = { name: "wasm", requested, detail: `embedded WASM SIMD: ${wasmBackendDetail()}` };
  }
  if (!info) {
    await tf.setBackend("cpu");
    info = { name: "cpu", requested, detail: "pure JS reference backend" };
  }
  if (skipped.length) info.detail += ` (skipped ${skipped.join("; ")})`;
  await tf.ready();
  current = info;
  if (!options.quiet) console.error(`backend: ${info.name} — ${info.detail}`);
  return info;
}

/** Versions that produced a result, recorded in every results file. */
export function versions(): Record<string, string> {
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    "tfjs-core": tf.version_core,
    "tfjs-layers": tfl.version_layers,
  };
}
