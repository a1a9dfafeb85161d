/**
 * The per-kernel mode of the benchmark on WebGPU (`deno task bench --backend webgpu --kernels`): each of our
 * WebGPU kernels against TF.js's own at the shapes of the ResNet and model A, then whole steps, alternating
 * ours and stock in one process. One JSON line per case:
 *
 *   {"backend":"webgpu","adapter":"…","case":"Conv2DBackpropFilter","model":"cifar_resnet",
 *    "shape":"x 128×32×32×16, filter 3×3×16×16, stride 1","ours_ms":…,"stock_ms":…,"speedup":…}
 *
 * "stock" is TF.js 4.22's kernel where ours replaces one (the convolutions), and TF.js's ordinary ops where ours
 * is a kernel TF.js lacks (batch norm + leaky ReLU, standardisation, the optimiser and PGD updates: the path the
 * layers take on a backend without them). Times are medians over `rounds` alternations, each the mean of enough
 * calls to last about 0.3 s (at least one), read back asynchronously; compilation happens in the warm-up. After
 * each training step's line, two lines profile one step, ours and stock (`tf.profile`: time per kernel, from
 * the GPU's timestamps where the device offers them; `kernel_ms` null where it does not):
 *
 *   {"backend":"webgpu","profile":"cifar_resnet training step, batch 128","kernels":"ours","wall_ms":…,
 *    "kernel_ms":…,"top":[["Conv2DBackpropInput",…,30],…]}
 *
 * @module
 */
import { tf } from "../lib/core/tf.ts";
import { WEBGPU_KERNELS, withStockKernels } from "../lib/backends/webgpu/mod.ts";
import { batchNormActTrain } from "../lib/nn/_fused.ts";
import { signStep } from "../lib/attacks/pgd.ts";
import { Adam, Momentum, type Optimizer } from "../lib/train/optim.ts";
import { cifarResNet, decayedWeights, RESNET_SIMPLE } from "../lib/nn/resnet.ts";
import { mnistNet, MODEL_A } from "../lib/nn/mnist_net.ts";
import {
  BN_ACT_GRAD,
  BN_ACT_TRAIN,
  MOMENTUM_UPDATE,
  PGD_UPDATE,
  STANDARDIZE,
  STANDARDIZE_GRAD,
} from "../lib/backends/kernel_names.ts";

/** One timed case: the kernels it swaps, and a set-up returning the call to time and a clean-up. */
interface Case {
  name: string;
  model: "cifar_resnet" | "mnist_a";
  shape: string;
  kernels: readonly string[];
  setup(): { run: () => tf.Tensor; dispose: () => void };
}

/** One JSON line of the kernel mode. */
export interface KernelResult {
  backend: "webgpu";
  adapter: string;
  case: string;
  model: string;
  shape: string;
  ours_ms: number;
  stock_ms: number;
  speedup: number;
}

type Shape4 = [number, number, number, number];
const dims = (s: number[]) => s.join("×");
const normal = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

/** The three convolution kernels at one convolution's shape. */
function convCases(model: Case["model"], x: Shape4, f: Shape4, stride: number, pad: "same" | "valid"): Case[] {
  const shape = `x ${dims(x)}, filter ${dims(f)}, stride ${stride}`;
  const tensors = () => {
    const xs = normal(x, 1), w = normal(f, 2);
    const dy = tf.tidy(() => normal(tf.conv2d(xs as tf.Tensor4D, w as tf.Tensor4D, stride, pad).shape, 3));
    return { xs, w, dy, dispose: () => tf.dispose([xs, w, dy]) };
  };
  const attrs = { strides: [stride, stride], pad, dataFormat: "NHWC", dimRoundingMode: undefined };
  return [
    {
      name: "Conv2D",
      model,
      shape,
      kernels: ["Conv2D"],
      setup() {
        const t = tensors();
        return { run: () => tf.conv2d(t.xs as tf.Tensor4D, t.w as tf.Tensor4D, stride, pad), dispose: t.dispose };
      },
    },
    {
      name: "Conv2DBackpropInput",
      model,
      shape,
      kernels: ["Conv2DBackpropInput"],
      setup() {
        const t = tensors();
        return {
          run: () => tf.conv2dTranspose(t.dy as tf.Tensor4D, t.w as tf.Tensor4D, x, stride, pad),
          dispose: t.dispose,
        };
      },
    },
    {
      name: "Conv2DBackpropFilter",
      model,
      shape,
      kernels: ["Conv2DBackpropFilter"],
      setup() {
        const t = tensors();
        const a = { ...attrs, filterShape: f } as unknown as tf.NamedAttrMap;
        return {
          run: () => tf.engine().runKernel("Conv2DBackpropFilter", { x: t.xs, dy: t.dy }, a) as tf.Tensor,
          dispose: t.dispose,
        };
      },
    },
  ];
}

/** Batch norm + leaky ReLU in training mode, forward and gradient, at one activation's shape. */
function batchNormCase(shape: Shape4): Case {
  return {
    name: "batch norm + leaky ReLU (training, forward + gradient)",
    model: "cifar_resnet",
    shape: `x ${dims(shape)}`,
    kernels: [BN_ACT_TRAIN, BN_ACT_GRAD],
    setup() {
      const x = normal(shape, 4), gamma = tf.ones([shape[3]]), beta = tf.zeros([shape[3]]);
      const dy = normal(shape, 5);
      const f = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const { y, mean, variance } = batchNormActTrain(xs, g, b, 1e-5, 0.1);
        tf.dispose([mean, variance]);
        return tf.sum(tf.mul(y, dy)) as tf.Scalar;
      };
      return {
        run: () => tf.tidy(() => tf.addN(tf.grads(f)([x, gamma, beta]).map((g) => tf.sum(g)))),
        dispose: () => tf.dispose([x, gamma, beta, dy]),
      };
    },
  };
}

/** Whole steps and the small kernels, each with every kernel of ours swapped. */
function stepCases(batch: { resnet: number; mnistTrain: number; mnistPgd: number }): Case[] {
  const resnet = (seed: number) => cifarResNet(RESNET_SIMPLE, seed);
  const all = WEBGPU_KERNELS;
  const step = (
    name: string,
    model: Case["model"],
    n: number,
    training: boolean,
  ): Case => ({
    name,
    model,
    shape: `batch ${n}`,
    kernels: all,
    setup() {
      const m = model === "cifar_resnet" ? resnet(0) : mnistNet(MODEL_A, 0);
      const [h, w, c, hi] = model === "cifar_resnet" ? [32, 32, 3, 255] : [28, 28, 1, 1];
      const x = tf.randomUniform([n, h, w, c], 0, hi, "float32", 6);
      const y = tf.oneHot(tf.randomUniform([n], 0, 10, "int32", 7), 10);
      const vars = m.trainableWeights.map((v) => v.read() as tf.Variable);
      // The library's optimisers, as the benchmark's models use them.
      const opt: Optimizer = model === "cifar_resnet"
        ? new Momentum(vars, 0.1, 0.9, 2e-4, decayedWeights(m))
        : new Adam(vars, 1e-4);
      const loss = (xs: tf.Tensor) =>
        tf.losses.softmaxCrossEntropy(
          y,
          m.apply(xs, { training }) as tf.Tensor,
          undefined,
          undefined,
          tf.Reduction.SUM,
        ) as tf.Scalar;
      const eps = model === "cifar_resnet" ? 8 : 0.3, alpha = model === "cifar_resnet" ? 2 : 0.01;
      const run = training
        ? () =>
          tf.tidy(() => {
            const { value, grads } = tf.variableGrads(() => loss(x), vars);
            opt.apply(vars.map((v) => grads[v.name]));
            return value;
          })
        : () => tf.tidy(() => tf.sum(signStep(x, tf.grad(loss)(x), x, alpha, eps, [0, hi])));
      return { run, dispose: () => (tf.dispose([x, y]), opt.dispose(), m.dispose()) };
    },
  });
  return [
    {
      name: "per-image standardisation (forward + gradient)",
      model: "cifar_resnet",
      shape: `x ${batch.resnet}×32×32×3`,
      kernels: [STANDARDIZE, STANDARDIZE_GRAD],
      setup() {
        const m = resnet(0);
        const layer = m.layers.find((l) => l.getClassName() === "PerImageStandardization")!;
        const x = tf.randomUniform([batch.resnet, 32, 32, 3], 0, 255, "float32", 8);
        const f = (xs: tf.Tensor) => tf.sum(tf.square(layer.apply(xs) as tf.Tensor)) as tf.Scalar;
        return { run: () => tf.tidy(() => tf.sum(tf.grad(f)(x))), dispose: () => (x.dispose(), m.dispose()) };
      },
    },
    {
      name: "PGD update",
      model: "cifar_resnet",
      shape: `x ${batch.resnet}×32×32×3`,
      kernels: [PGD_UPDATE],
      setup() {
        const x = tf.randomUniform([batch.resnet, 32, 32, 3], 0, 255, "float32", 9);
        const g = normal(x.shape, 10);
        return { run: () => signStep(x, g, x, 2, 8, [0, 255]), dispose: () => tf.dispose([x, g]) };
      },
    },
    {
      name: "momentum SGD update (every ResNet variable)",
      model: "cifar_resnet",
      shape: "every trainable variable",
      kernels: [MOMENTUM_UPDATE],
      setup() {
        const m = resnet(0);
        const vars = m.trainableWeights.map((v) => v.read() as tf.Variable);
        const grads = vars.map((v, i) => normal(v.shape, 11 + i));
        const opt = new Momentum(vars, 0.01, 0.9, 2e-4, decayedWeights(m));
        return {
          run: () => {
            opt.apply(grads);
            return tf.sum(vars[0]);
          },
          dispose: () => (tf.dispose(grads), opt.dispose(), m.dispose()),
        };
      },
    },
    step("training step", "cifar_resnet", batch.resnet, true),
    step("PGD step", "cifar_resnet", batch.resnet, false),
    step("training step", "mnist_a", batch.mnistTrain, true),
    step("PGD step", "mnist_a", batch.mnistPgd, false),
  ];
}

/** Every case, at the benchmark's batches (or `batch` for all). */
export function kernelCases(batch?: number): Case[] {
  const b = batch ?? 128, bt = batch ?? 50, bp = batch ?? 100;
  return [
    ...convCases("cifar_resnet", [b, 32, 32, 3], [3, 3, 3, 16], 1, "same"),
    ...convCases("cifar_resnet", [b, 32, 32, 16], [3, 3, 16, 16], 1, "same"),
    ...convCases("cifar_resnet", [b, 32, 32, 16], [3, 3, 16, 32], 2, "same"),
    ...convCases("cifar_resnet", [b, 16, 16, 32], [3, 3, 32, 32], 1, "same"),
    ...convCases("cifar_resnet", [b, 16, 16, 32], [3, 3, 32, 64], 2, "same"),
    ...convCases("cifar_resnet", [b, 8, 8, 64], [3, 3, 64, 64], 1, "same"),
    ...convCases("mnist_a", [bt, 28, 28, 1], [5, 5, 1, 32], 1, "same"),
    ...convCases("mnist_a", [bt, 14, 14, 32], [5, 5, 32, 64], 1, "same"),
    batchNormCase([b, 32, 32, 16]),
    batchNormCase([b, 16, 16, 32]),
    batchNormCase([b, 8, 8, 64]),
    ...stepCases({ resnet: b, mnistTrain: bt, mnistPgd: bp }),
  ];
}

/** Mean milliseconds of `reps` calls of `run`, each read back. */
async function timeCalls(run: () => tf.Tensor, reps: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const out = run();
    await out.data();
    out.dispose();
  }
  return (performance.now() - t0) / reps;
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** One JSON line of a profiled step: where its time goes, kernel by kernel (GPU timestamps where the device has them). */
export interface ProfileResult {
  backend: "webgpu";
  profile: string;
  kernels: "ours" | "stock";
  wall_ms: number;
  kernel_ms: number | null;
  top: [string, number, number][]; // [kernel, ms, calls], the 12 longest
}

/** Profiles one call of `run` with TF.js's profiler: per kernel, summed GPU time and calls. */
async function profileOnce(name: string, kernels: "ours" | "stock", run: () => tf.Tensor): Promise<ProfileResult> {
  const t0 = performance.now();
  const info = await tf.profile(async () => {
    const out = run();
    await out.data();
    out.dispose();
  });
  const wall = performance.now() - t0;
  const by = new Map<string, [number, number]>();
  let timed = false;
  for (const k of info.kernels) {
    const t = await (k.kernelTimeMs as unknown as Promise<number | { error: string }>);
    const ms = typeof t === "number" ? t : 0;
    timed ||= typeof t === "number";
    const [sum, calls] = by.get(k.name) ?? [0, 0];
    by.set(k.name, [sum + ms, calls + 1]);
  }
  const top = [...by.entries()].sort((a, b) => b[1][0] - a[1][0]).slice(0, 12)
    .map(([k, [ms, calls]]): [string, number, number] => [k, Math.round(ms * 100) / 100, calls]);
  const total = [...by.values()].reduce((a, [ms]) => a + ms, 0);
  return {
    backend: "webgpu",
    profile: name,
    kernels,
    wall_ms: Math.round(wall),
    kernel_ms: timed ? Math.round(total) : null,
    top,
  };
}

/** Times each case, ours against stock, alternating `rounds` times; prints and returns one line per case. */
export async function kernelMode(
  adapter: string,
  options: { rounds: number; batch?: number; only?: RegExp },
): Promise<KernelResult[]> {
  const results: KernelResult[] = [];
  for (const c of kernelCases(options.batch)) {
    if (options.only && !options.only.test(`${c.model} ${c.name}`)) continue;
    const { run, dispose } = c.setup();
    try {
      const stock = <T>(f: () => Promise<T>) => withStockKernels(c.kernels, f);
      const warmOurs = await timeCalls(run, 1), warmStock = await stock(() => timeCalls(run, 1));
      const reps = (warm: number) => Math.max(1, Math.min(50, Math.ceil(300 / Math.max(warm, 1e-3))));
      const ours: number[] = [], theirs: number[] = [];
      for (let r = 0; r < options.rounds; r++) {
        ours.push(await timeCalls(run, reps(warmOurs)));
        theirs.push(await stock(() => timeCalls(run, reps(warmStock))));
      }
      const [o, s] = [median(ours), median(theirs)];
      const line: KernelResult = {
        backend: "webgpu",
        adapter,
        case: c.name,
        model: c.model,
        shape: c.shape,
        ours_ms: Math.round(o * 100) / 100,
        stock_ms: Math.round(s * 100) / 100,
        speedup: Math.round((s / o) * 100) / 100,
      };
      console.log(JSON.stringify(line));
      results.push(line);
      if (c.name === "training step") {
        const name = `${c.model} ${c.name}, ${c.shape}`;
        console.log(JSON.stringify(await profileOnce(name, "ours", run)));
        console.log(JSON.stringify(await stock(() => profileOnce(name, "stock", run))));
      }
    } finally {
      dispose();
    }
  }
  return results;
}
