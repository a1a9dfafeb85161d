/**
 * Our own SIMD matrix products and convolutions for the `wasm` backend, on every core.
 *
 * The kernels (lib/simd/kernels.ts, AssemblyScript, built by `deno task build-simd`) use relaxed SIMD's
 * fused multiply-add, which XNNPACK's build in TF.js 4.22 does not, and run on the backend's own heap:
 * the module imports the backend's shared `WebAssembly.Memory`, so tensors are read and written in
 * place. Each call is split into ranges of row tiles (or of column panels, whichever has more), one per
 * thread: the calling thread takes the first, and `worker_threads` workers, one per further core, each
 * running the same module on the same memory, take the rest. A worker blocks in `Atomics.wait` until
 * called; the caller blocks until all are done, so every call is synchronous, as TF.js kernels are.
 *
 * {@linkcode startSimd} returns the kernels, or why they cannot run here (no relaxed SIMD, no shared
 * memory); the wasm backend then keeps its XNNPACK compositions (lib/wasm.ts).
 *
 * @module
 */
import { KERNELS_WASM_BASE64 } from "./simd/kernels_wasm.ts";

/** What the kernels need of the wasm backend's Emscripten module. */
export interface SimdHeap {
  wasmMemory: WebAssembly.Memory;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

interface Exports {
  packB(...args: number[]): void;
  matmul(...args: number[]): void;
  conv2d(...args: number[]): void;
}

/** Rows of A per tile and columns of B per panel (kernels.ts's MR and NR). */
const MR = 6, NR = 8;
/** Functions a worker can be asked to run, by index. */
const FUNCTIONS = ["packB", "matmul", "conv2d"] as const;
type FunctionName = typeof FUNCTIONS[number];

// The control block of each worker (Int32Array on a SharedArrayBuffer).
const SEQ = 0; // bumped by the caller for each call
const FN = 1; // index into FUNCTIONS; -1 asks the worker to stop
const DONE = 2; // the last SEQ the worker finished
const STATE = 3; // 0 starting, 1 ready, -1 failed
const ARGC = 4;
const ARGS = 5;
const CONTROL_INTS = ARGS + 32;
/** The shared work counter's place at the head of the scratch area (a cache line of its own). */
const COUNTER_BYTES = 64;

/** A row-major matrix in the heap: element (i, j) at offset + 4 (i rows + j cols). */
export interface Strided {
  offset: number;
  rows: number; // row stride, in floats
  cols: number; // column stride, in floats
}

/** Convolution geometry (NHWC input, [kh, kw, ci, co] filter). */
export interface ConvGeometry {
  batch: number;
  height: number;
  width: number;
  inChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padTop: number;
  padLeft: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
}

/** The kernels on one backend's heap. */
export class SimdKernels {
  readonly threads: number;
  private readonly controls: Int32Array[] = [];
  private scratch = 0; // 64-byte aligned, inside `allocated`
  private scratchBytes = 0;

  private constructor(
    private readonly heap: SimdHeap,
    private readonly exports: Exports,
    module: WebAssembly.Module,
    workers: number,
  ) {
    this.threads = 1 + workers;
    for (let i = 0; i < workers; i++) this.controls.push(startWorker(module, heap.wasmMemory));
  }

  /** Starts the kernels on a heap with up to `workers` helper threads (they join as they load). */
  static start(heap: SimdHeap, workers: number): SimdKernels | string {
    const why = unsupported(heap);
    if (why) return why;
    const module = new WebAssembly.Module(kernelsBinary());
    const instance = new WebAssembly.Instance(module, { env: { memory: heap.wasmMemory } });
    return new SimdKernels(heap, instance.exports as unknown as Exports, module, workers);
  }

  /**
   * out (m x n, row-major, at `out`) = A (m x k) B (k x n), A and B in the heap with any strides
   * (transposes are strides).
   */
  matmul(a: Strided, b: Strided, m: number, k: number, n: number, out: number): void {
    const packed = this.pack(b, k, n);
    this.share("matmul", Math.ceil(m / MR), Math.ceil(n / NR), (byTiles, chunk, counter, scratch) => [
      ...[a.offset, m, k, a.rows, a.cols, packed, n, out, n],
      ...[byTiles, chunk, counter, scratch],
    ]);
  }

  /** out [batch, outHeight, outWidth, outChannels] = the convolution of x (NHWC) with filter [kh, kw, ci, co]. */
  conv2d(x: number, filter: number, g: ConvGeometry, out: number): void {
    const k = g.filterHeight * g.filterWidth * g.inChannels;
    const m = g.batch * g.outHeight * g.outWidth;
    const packed = this.pack({ offset: filter, rows: g.outChannels, cols: 1 }, k, g.outChannels);
    this.share("conv2d", Math.ceil(m / MR), Math.ceil(g.outChannels / NR), (byTiles, chunk, counter, scratch) => [
      ...[x, g.batch, g.height, g.width, g.inChannels, g.filterHeight, g.filterWidth],
      ...[g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft],
      ...[g.outHeight, g.outWidth, packed, g.outChannels, out],
      ...[byTiles, chunk, counter, scratch],
    ]);
  }

  /** Stops the workers (the kernels then run on the calling thread only). */
  close(): void {
    for (const c of this.controls.splice(0)) {
      Atomics.store(c, FN, -1);
      Atomics.add(c, SEQ, 1);
      Atomics.notify(c, SEQ);
    }
  }

  /**
   * Lays out the scratch area for one product, [work counter | packed B | each thread's 6 k + 48
   * floats], packs B (k x n) into it, and returns where.
   */
  private pack(b: Strided, k: number, n: number): number {
    const panels = Math.ceil(n / NR);
    this.head = COUNTER_BYTES + align(panels * k * NR * 4, 64);
    this.perThread = align((MR * k + MR * NR) * 4, 64);
    this.reserve(this.head + this.threads * this.perThread);
    const dst = this.scratch + COUNTER_BYTES;
    this.share("packB", 0, panels, (_byTiles, chunk, counter) => [b.offset, k, n, b.rows, b.cols, dst, chunk, counter]);
    return dst;
  }

  private head = 0;
  private perThread = 0;

  /**
   * Runs `fn` on every ready thread at once; they take chunks of row tiles or of panels (whichever
   * there are more of) from a shared counter until none are left, each with its own scratch.
   */
  private share(
    fn: FunctionName,
    tiles: number,
    panels: number,
    args: (byTiles: number, chunk: number, counter: number, scratch: number) => number[],
  ): void {
    const ready = this.controls.filter((c) => Atomics.load(c, STATE) === 1);
    const byTiles = tiles >= panels;
    const units = byTiles ? tiles : panels;
    const threads = Math.min(ready.length + 1, units);
    // About 8 chunks per thread: small enough to even out a slow core, large enough to keep B's
    // panels in cache across a chunk's tiles.
    const chunk = Math.max(1, Math.floor(units / (8 * threads)));
    const counter = this.scratch;
    new Int32Array(this.heap.wasmMemory.buffer, counter, 1)[0] = 0;
    const argsOf = (i: number) => args(byTiles ? 1 : 0, chunk, counter, this.scratch + this.head + i * this.perThread);
    const called: [Int32Array, number][] = [];
    for (let i = 1; i < threads; i++) {
      const c = ready[i - 1];
      const a = argsOf(i);
      c[FN] = FUNCTIONS.indexOf(fn);
      c[ARGC] = a.length;
      for (let j = 0; j < a.length; j++) c[ARGS + j] = a[j];
      const seq = Atomics.add(c, SEQ, 1) + 1;
      Atomics.notify(c, SEQ);
      called.push([c, seq]);
    }
    (this.exports[fn] as (...a: number[]) => void)(...argsOf(0));
    for (const [c, seq] of called) {
      let spins = 0;
      while (Atomics.load(c, DONE) !== seq) {
        if (Atomics.load(c, STATE) === -1) throw new Error(`a simd worker failed in ${fn}`);
        if (++spins > 1000) Atomics.wait(c, DONE, Atomics.load(c, DONE), 1000);
      }
    }
  }

  /** Makes the scratch area at least `bytes` long (keeping nothing of it). */
  private reserve(bytes: number): void {
    if (bytes <= this.scratchBytes) return;
    if (this.allocated) this.heap._free(this.allocated);
    this.scratchBytes = Math.max(bytes, Math.ceil(this.scratchBytes * 1.5));
    this.allocated = this.heap._malloc(this.scratchBytes + 64);
    if (!this.allocated) throw new Error(`simd: could not allocate ${this.scratchBytes} bytes of scratch`);
    this.scratch = align(this.allocated, 64);
  }

  private allocated = 0;
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

let binary: Uint8Array<ArrayBuffer> | undefined;

function kernelsBinary(): Uint8Array<ArrayBuffer> {
  binary ??= Uint8Array.from(atob(KERNELS_WASM_BASE64), (c) => c.charCodeAt(0));
  return binary;
}

/** Why the kernels cannot run on this heap ("" where they can). */
function unsupported(heap: SimdHeap): string {
  if (typeof SharedArrayBuffer === "undefined") return "no SharedArrayBuffer";
  if (!(heap.wasmMemory?.buffer instanceof SharedArrayBuffer)) return "the wasm backend's heap is not shared memory";
  if (!WebAssembly.validate(kernelsBinary())) return "this WebAssembly engine lacks relaxed SIMD";
  return "";
}

type NodeWorker = import("node:worker_threads").Worker;
let NodeWorkerClass: (new (code: string, options: object) => NodeWorker) | undefined;

/** Loads worker_threads (call once before {@linkcode SimdKernels.start} asks for workers). */
export async function loadWorkerThreads(): Promise<void> {
  NodeWorkerClass ??= (await import("node:worker_threads")).Worker as never;
}

/** A worker's code: instantiate the module on the shared heap, then serve calls until told to stop. */
const WORKER_MAIN = `
const { workerData } = require("node:worker_threads");
const c = new Int32Array(workerData.control);
try {
  const exports = new WebAssembly.Instance(workerData.module, { env: { memory: workerData.memory } }).exports;
  const fns = ${JSON.stringify(FUNCTIONS)}.map((name) => exports[name]);
  Atomics.store(c, ${STATE}, 1);
  let seen = 0;
  for (;;) {
    Atomics.wait(c, ${SEQ}, seen);
    seen = Atomics.load(c, ${SEQ});
    const fn = c[${FN}];
    if (fn < 0) break;
    const args = Array.from(c.subarray(${ARGS}, ${ARGS} + c[${ARGC}]));
    fns[fn](...args);
    Atomics.store(c, ${DONE}, seen);
    Atomics.notify(c, ${DONE});
  }
} catch (err) {
  Atomics.store(c, ${STATE}, -1);
  Atomics.notify(c, ${DONE});
}
`;

function startWorker(module: WebAssembly.Module, memory: WebAssembly.Memory): Int32Array {
  const control = new Int32Array(new SharedArrayBuffer(CONTROL_INTS * 4));
  if (!NodeWorkerClass) return control; // never ready: the caller does all the work
  const worker = new NodeWorkerClass(WORKER_MAIN, {
    eval: true,
    workerData: { module, memory, control: control.buffer },
  });
  worker.unref(); // idle workers must not keep the process alive
  worker.on("error", () => Atomics.store(control, STATE, -1));
  return control;
}
