/**
 * The `webgpu` backend, where the runtime exposes an adapter.
 *
 * Deno exposes `navigator.gpu` without flags; on a machine with no GPU,
 * Debian's `mesa-vulkan-drivers` provides a software adapter (lavapipe) that
 * reports itself as a fallback adapter. On WebGPU read tensors asynchronously
 * (`await t.data()`, `await t.array()`): the synchronous reads need a canvas,
 * which Deno lacks.
 *
 * Where `XDG_RUNTIME_DIR` is unset (a container, a cron job, ssh without a
 * login session), each adapter request made the Vulkan/EGL drivers' Wayland
 * probe print `error: XDG_RUNTIME_DIR is invalid or not set in the environment.`
 * twice; before the first request it is pointed at a private folder (see
 * {@link webgpuAdapterInfo}).
 *
 * ```ts
 * import { tf } from "../../core/tf.ts";
 * import { registerWebgpuBackend, webgpuAdapterInfo } from "./mod.ts";
 * if ((await webgpuAdapterInfo()).available) {
 *   await registerWebgpuBackend();
 *   await tf.setBackend("webgpu");
 * }
 * ```
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { installKernels } from "./_install.ts";

export { WEBGPU_KERNELS, withStockKernel, withStockKernels } from "./_install.ts";

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
  setRuntimeDir();
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
    setRuntimeDir();
    tf.backend(); // initialise (pin) the current or default backend first
    await import("@tensorflow/tfjs-backend-webgpu");
    installKernels();
  })();
  return registering;
}

/** A folder that can never exist (`/dev/null` is not a folder): Wayland finds no display there, and says nothing. */
const NO_RUNTIME_DIR = "/dev/null/adv-no-runtime-dir";

let runtimeDirSet = false;

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Where `XDG_RUNTIME_DIR` is unset or not an absolute path (libwayland's test), points it, for the rest of the
 * process (every adapter request probes again), at a private folder: a new one with mode 0700 in the temporary
 * folder where this process may write there (removed at exit), else a path that cannot exist. Needs
 * `--allow-env`; without it, nothing changes.
 */
function setRuntimeDir(): void {
  if (runtimeDirSet) return;
  runtimeDirSet = true;
  if (Deno.build.os === "windows" || Deno.build.os === "darwin") return;
  if (!granted({ name: "env", variable: "XDG_RUNTIME_DIR" })) return;
  if (Deno.env.get("XDG_RUNTIME_DIR")?.startsWith("/")) return;
  Deno.env.set("XDG_RUNTIME_DIR", privateFolder() ?? NO_RUNTIME_DIR);
}

/** A new folder of mode 0700 in the temporary folder, removed when the process exits; undefined where not allowed. */
function privateFolder(): string | undefined {
  const tmp = (granted({ name: "env", variable: "TMPDIR" }) ? Deno.env.get("TMPDIR") : undefined) || "/tmp";
  if (!granted({ name: "write", path: tmp })) return undefined;
  try {
    const dir = Deno.makeTempDirSync({ dir: tmp, prefix: "adv-runtime-" });
    Deno.chmodSync(dir, 0o700);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // already gone
      }
    });
    return dir;
  } catch {
    return undefined;
  }
}
