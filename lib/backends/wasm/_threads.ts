/**
 * The threaded start of the wasm backend under Deno: its XNNPACK pool on Emscripten pthreads run as
 * `worker_threads` workers, and how many threads it got or why it runs on one.
 *
 * @module
 */
import { tf } from "../../core/tf.ts";
import { BACKEND } from "./_run.ts";

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
export function threaded(wasm: typeof import("@tensorflow/tfjs-backend-wasm")): void {
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
