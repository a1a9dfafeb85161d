/**
 * The fast wasm gradient kernels of lib/backends/wasm/ (_conv_*_grad.ts, _matmul.ts, _pool.ts) against the reference `cpu`
 * backend: each kernel on random shapes, model A's gradients, one training step; and that the threaded
 * build started.
 *
 *   deno test --allow-read tests/wasm_test.ts
 *
 * @module
 */
import { errorsAgainst } from "./assert.ts";
import assert from "node:assert/strict";
import { tf } from "../lib/core/tf.ts";
import { mnistNet, MODEL_A } from "../lib/nn/mnist_net.ts";
import { registerWasmBackend, wasmThreads, wasmThreadsReason } from "../lib/backends/wasm/mod.ts";

await registerWasmBackend();
await registerWasmBackend(); // idempotent
await tf.setBackend("wasm");

Deno.test("wasm runs its threaded build: one XNNPACK thread per logical core (at most TF.js's 8)", () => {
  assert.equal(wasmThreadsReason, "", wasmThreadsReason);
  assert.equal(wasmThreads(), Math.min(8, navigator.hardwareConcurrency));
  // A convolution big enough for XNNPACK to split over the pool (every test below then runs threaded).
  const y = tf.tidy(() =>
    tf.sum(tf.conv2d(tf.ones([8, 16, 16, 8]) as tf.Tensor4D, tf.ones([3, 3, 8, 16]) as tf.Tensor4D, 1, "valid"))
  );
  assert.equal(y.dataSync()[0], 8 * 14 * 14 * 16 * 72);
  y.dispose();
});

Deno.test("wasm Identity shares its input's buffer; each tensor can still be disposed on its own", () => {
  const backend = tf.engine().backend;
  const start = backend.numDataIds();
  const x = tf.tensor([1, 2, 3]);
  const y = tf.clone(x); // the Identity kernel
  assert.equal(backend.numDataIds(), start + 1, "no copy");
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
  y.dispose();
  assert.equal(backend.numDataIds(), start, "freed with the last reference");
});

/** Runs `f` on wasm and on cpu; returns the relative error of each output. */
const compare = (f: () => tf.Tensor | tf.Tensor[]) => errorsAgainst("wasm", "cpu", f);

/** Runs `f` on wasm and asserts that neither tensors nor backend buffers leak. */
function assertNoLeak(f: () => void): void {
  f(); // moves inputs that `compare` left on cpu back to wasm
  const backend = tf.engine().backend;
  const tensors = tf.memory().numTensors;
  const buffers = backend.numDataIds();
  f();
  assert.equal(tf.memory().numTensors, tensors, "tensors leaked");
  assert.equal(backend.numDataIds(), buffers, "wasm buffers leaked");
}

let seed = 1;
const normal = (shape: number[]) => tf.randomNormal(shape, 0, 1, "float32", seed++);

type ConvCase = [
  n: number,
  h: number,
  w: number,
  ci: number,
  co: number,
  k: number,
  s: 1 | 2,
  pad: "same" | "valid",
];
const CONV_CASES: ConvCase[] = [
  [2, 9, 7, 3, 5, 3, 1, "same"],
  [1, 9, 7, 3, 5, 3, 2, "same"],
  [2, 10, 11, 2, 4, 5, 2, "valid"],
  [1, 13, 13, 1, 3, 6, 2, "valid"],
  [3, 8, 8, 4, 6, 4, 1, "valid"],
  [2, 12, 12, 1, 8, 5, 1, "same"],
  [1, 5, 6, 2, 3, 1, 2, "same"],
  [1, 7, 7, 3, 2, 2, 2, "same"],
];

Deno.test("wasm Conv2DBackpropInput matches cpu (strides 1, 2; SAME, VALID)", async () => {
  for (const [n, h, w, ci, co, k, s, pad] of CONV_CASES) {
    const filter = normal([k, k, ci, co]) as tf.Tensor4D;
    const outShape = tf.conv2d(tf.zeros([n, h, w, ci]) as tf.Tensor4D, filter, s, pad).shape;
    const dy = normal(outShape) as tf.Tensor4D;
    const [err] = await compare(() => tf.conv2dTranspose(dy, filter, [n, h, w, ci], s, pad));
    assert.ok(
      err <= 1e-4,
      `case ${[n, h, w, ci, co, k, s, pad]}: rel error ${err}`,
    );
    assertNoLeak(() => tf.conv2dTranspose(dy, filter, [n, h, w, ci], s, pad).dispose());
    tf.dispose([filter, dy]);
  }
});

Deno.test("wasm Conv2DBackpropFilter matches cpu (strides 1, 2; SAME, VALID)", async () => {
  for (const [n, h, w, ci, co, k, s, pad] of CONV_CASES) {
    const x = normal([n, h, w, ci]) as tf.Tensor4D;
    const filter = normal([k, k, ci, co]) as tf.Tensor4D;
    const dy = normal(tf.conv2d(x, filter, s, pad).shape);
    const dw = () => tf.grad((f: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, f as tf.Tensor4D, s, pad), dy)))(filter);
    const [err] = await compare(dw);
    assert.ok(
      err <= 1e-4,
      `case ${[n, h, w, ci, co, k, s, pad]}: rel error ${err}`,
    );
    assertNoLeak(() => dw().dispose());
    tf.dispose([x, filter, dy]);
  }
});

Deno.test("wasm BatchMatMul with transposed operands matches cpu", async () => {
  for (const [m, k, n] of [[5, 7, 3], [40, 300, 60], [1, 4, 9], [60, 30, 2]]) {
    const a = normal([m, k]);
    const b = normal([k, n]);
    const at = tf.transpose(a);
    const bt = tf.transpose(b);
    const products = () => [
      tf.matMul(at, b, true, false),
      tf.matMul(a, bt, false, true),
      tf.matMul(at, bt, true, true),
      tf.matMul(tf.expandDims(a, 0), tf.expandDims(bt, 0), false, true),
    ];
    for (const err of await compare(products)) {
      assert.ok(err <= 1e-4, `[${m}, ${k}, ${n}]: rel error ${err}`);
    }
    assertNoLeak(() =>
      tf.tidy(() => {
        products();
      })
    );
    tf.dispose([a, b, at, bt]);
  }
});

Deno.test("wasm MaxPoolGrad matches cpu, ties included", async () => {
  const cases: [
    number,
    number,
    number,
    number,
    number,
    1 | 2,
    "same" | "valid",
  ][] = [
    [2, 12, 12, 3, 2, 2, "valid"],
    [1, 7, 9, 2, 3, 2, "same"],
    [2, 8, 8, 3, 3, 1, "same"],
    [1, 7, 7, 2, 2, 2, "same"],
    [2, 8, 10, 3, 2, 2, "same"], // 2×2 windows inside the image: the fast loop
    [1, 9, 8, 2, 2, 2, "valid"], // the same, with a row left over
  ];
  for (const [n, h, w, c, f, s, pad] of cases) {
    // Rounded values make ties, which must go to the first maximum.
    const x = tf.round(normal([n, h, w, c])) as tf.Tensor4D;
    const dy = normal(tf.maxPool(x, f, s, pad).shape);
    const dx = () => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, f, s, pad), dy)))(x);
    const [err] = await compare(dx);
    assert.ok(err <= 1e-6, `case ${[n, h, w, c, f, s, pad]}: rel error ${err}`);
    assertNoLeak(() => dx().dispose());
    tf.dispose([x, dy]);
  }
});

Deno.test("model A: input and parameter gradients of the summed cross-entropy match cpu", async () => {
  const model = mnistNet(MODEL_A, 3);
  // Batch 1 keeps the cpu reference fast; the kernel tests cover larger batches.
  const x = tf.randomUniform([1, 28, 28, 1], 0, 1, "float32", 11);
  const y = tf.oneHot(tf.tensor1d([3], "int32"), 10);
  const loss = (input: tf.Tensor) =>
    tf.losses.softmaxCrossEntropy(
      y,
      model.apply(input) as tf.Tensor,
      undefined,
      undefined,
      tf.Reduction.SUM,
    ) as tf.Scalar;
  const grads = () => {
    const dx = tf.grad(loss)(x);
    const { grads } = tf.variableGrads(
      () => loss(x),
      model.trainableWeights.map((w) => w.read() as tf.Variable),
    );
    return [dx, ...Object.values(grads)];
  };
  const errors = await compare(grads);
  assert.equal(errors.length, 1 + model.trainableWeights.length);
  errors.forEach((err, i) => assert.ok(err <= 1e-4, `gradient ${i}: rel error ${err}`));
  model.dispose();
  tf.dispose([x, y]);
});

Deno.test("model A: one Adam training step on wasm lowers the loss and leaks nothing", () => {
  const model = mnistNet(MODEL_A, 4);
  const x = tf.randomUniform([8, 28, 28, 1], 0, 1, "float32", 12);
  const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32"), 10);
  const optimizer = tf.train.adam(1e-3);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const lossOf = () =>
    tf.losses.softmaxCrossEntropy(
      y,
      model.apply(x, { training: true }) as tf.Tensor,
    ) as tf.Scalar;
  const before = tf.tidy(() => lossOf().dataSync()[0]);
  // assertNoLeak runs a first step (which creates Adam's slots), then checks a second one.
  const step = () =>
    tf.tidy(() => {
      optimizer.minimize(lossOf, false, vars);
    });
  assertNoLeak(step);
  const after = tf.tidy(() => lossOf().dataSync()[0]);
  assert.ok(Number.isFinite(after), `loss after the step is ${after}`);
  assert.ok(after < before, `loss went from ${before} to ${after}`);
  optimizer.dispose();
  model.dispose();
  tf.dispose([x, y]);
});
