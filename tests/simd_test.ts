/**
 * Our relaxed-SIMD kernels for the wasm backend (lib/backends/wasm/simd/mod.ts, lib/backends/wasm/simd/kernels.ts) against the `cpu`
 * backend and against the wasm backend without them: every path of the convolution (patch GEMM, first
 * layer, one output channel), products with transposes and batches, the 2 x 2 max-pool gradient with
 * ties and NaN, the fused optimiser updates; that the work is shared with the workers; and that the
 * committed binary is what kernels.ts compiles to.
 *
 *   deno test -A tests/simd_test.ts
 *
 * @module
 */
import assert from "node:assert/strict";
import { errorsAgainst } from "./assert.ts";
import { tf } from "../lib/core/tf.ts";
import { capacityShape, mnistNet } from "../lib/nn/mnist_net.ts";
import { Adam } from "../lib/train/optim.ts";
import { compileKernels, moduleText } from "../lib/backends/wasm/simd/build.ts";
import {
  registerWasmBackend,
  useWasmSimd,
  wasmSimdReason,
  wasmSimdStats,
  wasmSimdThreads,
} from "../lib/backends/wasm/mod.ts";
import { ADAM_UPDATE, MOMENTUM_UPDATE } from "../lib/backends/kernel_names.ts";

await registerWasmBackend();
await tf.setBackend("wasm");
tf.tidy(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2]))); // starts the kernels
// The workers load in the background; every kernel runs on the calling thread until they have.
for (let i = 0; i < 100 && (wasmSimdStats()?.readyWorkers ?? 0) < (wasmSimdThreads() ?? 1) - 1; i++) {
  await new Promise((r) => setTimeout(r, 50));
}

/** Runs `f` on wasm and on cpu; returns the relative error of each output. */
const againstCpu = (f: () => tf.Tensor | tf.Tensor[]) => errorsAgainst("wasm", "cpu", f);

/** Runs `f` on wasm with our kernels and without; returns both outputs' values. */
function withAndWithout(f: () => tf.Tensor[]): [number[][], number[][]] {
  const run = (on: boolean) => {
    useWasmSimd(on);
    try {
      return tf.tidy(f).map((t) => {
        const v = Array.from(t.dataSync());
        t.dispose();
        return v;
      });
    } finally {
      useWasmSimd(true);
    }
  };
  return [run(true), run(false)];
}

let seed = 1;
const normal = (shape: number[]) => tf.randomNormal(shape, 0, 1, "float32", seed++);

Deno.test("simd kernels run on the wasm backend, on every core", () => {
  assert.equal(wasmSimdReason, "", wasmSimdReason);
  assert.equal(wasmSimdThreads(), 1 + Math.min(7, navigator.hardwareConcurrency - 1));
  assert.equal(wasmSimdStats()?.readyWorkers, (wasmSimdThreads() ?? 1) - 1, "workers loaded");
});

Deno.test("simd Conv2D matches cpu on each path (GEMM, first layer, one output channel)", async () => {
  const before = wasmSimdStats()?.sharedCalls ?? 0;
  type Case = [
    n: number,
    h: number,
    w: number,
    ci: number,
    co: number,
    k: number,
    s: 1 | 2,
    pad: "same" | "valid",
    d: 1 | 2,
  ];
  const cases: Case[] = [
    [4, 14, 14, 32, 64, 5, 1, "same", 1], // model A's second layer: full 6 x 8 tiles over two threads
    [3, 9, 7, 5, 13, 3, 2, "valid", 1], // partial tiles and panels
    [1, 11, 10, 9, 24, 3, 1, "same", 2], // dilation
    [2, 28, 28, 1, 32, 5, 1, "same", 1], // model A's first layer: the narrow loop
    [2, 32, 32, 3, 16, 3, 1, "same", 1], // the CIFAR-10 ResNet's first layer
    [1, 9, 9, 3, 12, 3, 2, "valid", 1], // narrow, 4-channel groups, stride 2
    [2, 28, 28, 32, 1, 5, 1, "same", 1], // one output channel (model A's first input gradient)
    [1, 8, 9, 6, 1, 3, 2, "valid", 1], // one output channel, channels not a multiple of 4
    [1, 15, 17, 16, 1, 3, 2, "same", 1], // one output channel, four pixels at a time, stride 2
    [1, 12, 14, 8, 1, 3, 1, "valid", 2], // the same, dilated
    [2, 13, 11, 2, 48, 3, 2, "same", 1], // first layer, two pixels at a time, stride 2
    [1, 12, 12, 1, 16, 3, 1, "valid", 2], // the same, dilated
  ];
  for (const [n, h, w, ci, co, k, s, pad, d] of cases) {
    const x = normal([n, h, w, ci]) as tf.Tensor4D;
    const f = normal([k, k, ci, co]) as tf.Tensor4D;
    const [err] = await againstCpu(() => tf.conv2d(x, f, s, pad, "NHWC", d));
    assert.ok(err <= 1e-5, `case ${[n, h, w, ci, co, k, s, pad, d]}: rel error ${err}`);
    tf.dispose([x, f]);
  }
  if (navigator.hardwareConcurrency > 1) {
    assert.ok((wasmSimdStats()?.sharedCalls ?? 0) > before, "no call was shared with a worker");
  }
});

Deno.test("simd BatchMatMul matches cpu: transposes, batches, broadcast batch", async () => {
  for (const [m, k, n] of [[100, 313, 70], [7, 5, 3], [1, 40, 9], [33, 2, 17]]) {
    const a = normal([m, k]), b = normal([k, n]);
    const at = tf.transpose(a), bt = tf.transpose(b);
    const a3 = normal([3, m, k]), b3 = normal([3, k, n]);
    const errs = await againstCpu(() => [
      tf.matMul(a, b),
      tf.matMul(at, b, true, false),
      tf.matMul(a, bt, false, true),
      tf.matMul(at, bt, true, true),
      tf.matMul(a3, b3),
      tf.matMul(a3, tf.expandDims(b, 0)),
      tf.matMul(tf.expandDims(at, 0), b3, true, false),
    ]);
    errs.forEach((err, i) => assert.ok(err <= 1e-5, `[${m}, ${k}, ${n}] product ${i}: rel error ${err}`));
    tf.dispose([a, b, at, bt, a3, b3]);
  }
});

Deno.test("simd BatchMatMul: batch dimensions broadcast as the stock kernel's; mismatched shapes still throw", () => {
  const shapes = () =>
    tf.tidy(() => [
      tf.matMul(normal([2, 3]), normal([1, 3, 4])).shape,
      tf.matMul(normal([1, 1, 2, 3]), normal([5, 3, 4])).shape,
      tf.matMul(normal([2, 3]), normal([1, 16, 3]), false, true).shape, // the (b a^T)^T path
    ]);
  useWasmSimd(false);
  const stock = shapes();
  useWasmSimd(true);
  const ours = shapes();
  assert.deepEqual(ours, [[1, 2, 4], [1, 5, 2, 4], [1, 2, 16]]);
  assert.deepEqual(ours, stock);
  assert.throws(() => tf.tidy(() => tf.matMul(tf.ones([2, 10]), tf.ones([4, 5]))), /inner shapes \(10\) and \(4\)/);
});

Deno.test("simd max-pool gradient of an empty pooled output is all zeros", () => {
  for (let round = 0; round < 3; round++) {
    tf.fill([1, 1, 6, 4], 7.5).dispose(); // leaves non-zero values where the next output may be allocated
    const x = normal([1, 1, 6, 4]);
    const dy = tf.zeros([1, 0, 3, 4]);
    const dx = tf.engine().runKernel("MaxPoolGrad", { dy, input: x, output: dy }, {
      filterSize: 2,
      strides: 2,
      pad: "valid",
    }) as tf.Tensor;
    assert.deepEqual(Array.from(dx.dataSync()), new Array(24).fill(0));
    tf.dispose([x, dy, dx]);
  }
});

Deno.test("simd sums over leading axes (bias gradients) match cpu; other sums unchanged", async () => {
  for (const shape of [[50, 28, 28, 32], [3, 7, 5], [130, 9], [1, 1, 6], [2, 3, 4, 5, 7]]) {
    const x = normal(shape);
    const leading = shape.slice(0, -1).map((_, i) => i);
    const errs = await againstCpu(() => [
      tf.sum(x, leading),
      tf.sum(x, leading, true),
      tf.sum(x, -1),
      tf.sum(x, 0),
    ]);
    errs.forEach((err, i) => assert.ok(err <= 1e-5, `${shape} sum ${i}: rel error ${err}`));
    x.dispose();
  }
});

Deno.test("simd keeps a packed operand for the same tensor data only (PGD's repeated weights)", async () => {
  const a = normal([20, 300]), g = normal([20, 70]);
  for (let i = 0; i < 2; i++) {
    // A fresh weight tensor each round, with other values: nothing may come from the last round's packing.
    // g w^T is (w g^T)^T on first sight of w, then packs w and keeps it.
    const w = normal([300, 70]);
    for (let step = 0; step < 3; step++) { // the third step reuses what the second kept
      const errs = await againstCpu(() => [tf.matMul(a, w), tf.matMul(g, w, false, true)]);
      errs.forEach((err, j) => assert.ok(err <= 1e-5, `round ${i}, step ${step}, product ${j}: rel error ${err}`));
    }
    w.dispose();
  }
  tf.dispose([a, g]);
});

Deno.test("simd 2x2 max-pool gradient: same floats as the TypeScript loop, ties, NaN and -Infinity included", async () => {
  for (const [n, h, w, c] of [[2, 8, 10, 6], [1, 9, 7, 8], [3, 28, 28, 32], [1, 4, 4, 5]]) {
    // Rounded values make ties; NaN and -Infinity windows must send nothing, NaN never wins.
    const x = tf.tidy(() => {
      const r = tf.round(normal([n, h, w, c]));
      const u = tf.randomUniform([n, h, w, c], 0, 1, "float32", seed++);
      return tf.where(
        tf.less(u, 0.1),
        tf.fill([n, h, w, c], NaN),
        tf.where(tf.less(u, 0.2), tf.fill([n, h, w, c], -Infinity), r),
      );
    }) as tf.Tensor4D;
    const dy = normal(tf.maxPool(x, 2, 2, "valid").shape);
    const dx = () => [tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, 2, 2, "valid"), dy)))(x)];
    const [ours, theirs] = withAndWithout(dx);
    assert.deepEqual(ours, theirs, `[${n}, ${h}, ${w}, ${c}]`);
    tf.dispose([x, dy]);
  }
  const x = tf.round(normal([2, 9, 8, 12])) as tf.Tensor4D;
  const dy = normal([2, 4, 4, 12]);
  const [err] = await againstCpu(() =>
    tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, 2, 2, "valid"), dy)))(x)
  );
  assert.ok(err <= 1e-6, `against cpu: rel error ${err}`);
  tf.dispose([x, dy]);
});

Deno.test("fused Adam and momentum updates on wasm give the composed updates' floats", () => {
  const shape = [37, 1029]; // not a whole number of 1024-value blocks
  const w = normal(shape), m = tf.mul(normal(shape), 0.1), v = tf.abs(tf.mul(normal(shape), 0.01)), g = normal(shape);
  const [a, b1, b2, eps] = [0.00123, 0.9, 0.999, 1e-8];
  const composed = () =>
    tf.tidy(() => {
      const m2 = m.mul(b1).add(g.mul(1 - b1));
      const v2 = v.mul(b2).add(g.square().mul(1 - b2));
      return [w.sub(m2.mul(a).div(v2.sqrt().add(eps))), m2, v2];
    });
  const fused = () =>
    tf.engine().runKernel(ADAM_UPDATE, { variable: w, m, v, grad: g }, {
      step: a,
      beta1: b1,
      beta2: b2,
      epsilon: eps,
    }) as tf.Tensor[];
  const values = (ts: tf.Tensor[]) => ts.map((t) => Array.from(t.dataSync()));
  const [simd, composedOnKernels] = withAndWithout(fused);
  const reference = values(composed());
  assert.deepEqual(simd, reference, "Adam on simd");
  assert.deepEqual(composedOnKernels, reference, "Adam composed on the backend's kernels");
  for (const decay of [0, 5e-4]) {
    const composedMomentum = () =>
      tf.tidy(() => {
        const grad = decay > 0 ? g.add(w.mul(decay)) : g;
        const v2 = v.mul(0.9).add(grad);
        return [w.sub(v2.mul(0.1)), v2];
      });
    const fusedMomentum = () =>
      tf.engine().runKernel(MOMENTUM_UPDATE, { variable: w, v, grad: g }, {
        lr: 0.1,
        momentum: 0.9,
        decay,
      }) as tf.Tensor[];
    const [ours, theirs] = withAndWithout(fusedMomentum);
    const expected = values(composedMomentum());
    assert.deepEqual(ours, expected, `momentum on simd, decay ${decay}`);
    assert.deepEqual(theirs, expected, `momentum composed on the backend's kernels, decay ${decay}`);
  }
  tf.dispose([w, m, v, g]);
});

Deno.test("five steps of lib/train/optim.ts's Adam on wasm (fused update, our convolutions and products) follow cpu's loss curve", async () => {
  const curves: number[][] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const model = mnistNet(capacityShape(2), 5); // model A's layers with few filters: the cpu reference stays fast
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const optimizer = new Adam(vars, 1e-2);
    const x = tf.randomUniform([6, 28, 28, 1], 0, 1, "float32", 21);
    const y = tf.oneHot(tf.tensor1d([0, 4, 9, 2, 7, 1], "int32"), 10);
    const losses: number[] = [];
    for (let step = 0; step < 5; step++) {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(
          () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
          vars,
        );
        losses.push(value.dataSync()[0]);
        optimizer.apply(vars.map((v) => grads[v.name]));
      });
    }
    curves.push(losses);
    optimizer.dispose();
    model.dispose();
    tf.dispose([x, y]);
  }
  await tf.setBackend("wasm");
  const [cpu, wasm] = curves;
  assert.ok(cpu[4] < cpu[0], `the loss should fall on cpu: ${cpu}`);
  cpu.forEach((ref, i) =>
    assert.ok(Math.abs(wasm[i] - ref) <= 1e-3 * Math.abs(ref), `step ${i}: wasm ${wasm[i]}, cpu ${ref}`)
  );
});

Deno.test("lib/backends/wasm/simd/kernels_wasm.ts is what lib/backends/wasm/simd/kernels.ts compiles to (deno task build-simd)", async () => {
  const committed = await Deno.readTextFile(new URL("../lib/backends/wasm/simd/kernels_wasm.ts", import.meta.url));
  assert.ok(committed === moduleText(await compileKernels()), "stale binary: run deno task build-simd");
});
