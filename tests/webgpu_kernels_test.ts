/**
 * Our WebGPU kernels (lib/backends/webgpu/) against the reference `cpu` backend, on odd shapes: strides 1
 * and 2, SAME and VALID padding, batch 1, channel counts that are not multiples of 4; and one ResNet training
 * step's parameter gradients. Skipped where no WebGPU adapter exists; in CI they run on Mesa's software
 * adapter (lavapipe), which `.ci/run` installs.
 *
 * @module
 */
import assert from "node:assert/strict";
import { relError } from "./assert.ts";
import { gpuTest, webgpuErrors } from "./fixtures/webgpu.ts";
import { tf } from "../lib/core/tf.ts";
import { withStockKernel } from "../lib/backends/webgpu/mod.ts";
import { cifarResNet, type ResNetShape } from "../lib/nn/resnet.ts";

type Pad = "same" | "valid";
/** [x shape, filter shape, stride, padding]: odd sizes, batch 1, channels not multiples of 4, strides 1 and 2. */
const CONV_CASES: [[number, number, number, number], [number, number, number, number], number, Pad][] = [
  [[3, 7, 9, 5], [3, 3, 5, 6], 1, "same"],
  [[1, 9, 8, 3], [3, 3, 3, 7], 2, "same"],
  [[2, 9, 8, 8], [3, 3, 8, 12], 2, "same"],
  [[1, 6, 7, 3], [5, 5, 3, 2], 1, "valid"],
  [[2, 11, 11, 6], [3, 3, 6, 5], 2, "valid"],
  [[4, 10, 10, 16], [1, 1, 16, 32], 2, "valid"],
  [[2, 8, 8, 16], [3, 3, 16, 16], 1, "same"],
  [[1, 28, 28, 1], [5, 5, 1, 32], 1, "same"],
  [[2, 8, 8, 3], [3, 3, 3, 16], 1, "same"],
  [[2, 9, 9, 3], [3, 3, 3, 12], 2, "valid"],
];

const seeded = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

gpuTest("webgpu Conv2DBackpropFilter matches cpu on odd shapes, strides 1 and 2, SAME and VALID", async () => {
  for (const [xs, fs, stride, pad] of CONV_CASES) {
    const [err] = await webgpuErrors(() => {
      const x = seeded(xs, 1);
      const dy = seeded(tf.conv2d(x as tf.Tensor4D, seeded(fs, 2) as tf.Tensor4D, stride, pad).shape, 3);
      return [filterGradOf(x, dy, fs, stride, pad)];
    });
    assert.ok(err <= 1e-5, `x ${xs}, filter ${fs}, stride ${stride}, ${pad}: relative error ${err}`);
  }
});

gpuTest("webgpu Conv2D and Conv2DBackpropInput match cpu on odd shapes, strides 1 and 2, SAME and VALID", async () => {
  for (const [xs, fs, stride, pad] of CONV_CASES) {
    const [forward, dx] = await webgpuErrors(() => {
      const x = seeded(xs, 1), w = seeded(fs, 2);
      const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad);
      const dy = seeded(y.shape, 3);
      return [y, tf.conv2dTranspose(dy as tf.Tensor4D, w as tf.Tensor4D, xs, stride, pad)];
    });
    assert.ok(forward <= 1e-5, `x ${xs}, filter ${fs}, stride ${stride}, ${pad}: forward relative error ${forward}`);
    assert.ok(dx <= 1e-5, `x ${xs}, filter ${fs}, stride ${stride}, ${pad}: input gradient relative error ${dx}`);
  }
});

gpuTest("webgpu FusedConv2D (bias, ReLU) matches cpu; other activations are TF.js's", async () => {
  for (const [xs, fs, stride, pad] of CONV_CASES) {
    const errors = await webgpuErrors(() => {
      const x = seeded(xs, 1), filter = seeded(fs, 2) as tf.Tensor4D, bias = seeded([fs[3]], 4);
      const conv = { x: x as tf.Tensor4D, filter, strides: stride, pad } as const;
      return [
        tf.fused.conv2d({ ...conv, bias, activation: "relu" }),
        tf.fused.conv2d({ ...conv, activation: "linear" }),
        tf.fused.conv2d({ ...conv, bias, activation: "elu" }),
      ];
    });
    for (const [k, err] of errors.entries()) assert.ok(err <= 1e-5, `x ${xs}, filter ${fs}, case ${k}: ${err}`);
  }
});

gpuTest("webgpu Conv2DBackpropFilter is deterministic and agrees with TF.js's own kernel", async () => {
  const previous = tf.getBackend();
  await tf.setBackend("webgpu");
  const x = seeded([5, 16, 16, 8], 4);
  const dy = seeded([5, 8, 8, 12], 5);
  const run = async () => {
    const g = filterGradOf(x, dy, [3, 3, 8, 12], 2, "same");
    try {
      return await g.data() as Float32Array;
    } finally {
      g.dispose();
    }
  };
  try {
    const [a, b] = [await run(), await run()];
    assert.deepEqual(a, b, "two runs differ");
    const stock = await withStockKernel("Conv2DBackpropFilter", run);
    assert.ok(relError(a, stock) <= 1e-5, `against TF.js's kernel: ${relError(a, stock)}`);
  } finally {
    tf.dispose([x, dy]);
    await tf.setBackend(previous);
  }
});

/** TF.js's filter gradient op (the kernel registered under Conv2DBackpropFilter). */
function filterGradOf(x: tf.Tensor, dy: tf.Tensor, filterShape: number[], stride: number, pad: Pad): tf.Tensor {
  return tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, {
    strides: [stride, stride],
    pad,
    dataFormat: "NHWC",
    dimRoundingMode: undefined,
    filterShape,
  } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/** A small ResNet of the paper's shape (pre-activation units, strides 1, 2, 2; one unit per stage). */
const SMALL_RESNET: ResNetShape = { filters: [8, 8, 12, 16], units: 1 };

gpuTest("one ResNet training step's parameter gradients on webgpu match cpu", async () => {
  const model = cifarResNet(SMALL_RESNET, 3);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  try {
    const errors = await webgpuErrors(() => {
      const x = tf.randomUniform([3, 32, 32, 3], 0, 255, "float32", 6);
      const y = tf.oneHot(tf.tensor1d([1, 4, 9], "int32"), 10);
      const { value, grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
        vars,
      );
      return [value, ...vars.map((v) => grads[v.name])];
    });
    const worst = Math.max(...errors);
    assert.ok(worst <= 1e-3, `loss and ${vars.length} gradients: worst relative error ${worst}`);
  } finally {
    model.dispose();
  }
});

gpuTest(
  "a new batch size compiles no new convolution or batch-norm pass pipeline (attacks' batches shrink)",
  async () => {
    const model = cifarResNet(SMALL_RESNET, 4);
    const previous = tf.getBackend();
    await tf.setBackend("webgpu");
    const cache = (tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache;
    const ours = () => Object.keys(cache).filter((k) => /^adv_(conv|bn_act|bn_infer_dx)/.test(k)).sort();
    const pgdGrad = async (n: number) => {
      const x = tf.randomUniform([n, 32, 32, 3], 0, 255, "float32", n);
      const y = tf.oneHot(tf.zeros([n], "int32") as tf.Tensor1D, 10);
      const loss = (xs: tf.Tensor) =>
        tf.losses.softmaxCrossEntropy(y, model.apply(xs, { training: false }) as tf.Tensor) as tf.Scalar;
      const g = tf.grad(loss)(x);
      await g.data();
      tf.dispose([x, y, g]);
    };
    try {
      await pgdGrad(3);
      const compiled = ours();
      assert.ok(compiled.some((k) => k.startsWith("adv_conv_dx")) && compiled.some((k) => k.startsWith("adv_bn_act")));
      for (const n of [5, 2]) await pgdGrad(n);
      assert.deepEqual(ours(), compiled);
    } finally {
      await tf.setBackend(previous);
      model.dispose();
    }
  },
);
