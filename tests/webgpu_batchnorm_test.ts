/**
 * The batch norm + leaky ReLU kernels and the per-image standardisation on WebGPU
 * (lib/backends/webgpu/_batchnorm.ts), through the layers that use them (lib/nn/_fused.ts, lib/nn/resnet.ts),
 * against the `cpu` backend, where the same maths runs as plain TF.js ops: odd shapes (batch 1, 3, 5, 7 and 16
 * channels, 5 × 7 images, rank 2), data with a large mean, constant images, shapes large enough for the
 * reductions' combining passes; bit-identical results from run to run. Skipped where no WebGPU adapter exists.
 *
 * @module
 */
import assert from "node:assert/strict";
import { gpuTest, outputsOn, webgpuErrors } from "./fixtures/webgpu.ts";
import { tf } from "../lib/core/tf.ts";
import { reductionPlan } from "../lib/backends/webgpu/_batchnorm.ts";
import {
  batchNormActTrain,
  BatchNormLeakyRelu,
  BN_ACT_GRAD,
  BN_ACT_INFER,
  BN_ACT_INFER_GRAD,
  BN_ACT_TRAIN,
} from "../lib/nn/_fused.ts";
import { PerImageStandardization, STANDARDIZE, STANDARDIZE_GRAD } from "../lib/nn/resnet.ts";

const KERNELS = [BN_ACT_TRAIN, BN_ACT_GRAD, BN_ACT_INFER, BN_ACT_INFER_GRAD, STANDARDIZE, STANDARDIZE_GRAD];

/** Batch-norm inputs: odd shapes, batch 1, channels 3, 5, 7 and 16, rank 2; the last ones combine partial sums. */
const BN_SHAPES = [[1, 5, 7, 3], [2, 5, 7, 5], [3, 4, 6, 7], [2, 8, 8, 16], [9, 5], [8, 16, 16, 16], [1, 40, 40, 3]];
/** Standardisation inputs: odd shapes, batch 1; the last one combines partial sums. */
const STD_SHAPES = [[1, 5, 7, 3], [3, 4, 6, 5], [2, 7, 5, 7], [2, 32, 32, 3]];

const seeded = (shape: number[], seed: number, mean = 0, std = 1) => tf.randomNormal(shape, mean, std, "float32", seed);

/** The largest relative error at which each output passes (float32 sums in another order than TF.js's). */
const TOLERANCE = 1e-4;

function assertSmall(errors: number[], what: string, names: string[]): void {
  errors.forEach((err, k) => assert.ok(err <= TOLERANCE, `${what}: ${names[k]} relative error ${err}`));
}

/** Worst relative error seen per test, printed at the end of each (for the record). */
function report(what: string, errors: number[]): void {
  console.log(`${what}: worst relative error ${Math.max(...errors).toExponential(2)}`);
}

gpuTest("the batch-norm and standardisation kernels are registered on webgpu (and not on cpu)", async () => {
  for (const name of KERNELS) {
    assert.ok(tf.getKernel(name, "webgpu"), `${name} missing on webgpu`);
    assert.equal(tf.getKernel(name, "cpu"), undefined, `${name} on cpu: the reference would not be plain ops`);
  }
  const previous = tf.getBackend();
  try {
    await tf.setBackend("webgpu");
    const x = seeded([2, 5, 7, 3], 1);
    const train = new BatchNormLeakyRelu();
    const infer = new BatchNormLeakyRelu();
    const standardize = new PerImageStandardization();
    const { kernelNames } = await tf.profile(() => {
      const loss = (xs: tf.Tensor) =>
        tf.sum(tf.add(
          train.apply(standardize.apply(xs), { training: true }) as tf.Tensor,
          infer.apply(xs, { training: false }) as tf.Tensor,
        )) as tf.Scalar;
      return tf.grad(loss)(x);
    });
    for (const name of KERNELS) assert.ok(kernelNames.includes(name), `${name} not run: ${kernelNames}`);
    tf.dispose(x);
    train.dispose();
    infer.dispose();
  } finally {
    await tf.setBackend(previous);
  }
});

gpuTest("batchNormActTrain's y, batch statistics and gradients on webgpu match cpu", async () => {
  const all: number[] = [];
  for (const shape of BN_SHAPES) {
    for (const [mean, std] of [[0, 1], [3, 0.25]]) {
      const C = shape[shape.length - 1];
      const errors = await webgpuErrors(() => {
        const x = seeded(shape, 1, mean, std), w = seeded(shape, 4);
        const gamma = seeded([C], 2, 1, 0.5), beta = seeded([C], 3);
        const { y, mean: mu, variance } = batchNormActTrain(x, gamma, beta, 1e-3, 0.1);
        const grads = tf.grads((xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const r = batchNormActTrain(xs, g, b, 1e-3, 0.1);
          tf.dispose([r.mean, r.variance]);
          return tf.sum(tf.mul(r.y, w));
        })([x, gamma, beta]);
        return [y, mu, variance, ...grads];
      });
      assertSmall(errors, `x ${shape} ~ N(${mean}, ${std}²)`, ["y", "mean", "variance", "dx", "dγ", "dβ"]);
      all.push(...errors);
    }
  }
  report("batchNormActTrain", all);
});

/** A BatchNormLeakyRelu layer's outputs, moving statistics and gradients (x, γ, β) on `shape`, from set weights. */
function layerStep(shape: number[], training: boolean): () => tf.Tensor[] {
  const C = shape[shape.length - 1];
  const layer = new BatchNormLeakyRelu({ momentum: 0.9, epsilon: 1e-3, alpha: 0.1 });
  layer.build(shape);
  const weights = tf.tidy(() =>
    [seeded([C], 5, 1, 0.3), seeded([C], 6), seeded([C], 7, 0.5, 0.2), tf.abs(seeded([C], 8, 1, 0.5))].map((t) =>
      t.arraySync() as number[]
    )
  );
  return () => {
    layer.setWeights(weights.map((v) => tf.tensor1d(v)));
    const x = tf.variable(seeded(shape, 9, 0.3, 1.5)), w = seeded(shape, 10);
    const vars = layer.trainableWeights.map((v) => v.read() as tf.Variable);
    let y!: tf.Tensor;
    const { grads } = tf.variableGrads(() => {
      y = tf.keep(layer.apply(x, { training }) as tf.Tensor);
      return tf.sum(tf.mul(y, w)) as tf.Scalar;
    }, [x, ...vars]);
    const moving = layer.getWeights().slice(2).map((t) => t.clone());
    const out = [y, grads[x.name], ...vars.map((v) => grads[v.name]), ...moving];
    x.dispose();
    return out;
  };
}

gpuTest("the BatchNormLeakyRelu layer on webgpu matches cpu, in training and in inference", async () => {
  const all: number[] = [];
  for (const shape of BN_SHAPES) {
    for (const training of [true, false]) {
      const errors = await webgpuErrors(layerStep(shape, training));
      const names = ["y", "dx", "dγ", "dβ", "moving mean", "moving variance"];
      assertSmall(errors, `x ${shape}, ${training ? "training" : "inference"}`, names);
      all.push(...errors);
    }
  }
  report("BatchNormLeakyRelu", all);
});

/** Images of `shape`: pixels in [0, 255], and where `special`, a constant image and one of variance below 1/m. */
function images(shape: number[], special: boolean): tf.Tensor {
  const x = tf.randomUniform(shape, 0, 255, "float32", 11);
  if (!special || shape[0] < 2) return x;
  const one = [1, ...shape.slice(1)];
  return tf.concat([tf.fill(one, 7.5), seeded(one, 12, 0.5, 5e-3), x.slice(2)]);
}

gpuTest("PerImageStandardization and its gradient on webgpu match cpu (constant images too)", async () => {
  const all: number[] = [];
  for (const shape of [...STD_SHAPES, [3, 5, 7, 3]]) {
    for (const special of [false, true]) {
      const errors = await webgpuErrors(() => {
        const layer = new PerImageStandardization();
        const x = images(shape, special), w = seeded(shape, 13);
        const f = (xs: tf.Tensor) => layer.apply(xs) as tf.Tensor;
        return [f(x), tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(f(xs), w)))(x)];
      });
      assertSmall(errors, `x ${shape}${special ? " with a constant image" : ""}`, ["y", "dx"]);
      all.push(...errors);
    }
  }
  report("PerImageStandardization", all);
});

gpuTest("the webgpu batch-norm and standardisation kernels give the same bits on every run", async () => {
  // These shapes need a combining pass between the first pass and the outputs.
  assert.ok(reductionPlan(16, 8 * 16 * 16).length > 1 && reductionPlan(2, 32 * 32 * 3).length > 1);
  const run = () =>
    outputsOn("webgpu", () => {
      const x = seeded([8, 16, 16, 16], 14), w = seeded([8, 16, 16, 16], 15);
      const img = images([2, 32, 32, 3], false), v = seeded([2, 32, 32, 3], 16);
      const gamma = seeded([16], 17, 1, 0.5), beta = seeded([16], 18);
      const { y, mean, variance } = batchNormActTrain(x, gamma, beta, 1e-3, 0.1);
      const grads = tf.grads((xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const r = batchNormActTrain(xs, g, b, 1e-3, 0.1);
        tf.dispose([r.mean, r.variance]);
        return tf.sum(tf.mul(r.y, w));
      })([x, gamma, beta]);
      const layer = new PerImageStandardization();
      const s = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(layer.apply(xs) as tf.Tensor, v)))(img);
      return [y, mean, variance, ...grads, layer.apply(img) as tf.Tensor, s];
    });
  const previous = tf.getBackend();
  try {
    const [a, b] = [await run(), await run()];
    a.forEach((t, k) => assert.deepEqual(t, b[k], `output ${k} differs between runs`));
  } finally {
    await tf.setBackend(previous);
  }
});
