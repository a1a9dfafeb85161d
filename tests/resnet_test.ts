/**
 * The CIFAR-10 ResNets: structure and parameter counts (simple and wide),
 * standardisation inside the model, batch norm in inference vs training mode,
 * save/load in the layers format, and which weights get weight decay.
 */
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { tf, tfl } from "../lib/core/tf.ts";
import {
  ChannelPad,
  cifarResNet,
  decayedWeights,
  PerImageStandardization,
  RESNET_SIMPLE,
  RESNET_WIDE,
  type ResNetShape,
} from "../lib/nn/resnet.ts";
import { loadModel, saveModel } from "../lib/train/checkpoint.ts";
import { batchNormActInfer, batchNormActTrain } from "../lib/nn/_fused.ts";
import { Rng } from "../lib/core/rng.ts";

await tf.setBackend("cpu");

/** A tiny network with every kind of unit (widening with an odd pad, strided), fast on the cpu backend. */
const TINY: ResNetShape = { filters: [4, 4, 7, 12], units: 2 };

/** Parameters of the network counted by hand from the architecture (BN: gamma, beta, moving mean, moving variance). */
function expectedParams(shape: ResNetShape): { total: number; trainable: number } {
  const [f0, f1, f2, f3] = shape.filters;
  let conv = 9 * 3 * f0, bn = 0;
  for (const [inF, outF] of [[f0, f1], [f1, f2], [f2, f3]]) {
    for (let u = 0; u < shape.units; u++) {
      const i = u === 0 ? inF : outF;
      conv += 9 * i * outF + 9 * outF * outF;
      bn += i + outF;
    }
  }
  bn += f3;
  const dense = 10 * f3 + 10;
  return { total: conv + 4 * bn + dense, trainable: conv + 2 * bn + dense };
}

function images(n: number, seed = 0): tf.Tensor4D {
  return tf.tensor4d(new Rng(seed).uniform(n * 3072, 0, 255), [n, 32, 32, 3]);
}

function trainableCount(model: tfl.LayersModel): number {
  return model.trainableWeights.reduce((s, w) => s + w.read().size, 0);
}

Deno.test("the simple ResNet maps [N, 32, 32, 3] pixels to [N, 10] logits with the paper's parameter count", () => {
  const model = cifarResNet(RESNET_SIMPLE, 0);
  assertEquals(model.inputs[0].shape, [null, 32, 32, 3]);
  assertEquals(model.outputs[0].shape, [null, 10]);
  assertEquals(expectedParams(RESNET_SIMPLE), { total: 466426, trainable: 464154 });
  assertEquals(model.countParams(), 466426);
  assertEquals(trainableCount(model), 464154);
  // 31 convolutions (3 stages × 5 units × 2 + the first), 31 batch norms (each fused with its leaky ReLU), one dense layer.
  const classes = model.layers.map((l) => l.getClassName());
  assertEquals(classes.filter((c) => c === "Conv2D").length, 31);
  assertEquals(classes.filter((c) => c === "BatchNormLeakyRelu").length, 31);
  assertEquals(classes.filter((c) => c === "ChannelPad").length, 2);
  assertEquals(classes.filter((c) => c === "AveragePooling2D").length, 2);
  const before = tf.memory().numTensors;
  const z = tf.tidy(() => model.apply(images(2), { training: false }) as tf.Tensor);
  assertEquals(z.shape, [2, 10]);
  assert.ok(Array.from(z.dataSync()).every(Number.isFinite));
  z.dispose();
  assertEquals(tf.memory().numTensors, before);
  model.dispose();
});

Deno.test("the wide ResNet has filters 16, 160, 320, 640 and about 46 M parameters", () => {
  const model = cifarResNet(RESNET_WIDE, 0);
  assertEquals(model.outputs[0].shape, [null, 10]);
  const { total, trainable } = expectedParams(RESNET_WIDE);
  assertEquals(model.countParams(), total);
  assertEquals(trainableCount(model), trainable);
  assertEquals(total, 45_924_346);
  const convs = model.layers.filter((l) => l.getClassName() === "Conv2D");
  assertEquals(convs.map((l) => (l.getConfig().filters as number)).filter((f, i, a) => a.indexOf(f) === i), [
    16,
    160,
    320,
    640,
  ]);
  // Stage 1 widens 16 → 160 at stride 1: channel padding, no pooling.
  const pads = model.layers.filter((l) => l instanceof ChannelPad) as ChannelPad[];
  assertEquals(pads.map((p) => [p.before, p.after]), [[72, 72], [80, 80], [160, 160]]);
  model.dispose();
});

Deno.test("shape validation names the bad value", () => {
  assertThrows(() => cifarResNet({ filters: [16, 16, 32], units: 5 } as never), RangeError, "4 positive integers");
  assertThrows(() => cifarResNet({ filters: [16, 32, 16, 64], units: 5 }), RangeError, "must not decrease");
  assertThrows(() => cifarResNet({ filters: [16, 16, 32, 64], units: 0 }), RangeError, "got 0");
});

Deno.test("per-image standardisation inside the model: as tf.image.per_image_standardization, finite on a constant image", () => {
  const layer = new PerImageStandardization();
  const x = images(2, 3);
  const y = layer.apply(x) as tf.Tensor;
  const data = x.arraySync().map((img) => img.flat(2));
  const want = data.flatMap((v) => {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    return v.map((p) => (p - mean) / Math.max(std, 1 / Math.sqrt(3072)));
  });
  assertClose(y.dataSync(), want, 1e-4, "standardised pixels");
  const flat = tf.fill([1, 32, 32, 3], 128) as tf.Tensor4D;
  assertEquals(Array.from((layer.apply(flat) as tf.Tensor).dataSync()).every((v) => v === 0), true);
  // The gradient through a constant image is finite too (no 0 · ∞ at zero variance).
  const g = tf.grad((t: tf.Tensor) => (layer.apply(t) as tf.Tensor).square().sum())(flat);
  assert.ok(Array.from(g.dataSync()).every(Number.isFinite));

  const model = cifarResNet(TINY, 1);
  const z = model.apply(tf.concat([flat, tf.zeros([1, 32, 32, 3])]), { training: false }) as tf.Tensor;
  assert.ok(Array.from(z.dataSync()).every(Number.isFinite), "finite logits on constant images");
  // The model sees each image up to brightness and contrast: f(2x + 10) = f(x).
  const a = model.apply(x, { training: false }) as tf.Tensor;
  const b = model.apply(x.mul(2).add(10), { training: false }) as tf.Tensor;
  assertClose(b.dataSync(), a.dataSync(), 1e-4, "logits of 2x + 10");
  tf.dispose([x, y, flat, g, z, a, b]);
  model.dispose();
});

Deno.test("ChannelPad pads channels with zeros on both sides", () => {
  const pad = new ChannelPad({ before: 1, after: 2 });
  const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 1, 2]);
  const y = pad.apply(x) as tf.Tensor;
  assertEquals(y.shape, [1, 2, 1, 5]);
  assertEquals(Array.from(y.dataSync()), [0, 1, 2, 0, 0, 0, 3, 4, 0, 0]);
  assertEquals(pad.computeOutputShape([null, 8, 8, 4]), [null, 8, 8, 7]);
  tf.dispose([x, y]);
});

Deno.test("batch norm uses running statistics with training false and batch statistics with training true", () => {
  const model = cifarResNet(TINY, 2);
  const x = images(3, 4);
  const one = x.slice([0, 0, 0, 0], [1, 32, 32, 3]);
  const other = tf.concat([one, images(2, 5)]);
  const alone = (model.apply(one, { training: false }) as tf.Tensor).dataSync();
  const inBatch = (model.apply(x, { training: false }) as tf.Tensor).slice([0, 0], [1, 10]).dataSync();
  assertClose(inBatch, alone, 1e-5, "inference logits of image 0");
  const bn = model.getLayer("unit_1_0_init_bn_relu");
  const mean0 = bn.getWeights()[2].dataSync().slice();
  const t1 = (model.apply(x, { training: true }) as tf.Tensor).slice([0, 0], [1, 10]).dataSync();
  const t2 = (model.apply(other, { training: true }) as tf.Tensor).slice([0, 0], [1, 10]).dataSync();
  assert.ok(t1.some((v, i) => Math.abs(v - t2[i]) > 1e-3), "training logits of image 0 depend on the batch");
  const mean1 = bn.getWeights()[2].dataSync();
  assert.ok(mean1.some((v, i) => v !== mean0[i]), "a training call updates the moving mean");
  assertEquals(bn.getConfig().momentum, 0.9);
  assertEquals(bn.getConfig().epsilon, 1e-3);
  tf.dispose([x, one, other]);
  model.dispose();
});

Deno.test("a ResNet saves and loads in the TF.js layers format with identical logits", async () => {
  const model = cifarResNet(TINY, 3);
  const x = images(2, 6);
  // One training call so the moving statistics are not their initial values.
  (model.apply(x, { training: true }) as tf.Tensor).dispose();
  const dir = await Deno.makeTempDir();
  try {
    await saveModel(model, dir);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/model.json`));
    const classes = json.modelTopology.config.layers.map((l: { class_name: string }) => l.class_name);
    assert.ok(classes.includes("PerImageStandardization") && classes.includes("ChannelPad"), classes.join(" "));
    const loaded = await loadModel(dir);
    const a = (model.apply(x, { training: false }) as tf.Tensor).dataSync();
    const b = (loaded.apply(x, { training: false }) as tf.Tensor).dataSync();
    assertEquals(Array.from(b), Array.from(a));
    assertEquals(loaded.countParams(), model.countParams());
    loaded.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
    model.dispose();
    x.dispose();
  }
});

Deno.test("decayedWeights picks the convolution and dense kernels only", () => {
  const model = cifarResNet(RESNET_SIMPLE, 0);
  const decay = decayedWeights(model);
  assertEquals(decay.length, model.trainableWeights.length);
  const picked = model.trainableWeights.filter((_, i) => decay[i]).map((w) => w.originalName);
  const left = model.trainableWeights.filter((_, i) => !decay[i]).map((w) => w.originalName);
  assertEquals(picked.length, 32);
  assert.ok(picked.every((n) => /(conv\d?|logit)\/kernel$/.test(n)), picked.join(" "));
  assert.ok(left.every((n) => /\/(gamma|beta|bias)$/.test(n)), left.join(" "));
  assertEquals(left.filter((n) => n.endsWith("bias")), ["logit/bias"]);
  model.dispose();
});

Deno.test("the same seed gives the same network, another seed another", () => {
  const x = images(1, 7);
  const [a, b, c] = [0, 0, 1].map((s) => {
    const m = cifarResNet(TINY, s);
    const z = (m.apply(x, { training: false }) as tf.Tensor).dataSync();
    m.dispose();
    return Array.from(z);
  });
  assertEquals(a, b);
  assert.notDeepStrictEqual(a, c);
  x.dispose();
});

Deno.test("batch norm + leaky ReLU as our ops (their gradient written out) equals TF.js's batchNorm and leakyRelu", () => {
  const rng = new Rng(9);
  const t = (shape: number[], lo: number, hi: number) =>
    tf.tensor(rng.uniform(shape.reduce((a, b) => a * b, 1), lo, hi), shape);
  const x = t([3, 5, 4, 6], -2, 3), g = t([6], 0.5, 1.5), b = t([6], -1, 1), r = t([3, 5, 4, 6], -1, 1);
  const m = t([6], -1, 1), v = t([6], 0.5, 2);
  const axes = [0, 1, 2];
  const tfTrain = (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => {
    const { mean, variance } = tf.moments(xs, axes);
    return tf.leakyRelu(tf.batchNorm(xs, mean, variance, bs, gs, 1e-3), 0.1);
  };
  const ours = {
    train: (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => batchNormActTrain(xs, gs, bs, 1e-3, 0.1).y,
    infer: (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => batchNormActInfer(xs, m, v, gs, bs, 1e-3, 0.1),
  };
  const reference = {
    train: tfTrain,
    infer: (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => tf.leakyRelu(tf.batchNorm(xs, m, v, bs, gs, 1e-3), 0.1),
  };
  for (const mode of ["train", "infer"] as const) {
    const run = (f: typeof tfTrain) => {
      const loss = (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => tf.sum(tf.mul(f(xs, gs, bs), r));
      return [f(x, g, b), ...tf.grads(loss)([x, g, b])].map((u) => u.dataSync());
    };
    const got = run(ours[mode]), want = run(reference[mode]);
    ["y", "dx", "dgamma", "dbeta"].forEach((name, i) => assertClose(got[i], want[i], 1e-4, `${mode} ${name}`));
  }
  const stats = batchNormActTrain(x, g, b, 1e-3, 0.1);
  const { mean, variance } = tf.moments(x, axes);
  assertClose(stats.mean.dataSync(), mean.dataSync(), 1e-5, "batch mean");
  assertClose(stats.variance.dataSync(), variance.dataSync(), 1e-5, "batch variance");
});
