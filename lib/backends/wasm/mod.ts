/**
 * The `wasm` backend (XNNPACK, SIMD) with fast gradients.
 *
 * Stock TF.js 4.22 wasm has fast forward kernels but slow or missing gradient
 * kernels: `Conv2DBackpropFilter` is not registered (training fails),
 * `Conv2DBackpropInput` is a naive loop, and `BatchMatMul` with a transposed
 * operand falls back to a naive loop. {@linkcode registerWasmBackend} replaces
 * those three kernels with compositions of fast ones: every gradient becomes a
 * convolution or product on transposed, flipped or zero-interleaved operands.
 * It also starts the threaded SIMD build on every core, and puts convolutions,
 * products, the 2×2 max-pool gradient, leading-axis sums and the optimisers'
 * updates on our own relaxed-SIMD kernels (lib/backends/wasm/simd/mod.ts) where they can run,
 * XNNPACK's and TF.js's where not. Registering does not change the current
 * backend.
 *
 * ```ts
 * import { tf } from "../../core/tf.ts";
 * import { registerWasmBackend } from "./mod.ts";
 * await registerWasmBackend();
 * await tf.setBackend("wasm");
 * ```
 *
 * Needs read permission on `node_modules/@tensorflow/tfjs-backend-wasm/dist/`
 * (the `.wasm` binaries).
 *
 * @module
 */
import { loadWorkerThreads, type SimdHeap, SimdKernels } from "./simd/mod.ts";
import { tf } from "../../core/tf.ts";

type Info = tf.TensorInfo;
type Backend = tf.KernelBackend;
/** The part of the wasm backend's class used here (views on its heap). */
interface WasmHeap {
  typedArrayFromHeap(x: Info): Float32Array;
  makeOutput(shape: number[], dtype: tf.DataType): Info;
}
type Pad4 = [
  [number, number],
  [number, number],
  [number, number],
  [number, number],
];

const BACKEND = "wasm";
const BINARY = "tfjs-backend-wasm-simd.wasm";

/** Kernel functions installed by this module, to make registration idempotent. */
const ours = new WeakSet<tf.KernelFunc>();
let registering: Promise<void> | undefined;

/**
 * Registers the `wasm` backend with its binaries read from the installed npm
 * package, and installs fast `Conv2DBackpropInput`, `Conv2DBackpropFilter` and
 * transposed `BatchMatMul` kernels for it. Idempotent; call before
 * `tf.setBackend("wasm")`.
 */
export function registerWasmBackend(): Promise<void> {
  registering ??= (async () => {
    // Pin the current (or default) backend first: wasm outranks cpu, and would
    // otherwise become the (not yet initialised) default of a fresh engine.
    tf.backend();
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(wasmDistDir());
    threaded(wasm);
    await loadWorkerThreads();
    installKernels();
  })();
  return registering;
}

/** Threads of the started wasm backend's XNNPACK pool (1: single-threaded); undefined before it starts. */
export function wasmThreads(): number | undefined {
  return threadsInUse;
}

let threadsInUse: number | undefined;

/** Why the wasm backend runs single-threaded ("" when it runs with threads, or before it starts). */
export let wasmThreadsReason = "";

/**
 * Makes the wasm backend start its multi-threaded SIMD build, whose XNNPACK pool runs on Emscripten
 * pthreads (Web Workers on a SharedArrayBuffer heap). TF.js 4.22 never chooses that build under Deno:
 *
 * - it takes Deno for Node (which it leaves single-threaded), so its thread test says no;
 * - Emscripten's Node path then makes `worker_threads` workers from a `blob:` URL, which Deno's
 *   `worker_threads` refuses; and its browser path needs classic workers with `importScripts`, which
 *   Deno does not have;
 * - it sizes the pool at half the logical cores (for hyper-threads), so 1 on a 2-core machine.
 *
 * So the factory of the `wasm` backend is wrapped: while it runs, `Worker` is a shim that starts each
 * pthread as a `worker_threads` worker running Emscripten's worker script as a browser would (see
 * {@linkcode pthreadMain}), and `os.cpus()` reports twice the cores, so that the pool gets one thread
 * per logical core. Where that fails, the backend starts single-threaded, as before, and
 * {@linkcode wasmThreadsReason} says why.
 */
function threaded(wasm: typeof import("@tensorflow/tfjs-backend-wasm")): void {
  const factory = tf.findBackendFactory(BACKEND);
  if (!factory) return;
  if (typeof SharedArrayBuffer === "undefined" || typeof Worker === "undefined") {
    threadsInUse = 1;
    wasmThreadsReason = "no SharedArrayBuffer or Worker here";
    return;
  }
  const priority = 2; // TF.js's own for wasm
  tf.removeBackend(BACKEND);
  tf.registerBackend(BACKEND, async () => {
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
    try {
      const backend = await withPthreadWorkers(async () => await factory());
      threadsInUse = wasm.getThreadsCount();
      wasmThreadsReason = "";
      return backend;
    } catch (err) {
      const message = (err as { message?: unknown } | undefined)?.message ?? err;
      wasmThreadsReason = `the threaded build did not start (${message})`;
      tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
      const backend = await factory();
      threadsInUse = 1;
      return backend;
    }
  }, priority);
}

type NodeWorker = import("node:worker_threads").Worker;
let NodeWorkerClass: (new (code: string, options: { eval: true }) => NodeWorker) | undefined;

/** How long the pthreads may take to load before the threaded start counts as failed. */
const LOAD_TIMEOUT_MS = 60_000;

/** The workers started by the current {@linkcode withPthreadWorkers}, and how it learns that one failed to load. */
const starting = { workers: new Set<PthreadWorker>(), fail: (_err: unknown) => {} };

/**
 * Runs `f` with `Worker` pinned to {@linkcode PthreadWorker} and `os.cpus()` doubled. Rejects, with every
 * worker it started terminated (so none keeps the process alive), where `f` fails, a worker fails before
 * it has loaded (Emscripten would rethrow that on the main thread) or the workers take over a minute.
 */
async function withPthreadWorkers<T>(f: () => Promise<T>): Promise<T> {
  NodeWorkerClass ??= (await import("node:worker_threads")).Worker;
  const g = globalThis as Record<string, unknown>;
  const saved = Object.getOwnPropertyDescriptor(g, "Worker");
  const os = (await import("node:os")).default as { cpus: () => unknown[] };
  const cpus = os.cpus;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = new Promise<never>((_, reject) => {
    starting.fail = reject;
    timer = setTimeout(
      () => reject(new Error(`its workers did not load in ${LOAD_TIMEOUT_MS / 1000} s`)),
      LOAD_TIMEOUT_MS,
    );
  });
  // Emscripten's Node path assigns its own Worker; the setter ignores that.
  Object.defineProperty(g, "Worker", { get: () => PthreadWorker, set: () => {}, configurable: true });
  // (navigator's count needs no --allow-sys, os.cpus() does.)
  os.cpus = () => Array.from({ length: 2 * navigator.hardwareConcurrency }, () => ({}));
  try {
    return await Promise.race([f(), failed]);
  } catch (err) {
    for (const w of starting.workers) w.terminate();
    throw err;
  } finally {
    clearTimeout(timer);
    failed.catch(() => {});
    starting.workers.clear();
    starting.fail = () => {};
    os.cpus = cpus;
    if (saved) Object.defineProperty(g, "Worker", saved);
    else delete g.Worker;
  }
}

/**
 * The code of each pthread's worker: it fetches Emscripten's worker script (a `blob:` URL made by TF.js)
 * and runs it as in a browser worker: `process` and `require` hidden, `postMessage` and `onmessage` on
 * the worker's port, messages held back until the script has set `onmessage`. The "load" message
 * carries the main script as a Blob; it is read before the message is handed on, so that the script's
 * `importScripts` can run it at once.
 */
function pthreadMain(url: string): string {
  return `
const { parentPort } = require("node:worker_threads");
let handler = null, script = "", busy = false;
const queue = [];
const send = (m) => parentPort.postMessage(m);
const self = globalThis; // Emscripten calls what it sets on self by bare name too
Object.defineProperty(self, "onmessage", { set(f) { handler = f; pump(); }, get() { return handler; }, configurable: true });
const run = (code) => new Function("process", "require", "self", "postMessage", code)(undefined, undefined, self, send);
globalThis.importScripts = () => run(script + "\\n;globalThis.WasmBackendModuleThreadedSimd = WasmBackendModuleThreadedSimd;");
async function pump() {
  if (busy || !handler) return;
  busy = true;
  try {
    while (queue.length > 0) {
      const data = queue.shift();
      if (data && data.cmd === "load" && typeof data.urlOrBlob !== "string") script = await data.urlOrBlob.text();
      handler({ data });
    }
  } finally {
    busy = false;
  }
}
parentPort.on("message", (data) => { queue.push(data); pump(); });
fetch(${JSON.stringify(url)}).then((r) => r.text()).then(run);
`;
}

/**
 * The Worker that Emscripten's Node path asks for, over a `worker_threads` worker whose code is
 * {@linkcode pthreadMain}: unlike a web Worker, it can be unreferenced, so that idle pthreads do not keep
 * the process alive.
 */
class PthreadWorker {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  private readonly inner: NodeWorker;

  private loaded = false;

  constructor(url: string | URL) {
    if (!NodeWorkerClass) throw new Error("worker_threads not loaded");
    this.inner = new NodeWorkerClass(pthreadMain(String(url)), { eval: true });
    starting.workers.add(this);
    this.inner.on("message", (data: { cmd?: string } | undefined) => {
      if (data?.cmd === "loaded") this.loaded = true;
    });
  }

  on(type: string, f: (x: unknown) => void): void {
    if (type === "message") this.inner.on(type, f);
    else if (type === "error") {
      // Before it has loaded, a worker's failure fails the threaded start (and its fallback) instead.
      const fail = starting.fail;
      this.inner.on(type, (err: unknown) => this.loaded ? f(err) : fail(err));
    }
  }

  postMessage(data: unknown, transfer: Transferable[] = []): void {
    this.inner.postMessage(data, transfer as never);
  }

  terminate(): void {
    this.inner.terminate();
  }

  /** Emscripten unreferences each worker once it has loaded; from then on it never keeps the process alive. */
  unref(): void {
    this.inner.unref();
  }

  /**
   * Not passed on: Emscripten references a worker while it runs a pthread, and XNNPACK's pool threads run
   * until the process ends, so the process would never exit. Nothing the main thread awaits depends on
   * them: it blocks in each kernel until the pool is done.
   */
  ref(): void {}
}

/** The package's dist/ folder (with a trailing slash), as a file system path. */
function wasmDistDir(): string {
  const candidates: URL[] = [];
  try {
    const entry = new URL(import.meta.resolve("@tensorflow/tfjs-backend-wasm"));
    if (entry.protocol === "file:") candidates.push(new URL("./", entry));
  } catch {
    // Not resolvable to a file (no node_modules): try the project layout below.
  }
  candidates.push(
    new URL(
      "../../../node_modules/@tensorflow/tfjs-backend-wasm/dist/",
      import.meta.url,
    ),
  );
  for (const dir of candidates) {
    try {
      if (Deno.statSync(new URL(BINARY, dir)).isFile) {
        const path = decodeURIComponent(dir.pathname);
        // Windows: "/C:/x/" -> "C:/x/".
        return /^\/[A-Za-z]:/.test(path) ? path.slice(1) : path;
      }
    } catch {
      // Missing or unreadable: try the next candidate.
    }
  }
  throw new Error(
    `expected ${BINARY} of @tensorflow/tfjs-backend-wasm in one of ` +
      `${candidates.map((u) => u.href).join(", ")}, found none ` +
      `(is "nodeModulesDir": "auto" set and --allow-read given?)`,
  );
}

function installKernels(): void {
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
  replace("AdvAdamUpdate", adamUpdate as unknown as tf.KernelFunc);
  replace("AdvMomentumUpdate", momentumUpdate as unknown as tf.KernelFunc);
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

// ---------------------------------------------------------------------------
// Conv2D and BatchMatMul on our own relaxed-SIMD kernels (lib/backends/wasm/simd/mod.ts), on every core. The gradient
// compositions below call Conv2D, so they run on them too. Where the kernels cannot start (an engine
// without relaxed SIMD, a single-threaded heap, ADV_NO_SIMD=1), XNNPACK's kernels run instead.

let simd: { backend: Backend; kernels: SimdKernels | undefined } | undefined;

/** Why our SIMD kernels do not run ("" when they run, or before the backend's first product). */
export let wasmSimdReason = "";

/** Threads of our SIMD kernels (undefined when they do not run, or before the backend's first product). */
export function wasmSimdThreads(): number | undefined {
  return simd?.kernels?.threads;
}

/**
 * Starts our SIMD kernels on the current (wasm) backend now rather than at its first product, and says
 * in a few words what runs the ops on how many threads: for the backend line.
 */
export function wasmBackendDetail(): string {
  const kernels = simdOf(tf.backend());
  const ours = kernels
    ? `our relaxed-SIMD products and convolutions on ${kernels.threads} threads`
    : `XNNPACK products and convolutions (our SIMD kernels off: ${wasmSimdReason})`;
  const xnnpack = wasmThreadsReason ? `1 thread: ${wasmThreadsReason}` : `${wasmThreads()} threads`;
  return `${ours}, XNNPACK for the rest (${xnnpack})`;
}

/** How many of our kernels' workers have loaded, and in how many calls one took part (for tests). */
export function wasmSimdStats(): { readyWorkers: number; sharedCalls: number } | undefined {
  const k = simd?.kernels;
  return k && { readyWorkers: k.readyWorkers(), sharedCalls: k.sharedCalls };
}

/** Workers of our kernels beside the calling thread: one per further core, up to 7. */
const SIMD_WORKERS = Math.max(0, Math.min(7, (navigator.hardwareConcurrency ?? 1) - 1));

/**
 * Turns our SIMD kernels off (XNNPACK's run instead) or back on, for comparisons in one process; on by
 * default where they can start.
 */
export function useWasmSimd(on: boolean): void {
  simdOff = !on;
}

let simdOff = false;

function simdOf(backend: Backend): SimdKernels | undefined {
  if (simdOff) return undefined;
  if (simd?.backend === backend) return simd.kernels;
  simd?.kernels?.close();
  let off = false;
  try {
    off = Deno.env.get("ADV_NO_SIMD") === "1";
  } catch {
    // No --allow-env: the variable cannot be set either.
  }
  const heap = (backend as unknown as { wasm?: SimdHeap }).wasm;
  const started = off ? "ADV_NO_SIMD=1 is set" : heap ? SimdKernels.start(heap, SIMD_WORKERS) : "no wasm heap";
  const kernels = typeof started === "string" ? undefined : started;
  wasmSimdReason = typeof started === "string" ? started : "";
  simd = { backend, kernels };
  return kernels;
}

/** Where a tensor's data starts in the wasm heap (bytes). */
function offsetOf(backend: Backend, x: Info): number {
  return (backend as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } } })
    .dataIdMap.get(x.dataId).memoryOffset;
}

function simdConv2dKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter } = args.inputs as { x: Info; filter: Info };
    const backend = args.backend as Backend;
    const attrs = args.attrs as unknown as ConvGradAttrs & { dilations: [number, number] | number };
    const kernels = simdOf(backend);
    const empty = x.shape.includes(0) || filter.shape.includes(0);
    const floats = x.dtype === "float32" && filter.dtype === "float32";
    if (!kernels || attrs.dataFormat === "NCHW" || !floats || empty) return stock(args);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      attrs.strides,
      attrs.dilations,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      "channelsLast",
    );
    const out = (backend as unknown as WasmHeap).makeOutput(info.outShape, "float32");
    kernels.conv2d(
      offsetOf(backend, x),
      offsetOf(backend, filter),
      {
        batch: info.batchSize,
        height: info.inHeight,
        width: info.inWidth,
        inChannels: info.inChannels,
        filterHeight: info.filterHeight,
        filterWidth: info.filterWidth,
        strideHeight: info.strideHeight,
        strideWidth: info.strideWidth,
        dilationHeight: info.dilationHeight,
        dilationWidth: info.dilationWidth,
        padTop: info.padInfo.top,
        padLeft: info.padInfo.left,
        outHeight: info.outHeight,
        outWidth: info.outWidth,
        outChannels: info.outChannels,
      },
      offsetOf(backend, out),
      filter.dataId,
    );
    return out;
  };
}

/**
 * Sum over every axis but the last (bias gradients) on our kernels, in blocks of 64 rows (XNNPACK's Sum
 * transposes first and runs on one thread: 4 ms of model A's training step); other sums as before.
 */
function simdSumKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: Info };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const backend = args.backend as Backend;
    const kernels = simdOf(backend);
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
    const leading = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
    if (!kernels || x.dtype !== "float32" || !leading || tf.util.sizeFromShape(x.shape) === 0) return stock(args);
    const cols = x.shape[rank - 1];
    const shape = keepDims ? [...x.shape.slice(0, -1).map(() => 1), cols] : [cols];
    const out = (backend as unknown as WasmHeap).makeOutput(shape, "float32");
    kernels.sumRows(offsetOf(backend, x), tf.util.sizeFromShape(x.shape) / cols, cols, offsetOf(backend, out));
    return out;
  };
}

/** BatchMatMul on our kernels (transposes are strides), one product per batch; else `fallback`. */
function simdMatMulKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as Backend;
    const kernels = simdOf(backend);
    const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const [outerA, outerB] = [a.shape.slice(0, -2), b.shape.slice(0, -2)];
    const [batchA, batchB] = [size(outerA), size(outerB)];
    const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
    const [ra, ca] = a.shape.slice(-2), [rb, cb] = b.shape.slice(-2);
    const [m, k] = transposeA ? [ca, ra] : [ra, ca];
    const n = transposeB ? rb : cb;
    if (
      !kernels || a.dtype !== "float32" || b.dtype !== "float32" || size(a.shape) === 0 || size(b.shape) === 0 ||
      (!sameOuter && batchA !== 1 && batchB !== 1) || k !== (transposeB ? cb : rb)
    ) {
      return fallback(args); // (which also says what is wrong with mismatched shapes)
    }
    // The batch dimensions broadcast, as the stock kernel's do: [2, 3] x [1, 3, 4] is [1, 2, 4].
    const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
    const heap = backend as unknown as WasmHeap;
    const aStrides = { offset: offsetOf(backend, a), rows: transposeA ? 1 : k, cols: transposeA ? m : 1 };
    const bStrides = { offset: offsetOf(backend, b), rows: transposeB ? 1 : n, cols: transposeB ? k : 1 };
    if (
      transposeB && !transposeA && batchA === 1 && batchB === 1 && n >= 4 * m &&
      !kernels.reuses(bStrides, k, n, b.dataId)
    ) {
      // a b^T with b large and seen once (a training step's input gradient through a dense layer):
      // (b a^T)^T reads b's rows in place, where a b^T would pack all of b first.
      const outT = heap.makeOutput([n, m], "float32");
      kernels.matmul(
        { offset: bStrides.offset, rows: k, cols: 1 },
        { offset: aStrides.offset, rows: 1, cols: k },
        n,
        k,
        m,
        offsetOf(backend, outT),
      );
      const out = transpose(backend, outT, [1, 0]);
      free(backend, outT);
      out.shape = [...outer, m, n];
      return out;
    }
    const out = heap.makeOutput([...outer, m, n], "float32");
    const offOut = offsetOf(backend, out);
    for (let i = 0; i < Math.max(batchA, batchB); i++) {
      kernels.matmul(
        { ...aStrides, offset: aStrides.offset + (batchA === 1 ? 0 : i * m * k * 4) },
        { ...bStrides, offset: bStrides.offset + (batchB === 1 ? 0 : i * k * n * 4) },
        m,
        k,
        n,
        offOut + i * m * n * 4,
        batchB === 1 ? b.dataId : undefined,
      );
    }
    return out;
  };
}

// ---------------------------------------------------------------------------
// The optimisers' fused updates (lib/train/optim.ts runs them where a backend registers them): one pass
// over each variable on our SIMD kernels instead of about ten kernels, with the float32 operations of
// the composed update in its order, so the results are the same floats. Where our kernels do not run,
// the composed update itself, on the backend's own kernels.

function adamUpdate(args: {
  inputs: { variable: Info; m: Info; v: Info; grad: Info };
  backend: Backend;
  attrs: { step: number; beta1: number; beta2: number; epsilon: number };
}): Info[] {
  const { inputs: { variable, m, v, grad }, backend, attrs: { step, beta1, beta2, epsilon } } = args;
  const heap = backend as unknown as WasmHeap;
  const n = tf.util.sizeFromShape(variable.shape);
  const kernels = simdOf(backend);
  if (kernels && n > 0) {
    const [w2, m2, v2] = [variable, m, v].map((t) => heap.makeOutput(t.shape, "float32"));
    const at = (t: Info) => offsetOf(backend, t);
    const offsets = { w: at(variable), m: at(m), v: at(v), g: at(grad), w2: at(w2), m2: at(m2), v2: at(v2) };
    kernels.adam(offsets, n, step, beta1, beta2, epsilon);
    return [w2, m2, v2];
  }
  // m2 = m·β1 + g·(1−β1), v2 = v·β2 + g²·(1−β2), w2 = w − m2·step / (√v2 + ε), as lib/train/optim.ts composes it.
  const ops = composer(backend);
  const m2 = ops.add(ops.mul(m, beta1), ops.mul(grad, 1 - beta1));
  const v2 = ops.add(ops.mul(v, beta2), ops.mul(ops.square(grad), 1 - beta2));
  const w2 = ops.sub(variable, ops.div(ops.mul(m2, step), ops.add(ops.sqrt(v2), epsilon)));
  ops.freeTemporaries([w2, m2, v2]);
  return [w2, m2, v2];
}

function momentumUpdate(args: {
  inputs: { variable: Info; v: Info; grad: Info };
  backend: Backend;
  attrs: { lr: number; momentum: number; decay: number };
}): Info[] {
  const { inputs: { variable, v, grad }, backend, attrs: { lr, momentum, decay } } = args;
  const heap = backend as unknown as WasmHeap;
  const n = tf.util.sizeFromShape(variable.shape);
  const kernels = simdOf(backend);
  if (kernels && n > 0) {
    const [w2, v2] = [variable, v].map((t) => heap.makeOutput(t.shape, "float32"));
    const at = (t: Info) => offsetOf(backend, t);
    kernels.momentum({ w: at(variable), v: at(v), g: at(grad), w2: at(w2), v2: at(v2) }, n, lr, momentum, decay);
    return [w2, v2];
  }
  // g' = g + w·decay (where decay ≠ 0), v2 = v·μ + g', w2 = w − v2·lr, as lib/train/optim.ts composes it.
  const ops = composer(backend);
  const g = decay !== 0 ? ops.add(grad, ops.mul(variable, decay)) : grad;
  const v2 = ops.add(ops.mul(v, momentum), g);
  const w2 = ops.sub(variable, ops.mul(v2, lr));
  ops.freeTemporaries([w2, v2]);
  return [w2, v2];
}

/**
 * Element-wise float32 operations on the backend's own kernels, a number standing for a scalar tensor
 * (as TF.js makes one: the float32 nearest to it). Remembers every tensor it makes, so that all but the
 * results can be freed.
 */
function composer(backend: Backend) {
  const made: Info[] = [];
  const keep = (t: Info) => (made.push(t), t);
  const tensor = (x: Info | number): Info => {
    if (typeof x !== "number") return x;
    const t = keep((backend as unknown as WasmHeap).makeOutput([], "float32"));
    (backend as unknown as WasmHeap).typedArrayFromHeap(t)[0] = x;
    return t;
  };
  const binary = (name: string) => (a: Info | number, b: Info | number) =>
    keep(run(name, backend, { a: tensor(a), b: tensor(b) }, {}));
  const unary = (name: string) => (x: Info) => keep(run(name, backend, { x }, {}));
  return {
    add: binary("Add"),
    sub: binary("Sub"),
    mul: binary("Multiply"),
    div: binary("RealDiv"),
    square: unary("Square"),
    sqrt: unary("Sqrt"),
    freeTemporaries(results: Info[]) {
      for (const t of made) if (!results.includes(t)) free(backend, t);
    },
  };
}

// ---------------------------------------------------------------------------
// Calling the backend's own kernels on TensorInfos.

function run(
  name: string,
  backend: Backend,
  inputs: Record<string, Info>,
  attrs: object,
): Info {
  const config = tf.getKernel(name, BACKEND);
  if (!config) {
    throw new Error(`expected kernel ${name} on the wasm backend, found none`);
  }
  return config.kernelFunc({
    inputs,
    backend,
    attrs: attrs as tf.NamedAttrMap,
  }) as Info;
}

/** A view of `x` with another shape (same data, no copy, no reference count). */
function view(x: Info, shape: number[]): Info {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

function transpose(backend: Backend, x: Info, perm: number[]): Info {
  return run("Transpose", backend, { x }, { perm });
}

function conv2d(
  backend: Backend,
  x: Info,
  filter: Info,
  pad: Pad4,
  dilation = 1,
): Info {
  return run("Conv2D", backend, { x, filter }, {
    strides: [1, 1],
    pad,
    dataFormat: "NHWC",
    dilations: [dilation, dilation],
  });
}

function free(backend: Backend, ...xs: Info[]): void {
  for (const x of xs) backend.disposeData(x.dataId);
}

function pair(v: number | [number, number]): [number, number] {
  return typeof v === "number" ? [v, v] : v;
}

// ---------------------------------------------------------------------------
// Conv2DBackpropInput: a stride-1 convolution of the (zero-interleaved) output
// gradient with the spatially flipped, in/out-swapped filter.

interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | Pad4;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
}

function conv2dBackpropInputKernel(
  stock: tf.KernelFunc | undefined,
): tf.KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const backend = args.backend as Backend;
    const attrs = args.attrs as unknown as ConvGradAttrs & {
      inputShape: [number, number, number, number];
    };
    const [n, h, w, ci] = attrs.inputShape;
    const [kh, kw, , co] = filter.shape;
    const info = tf.backend_util.computeConv2DInfo(
      attrs.inputShape,
      filter.shape as [number, number, number, number],
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      "channelsLast",
    );
    const [sh, sw] = [info.strideHeight, info.strideWidth];
    const [ho, wo] = [info.outHeight, info.outWidth];
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    if (attrs.dataFormat === "NCHW" || top < 0 || left < 0) {
      if (!stock) {
        throw new Error(
          `wasm Conv2DBackpropInput: unsupported attrs ${JSON.stringify(attrs)}`,
        );
      }
      return stock(args);
    }
    // Zero-interleave dy for strides > 1: [n, ho*sh, wo*sw, co], dy at multiples of the stride.
    let d = dy;
    if (sh > 1 || sw > 1) {
      d = run("PadV2", backend, { x: view(dy, [n, ho, 1, wo, 1, co]) }, {
        paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]],
        constantValue: 0,
      });
      d = view(d, [n, ho * sh, wo * sw, co]);
    }
    // Padded length must be h + kh - 1; the interleaved dy spans ho*sh rows.
    const bottom = h + kh - 1 - top - ho * sh;
    const right = w + kw - 1 - left - wo * sw;
    const pad: Pad4 = [[0, 0], [top, Math.max(bottom, 0)], [
      left,
      Math.max(right, 0),
    ], [0, 0]];
    const flipped = run("Reverse", backend, { x: filter }, { dims: [0, 1] });
    let dx: Info;
    if (ci === 1 && !simdOf(backend)) {
      // One output channel starves XNNPACK's GEMM tiles: a depthwise
      // convolution and a channel sum are faster (about 1.6x on model A).
      // (Our Conv2D has a dot-product loop for it.)
      const perChannel = run("DepthwiseConv2dNative", backend, {
        x: d,
        filter: view(flipped, [kh, kw, co, 1]),
      }, { strides: [1, 1], pad, dataFormat: "NHWC", dilations: [1, 1] });
      dx = run("Sum", backend, { x: perChannel }, {
        axis: [3],
        keepDims: true,
      });
      free(backend, perChannel);
      free(backend, flipped);
    } else {
      // Flipped filter with in/out swapped: [kh, kw, co, ci].
      const swapped = transpose(backend, flipped, [0, 1, 3, 2]);
      free(backend, flipped);
      dx = conv2d(backend, d, swapped, pad);
      free(backend, swapped);
    }
    if (d !== dy) free(backend, d);
    if (bottom < 0 || right < 0) {
      const cut = run("Slice", backend, { x: dx }, {
        begin: [0, 0, 0, 0],
        size: [n, h, w, ci],
      });
      free(backend, dx);
      dx = cut;
    }
    return dx;
  };
}

// ---------------------------------------------------------------------------
// Conv2DBackpropFilter: dW[i,j,ci,co] = Σ_{n,y,x} x[n, y·s+i-pt, x·s+j-pl, ci] dy[n,y,x,co]
// is a convolution of x^T [ci, h, w, n] with dy^T [ho, wo, n, co] dilated by the
// stride; its output [ci, kh, kw, co] is transposed to [kh, kw, ci, co].

function conv2dBackpropFilter(args: {
  inputs: { x: Info; dy: Info };
  backend: Backend;
  attrs: ConvGradAttrs & { filterShape: [number, number, number, number] };
}): Info {
  const { inputs: { x, dy }, backend, attrs } = args;
  if (attrs.dataFormat === "NCHW") {
    throw new Error(
      `wasm Conv2DBackpropFilter expects dataFormat NHWC, got NCHW`,
    );
  }
  const [kh, kw, ci, co] = attrs.filterShape;
  const [, h, w] = x.shape;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [sh, sw] = pair(attrs.strides);
  if (sh !== sw) {
    throw new Error(
      `wasm Conv2DBackpropFilter expects equal strides, got [${sh}, ${sw}]`,
    );
  }
  const [ho, wo] = [info.outHeight, info.outWidth];
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const bottom = kh + (ho - 1) * sh - h - top;
  const right = kw + (wo - 1) * sw - w - left;
  const xt = transpose(backend, x, [3, 1, 2, 0]);
  const dyt = transpose(backend, dy, [1, 2, 0, 3]);
  let out = conv2d(backend, xt, dyt, [[0, 0], [top, Math.max(bottom, 0)], [
    left,
    Math.max(right, 0),
  ], [0, 0]], sh);
  free(backend, xt, dyt);
  if (bottom < 0 || right < 0) {
    const cut = run("Slice", backend, { x: out }, {
      begin: [0, 0, 0, 0],
      size: [ci, kh, kw, co],
    });
    free(backend, out);
    out = cut;
  }
  const dw = transpose(backend, out, [1, 2, 0, 3]);
  free(backend, out);
  return dw;
}

// ---------------------------------------------------------------------------
// BatchMatMul: XNNPACK runs only untransposed single-batch products, so
// transposes are made explicit (on whichever operand is cheaper to move).

function batchMatMulKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as {
      transposeA: boolean;
      transposeB: boolean;
    };
    const backend = args.backend as Backend;
    const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const outer = (s: number[]) => size(s.slice(0, -2));
    if (
      (!transposeA && !transposeB) || outer(a.shape) !== 1 ||
      outer(b.shape) !== 1
    ) {
      return stock(args);
    }
    const a2 = view(a, a.shape.slice(-2));
    const b2 = view(b, b.shape.slice(-2));
    const [m, k] = transposeA ? [a2.shape[1], a2.shape[0]] : a2.shape;
    const nn = transposeB ? b2.shape[0] : b2.shape[1];
    const outShape = [
      ...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2),
      m,
      nn,
    ];
    const mm = (x: Info, y: Info): Info =>
      stock({
        inputs: { a: view(x, [1, ...x.shape]), b: view(y, [1, ...y.shape]) },
        backend,
        attrs: { transposeA: false, transposeB: false },
      }) as Info;
    let out: Info;
    if (transposeA && !transposeB) {
      // (a^T) b: move a.
      const at = transpose(backend, a2, [1, 0]);
      out = mm(at, b2);
      free(backend, at);
    } else if (!transposeA && transposeB) {
      if (2 * k * nn <= 2 * m * k + m * nn) {
        // a (b^T): move b.
        const bt = transpose(backend, b2, [1, 0]);
        out = mm(a2, bt);
        free(backend, bt);
      } else {
        // (b a^T)^T: move a and the (small) result, keep the big b in place.
        const at = transpose(backend, a2, [1, 0]);
        const o = mm(b2, at);
        free(backend, at);
        out = transpose(backend, view(o, [nn, m]), [1, 0]);
        free(backend, o);
      }
    } else {
      // a^T b^T = (b a)^T.
      const o = mm(b2, a2);
      out = transpose(backend, view(o, [nn, m]), [1, 0]);
      free(backend, o);
    }
    out.shape = outShape;
    return out;
  };
}

// ---------------------------------------------------------------------------
// MaxPoolGrad: the stock kernel rescans every window for every input pixel.
// One pass over the windows suffices: each window sends its dy to its first
// maximum (row-major, as the cpu backend does), and overlapping windows add up.

function maxPoolGrad(args: {
  inputs: { dy: Info; input: Info };
  backend: Backend;
  attrs: {
    filterSize: [number, number] | number;
    strides: [number, number] | number;
    pad: "valid" | "same" | number;
    dimRoundingMode?: "floor" | "round" | "ceil";
  };
}): Info {
  const { inputs: { dy, input }, attrs } = args;
  const backend = args.backend as unknown as WasmHeap;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const {
    batchSize,
    inHeight: h,
    inWidth: w,
    inChannels: c,
    outHeight: ho,
    outWidth: wo,
  } = info;
  const {
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: fh,
    filterWidth: fw,
  } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const out = backend.makeOutput(input.shape, "float32");
  const twoByTwo = fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && 2 * ho <= h &&
    2 * wo <= w;
  const kernels = simdOf(args.backend);
  if (twoByTwo && kernels && input.dtype === "float32" && dy.dtype === "float32" && batchSize * ho * wo * c > 0) {
    const at = (t: Info) => offsetOf(args.backend, t);
    kernels.maxPoolGrad2x2(at(input), at(dy), at(out), batchSize, h, w, c, ho, wo);
    return out;
  }
  // Views only after makeOutput: allocating may grow (and detach) the heap.
  const dx = backend.typedArrayFromHeap(out);
  const x = backend.typedArrayFromHeap(input);
  const g = backend.typedArrayFromHeap(dy);
  dx.fill(0);
  if (twoByTwo) {
    maxPoolGrad2x2(x, g, dx, batchSize, h, w, c, ho, wo);
    return out;
  }
  // Running maximum and its heap index per channel, so the inner loops read
  // contiguous channels.
  const best = new Float32Array(c);
  const at = new Int32Array(c);
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < ho; oy++) {
      const y0 = Math.max(0, oy * sh - top);
      const y1 = Math.min(h, oy * sh - top + fh);
      for (let ox = 0; ox < wo; ox++) {
        const x0 = Math.max(0, ox * sw - left);
        const x1 = Math.min(w, ox * sw - left + fw);
        best.fill(-Infinity);
        at.fill(-1);
        for (let y = y0; y < y1; y++) {
          for (let xx = x0; xx < x1; xx++) {
            const base = ((b * h + y) * w + xx) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[base + ch];
              if (v > best[ch]) {
                best[ch] = v;
                at[ch] = base + ch;
              }
            }
          }
        }
        const gBase = ((b * ho + oy) * wo + ox) * c;
        for (let ch = 0; ch < c; ch++) {
          if (at[ch] >= 0) dx[at[ch]] += g[gBase + ch];
        }
      }
    }
  }
  return out;
}

/**
 * maxPoolGrad's loop for 2×2 windows at stride 2 that lie inside the image (model A's pooling): the same
 * scan order and tie rule (the first maximum; NaNs never win), without the per-window buffers. The
 * general loop took 27 of a 250 ms model A PGD step on wasm.
 */
function maxPoolGrad2x2(
  x: Float32Array,
  g: Float32Array,
  dx: Float32Array,
  batchSize: number,
  h: number,
  w: number,
  c: number,
  ho: number,
  wo: number,
): void {
  const row = w * c;
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        const p00 = ((b * h + 2 * oy) * w + 2 * ox) * c, p01 = p00 + c, p10 = p00 + row, p11 = p10 + c;
        const gBase = ((b * ho + oy) * wo + ox) * c;
        for (let ch = 0; ch < c; ch++) {
          let best = -Infinity, at = -1, v = x[p00 + ch];
          if (v > best) best = v, at = p00 + ch;
          v = x[p01 + ch];
          if (v > best) best = v, at = p01 + ch;
          v = x[p10 + ch];
          if (v > best) best = v, at = p10 + ch;
          v = x[p11 + ch];
          if (v > best) at = p11 + ch;
          if (at >= 0) dx[at] += g[gBase + ch];
        }
      }
    }
  }
}
