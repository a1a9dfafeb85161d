/**
 * Throughput of the paper's two kinds of net per backend, in images per second,
 * as one JSON line per backend and model:
 *
 *   {"backend":"native","model":"mnist_a","forward":…,"pgd_step":…,"train":…,
 *    "rss_mb":…,"num_tensors_growth":…}
 *
 * `mnist_a` is MNIST model A (28×28×1 in [0, 1]):
 * - forward: inference logits at batch 100;
 * - pgd_step: one L∞ PGD step at batch 100 (input gradient of the summed
 *   cross-entropy, x + 0.01·sign(g), projection onto the ε = 0.3 ball and [0, 1]);
 * - train: one Adam (lr 1e-4, the library's optimiser) step on the mean cross-entropy at batch 50.
 *
 * `cifar_resnet` is the simple CIFAR-10 ResNet (filters 16, 16, 32, 64, 5 units
 * per stage; 32×32×3 in [0, 255]), all at batch 128, the paper's CIFAR batch:
 * - forward: inference logits;
 * - pgd_step: one PGD step with ε = 8 and steps of 2 (the paper's CIFAR attack),
 *   batch norm in inference mode;
 * - train: one momentum-SGD step (lr 0.1, momentum 0.9, weight decay 2e-4 on
 *   conv and dense kernels: the library's optimiser, as CIFAR training uses it).
 *
 * For both:
 * - rss_mb: resident memory at the end; num_tensors_growth: tensors alive after
 *   the timed loops minus before them, summed over the three (0 unless
 *   something leaks; the warm-up runs first, so Adam's moments do not count).
 *
 * Random inputs, no dataset. Each measurement warms up first, then runs for
 * `--seconds` (a measurement whose warm-up alone took that long reports the
 * warm-up). A measurement that throws (wasm training without its gradient
 * kernels, say) reports null.
 *
 *   deno run --allow-read --allow-env --allow-ffi --allow-run=cc --allow-write=.cache bench/bench.ts --backend native
 *   deno run --allow-read --allow-env --allow-ffi --allow-run=cc --allow-write=.cache bench/bench.ts --backend all
 *
 * `--backend webgpu` measures TF.js's WebGPU backend where a WebGPU adapter
 * exists (a backend that cannot start is skipped with a line on stderr).
 *
 * --allow-run=cc and --allow-write=.cache let the native backend compile its
 * loops and oneDNN bindings on first use (without them it runs its TypeScript
 * loops and im2col convolutions, and says so on stderr).
 * --allow-ffi is for the native backend (system OpenBLAS; all that
 * `--backend native` or `cpu` needs); --allow-read for the wasm binaries;
 * --allow-env lets BLAS_LIBRARY choose the library. OpenBLAS threads follow
 * OPENBLAS_NUM_THREADS (default: all cores).
 *
 * `--peer` compares with PyTorch in the same run: for `--rounds` rounds it runs
 * each chosen backend and then bench/peer_torch.py (the same net, batches and
 * timing rule), each in a process of its own so that none shares threads with
 * another, prints every JSON line, then one line of ratios of the medians:
 *
 *   {"ratios":{"native/pytorch":{"forward":…,"pgd_step":…,"train":…}},
 *    "medians":{"native":{…},"pytorch":{…}},"rounds":2}
 *
 * It needs a python3 that can import torch (Debian: `sudo apt-get install
 * python3-torch`, which runs with /usr/bin/python3) and
 * `--allow-run=deno,python3,/usr/bin/python3` (`deno task bench` grants it):
 * Deno re-runs this file through its own executable, or `deno` on PATH.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { mnistNet, MODEL_A } from "../lib/nn/mnist_net.ts";
import { Adam, Momentum, type Optimizer } from "../lib/train/optim.ts";
import { cifarResNet, decayedWeights, RESNET_SIMPLE } from "../lib/nn/resnet.ts";
import { compiledReason, dnnlReason, registerNativeBackend } from "../lib/backends/native/mod.ts";
import { tf, tfl } from "../lib/core/tf.ts";
import { signStep } from "../lib/attacks/pgd.ts";
import { registerWasmBackend, wasmBackendDetail } from "../lib/backends/wasm/mod.ts";
import {
  registerWebgpuBackend,
  WEBGPU_KERNELS,
  webgpuAdapterInfo,
  withStockKernels,
} from "../lib/backends/webgpu/mod.ts";

/** One benchmarked net: how to build it, its inputs, batches, attack and optimiser. */
export interface BenchModel {
  name: ModelName;
  build(seed: number): tfl.LayersModel;
  input: [number, number, number]; // height, width, channels
  range: [number, number]; // pixel range
  forwardBatch: number;
  pgdBatch: number;
  trainBatch: number;
  eps: number; // ε of the projection in the PGD step
  stepSize: number; // α of the PGD step
  optimizer(vars: tf.Variable[], model: tfl.LayersModel): Optimizer;
}

const MODEL_NAMES = ["mnist_a", "cifar_resnet"] as const;
type ModelName = typeof MODEL_NAMES[number];

export const MODELS: Record<ModelName, BenchModel> = {
  mnist_a: {
    name: "mnist_a",
    build: (seed) => mnistNet(MODEL_A, seed),
    input: [28, 28, 1],
    range: [0, 1],
    forwardBatch: 100,
    pgdBatch: 100,
    trainBatch: 50,
    eps: 0.3,
    stepSize: 0.01,
    optimizer: (vars) => new Adam(vars, 1e-4),
  },
  cifar_resnet: {
    name: "cifar_resnet",
    build: (seed) => cifarResNet(RESNET_SIMPLE, seed),
    input: [32, 32, 3],
    range: [0, 255],
    forwardBatch: 128,
    pgdBatch: 128,
    trainBatch: 128,
    eps: 8,
    stepSize: 2,
    optimizer: (vars, model) => new Momentum(vars, 0.1, 0.9, 2e-4, decayedWeights(model)),
  },
};

/** Every benchmark setting. */
export interface Config {
  backends: Backend[];
  models: ModelName[];
  seconds: number; // timed run per measurement
  memorySteps: number; // training steps of the memory check (0: none)
  seed: number;
  peer: boolean; // also run the PyTorch peer, alternating, and print ratios
  rounds: number; // rounds of the peer comparison
  peerThreads: number; // torch threads of the peer
  webgpuNamed: boolean; // --backend named webgpu (then a software adapter is measured too)
  kernels: boolean; // per-kernel mode: our WebGPU kernels against TF.js's, alternating
  stock: boolean; // webgpu with TF.js's own kernels only (the "before" of our kernels)
  batch?: number; // --kernels: one batch for every case instead of the models' batches
  only?: RegExp; // --kernels: only the cases whose "model name" matches
}

const BACKENDS = ["native", "cpu", "wasm", "webgpu"] as const;
type Backend = typeof BACKENDS[number];

export const DEFAULTS: Config = {
  backends: ["native"],
  models: [...MODEL_NAMES],
  seconds: 5,
  memorySteps: 0,
  seed: 0,
  peer: false,
  rounds: 2,
  peerThreads: 2,
  webgpuNamed: false,
  kernels: false,
  stock: false,
};

/** One JSON line of output. */
export interface BenchResult {
  backend: Backend;
  model: ModelName;
  forward: number | null;
  pgd_step: number | null;
  train: number | null;
  rss_mb: number;
  num_tensors_growth: number;
  /** With --memory-steps N: resident memory and live tensors before and after N more training steps. */
  memory?: {
    steps: number;
    rss_mb_before: number;
    rss_mb_quarters: number[];
    heap_mb_quarters: number[];
    external_mb_quarters: number[];
    num_tensors_growth: number;
  };
}

const USAGE = `usage: deno task bench [options]
   or: deno run --allow-read --allow-env --allow-ffi --allow-run=cc --allow-write=.cache [--allow-run=cc,deno,python3,/usr/bin/python3] bench/bench.ts [options]

  --backend native|cpu|wasm|webgpu|all
                                  backend(s) to measure (default native; a comma list such as native,wasm;
                                  all: those that load here, webgpu only on a hardware adapter)
  --model mnist_a|cifar_resnet|all
                                  net(s) to measure (default all; a comma list)
  --seconds N                     timed seconds per measurement (default 5)
  --memory-steps N                after the timings, N more training steps per net, reporting resident
                                  memory before and after each quarter, and live tensors (default 0: none);
                                  under --v8-flags=--expose-gc (as deno task bench runs) each reading
                                  follows a full garbage collection
  --peer                          also measure PyTorch (bench/peer_torch.py), alternating
                                  with ours, each run its own process, and print the
                                  ratios of the medians (needs --allow-run and python3-torch)
  --rounds N                      rounds of --peer (default 2)
  --peer-threads N                torch threads of the peer (default 2)
  --kernels                       with --backend webgpu: each of our WebGPU kernels against TF.js's own at
                                  the ResNet's and model A's shapes, then whole training and PGD steps,
                                  alternating ours and stock --rounds times (default 2) in one process;
                                  one JSON line per case (ours_ms, stock_ms, speedup)
  --batch N                       with --kernels: batch N for every case (default: 128 ResNet, 50/100 model A)
  --only REGEX                    with --kernels: only the cases whose "model case" matches
  --stock                         with --backend webgpu: measure with TF.js's own kernels only
  --help                          this text

Prints one JSON line per backend and net: img/s of forward, PGD step and
training step. mnist_a: MNIST model A, batches 100 / 100 / 50, Adam.
cifar_resnet: the simple CIFAR-10 ResNet, batch 128, ε 8 steps of 2, momentum SGD.`;

function parse(args: string[]): Config | "help" {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      backend: { type: "string" },
      model: { type: "string" },
      seconds: { type: "string" },
      "memory-steps": { type: "string" },
      peer: { type: "boolean" },
      rounds: { type: "string" },
      "peer-threads": { type: "string" },
      kernels: { type: "boolean" },
      batch: { type: "string" },
      only: { type: "string" },
      stock: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return "help";
  const config = { ...DEFAULTS };
  if (values.backend !== undefined) {
    const b = values.backend;
    const names = b.split(",");
    if (b === "all") config.backends = ["native", "cpu", "wasm", "webgpu"];
    else if (names.every((n) => (BACKENDS as readonly string[]).includes(n))) {
      config.backends = names as Backend[];
      config.webgpuNamed = names.includes("webgpu");
    } else throw new Error(`--backend must be one of ${BACKENDS.join(", ")}, a comma list of them, or all, got "${b}"`);
  }
  if (values.model !== undefined) {
    const m = values.model;
    const names = m.split(",");
    if (m === "all") config.models = [...MODEL_NAMES];
    else if (names.every((n) => (MODEL_NAMES as readonly string[]).includes(n))) config.models = names as ModelName[];
    else throw new Error(`--model must be one of ${MODEL_NAMES.join(", ")}, a comma list of them, or all, got "${m}"`);
  }
  if (values["memory-steps"] !== undefined) {
    const n = Number(values["memory-steps"]);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`--memory-steps must be a whole number, got "${values["memory-steps"]}"`);
    }
    config.memorySteps = n;
  }
  if (values.seconds !== undefined) {
    const s = Number(values.seconds);
    if (!Number.isFinite(s) || s <= 0) {
      throw new Error(`--seconds must be a positive number, got "${values.seconds}"`);
    }
    config.seconds = s;
  }
  config.peer = values.peer ?? false;
  const count = (flag: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got "${v}"`);
    return n;
  };
  config.rounds = count("rounds", values.rounds, config.rounds);
  config.peerThreads = count("peer-threads", values["peer-threads"], config.peerThreads);
  config.kernels = values.kernels ?? false;
  config.stock = values.stock ?? false;
  if (config.peer && config.memorySteps > 0) throw new Error("--memory-steps does not apply with --peer");
  if (!config.peer && values["peer-threads"] !== undefined) throw new Error("--peer-threads only applies with --peer");
  if (!config.peer && !config.kernels && values.rounds !== undefined) {
    throw new Error("--rounds only applies with --peer or --kernels");
  }
  if (config.kernels || config.stock) {
    const flag = config.kernels ? "--kernels" : "--stock";
    if (config.backends.join() !== "webgpu") throw new Error(`${flag} needs --backend webgpu`);
    if (config.peer) throw new Error(`${flag} does not apply with --peer`);
    if (config.kernels && config.stock) throw new Error("--kernels already times the stock kernels; drop --stock");
  }
  if (!config.kernels && (values.batch !== undefined || values.only !== undefined)) {
    throw new Error("--batch and --only only apply with --kernels");
  }
  if (values.batch !== undefined) config.batch = count("batch", values.batch, 0);
  if (values.only !== undefined) config.only = new RegExp(values.only);
  return config;
}

/**
 * Images per second of `step` (which processes `batch` images and returns a
 * tensor to read back), and the tensors it left behind over the timed loop.
 */
async function throughput(
  batch: number,
  seconds: number,
  step: () => tf.Tensor,
): Promise<{ rate: number; growth: number }> {
  const once = async () => {
    const out = step();
    await out.data();
    out.dispose();
  };
  let t0 = performance.now();
  await once();
  const warm = (performance.now() - t0) / 1000;
  if (warm >= seconds) return { rate: batch / warm, growth: 0 }; // too slow to run again
  if (warm < seconds / 10) await once();
  const before = tf.memory().numTensors;
  let n = 0;
  t0 = performance.now();
  while ((performance.now() - t0) / 1000 < seconds) {
    await once();
    n++;
  }
  const rate = (n * batch) / ((performance.now() - t0) / 1000);
  return { rate, growth: tf.memory().numTensors - before };
}

function oneHot(batch: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => tf.oneHot(tf.randomUniform([batch], 0, 10, "int32", seed), 10) as tf.Tensor2D);
}

/** Makes `backend` current; returns what it runs on (for webgpu, the adapter). */
async function useBench(backend: Backend, config: Config): Promise<string> {
  if (backend === "native") {
    const r = await registerNativeBackend();
    if (!r.ok) throw new Error(`native backend cannot load: ${r.reason}`);
    const conv = dnnlReason ? `im2col convolutions (no oneDNN: ${dnnlReason})` : "oneDNN convolutions";
    const loops = compiledReason ? `TypeScript loops (${compiledReason})` : "compiled loops";
    console.error(`native: BLAS ${r.path}, ${conv}, ${loops}`);
  } else if (backend === "wasm") {
    await registerWasmBackend();
  } else if (backend === "webgpu") {
    const adapter = await webgpuAdapterInfo();
    if (!adapter.available) throw new Error("no WebGPU adapter");
    if (adapter.fallback && !config.webgpuNamed) {
      throw new Error(`only a software adapter (${adapter.description}); name --backend webgpu to measure it anyway`);
    }
    const kernels = config.stock ? "TF.js's own kernels" : `our kernels: ${WEBGPU_KERNELS.join(", ")}`;
    console.error(
      `webgpu: ${adapter.description}${adapter.fallback ? " (a software fallback adapter)" : ""}; ${kernels}`,
    );
    await registerWebgpuBackend();
    if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
    await tf.ready();
    return adapter.description;
  }
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
  await tf.ready();
  if (backend === "wasm") console.error(`wasm: ${wasmBackendDetail()}`);
  return backend;
}

async function measure(backend: Backend, spec: BenchModel, config: Config): Promise<BenchResult> {
  const model = spec.build(config.seed);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = spec.optimizer(vars, model); // the library's optimiser, as training uses it
  const s = config.seed;
  const [lo, hi] = spec.range;
  const images = (batch: number, seed: number) => tf.randomUniform([batch, ...spec.input], lo, hi, "float32", seed);
  const xf = images(spec.forwardBatch, s + 1);
  const x0 = images(spec.pgdBatch, s + 2);
  const yp = oneHot(spec.pgdBatch, s + 3);
  const xt = images(spec.trainBatch, s + 4);
  const yt = oneHot(spec.trainBatch, s + 5);

  const logitsOf = (x: tf.Tensor, training: boolean) => model.apply(x, { training }) as tf.Tensor2D;
  const summedCE = (x: tf.Tensor) => tf.neg(tf.sum(tf.mul(yp, tf.logSoftmax(logitsOf(x, false))))) as tf.Scalar;
  const inputGrad = tf.grad(summedCE);
  let xAdv = x0.clone();

  const forward = () => tf.tidy(() => logitsOf(xf, false));
  const pgdStep = () => {
    // The library's update (our kernel where the backend has one): the sign step, projected and clipped.
    const next = tf.tidy(() => signStep(xAdv, inputGrad(xAdv), x0, spec.stepSize, spec.eps, spec.range));
    xAdv.dispose();
    xAdv = next;
    return tf.sum(next);
  };
  const train = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.neg(tf.sum(tf.mul(yt, tf.logSoftmax(logitsOf(xt, true))), -1))) as tf.Scalar,
        vars,
      );
      optimizer.apply(vars.map((v) => grads[v.name]));
      return value;
    });

  let growth = 0;
  const attempt = async (name: string, batch: number, step: () => tf.Tensor) => {
    try {
      const r = await throughput(batch, config.seconds, step);
      growth += r.growth;
      return Math.round(r.rate * 10) / 10;
    } catch (err) {
      console.error(`${backend} ${spec.name} ${name}: ${err instanceof Error ? err.message : err}`);
      return null;
    }
  };
  const result: BenchResult = {
    backend,
    model: spec.name,
    forward: await attempt("forward", spec.forwardBatch, forward),
    pgd_step: await attempt("pgd_step", spec.pgdBatch, pgdStep),
    train: await attempt("train", spec.trainBatch, train),
    rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
    num_tensors_growth: 0,
  };
  result.num_tensors_growth = growth;
  if (config.memorySteps > 0) {
    const mb = (k: "rss" | "heapTotal" | "external") => Math.round(Deno.memoryUsage()[k] / 2 ** 20);
    // With --v8-flags=--expose-gc, a full collection before each reading separates garbage from growth.
    const gc = (globalThis as { gc?: () => void }).gc;
    const tensors = tf.memory().numTensors, before = mb("rss");
    const quarters: number[] = [], heap: number[] = [], external: number[] = [];
    for (let i = 1; i <= config.memorySteps; i++) {
      const out = train();
      await out.data();
      out.dispose();
      if (i % Math.max(1, Math.floor(config.memorySteps / 4)) === 0 && quarters.length < 4) {
        gc?.();
        quarters.push(mb("rss"));
        heap.push(mb("heapTotal"));
        external.push(mb("external"));
      }
    }
    result.memory = {
      steps: config.memorySteps,
      rss_mb_before: before,
      rss_mb_quarters: quarters, // after each quarter of the steps: a leak keeps rising, a warm-up levels off
      heap_mb_quarters: heap, // V8's heap size (JS objects, garbage included unless collected)
      external_mb_quarters: external, // memory V8 knows is held outside its heap (typed arrays' buffers)
      num_tensors_growth: tf.memory().numTensors - tensors,
    };
  }
  tf.dispose([xf, x0, yp, xt, yt, xAdv]);
  optimizer.dispose();
  model.dispose();
  return result;
}

/** The PyTorch peer's JSON line (bench/peer_torch.py). */
interface PeerResult {
  backend: "pytorch";
  model: ModelName;
  forward: number | null;
  pgd_step: number | null;
  train: number | null;
}

const METRICS = ["forward", "pgd_step", "train"] as const;
type Metrics = Record<typeof METRICS[number], number | null>;

const PEER_INSTALL = "sudo apt-get install python3-torch";
const PEER_PYTHONS = ["/usr/bin/python3", "python3"]; // Debian's python3-torch lives under the first
const PEER_RUN_FLAG = "--allow-run=deno,python3,/usr/bin/python3";

async function canRun(command: string): Promise<boolean> {
  return (await Deno.permissions.query({ name: "run", command })).state === "granted";
}

/** The first python that can import torch, or an error that says how to get one. */
async function findPeerPython(): Promise<string> {
  const denied: string[] = [];
  for (const python of PEER_PYTHONS) {
    if (!(await canRun(python))) {
      denied.push(python);
      continue;
    }
    try {
      const probe = await new Deno.Command(python, {
        args: ["-c", "import torch"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      if (probe.success) return python;
    } catch {
      // not installed under this name
    }
  }
  const grant = `${PEER_RUN_FLAG} (deno task bench grants it)`;
  if (denied.length === PEER_PYTHONS.length) throw new Error(`--peer needs ${grant} to run the PyTorch peer`);
  const also = denied.length ? `, or grant ${grant}` : "";
  throw new Error(
    `--peer needs PyTorch, which no python3 it may run can import: install it with \`${PEER_INSTALL}\`${also}`,
  );
}

/** How to run Deno again: its own executable where allowed, else `deno` on PATH. */
async function findDeno(): Promise<string> {
  if (await canRun(Deno.execPath())) return Deno.execPath();
  if (await canRun("deno")) return "deno";
  throw new Error(`--peer needs ${PEER_RUN_FLAG} to re-run the benchmark (deno task bench grants it)`);
}

/** Runs `command` with `args` and returns its stdout lines that are JSON objects; stderr passes through. */
async function jsonLinesOf(command: string, args: string[]): Promise<unknown[]> {
  const out = await new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "inherit" })
    .output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("{"));
  if (!out.success || lines.length === 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (exit code ${out.code}${lines.length ? "" : ", no JSON line"})`,
    );
  }
  return lines.map((l) => JSON.parse(l));
}

function median(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function medians(results: Metrics[]): Metrics {
  const m = {} as Metrics;
  for (const k of METRICS) {
    const v = median(results.map((r) => r[k]));
    m[k] = v === null ? null : Math.round(v * 10) / 10;
  }
  return m;
}

/**
 * The same-run comparison: rounds of (each backend, then the peer), each a
 * process of its own measuring every chosen net, every JSON line printed as it
 * comes, then the ratios of the medians per net (ours / PyTorch; above 1 means
 * faster than PyTorch):
 *
 *   {"ratios":{"native/pytorch":{"mnist_a":{"forward":…,"pgd_step":…,"train":…},"cifar_resnet":{…}}},
 *    "medians":{"native":{"mnist_a":{…},…},"pytorch":{…}},"rounds":2}
 */
async function peerMode(config: Config): Promise<void> {
  const python = await findPeerPython();
  const deno = await findDeno();
  const here = fileURLToPath(import.meta.url);
  const denoJson = fileURLToPath(new URL("../deno.json", import.meta.url));
  const peerScript = fileURLToPath(new URL("./peer_torch.py", import.meta.url));
  const seconds = String(config.seconds);
  const models = config.models.join(",");
  const runs = new Map<string, Metrics[]>(); // "backend model" -> one result per round
  const record = (r: BenchResult | PeerResult) => {
    const key = `${r.backend} ${r.model}`;
    runs.set(key, [...(runs.get(key) ?? []), r]);
    console.log(JSON.stringify(r));
  };
  console.error(`peer: ${config.rounds} rounds of ${config.backends.join(", ")} then PyTorch (${python}), ${models}`);
  for (let round = 1; round <= config.rounds; round++) {
    for (const backend of config.backends) {
      const args = ["run", "--allow-read", "--allow-env", "--allow-ffi", "--allow-run=cc", "--allow-write=.cache"];
      const lines = await jsonLinesOf(deno, [
        ...args,
        "--config",
        denoJson,
        here,
        "--backend",
        backend,
        "--model",
        models,
        "--seconds",
        seconds,
      ]);
      for (const r of lines) record(r as BenchResult);
    }
    const args = [peerScript, "--seconds", seconds, "--threads", String(config.peerThreads), "--openblas-threads", "1"];
    for (const r of await jsonLinesOf(python, [...args, "--model", models])) record(r as PeerResult);
  }
  const ratios: Record<string, Record<string, Metrics>> = {};
  const all: Record<string, Record<string, Metrics>> = {};
  for (const backend of [...config.backends, "pytorch"]) {
    all[backend] = {};
    for (const model of config.models) all[backend][model] = medians(runs.get(`${backend} ${model}`) ?? []);
  }
  for (const backend of config.backends) {
    ratios[`${backend}/pytorch`] = {};
    for (const model of config.models) {
      const m = all[backend][model], p = all.pytorch[model];
      const r = {} as Metrics;
      for (const k of METRICS) {
        const a = m[k], b = p[k];
        r[k] = a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
      }
      ratios[`${backend}/pytorch`][model] = r;
    }
  }
  console.log(JSON.stringify({ ratios, medians: all, rounds: config.rounds }));
}

/** Measures each configured backend and prints its JSON line (with `--peer`, the same-run comparison). */
export async function main(args: string[]): Promise<void> {
  let config: Config | "help";
  try {
    config = parse(args);
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : err}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (config === "help") {
    console.log(USAGE);
    return;
  }
  if (config.peer) {
    try {
      await peerMode(config);
    } catch (err) {
      console.error(err instanceof Error ? err.message : err);
      Deno.exit(1);
    }
    return;
  }
  let measured = 0;
  for (const backend of config.backends) {
    let adapter: string;
    try {
      adapter = await useBench(backend, config);
    } catch (err) {
      console.error(`${backend}: skipped (${err instanceof Error ? err.message : err})`);
      continue;
    }
    if (config.kernels) {
      const { kernelMode } = await import("./webgpu_kernels.ts");
      await kernelMode(adapter, { rounds: config.rounds, batch: config.batch, only: config.only });
    } else if (config.stock) {
      await withStockKernels(WEBGPU_KERNELS, async () => {
        for (const name of config.models) {
          const r = await measure(backend, MODELS[name], config);
          console.log(JSON.stringify({ ...r, kernels: "stock" }));
        }
      });
    } else {
      for (const name of config.models) console.log(JSON.stringify(await measure(backend, MODELS[name], config)));
    }
    measured++;
  }
  if (measured === 0) Deno.exit(1);
}

if (import.meta.main) await main(Deno.args);
