/**
 * Throughput of MNIST model A per backend, in images per second, as one JSON
 * line per backend:
 *
 *   {"backend":"native","model":"mnist_a","forward":…,"pgd_step":…,"train":…,
 *    "rss_mb":…,"num_tensors_growth":…}
 *
 * - forward: inference logits at batch 100;
 * - pgd_step: one L∞ PGD step at batch 100 (input gradient of the summed
 *   cross-entropy, x + 0.01·sign(g), projection onto the ε = 0.3 ball and [0, 1]);
 * - train: one Adam (lr 1e-4) step on the mean cross-entropy at batch 50;
 * - rss_mb: resident memory at the end; num_tensors_growth: tensors alive after
 *   the timed loops minus before them, summed over the three (0 unless
 *   something leaks; the warm-up runs first, so Adam's moments do not count).
 *
 * Random inputs, no dataset. Each measurement warms up first, then runs for
 * `--seconds` (a measurement whose warm-up alone took that long reports the
 * warm-up). A measurement that throws (wasm training without its gradient
 * kernels, say) reports null.
 *
 *   deno run --allow-read --allow-env --allow-ffi tests/bench.ts --backend native --seconds 5
 *   deno run --allow-read --allow-env --allow-ffi tests/bench.ts --backend all
 *
 * --allow-ffi is for the native backend (system OpenBLAS; all that
 * `--backend native` or `cpu` needs); --allow-read for the wasm binaries;
 * --allow-env lets BLAS_LIBRARY choose the library. OpenBLAS threads follow
 * OPENBLAS_NUM_THREADS (default: all cores).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { mnistNet, MODEL_A } from "../lib/models.ts";
import { registerNativeBackend } from "../lib/native.ts";
import { tf } from "../lib/tf.ts";
import { registerWasmBackend } from "../lib/wasm.ts";

/** Every benchmark setting. */
export interface Config {
  backends: Backend[];
  seconds: number; // timed run per measurement
  forwardBatch: number;
  pgdBatch: number;
  trainBatch: number;
  eps: number; // ε of the projection in the PGD step (MNIST pixels in [0, 1])
  stepSize: number; // α of the PGD step
  learningRate: number; // Adam
  seed: number;
}

const BACKENDS = ["native", "cpu", "wasm"] as const;
type Backend = typeof BACKENDS[number];

export const DEFAULTS: Config = {
  backends: ["native"],
  seconds: 5,
  forwardBatch: 100,
  pgdBatch: 100,
  trainBatch: 50,
  eps: 0.3,
  stepSize: 0.01,
  learningRate: 1e-4,
  seed: 0,
};

/** One JSON line of output. */
export interface BenchResult {
  backend: Backend;
  model: "mnist_a";
  forward: number | null;
  pgd_step: number | null;
  train: number | null;
  rss_mb: number;
  num_tensors_growth: number;
}

const USAGE = `usage: deno run --allow-read --allow-env --allow-ffi tests/bench.ts [options]

  --backend native|cpu|wasm|all   backend(s) to measure (default native)
  --seconds N                     timed seconds per measurement (default 5)
  --help                          this text

Prints one JSON line per backend: img/s of forward (batch 100), PGD step
(batch 100) and Adam training step (batch 50) on MNIST model A.`;

function parse(args: string[]): Config | "help" {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      backend: { type: "string" },
      seconds: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return "help";
  const config = { ...DEFAULTS };
  if (values.backend !== undefined) {
    const b = values.backend;
    if (b === "all") config.backends = [...BACKENDS];
    else if ((BACKENDS as readonly string[]).includes(b)) config.backends = [b as Backend];
    else throw new Error(`--backend must be one of ${BACKENDS.join(", ")} or all, got "${b}"`);
  }
  if (values.seconds !== undefined) {
    const s = Number(values.seconds);
    if (!Number.isFinite(s) || s <= 0) {
      throw new Error(`--seconds must be a positive number, got "${values.seconds}"`);
    }
    config.seconds = s;
  }
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

async function measure(backend: Backend, config: Config): Promise<BenchResult> {
  if (backend === "native") {
    const r = await registerNativeBackend();
    if (!r.ok) throw new Error(`native backend cannot load: ${r.reason}`);
    console.error(`native: BLAS ${r.path}`);
  } else if (backend === "wasm") {
    await registerWasmBackend();
  }
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
  await tf.ready();

  const model = mnistNet(MODEL_A, config.seed);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = tf.train.adam(config.learningRate);
  const s = config.seed;
  const xf = tf.randomUniform([config.forwardBatch, 28, 28, 1], 0, 1, "float32", s + 1);
  const x0 = tf.randomUniform([config.pgdBatch, 28, 28, 1], 0, 1, "float32", s + 2);
  const yp = oneHot(config.pgdBatch, s + 3);
  const xt = tf.randomUniform([config.trainBatch, 28, 28, 1], 0, 1, "float32", s + 4);
  const yt = oneHot(config.trainBatch, s + 5);
  const lower = tf.clipByValue(tf.sub(x0, config.eps), 0, 1);
  const upper = tf.clipByValue(tf.add(x0, config.eps), 0, 1);

  const logitsOf = (x: tf.Tensor, training: boolean) => model.apply(x, { training }) as tf.Tensor2D;
  const summedCE = (x: tf.Tensor) => tf.neg(tf.sum(tf.mul(yp, tf.logSoftmax(logitsOf(x, false))))) as tf.Scalar;
  const inputGrad = tf.grad(summedCE);
  let xAdv = x0.clone();

  const forward = () => tf.tidy(() => logitsOf(xf, false));
  const pgdStep = () => {
    const next = tf.tidy(() => {
      const g = inputGrad(xAdv);
      const stepped = tf.add(xAdv, tf.mul(config.stepSize, tf.sign(g)));
      return tf.minimum(tf.maximum(stepped, lower), upper);
    });
    xAdv.dispose();
    xAdv = next;
    return tf.sum(next);
  };
  const train = () =>
    optimizer.minimize(
      () => tf.mean(tf.neg(tf.sum(tf.mul(yt, tf.logSoftmax(logitsOf(xt, true))), -1))) as tf.Scalar,
      true,
      vars,
    ) as tf.Scalar;

  let growth = 0;
  const attempt = async (name: string, batch: number, step: () => tf.Tensor) => {
    try {
      const r = await throughput(batch, config.seconds, step);
      growth += r.growth;
      return Math.round(r.rate * 10) / 10;
    } catch (err) {
      console.error(`${backend} ${name}: ${err instanceof Error ? err.message : err}`);
      return null;
    }
  };
  const result: BenchResult = {
    backend,
    model: "mnist_a",
    forward: await attempt("forward", config.forwardBatch, forward),
    pgd_step: await attempt("pgd_step", config.pgdBatch, pgdStep),
    train: await attempt("train", config.trainBatch, train),
    rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
    num_tensors_growth: 0,
  };
  result.num_tensors_growth = growth;
  tf.dispose([xf, x0, yp, xt, yt, lower, upper, xAdv]);
  optimizer.dispose();
  model.dispose();
  return result;
}

/** Measures each configured backend and prints its JSON line. */
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
  for (const backend of config.backends) {
    console.log(JSON.stringify(await measure(backend, config)));
  }
}

if (import.meta.main) await main(Deno.args);
