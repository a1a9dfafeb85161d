/**
 * Our own SIMD matrix products and convolutions for the `wasm` backend, on every core.
 *
 * The kernels (lib/backends/wasm/simd/kernels.ts, AssemblyScript, built by `deno task build-simd`) use relaxed SIMD's
 * fused multiply-add, which XNNPACK's build in TF.js 4.22 does not, and run on the backend's own heap:
 * the module imports the backend's shared `WebAssembly.Memory`, so tensors are read and written in
 * place. The calling thread and `worker_threads` workers, one per further core, each running the same
 * module on the same memory, share each call: every thread takes the next chunk of row tiles (or column
 * panels, or blocks of values) from a counter in shared memory until none are left, so that a core slowed
 * by other work does not hold the call up. A worker blocks in `Atomics.wait` until called; the caller
 * blocks until all are done, so every call is synchronous, as TF.js kernels are.
 *
 * {@linkcode SimdKernels.start} returns the kernels, or why they cannot run here (no relaxed SIMD, no
 * shared memory); the wasm backend then keeps XNNPACK and its compositions (lib/backends/wasm/).
 *
 * @module
 */
import { KERNELS_WASM_BASE64 } from "./kernels_wasm.ts";

/** What the kernels need of the wasm backend's Emscripten module. */
export interface SimdHeap {
  wasmMemory: WebAssembly.Memory;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

/** Rows of A per tile and columns of B per panel (kernels.ts's MR and NR). */
const MR = 6, NR = 8;
/** The module's exports that threads share, by index (a worker is told the index). */
const FUNCTIONS = [
  "packB",
  "matmul",
  "conv2d",
  "conv2dOneOut",
  "conv2dNarrow",
  "maxPoolGrad2x2",
  "adam",
  "momentum",
  "sumRows",
] as const;
type FunctionName = typeof FUNCTIONS[number];
type Exports = Record<FunctionName, (...args: number[]) => void>;

// Each worker's control block: a SharedArrayBuffer with Int32 fields, then the call's arguments as
// Float64 (pointers and sizes are exact in a double, and f32 arguments need a float).
const SEQ = 0; // bumped by the caller for each call
const FN = 1; // index into FUNCTIONS; -1 asks the worker to stop
const DONE = 2; // the last SEQ the worker finished
const STATE = 3; // 0 starting, 1 ready, -1 failed
const ARGC = 4;
const ARGS_BYTE = 64;
const MAX_ARGS = 32;
/** The shared work counter's place at the head of the scratch area (a cache line of its own). */
const COUNTER_BYTES = 64;
/** Values per unit of work of the elementwise kernels (kernels.ts: blocks of 1024). */
const BLOCK = 1024;

interface Control {
  ints: Int32Array;
  args: Float64Array;
}

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
  private readonly controls: Control[] = [];
  private allocated = 0; // what _malloc returned
  private scratch = 0; // 64-byte aligned, inside `allocated`
  private scratchBytes = 0;
  private head = COUNTER_BYTES; // the counter, then packed B
  private perThread = 0;

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

  /** Workers that have loaded and take work (the calling thread not counted). */
  readyWorkers(): number {
    return this.controls.filter((c) => Atomics.load(c.ints, STATE) === 1).length;
  }

  /** Calls in which at least one worker took part. */
  sharedCalls = 0;

  /**
   * out (m x n, row-major, at `out`) = A (m x k) B (k x n), A and B in the heap with any strides
   * (transposes are strides).
   */
  matmul(a: Strided, b: Strided, m: number, k: number, n: number, out: number, bKey?: object): void {
    const packed = this.pack(b, k, n, bKey);
    const [tiles, panels] = [Math.ceil(m / MR), Math.ceil(n / NR)];
    const byTiles = tiles >= panels ? 1 : 0;
    this.share("matmul", byTiles ? tiles : panels, (chunk, counter, scratch) => [
      ...[a.offset, m, k, a.rows, a.cols, packed, n, out, n],
      ...[byTiles, chunk, counter, scratch],
    ]);
  }

  /** out [batch, outHeight, outWidth, outChannels] = the convolution of x (NHWC) with filter [kh, kw, ci, co]. */
  conv2d(x: number, filter: number, g: ConvGeometry, out: number, filterKey?: object): void {
    const k = g.filterHeight * g.filterWidth * g.inChannels;
    const rows = g.batch * g.outHeight;
    const geometry = [
      ...[x, g.batch, g.height, g.width, g.inChannels, g.filterHeight, g.filterWidth],
      ...[g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft],
      ...[g.outHeight, g.outWidth],
    ];
    this.layOut(0, 0);
    if (g.outChannels === 1) {
      // One output channel: a dot product per pixel, no packing.
      this.share("conv2dOneOut", rows, (chunk, counter) => [...geometry, filter, out, chunk, counter]);
      return;
    }
    if (k <= NARROW_DEPTH && g.outChannels % 4 === 0) {
      // A first layer: few products per output, too few to pay for gathering patches.
      this.share("conv2dNarrow", rows, (chunk, counter) => [...geometry, filter, g.outChannels, out, chunk, counter]);
      return;
    }
    const m = rows * g.outWidth;
    const packed = this.pack({ offset: filter, rows: g.outChannels, cols: 1 }, k, g.outChannels, filterKey);
    const [tiles, panels] = [Math.ceil(m / MR), Math.ceil(g.outChannels / NR)];
    const byTiles = tiles >= panels ? 1 : 0;
    this.share("conv2d", byTiles ? tiles : panels, (chunk, counter, scratch) => [
      ...geometry,
      ...[packed, g.outChannels, out, byTiles, chunk, counter, scratch],
    ]);
  }

  /** dx [n, h, w, c] from dy [n, ho, wo, c] of a 2 x 2, stride 2 max-pool inside the image of x. */
  maxPoolGrad2x2(
    x: number,
    dy: number,
    dx: number,
    n: number,
    h: number,
    w: number,
    c: number,
    ho: number,
    wo: number,
  ) {
    this.layOut(0, 0);
    this.share("maxPoolGrad2x2", n * ho, (chunk, counter) => [x, dy, dx, n, h, w, c, ho, wo, chunk, counter]);
  }

  /** One Adam step over n values (see kernels.ts's adam for the order of operations). */
  adam(
    at: { w: number; m: number; v: number; g: number; w2: number; m2: number; v2: number },
    n: number,
    step: number,
    beta1: number,
    beta2: number,
    epsilon: number,
  ): void {
    this.layOut(0, 0);
    this.share("adam", Math.ceil(n / BLOCK), (chunk, counter) => [
      ...[at.w, at.m, at.v, at.g, at.w2, at.m2, at.v2, n],
      ...[step, beta1, 1 - beta1, beta2, 1 - beta2, epsilon, chunk, counter],
    ]);
  }

  /** One step of SGD with momentum and L2 decay over n values (kernels.ts's momentum). */
  momentum(
    at: { w: number; v: number; g: number; w2: number; v2: number },
    n: number,
    lr: number,
    momentum: number,
    decay: number,
  ): void {
    this.layOut(0, 0);
    this.share("momentum", Math.ceil(n / BLOCK), (chunk, counter) => [
      ...[at.w, at.v, at.g, at.w2, at.v2, n, lr, momentum, decay, chunk, counter],
    ]);
  }

  /** out[c] = the sum over rows of x (rows x cols), on the calling thread. */
  sumRows(x: number, rows: number, cols: number, out: number): void {
    this.layOut(cols * 4, 0);
    this.exports.sumRows(x, rows, cols, out, this.scratch + COUNTER_BYTES);
  }

  /** Stops the workers (the kernels then run on the calling thread only). */
  close(): void {
    for (const p of [...this.packs]) this.forget(p);
    if (this.allocated) this.heap._free(this.allocated);
    this.allocated = this.scratch = this.scratchBytes = 0;
    for (const c of this.controls.splice(0)) {
      Atomics.store(c.ints, FN, -1);
      Atomics.add(c.ints, SEQ, 1);
      Atomics.notify(c.ints, SEQ);
    }
  }

  /**
   * Lays out the scratch area for one product, [work counter | packed B | each thread's 6 k + 48
   * floats], and returns B (k x n) packed into panels. `key` is the tensor data B is (TF.js never
   * changes a tensor's data): the second time the same data is packed the same way, the packing is
   * kept, and later products reuse it (a PGD attack's weights); data seen once (a training step's
   * weights, activations) is packed into the scratch area each time.
   */
  private pack(b: Strided, k: number, n: number, key?: object): number {
    const panels = Math.ceil(n / NR);
    const bytes = packedBytes(k, n);
    const layout = layoutOf(b, k, n);
    const i = key ? this.packs.findIndex((p) => p.key === key && p.layout === layout) : -1;
    if (i >= 0) {
      const found = this.packs.splice(i, 1)[0];
      this.packs.push(found); // most recently used last
      this.layOut(0, k);
      return found.at;
    }
    const keep = key !== undefined && bytes <= PACK_CACHE_BYTES / 4 && this.seenBefore(key, layout);
    let dst: number;
    if (keep) {
      while (this.packs.length > 0 && this.keptBytes + bytes > PACK_CACHE_BYTES) this.forget(this.packs[0]);
      const allocated = this.heap._malloc(bytes + 64) >>> 0; // (a signed i32 past 2 GB)
      if (!allocated) throw new Error(`simd: could not allocate ${bytes} bytes for a packed operand`);
      dst = align(allocated, 64);
      this.packs.push({ key: key!, layout, allocated, at: dst, bytes });
      this.keptBytes += bytes;
      this.layOut(0, k);
    } else {
      this.layOut(bytes, k);
      dst = this.scratch + COUNTER_BYTES;
    }
    const at = dst;
    this.share("packB", panels, (chunk, counter) => [b.offset, k, n, b.rows, b.cols, at, chunk, counter]);
    return dst;
  }

  /**
   * Whether B (k x n, the data of `key`) is kept packed, or will be from this product on because the
   * same data was packed the same way before; notes this sight otherwise. A caller with another way to
   * the product that needs no packing of B can take it when this says no.
   */
  reuses(b: Strided, k: number, n: number, key: object): boolean {
    if (packedBytes(k, n) > PACK_CACHE_BYTES / 4) return false; // never kept
    const layout = layoutOf(b, k, n);
    return this.packs.some((p) => p.key === key && p.layout === layout) || this.seenBefore(key, layout);
  }

  /** Whether `key`'s data was packed in this layout before; notes this sight where not. */
  private seenBefore(key: object, layout: string): boolean {
    const layouts = this.seen.get(key) ?? [];
    if (layouts.includes(layout)) return true;
    this.seen.set(key, [...layouts, layout]);
    return false;
  }

  /**
   * Lays out the scratch area: the counter, `bytes` of the call's own (packed B, sumRows' partial sums),
   * then each thread's gather of depth k (and its 6 x 8 tile).
   */
  private layOut(bytes: number, k: number): void {
    this.head = COUNTER_BYTES + align(bytes, 64);
    this.perThread = align((MR * k + MR * NR) * 4, 64);
    this.reserve(this.head + this.threads * this.perThread);
  }

  /** Kept packings (least recently used first), by the tensor data they came from and their layout. */
  private readonly packs: { key: object; layout: string; allocated: number; at: number; bytes: number }[] = [];
  private keptBytes = 0;
  /** Packings seen once, by tensor data. */
  private readonly seen = new WeakMap<object, string[]>();

  private forget(p: { allocated: number; bytes: number }): void {
    this.heap._free(p.allocated);
    this.keptBytes -= p.bytes;
    this.packs.splice(this.packs.indexOf(p as never), 1);
  }

  /**
   * Runs `fn` on every ready thread at once; they take chunks of `units` from a shared counter until
   * none are left, each with its own scratch.
   */
  private share(
    fn: FunctionName,
    units: number,
    args: (chunk: number, counter: number, scratch: number) => number[],
  ): void {
    if (units === 0) return;
    const ready = this.controls.filter((c) => Atomics.load(c.ints, STATE) === 1);
    const threads = Math.min(ready.length + 1, units);
    // About 8 chunks per thread: small enough to even out a slow core, large enough to keep B's
    // panels in cache across a chunk's tiles.
    const chunk = Math.max(1, Math.floor(units / (8 * threads)));
    const counter = this.scratch;
    new Int32Array(this.heap.wasmMemory.buffer, counter, 1)[0] = 0;
    const argsOf = (i: number) => args(chunk, counter, this.scratch + this.head + i * this.perThread);
    const called: [Int32Array, number][] = [];
    for (let i = 1; i < threads; i++) {
      const c = ready[i - 1];
      const a = argsOf(i);
      c.ints[FN] = FUNCTIONS.indexOf(fn);
      c.ints[ARGC] = a.length;
      c.args.set(a);
      const seq = Atomics.add(c.ints, SEQ, 1) + 1;
      Atomics.notify(c.ints, SEQ);
      called.push([c.ints, seq]);
    }
    if (called.length > 0) this.sharedCalls++;
    let failed: unknown;
    try {
      this.exports[fn](...argsOf(0));
    } catch (err) {
      failed = err;
    }
    // Every called worker finishes (or fails) before the scratch and the outputs are touched again.
    for (const [c, seq] of called) {
      let spins = 0;
      for (;;) {
        const done = Atomics.load(c, DONE);
        if (done === seq) break;
        if (Atomics.load(c, STATE) === -1) {
          failed ??= new Error(`a simd worker failed in ${fn}`);
          break;
        }
        if (++spins > 1000) Atomics.wait(c, DONE, done, 1000);
      }
    }
    if (failed) throw failed;
  }

  /** Makes the scratch area at least `bytes` long (keeping nothing of it). */
  private reserve(bytes: number): void {
    if (bytes <= this.scratchBytes) return;
    if (this.allocated) this.heap._free(this.allocated);
    this.scratchBytes = Math.max(bytes, Math.ceil(this.scratchBytes * 1.5));
    this.allocated = this.heap._malloc(this.scratchBytes + 64) >>> 0; // (a signed i32 past 2 GB)
    if (!this.allocated) throw new Error(`simd: could not allocate ${this.scratchBytes} bytes of scratch`);
    this.scratch = align(this.allocated, 64);
  }
}

/**
 * Bytes of packed operands kept for reuse: a PGD attack multiplies by the same weights at every step
 * (packing model A's 3136 x 1024 layer takes about a quarter of its product). Operands over a quarter of
 * this are packed afresh each time.
 */
const PACK_CACHE_BYTES = 64 * 2 ** 20;

/** Filter taps times input channels up to which conv2d computes each output directly (kernels.ts's conv2dNarrow). */
const NARROW_DEPTH = 64;

/** Bytes of B (k x n) packed into 8-column panels. */
function packedBytes(k: number, n: number): number {
  return Math.ceil(n / NR) * k * NR * 4;
}

/** What makes two packings of the same tensor data the same: where B starts, its strides, its size. */
function layoutOf(b: Strided, k: number, n: number): string {
  return `${b.offset} ${b.rows} ${b.cols} ${k} ${n}`;
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
const c = new Int32Array(workerData.control, 0, ${ARGS_BYTE / 4});
const args = new Float64Array(workerData.control, ${ARGS_BYTE}, ${MAX_ARGS});
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
    fns[fn](...args.subarray(0, c[${ARGC}]));
    Atomics.store(c, ${DONE}, seen);
    Atomics.notify(c, ${DONE});
  }
} catch (err) {
  Atomics.store(c, ${STATE}, -1);
  Atomics.notify(c, ${DONE});
}
`;

function startWorker(module: WebAssembly.Module, memory: WebAssembly.Memory): Control {
  const buffer = new SharedArrayBuffer(ARGS_BYTE + 8 * MAX_ARGS);
  const control = {
    ints: new Int32Array(buffer, 0, ARGS_BYTE / 4),
    args: new Float64Array(buffer, ARGS_BYTE, MAX_ARGS),
  };
  if (!NodeWorkerClass) return control; // never ready: the caller does all the work
  const worker = new NodeWorkerClass(WORKER_MAIN, { eval: true, workerData: { module, memory, control: buffer } });
  worker.unref(); // idle workers must not keep the process alive
  worker.on("error", () => Atomics.store(control.ints, STATE, -1));
  return control;
}
